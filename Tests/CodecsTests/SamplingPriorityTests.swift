import Foundation
import Testing
@testable import Codecs
import Spans

/// Sampling priority is a trace chunk's (datadog-agent `setChunkAttributes`: the root span's
/// `_sampling_priority_v1`, else the first span's that has one), and Zipkin's `debug` is
/// AUTO_KEEP, both ways (docs/protocol-fidelity.md).
@Suite struct SamplingPriorityTests {
    typealias W = MessagePackWriter

    /// A v0.4 body of one chunk: (span id, parent id, own priority) per span.
    static func chunk(_ spans: [(UInt64, UInt64, Double?)]) -> [UInt8] {
        var out: [UInt8] = []
        W.writeArrayHeader(1, into: &out)
        W.writeArrayHeader(spans.count, into: &out)
        for (id, parent, priority) in spans {
            W.writeMapHeader(priority == nil ? 3 : 4, into: &out)
            W.writeString("trace_id", into: &out); W.writeUInt(7, into: &out)
            W.writeString("span_id", into: &out); W.writeUInt(id, into: &out)
            W.writeString("parent_id", into: &out); W.writeUInt(parent, into: &out)
            if let priority {
                W.writeString("metrics", into: &out); W.writeMapHeader(1, into: &out)
                W.writeString("_sampling_priority_v1", into: &out); W.writeDouble(priority, into: &out)
            }
        }
        return out
    }

    static func priorities(_ body: [UInt8]) throws -> [Int8?] {
        try DatadogV04.decode(body, metadata: .init(format: .datadogV04)).spans.map(\.samplingPriority)
    }

    @Test func theRootsPriorityIsTheWholeChunks() throws {
        // Children first (ddtrace flushes them so), the root last with USER_KEEP.
        #expect(try Self.priorities(Self.chunk([(2, 1, nil), (3, 2, nil), (1, 0, 2)])) == [2, 2, 2])
        // The root wins over a child's different value…
        #expect(try Self.priorities(Self.chunk([(2, 1, 0), (1, 0, 2)])) == [2, 2])
        // …and without a root priority, the first span's that has one.
        #expect(try Self.priorities(Self.chunk([(2, 1, nil), (3, 1, -1), (4, 1, 1), (1, 0, nil)])) == [-1, -1, -1, -1])
        // A partial chunk (no parentless span): its root is the span whose parent is elsewhere.
        #expect(try Self.priorities(Self.chunk([(3, 2, 0), (2, 1, 2)])) == [2, 2])
        // No priority anywhere: none.
        #expect(try Self.priorities(Self.chunk([(2, 1, nil), (1, 0, nil)])) == [nil, nil])
    }

    /// The v0.7 chunk field wins unless it is the agent's "none" (-128).
    @Test func v07ChunkPriorityField() throws {
        for (field, want) in [(Int64(2), Int8(2)), (-128, 1)] {
            var out: [UInt8] = []
            W.writeMapHeader(1, into: &out)
            W.writeString("chunks", into: &out); W.writeArrayHeader(1, into: &out)
            W.writeMapHeader(2, into: &out)
            W.writeString("priority", into: &out); W.writeInt(field, into: &out)
            W.writeString("spans", into: &out)
            let spans = Self.chunk([(2, 1, nil), (1, 0, 1)])
            out.append(contentsOf: spans[1...]) // the span array of the one chunk
            let b = try DatadogV07.decode(out, metadata: .init(format: .datadogV07))
            #expect(b.spans.map(\.samplingPriority) == [want, want])
        }
    }

    /// The encoder writes a chunk's priority once, on its root, and a chunk split by routing
    /// still carries it (the spans each backend gets keep their trace's decision).
    @Test func encoderWritesThePriorityOncePerChunk() throws {
        let b = try DatadogV04.decode(Self.chunk([(2, 1, nil), (3, 2, nil), (1, 0, 2)]), metadata: .init(format: .datadogV04))
        var all: [UInt8] = []
        DatadogV04.encode(b, into: &all)
        #expect(Self.metricOwners(all) == [1])
        var children: [UInt8] = []
        DatadogV04.encode(b, spans: [0, 1], into: &children)
        #expect(Self.metricOwners(children) == [2], "no root among them: the first span carries it")
        #expect(try Self.priorities(children) == [2, 2])
    }

    /// OpenTelemetry's Zipkin exporter marks every sampled span `debug`: that is AUTO_KEEP (1)
    /// for Datadog, written once per trace chunk, not USER_KEEP (2) on every span.
    @Test func zipkinDebugIsAutoKeep() throws {
        let zipkin = try ZipkinJSONV2.decode(try ZipkinFixtures.bytes("otel-v2.json"), metadata: .init(format: .zipkinV2JSON))
        #expect(zipkin.spans.allSatisfy { $0.isDebug && $0.samplingPriority == 1 })
        var out: [UInt8] = []
        DatadogV04.encode(zipkin, into: &out)
        let dd = try DatadogV04.decode(out, metadata: .init(format: .datadogV04))
        #expect(dd.spans.allSatisfy { $0.samplingPriority == 1 })
        #expect(Self.metricOwners(out).count == DatadogV04.traceCount(zipkin), "one carrier per chunk")
    }

    /// The other way: USER_KEEP (a person asked to keep the trace) is Zipkin's debug;
    /// AUTO_KEEP and below have no Zipkin spelling.
    @Test func datadogUserKeepIsZipkinDebug() throws {
        for (priority, debug) in [(2.0, true), (1.0, false), (0.0, false), (-1.0, false)] {
            let b = try DatadogV04.decode(Self.chunk([(2, 1, nil), (1, 0, priority)]), metadata: .init(format: .datadogV04))
            var json: [UInt8] = [], proto: [UInt8] = []
            ZipkinJSONV2.encode(b, into: &json)
            ZipkinProto3.encode(b, into: &proto)
            let z = try ZipkinJSONV2.decode(json, metadata: .init(format: .zipkinV2JSON))
            let zp = try ZipkinProto3.decode(proto, metadata: .init(format: .zipkinV2Proto))
            #expect(z.spans.map(\.isDebug) == [debug, debug], "priority \(priority)")
            #expect(zp.spans.map(\.isDebug) == [debug, debug], "priority \(priority)")
        }
    }

    /// Span ids (per chunk, in order) whose map has `_sampling_priority_v1`.
    static func metricOwners(_ body: [UInt8]) -> [UInt64] {
        (try? body.withUnsafeBytes { raw -> [UInt64] in
            var r = MessagePackReader(raw)
            var owners: [UInt64] = []
            for _ in 0..<(try r.readArrayHeader()) {
                for _ in 0..<(try r.readArrayHeader()) {
                    var id: UInt64 = 0, has = false
                    for _ in 0..<(try r.readMapHeader()) {
                        let k = try r.readString { String(decoding: $0, as: UTF8.self) }
                        if k == "span_id" { id = try r.readUInt64Bits() }
                        else if k == "metrics" {
                            for _ in 0..<(try r.readMapHeader()) {
                                if try r.readString({ String(decoding: $0, as: UTF8.self) }) == "_sampling_priority_v1" { has = true }
                                try r.skip()
                            }
                        } else { try r.skip() }
                    }
                    if has { owners.append(id) }
                }
            }
            return owners
        }) ?? [UInt64.max]
    }
}
