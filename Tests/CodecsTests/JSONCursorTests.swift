import TestSupport
import Testing
import Spans
@testable import Codecs

/// The word-at-a-time primitives of `JSONCursor`, checked against plain byte-by-byte
/// definitions at every length and alignment (including the last bytes of the input).
@Suite struct JSONCursorTests {
    func withCursor<R>(_ bytes: [UInt8], at i: Int = 0, _ body: (inout JSONCursor) -> R) -> R {
        bytes.withUnsafeBytes { raw in
            var r = JSONReader(raw, format: nil)
            r.position = i
            var c = JSONCursor(r)
            return body(&c)
        }
    }

    @Test func stringStopFindsTheFirstQuoteBackslashOrControlByte() {
        var rng = SplitMix64(seed: 5)
        let alphabet: [UInt8] = Array("abc xyz-/:.0".utf8) + [0x22, 0x5C, 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xA2, 0xDC, 0xFF]
        for _ in 0..<3000 {
            let n = Int.random(in: 0...70, using: &rng)
            let bytes = (0..<n).map { _ in Bool.random(using: &rng) ? UInt8(ascii: "a") : alphabet.randomElement(using: &rng)! }
            for start in 0...n {
                let expected = bytes[start...].firstIndex { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 } ?? n
                #expect(withCursor(bytes) { $0.stringStop(start) } == expected, "\(bytes) from \(start)")
            }
        }
    }

    @Test func plainStringsOnly() {
        for (text, range) in [(#""abc""#, 1..<4), (#""""#, 1..<1), (#""a\"b""#, nil), ("\"a\u{1}\"", nil), (#""open"#, nil),
                              ("\"" + String(repeating: "é", count: 40) + "\"", 1..<81)] as [(String, Range<Int>?)] {
            let bytes = Array(text.utf8)
            let (got, i) = withCursor(bytes) { c in (c.plainString(), c.i) }
            #expect(got == range, "\(text)")
            #expect(i == (range.map { $0.upperBound + 1 } ?? 0), "\(text)")
        }
    }

    @Test func plainIntegersAndWhatTheyLeaveToTheReader() {
        let cases: [(String, UInt64?, Int)] = [
            ("0", 0, 1), ("7,", 7, 1), ("1700000000000000}", 1_700_000_000_000_000, 16), ("123456789", 123_456_789, 9),
            ("12345678", 12_345_678, 8), ("999999999999999999", 999_999_999_999_999_999, 18),
            ("1234567890123456789", nil, 0), ("01", nil, 0), ("00", nil, 0), ("-1", nil, 0), ("1.5", nil, 0), ("1e3", nil, 0),
            ("1E3", nil, 0), ("", nil, 0), ("x", nil, 0), ("42 ", 42, 2), ("9223372036854775", 9_223_372_036_854_775, 16),
        ]
        for (text, value, length) in cases {
            let bytes = Array(text.utf8)
            let (got, i) = withCursor(bytes) { c in (c.plainInteger(), c.i) }
            #expect(got == value, "\(text)")
            #expect(i == length, "\(text)")
        }
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2000 {
            let v = UInt64.random(in: 0...999_999_999_999_999_999, using: &rng) >> UInt64.random(in: 0...60, using: &rng)
            let text = String(v)
            #expect(withCursor(Array(text.utf8)) { $0.plainInteger() } == v)
            #expect(withCursor(Array((text + ",").utf8)) { $0.plainInteger() } == v)
        }
    }

    @Test func lowerHexMatchesParseHex64() {
        var rng = SplitMix64(seed: 3)
        let lower = Array("0123456789abcdef".utf8)
        let other = Array("ABCDEFgG/:@`x \"".utf8) + [0x00, 0x80, 0xC1, 0xFF]
        for _ in 0..<20000 {
            var digits = (0..<16).map { _ in lower.randomElement(using: &rng)! }
            if Bool.random(using: &rng) { digits[Int.random(in: 0..<16, using: &rng)] = other.randomElement(using: &rng)! }
            let expected = digits.allSatisfy { lower.contains($0) } ? digits.withUnsafeBytes { parseHex64($0) } : nil
            #expect(withCursor(digits) { $0.lowerHex16(0) } == expected, "\(digits)")
        }
        #expect(withCursor(Array("ffffffffffffffff".utf8)) { $0.lowerHex16(0) } == .max)
        #expect(withCursor(Array("0000000000000000".utf8)) { $0.lowerHex16(0) } == 0)
        #expect(withCursor(Array("fffffffffffffff".utf8)) { $0.lowerHex16(0) } == nil) // 15 digits, then the end
    }

    @Test func kindsParseAsBefore() {
        func reference(_ b: [UInt8]) -> (SpanKind, Bool) {
            guard b.count <= 16 else { return (.unspecified, false) }
            var exact = true
            let upper = b.map { c -> UInt8 in
                if c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") { exact = false; return c - 32 }
                return c
            }
            // Names are compared as zero-padded 16-byte words: trailing NUL bytes are padding.
            var name = upper[...]
            while name.last == 0 { name = name.dropLast() }
            switch String(decoding: name, as: UTF8.self) {
            case "CLIENT": return (.client, exact)
            case "SERVER": return (.server, exact)
            case "PRODUCER": return (.producer, exact)
            case "CONSUMER": return (.consumer, exact)
            default: return (.unspecified, false)
            }
        }
        var names = ["CLIENT", "SERVER", "PRODUCER", "CONSUMER", "client", "Server", "pRODUCER", "consumer", "", "CLIENTS",
                     "CLIEN", "SERVER\u{0}", "UNKNOWN", "CONSUMERCONSUMERX", "S\\u0045RVER", "{ERVER", "SERVE`"]
        var rng = SplitMix64(seed: 8)
        for _ in 0..<2000 {
            var b = Array(["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].randomElement(using: &rng)!.utf8)
            b[Int.random(in: 0..<b.count, using: &rng)] ^= [0x20, 0x01, 0x80, 0x40].randomElement(using: &rng)!
            names.append(String(decoding: b, as: UTF8.self))
        }
        for name in names {
            let b = Array(name.utf8)
            let got = b.withUnsafeBytes { ZipkinKinds.parse($0) }
            let want = reference(b)
            #expect(got.0 == want.0 && got.exact == want.1, "\(name)")
        }
    }
}
