import TestSupport
import Testing
@testable import Codecs
import Spans

@Suite struct DatadogV03Tests {
    let meta = BatchMetadata(format: .datadogV03JSON)

    @Test func jsonOfRealDDTraceSpansDecodesExactly() throws {
        let batch = try DatadogV03.decodeJSON(try DD.fixture("ddtrace_v03.json"), metadata: meta)
        DD.expectMatches(batch, try DD.expectation("ddtrace_v04.expected.json"))
        #expect(batch.spans.contains { $0.id > UInt64(Int64.max) }, "the fixture has ids above Int64.max")
    }

    @Test func msgpackV03IsV04() throws {
        let body = try DD.fixture("ddtrace_v04.msgpack")
        let a = try DatadogV03.decodeMsgpack(body, metadata: meta)
        DD.expectMatches(a, try DD.expectation("ddtrace_v04.expected.json"))
    }

    @Test func acceptsBigIdsStringsNullsAndEscapes() throws {
        let json = """
        [[{"trace_id": 18446744073709551615, "span_id": "42", "parent_id": null, "name": "a\\u00e9\\n",
           "service": "s", "start": 1.5e3, "duration": 10, "error": 1, "type": null,
           "meta": {"span.kind": "server", "k\\"q": "v", "nil": null, "_dd.p.tid": "00000000000000ff",
                    "peer.service": "db\\u0021"},
           "metrics": {"_sampling_priority_v1": 2, "x": -0.5, "n": null}, "unknown": {"a": [1, 2]}},
          {"trace_id": 18446744073709551615, "span_id": 43, "error": false}],
         [], null]
        """
        let b = try DatadogV03.decodeJSON(Array(json.utf8), metadata: meta)
        try #require(b.count == 2)
        let s = b.spans[0]
        #expect(s.traceID == TraceID(high: 0xff, low: .max))
        #expect(b.spans[1].traceID == TraceID(high: 0xff, low: .max))
        #expect(s.id == 42 && s.parentID == 0)
        #expect(b.string(s.name) == "aé\n")
        #expect(s.startNanos == 1500 && s.durationNanos == 10 && s.isError && !b.spans[1].isError)
        #expect(s.kind == .server && s.samplingPriority == 2)
        #expect(b.tagDictionary(s) == ["k\"q": "v", "nil": "", "peer.service": "db!"])
        #expect(b.string(s.remoteEndpoint.serviceName) == "db!")
        #expect(b.metrics(of: s).map { b.string($0.key) } == ["x", "n"])
    }

    @Test func errorsNameWhatAndWhere() {
        let e1 = #expect(throws: DecodeError.self) {
            try DatadogV03.decodeJSON(Array(#"[[{"trace_id": 18446744073709551616, "span_id": 1}]]"#.utf8), metadata: meta)
        }
        #expect(e1?.offset == 15)
        #expect(e1?.code == .invalidValue)
        let e2 = #expect(throws: DecodeError.self) {
            try DatadogV03.decodeJSON(Array(#"[[{"trace_id": 1, "span_id": 1, "name": 5}]]"#.utf8), metadata: meta)
        }
        #expect(e2?.format == .datadogV03JSON)
        #expect(e2?.offset == 40)
        let e3 = #expect(throws: DecodeError.self) { try DatadogV03.decodeJSON(Array(#"[[{"span_id": 1}]]"#.utf8), metadata: meta) }
        #expect(e3?.code == .invalidValue)
    }

    @Test func dripResplitsDecodeTheSame() throws {
        let body = try DD.fixture("ddtrace_v03.json")
        let want = DD.flat(try DatadogV03.decodeJSON(body, metadata: meta))
        var rng = SplitMix64(seed: 6)
        for _ in 0..<30 { #expect(DD.flat(try DatadogV03.decodeJSON(DD.drip(body, &rng), metadata: meta)) == want) }
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try DD.fixture("ddtrace_v03.json")
        let r = Fuzz.run(body, rounds: 3000, seed: 44, decode: { b throws(DecodeError) in try DatadogV03.decodeJSON(b, metadata: meta) },
                         property: Fuzz.datadogRoundTrip)
        #expect(r.failed > 0 && r.ok > 0)
    }
}
