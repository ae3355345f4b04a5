import TestSupport
import Testing
@testable import Codecs
import Spans

@Suite struct DatadogV04Tests {
    typealias W = MessagePackWriter
    let meta = BatchMetadata(format: .datadogV04)

    @Test func decodesRealDDTracePayloadExactly() throws {
        let body = try DD.fixture("ddtrace_v04.msgpack")
        let batch = try DatadogV04.decode(body, metadata: meta)
        DD.expectMatches(batch, try DD.expectation("ddtrace_v04.expected.json"))
        // The fixture's first trace is 128-bit, announced only on its first span.
        let first = try #require(batch.spans.first)
        #expect(first.traceID.is128Bit)
        #expect(batch.spans.filter { $0.traceID == first.traceID }.count == 3)
        // Strings are slices of the body: nothing was appended to the storage.
        #expect(batch.storage.count == body.count)
    }

    @Test func rawBytesOfEachSpanAreItsMap() throws {
        let batch = try DatadogV04.decode(try DD.fixture("ddtrace_v04.msgpack"), metadata: meta)
        for span in batch.spans {
            let n = batch.withBytes(span.raw) { raw -> Int in
                var r = MessagePackReader(raw)
                let fields = (try? r.readMapHeader()) ?? -1
                for _ in 0..<max(0, fields) { try? r.skip(); try? r.skip() }
                return r.isAtEnd ? fields : -1
            }
            #expect(n >= 9)
        }
    }

    /// A span map written with unusual but valid encodings: every int width, negative int64 ids,
    /// floats for times and metrics, nil values, unknown keys.
    func oddSpan(into out: inout [UInt8], traceLow: UInt64, spanID: UInt64, tid: String?) {
        W.writeMapHeader(tid == nil ? 13 : 13, into: &out)
        W.writeString("trace_id", into: &out); out.append(0xd3); withUnsafeBytes(of: traceLow.bigEndian) { out.append(contentsOf: $0) }
        W.writeString("span_id", into: &out); out.append(0xcf); withUnsafeBytes(of: spanID.bigEndian) { out.append(contentsOf: $0) }
        W.writeString("parent_id", into: &out); W.writeNil(into: &out)
        W.writeString("name", into: &out); W.writeString("op", into: &out)
        W.writeString("service", into: &out); out.append(contentsOf: [0xd9, 3]); out.append(contentsOf: Array("svc".utf8))
        W.writeString("resource", into: &out); W.writeNil(into: &out)
        W.writeString("start", into: &out); out.append(0xd2); withUnsafeBytes(of: Int32(1_000_000).bigEndian) { out.append(contentsOf: $0) }
        W.writeString("duration", into: &out); W.writeDouble(2500, into: &out)
        W.writeString("error", into: &out); W.writeBool(true, into: &out)
        W.writeString("meta", into: &out)
        W.writeMapHeader(tid == nil ? 3 : 4, into: &out)
        W.writeString("span.kind", into: &out); W.writeString("producer", into: &out)
        W.writeString("empty", into: &out); W.writeNil(into: &out)
        W.writeString("network.destination.ip", into: &out); W.writeString("2001:db8::1", into: &out)
        if let tid { W.writeString("_dd.p.tid", into: &out); W.writeString(tid, into: &out) }
        W.writeString("metrics", into: &out)
        W.writeMapHeader(4, into: &out)
        W.writeString("_sampling_priority_v1", into: &out); out.append(0xd0); out.append(UInt8(bitPattern: -1))
        W.writeString("f32", into: &out); out.append(0xca); withUnsafeBytes(of: Float(1.5).bitPattern.bigEndian) { out.append(contentsOf: $0) }
        W.writeString("u16", into: &out); out.append(0xcd); out.append(contentsOf: [0x01, 0x00])
        W.writeString("out.port", into: &out); W.writeUInt(8080, into: &out)
        W.writeString("meta_struct", into: &out); W.writeMapHeader(1, into: &out); W.writeString("k", into: &out); out.append(contentsOf: [0xc4, 2, 1, 2])
        W.writeString("span_links", into: &out); W.writeArrayHeader(1, into: &out); W.writeMapHeader(0, into: &out)
    }

    @Test func acceptsEveryIntWidthFloatsAndNils() throws {
        var body: [UInt8] = []
        W.writeArrayHeader(1, into: &body)
        W.writeArrayHeader(2, into: &body)
        let negative = UInt64(bitPattern: -5)
        oddSpan(into: &body, traceLow: negative, spanID: 0xffff_ffff_ffff_fff0, tid: nil)
        oddSpan(into: &body, traceLow: negative, spanID: 7, tid: "00000000000000ab")
        let batch = try DatadogV04.decode(body, metadata: meta)
        #expect(batch.count == 2)
        for s in batch.spans {
            #expect(s.traceID == TraceID(high: 0xab, low: negative), "tid carried to every span of the chunk")
            #expect(s.parentID == 0)
            #expect(batch.string(s.name) == "op")
            #expect(batch.string(s.localEndpoint.serviceName) == "svc")
            #expect(s.resource.isEmpty)
            #expect(s.startNanos == 1_000_000)
            #expect(s.durationNanos == 2500)
            #expect(s.isError)
            #expect(s.kind == .producer)
            #expect(s.samplingPriority == -1)
            #expect(batch.tagDictionary(s) == ["empty": "", "network.destination.ip": "2001:db8::1"])
            #expect(batch.string(s.remoteEndpoint.ipv6) == "2001:db8::1")
            #expect(s.remoteEndpoint.port == 8080)
            let metrics = batch.metrics(of: s).map { batch.string($0.key) + "=" + String($0.value) }
            #expect(metrics == ["f32=1.5", "u16=256.0", "out.port=8080.0"])
        }
        #expect(batch.spans[0].id == 0xffff_ffff_ffff_fff0)
    }

    @Test func tidAppliesOnlyToSpansWithTheSameLowID() throws {
        let spans: [(UInt64, UInt64, String?)] = [(1, 10, nil), (2, 20, nil), (1, 11, "0000000000000abc")]
        var body: [UInt8] = []
        W.writeArrayHeader(2, into: &body)
        W.writeArrayHeader(spans.count, into: &body)
        for (t, s, tid) in spans { oddSpan(into: &body, traceLow: t, spanID: s, tid: tid) }
        W.writeArrayHeader(1, into: &body)
        oddSpan(into: &body, traceLow: 1, spanID: 12, tid: nil)   // another chunk: not carried
        let b = try DatadogV04.decode(body, metadata: meta)
        #expect(b.spans.map(\.traceID.high) == [0xabc, 0, 0xabc, 0])
    }

    @Test func emptyBodiesAreEmptyBatches() throws {
        #expect(try DatadogV04.decode([], metadata: meta).isEmpty)
        #expect(try DatadogV04.decode([0x90], metadata: meta).isEmpty)
        #expect(try DatadogV04.decode([0x91, 0x90], metadata: meta).isEmpty)
    }

    @Test func errorsNameWhatAndWhere() throws {
        // name is an integer
        var body: [UInt8] = [0x91, 0x91, 0x83]
        W.writeString("trace_id", into: &body); W.writeUInt(1, into: &body)
        W.writeString("span_id", into: &body); W.writeUInt(2, into: &body)
        let nameAt = body.count + 5
        W.writeString("name", into: &body); W.writeUInt(3, into: &body)
        let e1 = #expect(throws: DecodeError.self) { try DatadogV04.decode(body, metadata: meta) }
        #expect(e1?.code == .malformed)
        #expect(e1?.offset == nameAt)
        #expect(e1?.description.contains("expected string") == true)
        #expect(e1?.format == .datadogV04)

        // zero trace id
        var zero: [UInt8] = [0x91, 0x91, 0x82]
        W.writeString("trace_id", into: &zero); W.writeUInt(0, into: &zero)
        W.writeString("span_id", into: &zero); W.writeUInt(2, into: &zero)
        let e2 = #expect(throws: DecodeError.self) { try DatadogV04.decode(zero, metadata: meta) }
        #expect(e2?.code == .invalidValue)
        #expect(e2?.offset == 2)

        // trailing garbage
        let e3 = #expect(throws: DecodeError.self) { try DatadogV04.decode([0x90, 0x00], metadata: meta) }
        #expect(e3?.offset == 1)

        // a container claiming more elements than bytes left
        let e4 = #expect(throws: DecodeError.self) { try DatadogV04.decode([0xdd, 0xff, 0xff, 0xff, 0xff], metadata: meta) }
        #expect(e4?.message.contains("declares") == true)
    }

    @Test func deepNestingInUnknownFieldsIsRejected() throws {
        var body: [UInt8] = [0x91, 0x91, 0x83]
        W.writeString("trace_id", into: &body); W.writeUInt(1, into: &body)
        W.writeString("span_id", into: &body); W.writeUInt(2, into: &body)
        W.writeString("deep", into: &body)
        body.append(contentsOf: repeatElement(0x91, count: 10_000)); body.append(0xc0)
        let e = #expect(throws: DecodeError.self) { try DatadogV04.decode(body, metadata: meta) }
        #expect(e?.message.contains("nesting") == true)
    }

    @Test func dripResplitsDecodeTheSame() throws {
        let body = try DD.fixture("ddtrace_v04.msgpack")
        let want = DD.flat(try DatadogV04.decode(body, metadata: meta))
        var rng = SplitMix64(seed: 4)
        for _ in 0..<50 {
            #expect(DD.flat(try DatadogV04.decode(DD.drip(body, &rng), metadata: meta)) == want)
        }
        // byte by byte
        var single: [UInt8] = []
        for b in body { single.append(b) }
        #expect(DD.flat(try DatadogV04.decode(single, metadata: meta)) == want)
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try DD.fixture("ddtrace_v04.msgpack")
        let r = Fuzz.run(body, rounds: 4000, seed: 42, decode: { b throws(DecodeError) in try DatadogV04.decode(b, metadata: meta) },
                         property: Fuzz.datadogRoundTrip)
        #expect(r.failed > 0 && r.ok > 0)
        #expect(r.ok + r.failed == 4000)
    }
}
