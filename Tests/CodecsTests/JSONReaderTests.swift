import TestSupport
import Testing
import Spans
@testable import Codecs

/// Walks a whole document with the reader, producing a canonical text form, so tests can
/// compare what the reader saw with what was written.
private func canonical(_ text: String) throws(DecodeError) -> String {
    try JSONReader.withReader(Array(text.utf8), format: .zipkinV2JSON) { (r: inout JSONReader) throws(DecodeError) -> String in
        var out = ""
        func value(_ r: inout JSONReader) throws(DecodeError) {
            switch r.peek() {
            case UInt8(ascii: "{"):
                try r.beginObject(); out += "{"
                var first = true
                while let k = try r.nextKey() {
                    if !first { out += "," }
                    first = false
                    out += "\(unescaped(r, k)):"
                    try value(&r)
                }
                out += "}"
            case UInt8(ascii: "["):
                try r.beginArray(); out += "["
                var first = true
                while try r.nextElement() {
                    if !first { out += "," }
                    first = false
                    try value(&r)
                }
                out += "]"
            case UInt8(ascii: "\""): out += unescaped(r, try r.readString())
            case UInt8(ascii: "t"), UInt8(ascii: "f"): out += String(try r.readBool())
            case UInt8(ascii: "n"): if r.readNull() { out += "null" } else { throw r.error("bad literal") }
            default:
                let n = try r.readNumber()
                out += n.integer.map { "i\($0)" } ?? "d\(r.doubleValue(n))"
            }
        }
        try value(&r)
        try r.expectEnd()
        return out
    }
}

private func unescaped(_ r: JSONReader, _ s: JSONString) -> String {
    var buf = [UInt8](repeating: 0, count: s.count)
    let n = buf.withUnsafeMutableBytes { JSONReader.unescape(r.bytes(s.range), into: $0) }
    return "<" + String(decoding: buf[0..<n], as: UTF8.self) + ">"
}

@Suite struct JSONReaderTests {
    @Test func walksObjectsArraysAndScalars() throws {
        #expect(try canonical(#" { "a" : [1, -2, 3.5, 1.5e6, true, false, null, "x"], "b": {} , "c": [] } "#)
                == "{<a>:[i1,i-2,d3.5,d1500000.0,true,false,null,<x>],<b>:{},<c>:[]}")
        #expect(try canonical("-0") == "i0")
        #expect(try canonical("9223372036854775807") == "i9223372036854775807")
        #expect(try canonical("-9223372036854775808") == "i-9223372036854775808")
        #expect(try canonical("9223372036854775808") == "d9.223372036854776e+18")
        #expect(try canonical("1E2") == "d100.0")
    }

    @Test func unescapesStringsIncludingSurrogatePairs() throws {
        #expect(try canonical(#""a\"b\\c\/d\b\f\n\r\t""#) == "<a\"b\\c/d\u{8}\u{c}\n\r\t>")
        #expect(try canonical(#""\u00e9\u4e2d\ud83d\ude00""#) == "<é中😀>")
        #expect(try canonical(#""lone \ud83d x""#) == "<lone \u{FFFD} x>")
        #expect(try canonical(#""lone \ude00""#) == "<lone \u{FFFD}>")
        #expect(try canonical("\"ünïcode 😀 raw\"") == "<ünïcode 😀 raw>")
        // Long strings cross the 8-byte scanning steps at every alignment.
        for pad in 0..<17 {
            let s = String(repeating: "x", count: pad) + "\\\"" + String(repeating: "y", count: 9)
            #expect(try canonical("\"\(s)\"") == "<" + String(repeating: "x", count: pad) + "\"" + String(repeating: "y", count: 9) + ">")
        }
    }

    @Test func rejectsBadSyntaxWithOffset() {
        let bad: [(String, String, Int)] = [
            ("[1,]", "expected a value", 3),
            ("[1 2]", "expected ',' or ']'", 3),
            (#"{"a":1,}"#, "member name", 7),
            (#"{"a" 1}"#, "expected ':'", 5),
            (#"{"a":1 "b":2}"#, "expected ',' or '}'", 7),
            (#"{,"a":1}"#, "expected '\"' or '}'", 1),
            ("[,1]", "expected a value or ']'", 1),
            ("\"abc", "unterminated string", 0),
            ("\"a\u{1}b\"", "control character", 2),
            (#""a\x""#, "invalid escape", 2),
            (#""\u12g4""#, "invalid \\u escape", 1),
            ("01", "leading zero", 0),
            ("1.", "digit after '.'", 2),
            ("1e+", "digit in the exponent", 3),
            ("tru", "true or false", 0),
            ("nul", "expected null", 0),
            ("[1] x", "unexpected data", 4),
            ("", "unexpected end of input", 0),
            (String(repeating: "[", count: 300) + String(repeating: "]", count: 300), "nesting deeper", 256),
        ]
        for (text, message, offset) in bad {
            do {
                _ = try JSONReader.withReader(Array(text.utf8), format: .zipkinV2JSON) { (r: inout JSONReader) throws(DecodeError) in
                    try r.skipValue(); try r.expectEnd()
                }
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(message), "\(text): \(error)")
                #expect(error.offset == offset, "\(text): \(error)")
                #expect(error.format == .zipkinV2JSON)
            }
        }
    }

    @Test func keyMatchingAndTextSlices() throws {
        let body = Array(#"{"name":"plain","esc":"a\nb"}"#.utf8)
        var batch = SpanBatch(body: body, metadata: .init(format: .zipkinV2JSON))
        try JSONReader.withReader(body, format: .zipkinV2JSON) { (r: inout JSONReader) throws(DecodeError) in
            try r.beginObject()
            var seen = 0
            while let k = try r.nextKey() {
                let s = try r.readString()
                let t = r.text(s, in: &batch)
                if r.key(k, is: "name") { #expect(batch.string(t) == "plain"); #expect(Int(t.offset) < body.count); seen += 1 }
                if r.key(k, is: "esc") { #expect(batch.string(t) == "a\nb"); #expect(Int(t.offset) >= body.count); seen += 1 }
            }
            #expect(seen == 2)
        }
    }

    @Test func scaledIntegersAcceptExponentForms() throws {
        let text = "[1500000, 1.5e6, 2.25, -3, 1e30]"
        let values: [Int64?] = try JSONReader.withReader(Array(text.utf8), format: nil) { (r: inout JSONReader) throws(DecodeError) in
            var v: [Int64?] = []
            try r.beginArray()
            while try r.nextElement() { v.append(try r.readScaledInt64(scale: 1000).value) }
            return v
        }
        #expect(values == [1_500_000_000, 1_500_000_000, 2250, -3000, nil])
    }

    @Test func writerEscapesAndReaderRoundTrips() throws {
        let samples = ["plain", "quote\" back\\ slash", "ctl \u{1}\u{1f}\n\t", "ünï 😀", ""]
        for s in samples {
            var out: [UInt8] = []
            Array(s.utf8).withUnsafeBytes { JSONWriter.string($0, to: &out) }
            #expect(try canonical(String(decoding: out, as: UTF8.self)) == "<\(s)>")
        }
        for v: Int64 in [0, 7, -7, 1234567890123, .max, .min] {
            var out: [UInt8] = []
            JSONWriter.int(v, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == String(v))
        }
    }

    /// Mutated documents: the structured walk and `skipValue` must agree on what is one valid
    /// JSON value (neither traps, and neither accepts what the other refuses).
    @Test func skipAndWalkAgreeOnMutatedDocuments() {
        let valid = Array(#"{"a":[1,-2.5e3,"x\u00e9\n",true,null,{"b":{}}],"c":"\ud83d\ude00"}"#.utf8)
        let seed: UInt64 = 12
        var rng = SplitMix64(seed: seed)
        let alphabet = Array(#"{}[],:"\\u0123456789eE+-.tfn "#.utf8)
        for round in 0..<5000 {
            var b = valid
            if Bool.random(using: &rng) { b = Array(b[0..<Int.random(in: 0...b.count, using: &rng)]) }
            for _ in 0..<Int.random(in: 0...3, using: &rng) where !b.isEmpty {
                b[Int.random(in: 0..<b.count, using: &rng)] = Bool.random(using: &rng)
                    ? alphabet.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            }
            let text = String(decoding: b, as: UTF8.self)
            let walked = (try? canonical(text)) != nil
            let skipped = (try? JSONReader.withReader(Array(text.utf8), format: nil) { (r: inout JSONReader) throws(DecodeError) -> Bool in
                try r.skipValue()
                try r.expectEnd()
                return true
            }) ?? false
            #expect(walked == skipped, "seed \(seed) round \(round): walk \(walked), skip \(skipped) on \(text)")
            if walked != skipped { return }
        }
    }
}
