import TestSupport
import Testing
import Spans
@testable import Codecs

/// The Zipkin v2 fast path (ZipkinJSONV2Fast.swift) must be invisible: for any input it
/// yields exactly what the general path yields — same spans, tags, annotations, storage
/// bytes and `raw` slices, or the same error with the same offset. These tests decode the
/// same bytes both ways and compare, over fixtures and generated (often broken) documents.
@Suite struct ZipkinJSONV2FastPathTests {
    static let meta = BatchMetadata(format: .zipkinV2JSON)

    static func both(_ body: [UInt8]) -> (fast: Result<SpanBatch, DecodeError>, general: Result<SpanBatch, DecodeError>) {
        func run(_ fast: Bool) -> Result<SpanBatch, DecodeError> {
            do throws(DecodeError) { return .success(try ZipkinJSONV2.decode(body, metadata: meta, fastPath: fast)) } catch { return .failure(error) }
        }
        return (run(true), run(false))
    }

    static func expectSame(_ body: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let (fast, general) = both(body)
        #expect(fast == general, "\(String(decoding: body, as: UTF8.self))", sourceLocation: sourceLocation)
    }

    @Test func fixturesAndTheirMutations() throws {
        for name in ["otel-v2.json", "pyzipkin-v2.json", "encoded/otel-v2.to-v2.json", "encoded/pyzipkin-v1.to-v2.json"] {
            let body = try ZipkinFixtures.bytes(name)
            Self.expectSame(body)
            for cut in 0...body.count { Self.expectSame(Array(body[0..<cut])) }
            var rng = SplitMix64(seed: 99)
            for _ in 0..<1000 {
                var b = body
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                Self.expectSame(b)
            }
        }
    }

    @Test func generatedDocuments() {
        var g = ZipkinDocumentGenerator(rng: SplitMix64(seed: 2024))
        var decoded = 0
        for _ in 0..<4000 {
            let body = g.document()
            let (fast, general) = Self.both(body)
            #expect(fast == general, "\(String(decoding: body, as: UTF8.self))")
            if case .success(let b) = general { decoded += b.spans.count }
        }
        #expect(decoded > 1000) // the generator must mostly produce decodable spans
    }

    /// Guards the speed-up: spans of the common shapes must not fall back to the general path.
    @Test func commonShapesTakeTheFastPath() throws {
        let spans = [
            #"{"traceId":"463ac35c9f6413ad48485a3953bb6124","parentId":"a1b2c3d4e5f60001","id":"a1b2c3d4e5f60002","kind":"SERVER","name":"get /x","timestamp":1700000000000000,"duration":12,"localEndpoint":{"serviceName":"web","ipv4":"10.0.0.1","port":8080},"remoteEndpoint":{"ipv6":"::1"},"annotations":[{"timestamp":1700000000000001,"value":"ws"}],"tags":{"http.url":"http://a/b?c=d","error":""},"debug":false,"shared":true}"#,
            #"{ "traceId": "00f067aa0ba902b7", "id": "00f067aa0ba902b8", "name": "say \"hi\"\n", "kind": "client", "timestamp": 1.5e6, "tags": { "k": "v\u00e9", "n": null }, "parentId": null, "x": [1, {"y": true}] }"#,
            #"{"traceId":"463AC35C9F6413AD","id":"1","parentId":"0000000000000000","duration":-5,"localEndpoint":{"port":0,"extra":1}}"#,
        ]
        for text in spans {
            let body = Array(text.utf8)
            var batch = SpanBatch(body: body, metadata: Self.meta)
            let took = withUnsafeTemporaryAllocation(of: Tag.self, capacity: 4) { buffer in
                var tags = ZipkinJSONV2.TagBuffer(buffer)
                return body.withUnsafeBytes { raw in
                    var r = JSONReader(raw, format: .zipkinV2JSON)
                    return ZipkinJSONV2.fastSpan(&r, &batch, &tags) && r.position == body.count
                }
            }
            #expect(took, "\(text)")
            Self.expectSame(Array(("[" + text + "]").utf8))
        }
    }

    @Test func memberNamesMatchExactly() {
        func words(_ s: String) -> (UInt64, UInt64) {
            var b = Array(s.utf8) + Array(repeating: 0, count: 16)
            b = Array(b[0..<16])
            return b.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian,
                                       $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian) }
        }
        let spanKeys: [(String, ZipkinJSONV2.SpanKey)] = [
            ("id", .id), ("name", .name), ("kind", .kind), ("tags", .tags), ("debug", .debug), ("shared", .shared),
            ("traceId", .traceId), ("parentId", .parentId), ("duration", .duration), ("timestamp", .timestamp),
            ("annotations", .annotations), ("localEndpoint", .localEndpoint), ("remoteEndpoint", .remoteEndpoint),
        ]
        for (name, key) in spanKeys {
            let (w0, w1) = words(name + "\":")
            #expect(ZipkinJSONV2.SpanKey.match(w0, w1) == (key, name.utf8.count + 1), "\(name)")
            for near in [name + "s", String(name.dropLast()), name.uppercased(), "\\u0069" + name, "x" + name] {
                let (v0, v1) = words(near + "\":")
                #expect(ZipkinJSONV2.SpanKey.match(v0, v1).1 == 0, "\(near)")
            }
        }
        for (name, key) in [("serviceName", ZipkinJSONV2.EndpointKey.serviceName), ("ipv4", .ipv4), ("ipv6", .ipv6), ("port", .port)] {
            let (w0, w1) = words(name + "\"")
            #expect(ZipkinJSONV2.EndpointKey.match(w0, w1) == (key, name.utf8.count + 1))
            let (v0, v1) = words(name + "x\"")
            #expect(ZipkinJSONV2.EndpointKey.match(v0, v1).1 == 0)
        }
        for (name, key) in [("timestamp", ZipkinJSONV2.AnnotationKey.timestamp), ("value", .value)] {
            let (w0, w1) = words(name + "\"")
            #expect(ZipkinJSONV2.AnnotationKey.match(w0, w1) == (key, name.utf8.count + 1))
            let (v0, v1) = words(name + "s\"")
            #expect(ZipkinJSONV2.AnnotationKey.match(v0, v1).1 == 0)
        }
    }
}

/// Random Zipkin v2 documents: real-client shapes, unusual but valid forms (nulls, escapes,
/// whitespace, short or upper-case ids, exponents, unknown members) and, in "wild"
/// documents, invalid values and byte mutations.
struct ZipkinDocumentGenerator {
    var rng: SplitMix64
    var wsStyle = 0
    var wild = 1.0

    mutating func int(_ n: Int) -> Int { Int.random(in: 0..<n, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }

    mutating func ws() -> String {
        switch wsStyle {
        case 0: ""
        case 1: chance(0.5) ? " " : ""
        default: chance(0.3) ? pick([" ", "\n", "\t", "\r\n  "]) : ""
        }
    }

    mutating func hex(_ n: Int, upper: Bool = false) -> String {
        let d = Array(upper ? "0123456789ABCDEF" : "0123456789abcdef")
        return String((0..<n).map { _ in d[int(16)] })
    }

    mutating func id(trace: Bool) -> String {
        if !chance(wild) { return "\"" + hex(trace && chance(0.5) ? 32 : 16) + "\"" }
        switch int(16) {
        case 0: return "null"
        case 1: return "\"\(hex(16, upper: true))\""
        case 2: return "\"\(hex(1 + int(15)))\""
        case 3: return "\"\(hex(17 + int(17)))\""
        case 4: return "\"\""
        case 5: return trace ? "\"00000000000000000000000000000000\"" : "\"0000000000000000\""
        case 6: return "\"\(hex(8))g\(hex(7))\""
        case 7: return "\"\\u0030\(hex(15))\""
        case 8: return "12"
        case 9: return "\"0000000000000000\(hex(16))\""
        case 10: return "\"\(hex(15))"
        default: return "\"" + hex(trace && chance(0.5) ? 32 : 16) + "\""
        }
    }

    mutating func string() -> String {
        let valid = [#""""#, #""a\"b\\c\/d\b\f\n\r\t""#, #""caf\u00e9 \ud83d\ude00 \ud83d x""#, "\"ünï 😀\"",
                     "\"" + String(repeating: "long-", count: 1 + int(12)) + "\"", "\"ingress\"", "\"10.244.1.7\"",
                     "\"http://backend:8080/api?page=3\"", "\"-\"", "\"\(hex(int(40)))\""]
        let invalid = [#""bad \x""#, "\"ctl \u{01}\"", #""\u12g4""#, "12", "null", "\"open"]
        return chance(wild * 0.3) ? pick(invalid) : pick(valid)
    }

    mutating func number() -> String {
        let valid = ["-5", "-0", "1.5e6", "1500.25", "0", "1E3", "1700000000000000.0", "9223372036854775",
                     "\(1_700_000_000_000_000 + int(1_000_000))", "\(int(100_000))"]
        let invalid = ["1e300", "01", "1.", "1e+", "\"123\"", "null", "9223372036854776", "99999999999999999999", "123abc"]
        return chance(wild * 0.3) ? pick(invalid) : pick(valid)
    }

    mutating func literal() -> String { chance(wild * 0.3) ? pick(["\"true\"", "tru", "1"]) : pick(["true", "false", "null"]) }

    mutating func key(_ k: String) -> String { "\"\(k)\"" + ws() + ":" + ws() }

    mutating func object(_ members: [String]) -> String { "{" + ws() + members.joined(separator: ws() + "," + ws()) + ws() + "}" }

    mutating func anyValue(_ depth: Int = 0) -> String {
        switch int(depth > 2 ? 4 : 6) {
        case 0: return string()
        case 1: return number()
        case 2: return literal()
        case 3: return chance(wild * 0.3) ? pick(["[1,]", "{\"a\" 1}", "nul", "-"]) : "null"
        case 4: return "[" + (0..<int(3)).map { _ in anyValue(depth + 1) }.joined(separator: ",") + "]"
        default: return object((0..<int(3)).map { _ in key(pick(["a", "b\\u0041"])) + anyValue(depth + 1) })
        }
    }

    mutating func endpoint() -> String {
        if chance(0.03 * wild) { return pick(["null", "[]", "{\"serviceName\":}"]) }
        var keys = ["serviceName", "ipv4", "ipv6", "port"]
        if chance(0.1) { keys.append(pick(["extra", "ports", "serviceName"])) }
        keys.shuffle(using: &rng)
        var members: [String] = []
        for k in keys where chance(0.8) {
            switch k {
            case "port": members.append(key(k) + pick(["8080", "0", "-1", "65535", "65536", "1.5", "null", "1e2", "99999999999999999999"]))
            case "ipv4": members.append(key(k) + (chance(0.9) ? "\"10.0.\(int(255)).\(int(255))\"" : string()))
            case "extra": members.append(key(k) + anyValue())
            default: members.append(key(k) + string())
            }
        }
        return object(members)
    }

    mutating func tags() -> String {
        if chance(0.03 * wild) { return pick(["null", "[]", "{\"a\":{}}", "{\"a\"}", "{,}", "{\"a\":\"b\",}"]) }
        let keys = ["component", "http.url", "error", "errors", "erro", "e\\u0072ror", "", "ünï"]
        return object((0..<int(18)).map { _ in
            key(pick(keys)) + (chance(0.1) ? pick([number(), literal(), "null", "{}", "[1]"]) : string())
        })
    }

    mutating func annotations() -> String {
        if chance(0.03 * wild) { return pick(["null", "{}", "[1]", "[{\"value\":\"x\"},]"]) }
        let elements: [String] = (0..<int(4)).map { _ in
            if chance(0.05) { return "null" }
            var keys = ["timestamp", "value"]
            if chance(0.2) { keys.append(pick(["endpoint", "val", "value"])) }
            keys.shuffle(using: &rng)
            return object(keys.filter { _ in chance(0.9) }.map { k in
                key(k) + (k == "timestamp" ? number() : k == "endpoint" ? anyValue() : string())
            })
        }
        return "[" + ws() + elements.joined(separator: ws() + "," + ws()) + ws() + "]"
    }

    mutating func span() -> String {
        if chance(0.01 * wild) { return pick(["null", "[]", "1", "{}"]) }
        var keys = ["traceId", "id", "parentId", "name", "kind", "timestamp", "duration", "localEndpoint",
                    "remoteEndpoint", "tags", "annotations", "debug", "shared"]
        if chance(0.3) { keys.shuffle(using: &rng) }
        if chance(0.15) {
            keys.insert(pick(["unknown", "traceID", "ids", "i", "nam", "tagsx", "localEndpoin", "\\u0069d", "remoteEndpoints",
                              "parentIds", "timestampX", "annotation", "share", "kinds", "traceId", "id", "name"]),
                        at: int(keys.count + 1))
        }
        var members: [String] = []
        for k in keys {
            let required = k == "traceId" || k == "id"
            guard chance(required ? 1 - 0.02 * wild : 0.75) else { continue }
            let value: String
            switch k {
            case "traceId": value = id(trace: true)
            case "id", "parentId": value = id(trace: false)
            case "name": value = string()
            case "kind": value = pick(["\"SERVER\"", "\"CLIENT\"", "\"PRODUCER\"", "\"CONSUMER\"", "\"server\"", "\"Client\"",
                                       "\"UNKNOWN\"", "\"\"", "null", "\"SERVERSERVERSERVERX\"", "\"S\\u0045RVER\""])
            case "timestamp", "duration": value = number()
            case "localEndpoint", "remoteEndpoint": value = endpoint()
            case "tags": value = tags()
            case "annotations": value = annotations()
            case "debug", "shared": value = literal()
            default: value = anyValue()
            }
            members.append(key(k) + value)
        }
        return object(members)
    }

    mutating func document() -> [UInt8] {
        wsStyle = int(3)
        wild = pick([1.0, 0.1, 0.0, 0.0])
        var text = ws() + "[" + ws() + (0..<int(5)).map { _ in span() }.joined(separator: ws() + "," + ws()) + ws() + "]" + ws()
        if chance(0.01 * wild) { text += pick(["x", "]", ","]) }
        var b = Array(text.utf8)
        guard chance(wild * 0.5), !b.isEmpty else { return b }
        let interesting = Array(#"{}[],:"\0123456789abcdefABCDEFeE+-.tfnul "#.utf8) + [0x00, 0x01, 0x0A, 0x80, 0xFF]
        switch int(4) {
        case 0: b = Array(b[0..<int(b.count + 1)])
        case 1: b[int(b.count)] = chance(0.5) ? pick(interesting) : UInt8.random(in: 0...255, using: &rng)
        case 2: b.remove(at: int(b.count))
        default: b.insert(pick(interesting), at: int(b.count + 1))
        }
        return b
    }
}
