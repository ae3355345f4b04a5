import TestSupport
import Testing
@testable import Codecs
import Spans

@Suite struct DatadogV05Tests {
    typealias W = MessagePackWriter
    let meta = BatchMetadata(format: .datadogV05)

    @Test func decodesRealDDTracePayloadExactly() throws {
        let body = try DD.fixture("ddtrace_v05.msgpack")
        let batch = try DatadogV05.decode(body, metadata: meta)
        DD.expectMatches(batch, try DD.expectation("ddtrace_v05.expected.json"))
        #expect(batch.spans.contains { $0.traceID.is128Bit })
        #expect(batch.storage.count == body.count, "no text copied")
    }

    /// The same traces sent as v0.4 and v0.5 by one process decode to the same shape.
    @Test func v04AndV05FixturesAgreeOnStructure() throws {
        let a = try DatadogV04.decode(try DD.fixture("ddtrace_v04.msgpack"), metadata: .init(format: .datadogV04))
        let b = try DatadogV05.decode(try DD.fixture("ddtrace_v05.msgpack"), metadata: meta)
        #expect(a.spans.map { a.string($0.name) } == b.spans.map { b.string($0.name) })
        #expect(a.spans.map(\.kind) == b.spans.map(\.kind))
        #expect(a.spans.map(\.isError) == b.spans.map(\.isError))
    }

    func payload(index: UInt64 = 1, fields: Int = 12) -> [UInt8] {
        var out: [UInt8] = []
        W.writeArrayHeader(2, into: &out)
        W.writeArrayHeader(3, into: &out)
        for s in ["", "svc", "op"] { W.writeString(s, into: &out) }
        W.writeArrayHeader(1, into: &out)
        W.writeArrayHeader(1, into: &out)
        W.writeArrayHeader(fields, into: &out)
        W.writeUInt(1, into: &out); W.writeUInt(2, into: &out); W.writeUInt(index, into: &out)
        W.writeUInt(9, into: &out); W.writeUInt(10, into: &out); W.writeUInt(0, into: &out)
        W.writeUInt(100, into: &out); W.writeUInt(5, into: &out); W.writeUInt(0, into: &out)
        W.writeMapHeader(1, into: &out); W.writeUInt(1, into: &out); W.writeUInt(2, into: &out)
        W.writeMapHeader(0, into: &out)
        if fields == 12 { W.writeUInt(0, into: &out) }
        return out
    }

    @Test func resolvesStringTableIndices() throws {
        let b = try DatadogV05.decode(payload(), metadata: meta)
        let s = try #require(b.spans.first)
        #expect(b.string(s.localEndpoint.serviceName) == "svc")
        #expect(b.string(s.name) == "op")
        #expect(b.string(s.resource) == "svc")
        #expect(b.tagDictionary(s) == ["svc": "op"])
        #expect(s.traceID == TraceID(low: 9) && s.id == 10 && s.startNanos == 100 && s.durationNanos == 5)
    }

    @Test func badIndexAndShapeAreClearErrors() throws {
        let e1 = #expect(throws: DecodeError.self) { try DatadogV05.decode(payload(index: 7), metadata: meta) }
        #expect(e1?.code == .invalidValue)
        #expect(e1?.message.contains("string index 7") == true)
        let e2 = #expect(throws: DecodeError.self) { try DatadogV05.decode(payload(fields: 11), metadata: meta) }
        #expect(e2?.message.contains("12-element") == true)
        let e3 = #expect(throws: DecodeError.self) { try DatadogV05.decode([0x91, 0x90], metadata: meta) }
        #expect(e3?.offset == 0)
    }

    @Test func hugeStringTablesAreRefused() {
        let n = DatadogV05.maxStrings + 1
        var body: [UInt8] = [0x92, 0xdd]
        withUnsafeBytes(of: UInt32(n).bigEndian) { body.append(contentsOf: $0) }
        body.append(contentsOf: repeatElement(0xa0, count: n))
        body.append(0x90)
        let e = #expect(throws: DecodeError.self) { try DatadogV05.decode(body, metadata: meta) }
        #expect(e?.offset == 1)
        #expect(e?.code == .invalidValue)
    }

    @Test func dripResplitsDecodeTheSame() throws {
        let body = try DD.fixture("ddtrace_v05.msgpack")
        let want = DD.flat(try DatadogV05.decode(body, metadata: meta))
        var rng = SplitMix64(seed: 5)
        for _ in 0..<50 { #expect(DD.flat(try DatadogV05.decode(DD.drip(body, &rng), metadata: meta)) == want) }
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try DD.fixture("ddtrace_v05.msgpack")
        let r = Fuzz.run(body, rounds: 4000, seed: 43, decode: { b throws(DecodeError) in try DatadogV05.decode(b, metadata: meta) },
                         property: Fuzz.datadogRoundTrip)
        #expect(r.failed > 0 && r.ok > 0)
    }
}
