import Testing
import Spans
@testable import Codecs

@Suite struct ZipkinProto3Tests {
    static let meta = BatchMetadata(format: .zipkinV2Proto)

    /// A tiny protobuf builder for hand-made inputs (independent of the encoder under test).
    struct PB {
        var bytes: [UInt8] = []
        mutating func varint(_ v: UInt64) { var v = v; while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }; bytes.append(UInt8(v)) }
        mutating func field(_ n: UInt64, _ wire: UInt64) { varint(n << 3 | wire) }
        mutating func ld(_ n: UInt64, _ b: [UInt8]) { field(n, 2); varint(UInt64(b.count)); bytes += b }
        mutating func str(_ n: UInt64, _ s: String) { ld(n, Array(s.utf8)) }
        mutating func fixed64(_ n: UInt64, _ v: UInt64) { field(n, 1); for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        mutating func msg(_ n: UInt64, _ build: (inout PB) -> Void) { var m = PB(); build(&m); ld(n, m.bytes) }
    }

    static func be(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) } }

    @Test func decodesEveryField() throws {
        var list = PB()
        list.msg(1) { s in
            s.ld(1, Self.be(0) + Self.be(0xabcd))          // 128-bit id, zero high half
            s.ld(2, Self.be(0))                              // zero parent → none
            s.ld(3, Self.be(0x1234))
            s.field(4, 0); s.varint(3)                       // PRODUCER
            s.str(5, "send ü")
            s.fixed64(6, 1_700_000_000_000_001)
            s.field(7, 0); s.varint(250)
            s.msg(8) { e in e.str(1, "svc"); e.ld(2, [10, 0, 0, 1]); e.field(4, 0); e.varint(8080) }
            s.msg(9) { e in e.ld(3, [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]) }
            s.msg(10) { a in a.fixed64(1, 1_700_000_000_000_100); a.str(2, "ws") }
            s.msg(11) { t in t.str(1, "error"); t.str(2, "") }
            s.msg(11) { t in t.str(1, "k"); t.str(2, "v") }
            s.field(12, 0); s.varint(1)
            s.field(13, 0); s.varint(1)
            s.field(99, 0); s.varint(7)                      // unknown field, skipped
        }
        let b = try ZipkinProto3.decode(list.bytes, metadata: Self.meta)
        let s = try #require(b.spans.first)
        #expect(s.traceID == TraceID(low: 0xabcd))
        #expect(s.parentID == 0 && s.id == 0x1234 && s.kind == .producer)
        #expect(b.string(s.name) == "send ü")
        #expect(s.startNanos == 1_700_000_000_000_001_000 && s.durationNanos == 250_000)
        #expect(b.string(s.localEndpoint.serviceName) == "svc")
        #expect(b.string(s.localEndpoint.ipv4) == "10.0.0.1")
        #expect(s.localEndpoint.port == 8080)
        #expect(b.string(s.remoteEndpoint.ipv6) == "2001:db8::1")
        #expect(b.annotations(of: s).map { b.string($0.value) } == ["ws"])
        #expect(b.tagDictionary(s) == ["error": "", "k": "v"])
        #expect(s.flags == [.error, .debug, .shared])
        #expect(s.raw.isEmpty) // zero parent and 16-byte id with zero high: not canonical
    }

    @Test func rejectsBadInputWithWhatAndWhere() {
        func err(_ build: (inout PB) -> Void) -> DecodeError? {
            var list = PB()
            list.msg(1, build)
            do { _ = try ZipkinProto3.decode(list.bytes, metadata: Self.meta); return nil } catch { return error }
        }
        #expect(err { $0.ld(1, Self.be(0)); $0.ld(3, Self.be(1)) }?.message == "trace_id is all zeros")
        #expect(err { $0.ld(1, [1, 2, 3]); $0.ld(3, Self.be(1)) }?.message == "trace_id must be 8 or 16 bytes, not 3")
        #expect(err { $0.ld(1, Self.be(1)); $0.ld(3, Self.be(0)) }?.message == "id is all zeros")
        #expect(err { $0.ld(1, Self.be(1)) }?.message == "span has no id")
        #expect(err { $0.ld(1, Self.be(1)); $0.ld(3, Self.be(1)); $0.fixed64(7, 1) }?.message == "duration has wire type 1, expected 0")
        let e = err { $0.ld(1, Self.be(1)); $0.ld(3, Self.be(0)) }
        #expect(e?.offset == 12 && e?.code == .invalidValue && e?.format == .zipkinV2Proto)
        // Truncated length: the outer message claims more bytes than exist.
        do { _ = try ZipkinProto3.decode([0x0A, 0x10, 0x0A], metadata: Self.meta); Issue.record("accepted") }
        catch { #expect(error.message.contains("runs past the end")); #expect(error.offset == 1) }
    }

    @Test func roundTripsFixturesAndCopiesCanonicalRaw() throws {
        for name in ["otel-proto.bin", "pyzipkin-proto.bin"] {
            let body = try ZipkinFixtures.bytes(name)
            let b = try ZipkinProto3.decode(body, metadata: Self.meta)
            // Same format: canonical spans are copied, so the output equals the input.
            var same: [UInt8] = []
            ZipkinProto3.encode(b, into: &same)
            #expect(b.spans.allSatisfy { !$0.raw.isEmpty } ? same == body : true)
            // Forced re-encoding means the same.
            var c = b
            c.metadata.format = .constructed
            var out: [UInt8] = []
            ZipkinProto3.encode(c, into: &out)
            let again = try ZipkinProto3.decode(out, metadata: Self.meta)
            #expect(again.meaning() == b.meaning(), "\(name)")
            // Cross-format: proto → JSON v2 → decode means the same.
            var json: [UInt8] = []
            ZipkinJSONV2.encode(b, into: &json)
            #expect(try ZipkinJSONV2.decode(json, metadata: .init(format: .zipkinV2JSON)).meaning() == b.meaning())
            // And JSON → proto for the JSON fixture of the same client.
            let jb = try ZipkinJSONV2.decode(try ZipkinFixtures.bytes(name.replacingOccurrences(of: "proto.bin", with: "v2.json")),
                                             metadata: .init(format: .zipkinV2JSON))
            var p: [UInt8] = []
            ZipkinProto3.encode(jb, into: &p)
            #expect(try ZipkinProto3.decode(p, metadata: Self.meta).meaning() == jb.meaning())
        }
    }

    @Test func selectsSpansAndHandlesLargeMessages() throws {
        var b = SpanBatch()
        for i in 1...3 {
            var s = Span(traceID: TraceID(high: 7, low: UInt64(i)), id: UInt64(i))
            s.name = b.intern(String(repeating: "n", count: i == 2 ? 20_000 : 3)) // 3-byte length prefix
            s.localEndpoint.ipv4 = b.intern("not an ip")                          // left out
            b.spans.append(s)
        }
        var out: [UInt8] = []
        ZipkinProto3.encode(b, spans: [2, 1], into: &out)
        let d = try ZipkinProto3.decode(out, metadata: Self.meta)
        #expect(d.spans.map(\.id) == [3, 2])
        #expect(d.spans[1].name.count == 20_000)
        #expect(d.spans.allSatisfy { $0.localEndpoint.ipv4.isEmpty })
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try ZipkinFixtures.bytes("otel-proto.bin")
        let r = Fuzz.run(body, rounds: 4000, seed: 11, decode: { b throws(DecodeError) in try ZipkinProto3.decode(b, metadata: Self.meta) }) { batch in
            // proto3 → proto3 → decode keeps the spans, and so does v2 JSON.
            var out: [UInt8] = []
            ZipkinProto3.encode(batch, into: &out)
            guard let again = try? ZipkinProto3.decode(out, metadata: Self.meta) else { return "its own proto3 encoding does not decode" }
            if again.meaning() != batch.meaning() { return "proto3 round trip changed the spans" }
            return Fuzz.zipkinRoundTrip(batch)
        }
        #expect(r.failed > 0 && r.ok > 0)
    }
}
