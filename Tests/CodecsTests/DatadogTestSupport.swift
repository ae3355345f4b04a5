import TestSupport
import Foundation
import Testing
@testable import Codecs
import Spans

/// Helpers shared by the Datadog tests: fixture loading, a seeded RNG and a comparison of
/// decoded spans with the expectation JSON written by Tests/fixtures-tools/datadog.
enum DD {
    static func fixture(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/datadog/\(name)", withExtension: nil))
        return Array(try Data(contentsOf: url))
    }

    static func expectation(_ name: String) throws -> [[String: Any]] {
        let obj = try JSONSerialization.jsonObject(with: Data(try fixture(name)))
        let dict = try #require(obj as? [String: Any])
        return try #require(dict["spans"] as? [[String: Any]])
    }

    /// Checks that `batch` holds exactly the spans of the expectation, field by field.
    /// The expectation lists each span's own `_sampling_priority_v1`; a decoded span carries its
    /// trace chunk's (the root's, else the first one given), as the agent applies it.
    static func expectMatches(_ batch: SpanBatch, _ expected: [[String: Any]], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(batch.spans.count == expected.count, sourceLocation: sourceLocation)
        func chunkPriority(_ trace: String?) -> Int? {
            let chunk = expected.filter { $0["trace_id"] as? String == trace }
            let root = chunk.last { $0["parent_id"] as? String == "0000000000000000" }
            return (root?["sampling_priority"] as? NSNumber)?.intValue
                ?? chunk.lazy.compactMap { ($0["sampling_priority"] as? NSNumber)?.intValue }.first
        }
        for (span, e) in zip(batch.spans, expected) {
            let id = hex16(span.id)
            #expect(span.traceID.description == e["trace_id"] as? String, "trace id of \(id)", sourceLocation: sourceLocation)
            #expect(id == e["span_id"] as? String, sourceLocation: sourceLocation)
            #expect(hex16(span.parentID) == e["parent_id"] as? String, "parent of \(id)", sourceLocation: sourceLocation)
            #expect(batch.string(span.localEndpoint.serviceName) == e["service"] as? String, sourceLocation: sourceLocation)
            #expect(batch.string(span.name) == e["name"] as? String, sourceLocation: sourceLocation)
            #expect(batch.string(span.resource) == e["resource"] as? String, sourceLocation: sourceLocation)
            #expect(batch.string(span.type) == e["type"] as? String, sourceLocation: sourceLocation)
            #expect(span.startNanos == (e["start"] as? NSNumber)?.int64Value, sourceLocation: sourceLocation)
            #expect(span.durationNanos == (e["duration"] as? NSNumber)?.int64Value, sourceLocation: sourceLocation)
            #expect(span.isError == e["error"] as? Bool, "error of \(id)", sourceLocation: sourceLocation)
            #expect((span.kind.lowercaseName ?? "") == e["kind"] as? String, "kind of \(id)", sourceLocation: sourceLocation)
            #expect(span.samplingPriority.map { Int($0) } == chunkPriority(e["trace_id"] as? String), sourceLocation: sourceLocation)
            #expect(span.flags.contains(.topLevel) == e["top_level"] as? Bool, sourceLocation: sourceLocation)
            let meta = (e["meta"] as? [String: String]) ?? [:]
            #expect(batch.tagDictionary(span) == meta, "meta of \(id)", sourceLocation: sourceLocation)
            #expect(batch.tags(of: span).count == meta.count, "no duplicate tags in \(id)", sourceLocation: sourceLocation)
            var metrics: [String: Double] = [:]
            for m in batch.metrics(of: span) { metrics[batch.string(m.key)] = m.value }
            let wantMetrics = ((e["metrics"] as? [String: NSNumber]) ?? [:]).mapValues { $0.doubleValue }
            #expect(metrics == wantMetrics, "metrics of \(id)", sourceLocation: sourceLocation)
            let remote = (e["remote"] as? [String: Any]) ?? [:]
            #expect(batch.string(span.remoteEndpoint.serviceName) == remote["service"] as? String, sourceLocation: sourceLocation)
            #expect(batch.string(span.remoteEndpoint.ipv4) == remote["ipv4"] as? String, sourceLocation: sourceLocation)
            #expect(batch.string(span.remoteEndpoint.ipv6) == remote["ipv6"] as? String, sourceLocation: sourceLocation)
            #expect(Int(span.remoteEndpoint.port) == (remote["port"] as? NSNumber)?.intValue, sourceLocation: sourceLocation)
        }
    }

    /// A plain-value view of a span for comparing batches whose storage differs.
    struct Flat: Equatable, CustomStringConvertible {
        var trace: TraceID, id: UInt64, parent: UInt64
        var name, service, resource, type: String
        var start, duration: Int64
        var kind: SpanKind, flags: UInt8, priority: Int8?
        var tags: [String], metrics: [String]
        var remote: String
        var description: String { "\(trace)/\(hex16(id)) \(name)" }
    }

    static func flat(_ b: SpanBatch) -> [Flat] {
        b.spans.map { s in
            Flat(trace: s.traceID, id: s.id, parent: s.parentID, name: b.string(s.name),
                 service: b.string(s.localEndpoint.serviceName), resource: b.string(s.resource), type: b.string(s.type),
                 start: s.startNanos, duration: s.durationNanos, kind: s.kind, flags: s.flags.rawValue, priority: s.samplingPriority,
                 tags: b.tags(of: s).map { b.string($0.key) + "=" + b.string($0.value) },
                 metrics: b.metrics(of: s).map { b.string($0.key) + "=" + String($0.value) },
                 remote: "\(b.string(s.remoteEndpoint.serviceName))|\(b.string(s.remoteEndpoint.ipv4))|\(b.string(s.remoteEndpoint.ipv6))|\(s.remoteEndpoint.port)")
        }
    }

    /// Splits `bytes` at random points and reassembles them into a fresh array, as a body
    /// arriving in many reads would be.
    static func drip(_ bytes: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var pieces: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = Int(rng.next() % 97) + 1
            pieces.append(Array(bytes[i..<min(bytes.count, i + n)]))
            i += n
        }
        var out: [UInt8] = []
        for p in pieces { out.append(contentsOf: p) }
        return out
    }
}
