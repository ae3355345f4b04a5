import TestSupport
import Foundation
import Testing
import Spans
@testable import Codecs

@Suite struct ZipkinJSONV2Tests {
    static let meta = BatchMetadata(format: .zipkinV2JSON)

    func decode(_ text: String) throws -> SpanBatch { try ZipkinJSONV2.decode(Array(text.utf8), metadata: Self.meta) }

    func decodeError(_ text: String) -> DecodeError? {
        do { _ = try ZipkinJSONV2.decode(Array(text.utf8), metadata: Self.meta); return nil } catch { return error }
    }

    func encode(_ batch: SpanBatch, spans: [Int]? = nil) -> String {
        var out: [UInt8] = []
        ZipkinJSONV2.encode(batch, spans: spans, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func normalisesIds() throws {
        let b = try decode(#"""
        [{"traceId":"463AC35C9F6413AD48485A3953BB6124","id":"A1","parentId":"0000000000000000","name":"a"},
         {"traceId":"0000000000000000000000000000abcd","id":"00000000000000b2","parentId":"c3"},
         {"traceId":"1","id":"1"}]
        """#)
        #expect(b.spans.count == 3)
        #expect(b.spans[0].traceID.description == "463ac35c9f6413ad48485a3953bb6124")
        #expect(b.spans[0].id == 0xa1)
        #expect(b.spans[0].parentID == 0)
        #expect(b.spans[1].traceID == TraceID(low: 0xabcd))
        #expect(!b.spans[1].traceID.is128Bit)
        #expect(b.spans[1].parentID == 0xc3)
        #expect(b.spans[2].traceID.description == "0000000000000001")
        let json = encode(b)
        #expect(json.contains(#""traceId":"463ac35c9f6413ad48485a3953bb6124","id":"00000000000000a1""#))
        #expect(json.contains(#""traceId":"000000000000abcd","parentId":"00000000000000c3","id":"00000000000000b2""#))
        // None of these spans was canonical: raw must not be kept.
        #expect(b.spans.allSatisfy { $0.raw.isEmpty })
    }

    @Test func emptyListsAndWhitespace() throws {
        #expect(try decode(" [ ] \n").spans.isEmpty)
        #expect(try decode("[]").spans.isEmpty)
        #expect(decodeError("")?.message.contains("unexpected end of input") == true)
        #expect(decodeError("[{}]")?.message == "span has no traceId")
        #expect(decodeError(#"[{"traceId":"1","id":"2"}] x"#)?.message == "unexpected data after the JSON value")
        var out: [UInt8] = []
        ZipkinJSONV2.encode(try decode("[]"), into: &out)
        #expect(out == Array("[]".utf8))
    }

    @Test func rejectsBadIdsWithWhatAndWhere() {
        let cases: [(String, String, Int)] = [
            (#"[{"traceId":"0000000000000000","id":"1"}]"#, "traceId is all zeros", 12),
            (#"[{"traceId":"00000000000000000000000000000000","id":"1"}]"#, "traceId is all zeros", 12),
            (#"[{"traceId":"xyz","id":"1"}]"#, "traceId must be 1 to 32 hex digits", 12),
            (#"[{"traceId":"","id":"1"}]"#, "traceId must be 1 to 32 hex digits", 12),
            (#"[{"traceId":"123456789012345678901234567890123","id":"1"}]"#, "traceId must be 1 to 32 hex digits", 12),
            (#"[{"traceId":"1","id":"0000000000000000"}]"#, "span id is all zeros", 21),
            (#"[{"traceId":"1","id":"12345678901234567"}]"#, "id must be 1 to 16 hex digits", 21),
            (#"[{"traceId":"1","id":"1","parentId":"g"}]"#, "parentId must be 1 to 16 hex digits", 36),
            (#"[{"traceId":"1"}]"#, "span has no id", 1),
            (#"[{"id":"1"}]"#, "span has no traceId", 1),
            (#"{"traceId":"1","id":"1"}"#, "expected '['", 0),
            (#"[{"traceId":"1","id":"1","tags":{"a":{}}}]"#, "tag values must be strings", 37),
            (#"[{"traceId":"1","id":"1","timestamp":1e300}]"#, "timestamp is out of range", 37),
        ]
        for (text, message, offset) in cases {
            let e = decodeError(text)
            #expect(e?.message.contains(message) == true, "\(text): \(String(describing: e))")
            #expect(e?.offset == offset, "\(text): \(String(describing: e))")
            #expect(e?.format == .zipkinV2JSON)
        }
        #expect(decodeError(#"[{"traceId":"0","id":"1"}]"#)?.code == .invalidValue)
    }

    @Test func envoyLocalEndpointWithPortZeroKeepsTheOriginalBytes() throws {
        // Envoy writes its local endpoint with "port":0; Zipkin reads 0 as "no port", which is what
        // the decoded span says too, so the span is forwarded as received.
        let text = #"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"ingress","localEndpoint":{"serviceName":"web","ipv4":"10.0.0.1","port":0}}]"#
        let b = try decode(text)
        #expect(b.spans[0].localEndpoint.port == 0)
        #expect(b.string(b.spans[0].raw) == String(text.dropFirst().dropLast()))
        // A negative port is not what a re-encoding would say: not reused.
        #expect(try decode(#"[{"traceId":"1","id":"2","localEndpoint":{"port":-1}}]"#).spans[0].raw.isEmpty)
        #expect(try decode(#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","localEndpoint":{"port":-1}}]"#).spans[0].raw.isEmpty)
    }

    @Test func acceptsWhatRealClientsSend() throws {
        let b = try decode(#"""
        [ {"traceId":"00f067aa0ba902b7","id":"00f067aa0ba902b8","kind":null,"name":null,"parentId":null,
           "timestamp":1.5e6,"duration":-5,"debug":true,"shared":true,"unknownField":{"nested":[1,2,{"x":null}]},
           "localEndpoint":{"serviceName":"front\u0065nd","ipv4":"10.0.0.1","port":8080,"extra":true},
           "remoteEndpoint":{"ipv6":"2001:db8::1","port":0,"serviceName":null},
           "annotations":[{"timestamp":1500001,"value":"ws"},{"value":"no time"}],
           "tags":{"error":"","http.status_code":"500","emoji":"\ud83d\ude00 ok","n":12,"b":true,"nul":null}},
          {"traceId":"00f067aa0ba902b7","id":"00f067aa0ba902b9","kind":"client","timestamp":1700000000000000}
        ]
        """#)
        let s = b.spans[0]
        #expect(s.kind == .unspecified)
        #expect(s.name.isEmpty)
        #expect(s.parentID == 0)
        #expect(s.startNanos == 1_500_000_000)
        #expect(s.durationNanos == 0)
        #expect(s.flags == [.debug, .shared, .error])
        #expect(s.samplingPriority == 1, "debug is the sampled flag: AUTO_KEEP")
        #expect(b.string(s.localEndpoint.serviceName) == "frontend")
        #expect(b.string(s.localEndpoint.ipv4) == "10.0.0.1")
        #expect(s.localEndpoint.port == 8080)
        #expect(b.string(s.remoteEndpoint.ipv6) == "2001:db8::1")
        #expect(s.remoteEndpoint.port == 0)
        #expect(b.annotations(of: s).map { $0.timestampNanos } == [1_500_001_000, 0])
        #expect(b.tagDictionary(s) == ["error": "", "http.status_code": "500", "emoji": "😀 ok", "n": "12", "b": "true"])
        #expect(s.raw.isEmpty)
        #expect(b.spans[1].kind == .client)
        #expect(b.spans[1].startNanos == 1_700_000_000_000_000_000)
        // Fractions of a microsecond are kept as nanoseconds.
        #expect(try decode(#"[{"traceId":"1","id":"2","timestamp":1500.25}]"#).spans[0].startNanos == 1_500_250)
        let again = try decode(encode(b))
        #expect(again.meaning() == b.meaning())
    }

    @Test func canonicalSpansKeepRawAndEncoderCopiesIt() throws {
        let canonicalSpan = #"{"id":"a1b2c3d4e5f60001","traceId":"463ac35c9f6413ad48485a3953bb6124","name":"get /x","kind":"SERVER","timestamp":1700000000000000,"duration":12,"localEndpoint":{"serviceName":"web"},"tags":{"k":"v"}}"#
        let body = "[" + canonicalSpan + ", " + #"{"traceId":"463AC35C9F6413AD48485A3953BB6124","id":"a1b2c3d4e5f60002"}"# + "]"
        let b = try decode(body)
        #expect(b.string(b.spans[0].raw) == canonicalSpan)
        #expect(b.spans[1].raw.isEmpty)
        let out = encode(b)
        #expect(out.hasPrefix("[" + canonicalSpan + ",{"))
        #expect(out.contains(#""traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a1b2c3d4e5f60002""#))
        // Another format's batch never copies raw: the span is re-encoded.
        var other = b
        other.metadata.format = .zipkinV2Proto
        let reencoded = encode(other, spans: [0])
        #expect(reencoded != "[" + canonicalSpan + "]")
        #expect(try decode(reencoded).meaning() == [b.meaning()[0]])
        // A modified span whose raw was cleared is re-encoded with the change.
        var changed = b
        changed.spans[0].name = changed.intern("renamed")
        changed.spans[0].raw = .empty
        #expect(encode(changed, spans: [0]).contains(#""name":"renamed""#))
    }

    @Test func encoderWritesValidZipkinAndSelectsSpans() throws {
        var b = SpanBatch(metadata: .init(format: .constructed))
        var s = Span(traceID: TraceID(high: 1, low: 2), id: 3)
        s.parentID = 4
        s.kind = .consumer
        s.name = b.intern("quote \" and \\ and \n and ü")
        s.startNanos = 1_700_000_000_000_123_999
        s.durationNanos = 999
        s.localEndpoint = Endpoint(serviceName: b.intern("svc"), ipv4: b.intern("1.2.3.4"), port: 80)
        s.tags = b.addTags([Tag(key: b.intern("error"), value: b.intern("boom"))])
        s.flags = [.debug, .shared]
        b.spans.append(s)
        var s2 = Span(traceID: TraceID(low: 9), id: 10)
        s2.startNanos = 5_000
        b.spans.append(s2)
        let json = encode(b)
        #expect(json == #"[{"traceId":"00000000000000010000000000000002","parentId":"0000000000000004","id":"0000000000000003","kind":"CONSUMER","name":"quote \" and \\ and \n and ü","timestamp":1700000000000123,"duration":1,"localEndpoint":{"serviceName":"svc","ipv4":"1.2.3.4","port":80},"tags":{"error":"boom"},"debug":true,"shared":true},{"traceId":"0000000000000009","id":"000000000000000a","timestamp":5}]"#)
        #expect(encode(b, spans: [1]) == #"[{"traceId":"0000000000000009","id":"000000000000000a","timestamp":5}]"#)
        #expect(encode(b, spans: []) == "[]")
        let parsed = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]
        #expect(parsed?.count == 2)
    }

    /// Decoding is pure: a body reassembled from random splits decodes exactly like the
    /// original, and decode → encode → decode gives the same spans (and encoding is stable).
    @Test func dripAndIdempotence() throws {
        for name in ["otel-v2.json", "pyzipkin-v2.json"] {
            let body = try ZipkinFixtures.bytes(name)
            let whole = try ZipkinJSONV2.decode(body, metadata: Self.meta)
            var rng = SplitMix64(seed: 42)
            for _ in 0..<50 {
                var pieces: [[UInt8]] = []
                var rest = body[...]
                while !rest.isEmpty {
                    let n = Int.random(in: 1...max(1, min(rest.count, 64)), using: &rng)
                    pieces.append(Array(rest.prefix(n)))
                    rest = rest.dropFirst(n)
                }
                let again = try ZipkinJSONV2.decode(pieces.flatMap { $0 }, metadata: Self.meta)
                #expect(again == whole)
            }
            // Byte by byte as well.
            var oneByOne: [UInt8] = []
            for byte in body { oneByOne.append(byte) }
            #expect(try ZipkinJSONV2.decode(oneByOne, metadata: Self.meta) == whole)

            for format in [SpanFormat.zipkinV2JSON, .constructed] {
                var b = whole
                b.metadata.format = format
                var out: [UInt8] = []
                ZipkinJSONV2.encode(b, into: &out)
                let round = try ZipkinJSONV2.decode(out, metadata: Self.meta)
                #expect(round.meaning() == whole.meaning(), "\(name) \(format)")
                var out2: [UInt8] = []
                ZipkinJSONV2.encode(round, into: &out2)
                #expect(out2 == out || format == .constructed)
                var bc = round
                bc.metadata.format = .constructed
                var out3: [UInt8] = []
                ZipkinJSONV2.encode(bc, into: &out3)
                let again = try ZipkinJSONV2.decode(out3, metadata: Self.meta)
                #expect(again.meaning() == whole.meaning())
            }
        }
    }

    @Test func mutatedInputsFailCleanlyOrRoundTrip() throws {
        let body = try ZipkinFixtures.bytes("otel-v2.json")
        let r = Fuzz.run(body, rounds: 3000, seed: 7, decode: { b throws(DecodeError) in try ZipkinJSONV2.decode(b, metadata: Self.meta) },
                         property: Fuzz.zipkinRoundTrip)
        #expect(r.failed > 0 && r.ok > 0)
    }

    /// Encoder outputs committed for Tests/e2e/test_zipkin_encoders.py, which checks them with
    /// jsonschema (Zipkin's API schema) and Python protobuf. This test fails when the encoders'
    /// output changes without the files being regenerated (TRACERELAY_UPDATE_FIXTURES=1), as
    /// the Datadog encoder's outputs are checked.
    @Test func committedEncoderOutputsAreCurrent() throws {
        let dir = ZipkinFixtures.directory.appendingPathComponent("encoded")
        let update = ProcessInfo.processInfo.environment["TRACERELAY_UPDATE_FIXTURES"] == "1"
        if update { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
        for (file, format) in [("otel-v2.json", SpanFormat.zipkinV2JSON), ("pyzipkin-v2.json", .zipkinV2JSON),
                               ("otel-proto.bin", .zipkinV2Proto), ("pyzipkin-proto.bin", .zipkinV2Proto),
                               ("otel-v1.json", .zipkinV1JSON), ("pyzipkin-v1.json", .zipkinV1JSON)] {
            var batch = try ZipkinFixtureTests.decode(try ZipkinFixtures.bytes(file), format)
            batch.metadata.format = .constructed // force real encoding, not raw copies
            let stem = file.split(separator: ".")[0]
            var json: [UInt8] = [], proto: [UInt8] = []
            ZipkinJSONV2.encode(batch, into: &json)
            ZipkinProto3.encode(batch, into: &proto)
            for (name, bytes) in [("\(stem).to-v2.json", json), ("\(stem).to-proto.bin", proto)] {
                let url = dir.appendingPathComponent(name)
                if update { try Data(bytes).write(to: url) }
                let committed = (try? Data(contentsOf: url)).map { Array($0) }
                #expect(committed == bytes, "encoded/\(name) is stale: rerun with TRACERELAY_UPDATE_FIXTURES=1, then Tests/e2e/test_zipkin_encoders.py")
            }
        }
    }
}
