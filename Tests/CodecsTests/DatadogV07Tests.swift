import Testing
@testable import Codecs
import Spans

@Suite struct DatadogV07Tests {
    typealias W = MessagePackWriter
    let meta = BatchMetadata(format: .datadogV07)

    /// Wraps the ddtrace v0.4 traces as v0.7 chunks, copying each span map's bytes verbatim.
    func wrapFixture(payloadFields: (inout [UInt8]) -> Int = { _ in 0 }) throws -> [UInt8] {
        let v4 = try DatadogV04.decode(try DD.fixture("ddtrace_v04.msgpack"), metadata: .init(format: .datadogV04))
        var chunks: [[Int]] = []
        var seen: [UInt64: Int] = [:]
        for (i, s) in v4.spans.enumerated() {
            if let c = seen[s.traceID.low] { chunks[c].append(i) } else { seen[s.traceID.low] = chunks.count; chunks.append([i]) }
        }
        var extra: [UInt8] = []
        let n = payloadFields(&extra)
        var out: [UInt8] = []
        W.writeMapHeader(3 + n, into: &out)
        W.writeString("language_name", into: &out); W.writeString("python", into: &out)
        W.writeString("chunks", into: &out)
        W.writeArrayHeader(chunks.count, into: &out)
        for c in chunks {
            W.writeMapHeader(2, into: &out)
            W.writeString("dropped_trace", into: &out); W.writeBool(false, into: &out)
            W.writeString("spans", into: &out)
            W.writeArrayHeader(c.count, into: &out)
            for i in c { v4.withBytes(v4.spans[i].raw) { out.append(contentsOf: $0) } }
        }
        W.writeString("container_id", into: &out); W.writeString("", into: &out)
        out += extra
        return out
    }

    @Test func realDDTraceSpansInsideV07ChunksDecodeLikeV04() throws {
        let batch = try DatadogV07.decode(try wrapFixture(), metadata: meta)
        DD.expectMatches(batch, try DD.expectation("ddtrace_v04.expected.json"))
    }

    @Test func chunkAndPayloadFieldsReachTheSpans() throws {
        var out: [UInt8] = []
        W.writeMapHeader(5, into: &out)
        W.writeString("env", into: &out); W.writeString("prod", into: &out)
        W.writeString("chunks", into: &out)
        W.writeArrayHeader(1, into: &out)
        W.writeMapHeader(4, into: &out)
        W.writeString("priority", into: &out); W.writeInt(2, into: &out)
        W.writeString("spans", into: &out)
        W.writeArrayHeader(2, into: &out)
        for (id, prio) in [(UInt64(1), Double?.some(1)), (2, nil)] {
            W.writeMapHeader(prio == nil ? 3 : 4, into: &out)
            W.writeString("trace_id", into: &out); W.writeUInt(77, into: &out)
            W.writeString("span_id", into: &out); W.writeUInt(id, into: &out)
            W.writeString("meta", into: &out); W.writeMapHeader(1, into: &out)
            W.writeString("env", into: &out); W.writeString(id == 1 ? "own" : "x", into: &out)
            if let prio {
                W.writeString("metrics", into: &out); W.writeMapHeader(1, into: &out)
                W.writeString("_sampling_priority_v1", into: &out); W.writeDouble(prio, into: &out)
            }
        }
        W.writeString("tags", into: &out); W.writeMapHeader(2, into: &out)
        W.writeString("_dd.p.tid", into: &out); W.writeString("00000000000000aa", into: &out)
        W.writeString("_dd.p.dm", into: &out); W.writeString("-4", into: &out)
        W.writeString("origin", into: &out); W.writeString("lambda", into: &out)
        W.writeString("tags", into: &out); W.writeMapHeader(1, into: &out)
        W.writeString("region", into: &out); W.writeString("eu", into: &out)
        W.writeString("app_version", into: &out); W.writeString("1.0", into: &out)
        W.writeString("hostname", into: &out); W.writeString("h1", into: &out)
        let b = try DatadogV07.decode(out, metadata: meta)
        try #require(b.count == 2)
        #expect(b.spans.map(\.traceID) == [TraceID(high: 0xaa, low: 77), TraceID(high: 0xaa, low: 77)])
        // The chunk's priority is the whole chunk's, over what a span carried (agent semantics).
        #expect(b.spans.map(\.samplingPriority) == [2, 2])
        #expect(b.tagDictionary(b.spans[0]) == ["env": "own", "_dd.p.dm": "-4", "_dd.origin": "lambda",
                                                 "region": "eu", "version": "1.0", "_dd.hostname": "h1"])
        #expect(b.tagDictionary(b.spans[1])["env"] == "x")
        #expect(b.tags(of: b.spans[1]).count == 6)
    }

    @Test func errorsAndEmptyBodies() throws {
        #expect(try DatadogV07.decode([], metadata: meta).isEmpty)
        #expect(try DatadogV07.decode([0x80], metadata: meta).isEmpty)
        let e = #expect(throws: DecodeError.self) { try DatadogV07.decode([0x91, 0x90], metadata: meta) }
        #expect(e?.offset == 0)
        #expect(e?.format == .datadogV07)
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try wrapFixture { out in
            W.writeString("tags", into: &out); W.writeMapHeader(1, into: &out)
            W.writeString("a", into: &out); W.writeString("b", into: &out)
            return 1
        }
        #expect(try DatadogV07.decode(body, metadata: meta).count == 4)
        let r = Fuzz.run(body, rounds: 3000, seed: 45, decode: { b throws(DecodeError) in try DatadogV07.decode(b, metadata: meta) },
                         property: Fuzz.datadogRoundTrip)
        #expect(r.failed > 0 && r.ok > 0)
    }
}
