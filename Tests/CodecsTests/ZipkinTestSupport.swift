import Foundation
import Spans
@testable import Codecs

/// Shared helpers for the Zipkin codec tests (fixtures, span summaries).
enum ZipkinFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/zipkin")

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
    }

    /// The `spans` list of an `.expected.json` written by Tests/fixtures-tools/zipkin/capture.py.
    static func expected(_ name: String) throws -> [NSDictionary] {
        let data = try Data(contentsOf: directory.appendingPathComponent(name + ".expected.json"))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (root["spans"] as! [[String: Any]]).map { $0 as NSDictionary }
    }
}

extension SpanBatch {
    /// The span in the expectation format of capture.py (sorted by id by the caller).
    func summary(_ s: Span) -> NSDictionary {
        let tags = tagDictionary(s)
        let anns: [[Any]] = annotations(of: s).map { [NSNumber(value: $0.timestampNanos / 1000), string($0.value)] }
        let d: [String: Any] = [
            "traceId": s.traceID.description,
            "id": hex16(s.id),
            "parentId": s.parentID == 0 ? NSNull() : hex16(s.parentID) as Any,
            "name": string(s.name),
            "kind": s.kind.zipkinName.map { $0 as Any } ?? NSNull(),
            "timestamp": NSNumber(value: s.startNanos / 1000),
            "duration": NSNumber(value: s.durationNanos / 1000),
            "localServiceName": string(s.localEndpoint.serviceName),
            "remoteServiceName": string(s.remoteEndpoint.serviceName),
            "remoteIPv4": string(s.remoteEndpoint.ipv4),
            "remotePort": NSNumber(value: s.remoteEndpoint.port),
            "tags": tags,
            "error": s.isError,
            "debug": s.isDebug,
            "shared": s.flags.contains(.shared),
            "annotations": anns,
        ]
        return d as NSDictionary
    }

    func summaries() -> [NSDictionary] {
        spans.sorted { ($0.id, $0.flags.rawValue) < ($1.id, $1.flags.rawValue) }.map(summary)
    }

    /// Everything a span means, independent of where its text lives (for comparing batches).
    func meaning() -> [String] {
        spans.map { s in
            var parts = ["\(s.traceID)", hex16(s.id), hex16(s.parentID), string(s.name), "\(s.kind)",
                         "\(s.startNanos)", "\(s.durationNanos)", "\(s.flags.rawValue)", "\(String(describing: s.samplingPriority))"]
            for e in [s.localEndpoint, s.remoteEndpoint] {
                parts += [string(e.serviceName), string(e.ipv4), string(e.ipv6), "\(e.port)"]
            }
            for t in tags(of: s) { parts += [string(t.key), string(t.value)] }
            for a in annotations(of: s) { parts += ["\(a.timestampNanos)", string(a.value)] }
            return parts.joined(separator: "|")
        }
    }
}
