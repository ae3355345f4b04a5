#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Spans

/// A JSON string as it appears in the input: the bytes between the quotes, still escaped.
///
/// Most strings in trace payloads contain no escapes; those can be referenced in place
/// (`SpanBatch.slice`) without copying. Only when `hasEscapes` is set must the text be
/// unescaped (`JSONReader.unescape` / `JSONReader.text(_:in:)`).
public struct JSONString: Sendable, Hashable {
    /// Offset of the first byte after the opening quote.
    public var start: Int
    /// Offset of the closing quote.
    public var end: Int
    /// The raw bytes contain at least one backslash escape.
    public var hasEscapes: Bool

    @inlinable public var count: Int { end - start }
    @inlinable public var range: Range<Int> { start..<end }
}

/// A JSON number as it appears in the input, with its integer value when it has one.
public struct JSONNumber: Sendable, Hashable {
    /// Offsets of the number's text.
    public var start: Int
    public var end: Int
    /// Set when the text is a plain integer (`-?[0-9]+`) that fits in Int64.
    public var integer: Int64?
}

/// A fast, allocation-free pull reader over JSON bytes, shared by every JSON decoder.
///
/// It is a cursor: callers walk the document with `beginObject`/`nextKey`,
/// `beginArray`/`nextElement` and the value readers, and skip what they do not know with
/// `skipValue`. It never allocates and never copies; strings come back as `JSONString`
/// ranges into the input. Syntax is checked strictly (RFC 8259) for everything the caller
/// walks over or skips: commas, colons, literals, escapes, control characters inside
/// strings, number grammar, nesting up to `maxDepth`. UTF-8 is not validated (bytes ≥ 0x80
/// pass through unchanged). Every failure is a `DecodeError` carrying the caller's format,
/// the byte offset and what was expected.
///
/// The reader holds a raw pointer: create it only inside `withUnsafeBytes` on the input
/// (see `JSONReader.withReader`) and never let it escape that closure.
public struct JSONReader {
    @usableFromInline let base: UnsafePointer<UInt8>
    /// Number of input bytes.
    public let count: Int
    /// Offset of the next unread byte.
    public var position: Int
    /// Named in every error this reader throws.
    public let format: SpanFormat?
    /// Containers deeper than this are refused (protects the stack in `skipValue`).
    public static let maxDepth = 256

    /// A reader over `bytes`, which must stay valid for the reader's lifetime.
    public init(_ bytes: UnsafeRawBufferPointer, format: SpanFormat?) {
        // An empty buffer may have a nil base; point at a static byte then (count is 0).
        self.base = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) }
            ?? UnsafePointer(JSONReader.emptyByte)
        self.count = bytes.count
        self.position = 0
        self.format = format
    }

    nonisolated(unsafe) private static let emptyByte: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// Runs `body` with a reader over `bytes`, passing its typed error through.
    public static func withReader<R>(_ bytes: [UInt8], format: SpanFormat?,
                                     _ body: (inout JSONReader) throws(DecodeError) -> R) throws(DecodeError) -> R {
        let result: Result<R, DecodeError> = bytes.withUnsafeBytes { raw in
            var reader = JSONReader(raw, format: format)
            do throws(DecodeError) { return .success(try body(&reader)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    // MARK: Errors

    /// An error at the current position (or `at`), naming the reader's format.
    public func error(_ message: String, at offset: Int? = nil, code: DecodeError.Code = .malformed) -> DecodeError {
        DecodeError(code, format: format, offset: offset ?? position, message)
    }

    @usableFromInline func unexpected(_ what: String) -> DecodeError {
        if position >= count { return error("unexpected end of input, expected \(what)") }
        let b = base[position]
        let shown = b >= 0x20 && b < 0x7f ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
        return error("expected \(what), found \(shown)")
    }

    // MARK: Bytes

    /// The byte at `i` (no bounds check beyond a debug assertion).
    @inlinable public func byte(at i: Int) -> UInt8 {
        assert(i >= 0 && i < count)
        return base[i]
    }

    /// A view of input bytes `range` (valid as long as the input is).
    @inlinable public func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Skips JSON whitespace (space, tab, CR, LF).
    @inline(__always) @inlinable public mutating func skipWhitespace() {
        while position < count {
            let b = base[position]
            if b > 0x20 { return }
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            position += 1
        }
    }

    /// The next non-whitespace byte without consuming it, nil at end of input.
    @inline(__always) @inlinable public mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < count ? base[position] : nil
    }

    /// True when only whitespace is left.
    public mutating func atEnd() -> Bool { peek() == nil }

    /// Fails unless only whitespace is left (call after the top-level value).
    public mutating func expectEnd() throws(DecodeError) {
        if peek() != nil { throw error("unexpected data after the JSON value") }
    }

    /// Consumes `byte` (after whitespace) or fails naming `what`.
    @inlinable public mutating func expect(_ byte: UInt8, _ what: String) throws(DecodeError) {
        guard peek() == byte else { throw unexpected(what) }
        position += 1
    }

    /// The last non-whitespace byte before `position`, nil at the start.
    @usableFromInline func previousSignificant() -> UInt8? {
        var i = position - 1
        while i >= 0 {
            let b = base[i]
            if !(b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09) { return b }
            i -= 1
        }
        return nil
    }

    // MARK: Containers

    /// Consumes `{`.
    @inlinable public mutating func beginObject() throws(DecodeError) { try expect(UInt8(ascii: "{"), "'{'") }

    /// Reads the next member's key and its `:`, or consumes `}` and returns nil.
    ///
    ///     try r.beginObject()
    ///     while let key = try r.nextKey() { if r.key(key, is: "id") { … } else { try r.skipValue() } }
    @inline(__always)
    public mutating func nextKey() throws(DecodeError) -> JSONString? {
        guard let b = peek() else { throw unexpected("'\"' or '}'") }
        switch b {
        case UInt8(ascii: "}"):
            position += 1
            return nil
        case UInt8(ascii: ","):
            guard previousSignificant() != UInt8(ascii: "{") else { throw unexpected("'\"' or '}'") }
            position += 1
            guard peek() == UInt8(ascii: "\"") else { throw unexpected("a member name") }
        case UInt8(ascii: "\""):
            // The first member follows '{' directly; any other needs a comma.
            guard previousSignificant() == UInt8(ascii: "{") else { throw unexpected("',' or '}'") }
        default:
            throw unexpected("a member name or '}'")
        }
        let key = try readString()
        try expect(UInt8(ascii: ":"), "':'")
        return key
    }

    /// Consumes `[`.
    @inlinable public mutating func beginArray() throws(DecodeError) { try expect(UInt8(ascii: "["), "'['") }

    /// Positions the reader at the next element (true) or consumes `]` (false).
    ///
    ///     try r.beginArray()
    ///     while try r.nextElement() { try readThing(&r) }
    public mutating func nextElement() throws(DecodeError) -> Bool {
        guard let b = peek() else { throw unexpected("a value or ']'") }
        switch b {
        case UInt8(ascii: "]"):
            position += 1
            return false
        case UInt8(ascii: ","):
            guard previousSignificant() != UInt8(ascii: "[") else { throw unexpected("a value or ']'") }
            position += 1
            return true
        default:
            guard previousSignificant() == UInt8(ascii: "[") else { throw unexpected("',' or ']'") }
            return true
        }
    }

    // MARK: Scalars

    /// Consumes `null` when it is next and returns true; otherwise consumes nothing.
    @inline(__always) @inlinable public mutating func readNull() -> Bool {
        guard peek() == UInt8(ascii: "n"), position + 4 <= count,
              base[position + 1] == UInt8(ascii: "u"), base[position + 2] == UInt8(ascii: "l"),
              base[position + 3] == UInt8(ascii: "l") else { return false }
        position += 4
        return true
    }

    /// Reads `true` or `false`.
    public mutating func readBool() throws(DecodeError) -> Bool {
        let p = peek()
        if p == UInt8(ascii: "t"), matchLiteral("true") { return true }
        if p == UInt8(ascii: "f"), matchLiteral("false") { return false }
        throw unexpected("true or false")
    }

    @usableFromInline mutating func matchLiteral(_ lit: StaticString) -> Bool {
        let n = lit.utf8CodeUnitCount
        guard position + n <= count, memcmp(base + position, lit.utf8Start, n) == 0 else { return false }
        position += n
        return true
    }

    /// Reads a string; returns the raw (still escaped) range between the quotes.
    ///
    /// Checks escapes (`\" \\ \/ \b \f \n \r \t \uXXXX`) and refuses raw control characters.
    @inline(__always)
    public mutating func readString() throws(DecodeError) -> JSONString {
        guard peek() == UInt8(ascii: "\"") else { throw unexpected("a string") }
        position += 1
        let start = position
        var escapes = false
        while true {
            // Eight bytes at a time: stop at the first quote, backslash or control byte.
            while position + 8 <= count {
                let w = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self).littleEndian
                let lo: UInt64 = 0x0101_0101_0101_0101, hi: UInt64 = 0x8080_8080_8080_8080
                let q = w ^ (lo &* 0x22), s = w ^ (lo &* 0x5C)
                let m = ((q &- lo) & ~q) | ((s &- lo) & ~s) | (w &- (lo &* 0x20))
                let hits = m & ~w & hi
                if hits != 0 {
                    position += hits.trailingZeroBitCount >> 3
                    break
                }
                position += 8
            }
            guard position < count else { throw error("unterminated string", at: start - 1) }
            let b = base[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                return JSONString(start: start, end: position - 1, hasEscapes: escapes)
            } else if b == UInt8(ascii: "\\") {
                escapes = true
                guard position + 1 < count else { throw error("unterminated string", at: start - 1) }
                switch base[position + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                     UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position += 2
                case UInt8(ascii: "u"):
                    guard position + 6 <= count, JSONReader.hex4(base + position + 2) != nil else {
                        throw error("invalid \\u escape in string")
                    }
                    position += 6
                default:
                    throw error("invalid escape in string")
                }
            } else if b < 0x20 {
                throw error("control character in string")
            } else {
                position += 1
            }
        }
    }

    @usableFromInline static func hex4(_ p: UnsafePointer<UInt8>) -> UInt32? {
        var v: UInt32 = 0
        for i in 0..<4 {
            let c = p[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c &- 48
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c &- 87
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c &- 55
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// Reads a number per the JSON grammar (`-? int frac? exp?`).
    public mutating func readNumber() throws(DecodeError) -> JSONNumber {
        _ = peek()
        let start = position
        var negative = false
        if position < count, base[position] == UInt8(ascii: "-") { negative = true; position += 1 }
        let intStart = position
        var magnitude: UInt64 = 0
        var overflow = false
        while position < count {
            let d = base[position] &- 48
            if d > 9 { break }
            let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            magnitude = m2
            position += 1
        }
        let digits = position - intStart
        guard digits > 0 else { position = start; throw unexpected("a number") }
        if digits > 1, base[intStart] == UInt8(ascii: "0") { throw error("leading zero in number", at: start) }
        var isInteger = true
        if position < count, base[position] == UInt8(ascii: ".") {
            isInteger = false
            position += 1
            let f = position
            while position < count, base[position] &- 48 <= 9 { position += 1 }
            if position == f { throw unexpected("a digit after '.'") }
        }
        if position < count, base[position] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            if position < count, base[position] == UInt8(ascii: "+") || base[position] == UInt8(ascii: "-") { position += 1 }
            let e = position
            while position < count, base[position] &- 48 <= 9 { position += 1 }
            if position == e { throw unexpected("a digit in the exponent") }
        }
        var integer: Int64? = nil
        if isInteger && !overflow {
            if negative {
                if magnitude <= UInt64(Int64.max) + 1 { integer = magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude) }
            } else if magnitude <= UInt64(Int64.max) {
                integer = Int64(magnitude)
            }
        }
        return JSONNumber(start: start, end: position, integer: integer)
    }

    /// The number's value as a Double (parses the text for non-integers; no allocation).
    public func doubleValue(_ n: JSONNumber) -> Double {
        if let i = n.integer { return Double(i) }
        let len = n.end - n.start
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: len + 1) { buf in
            let p = buf.baseAddress!
            UnsafeMutableRawPointer(p).copyMemory(from: base + n.start, byteCount: len)
            p[len] = 0
            return strtod(p, nil)
        }
    }

    /// Reads a number and returns it multiplied by `scale`, rounded toward zero, as Int64
    /// (nil when the result does not fit). Accepts exponent and fraction forms: with
    /// `scale: 1000`, `1.5e6` µs reads as 1_500_000_000 ns.
    public mutating func readScaledInt64(scale: Int64) throws(DecodeError) -> (value: Int64?, number: JSONNumber) {
        let n = try readNumber()
        if let i = n.integer {
            let (v, o) = i.multipliedReportingOverflow(by: scale)
            return (o ? nil : v, n)
        }
        let d = doubleValue(n) * Double(scale)
        guard d.isFinite, d > -9.2e18, d < 9.2e18 else { return (nil, n) }
        return (Int64(d), n)
    }

    // MARK: Skipping

    /// Skips one value of any type, checking its syntax.
    public mutating func skipValue() throws(DecodeError) { try skipValue(depth: 0) }

    private mutating func skipValue(depth: Int) throws(DecodeError) {
        guard let b = peek() else { throw unexpected("a value") }
        switch b {
        case UInt8(ascii: "\""): _ = try readString()
        case UInt8(ascii: "{"):
            guard depth < JSONReader.maxDepth else { throw error("nesting deeper than \(JSONReader.maxDepth)") }
            position += 1
            while try nextKey() != nil { try skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            guard depth < JSONReader.maxDepth else { throw error("nesting deeper than \(JSONReader.maxDepth)") }
            position += 1
            while try nextElement() { try skipValue(depth: depth + 1) }
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try readBool()
        case UInt8(ascii: "n"): if !readNull() { throw unexpected("null") }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try readNumber()
        default: throw unexpected("a value")
        }
    }

    // MARK: Keys and text

    /// True when the key's raw bytes equal `literal` (escaped keys never match).
    @inline(__always) @inlinable public func key(_ k: JSONString, is literal: StaticString) -> Bool {
        k.count == literal.utf8CodeUnitCount && memcmp(base + k.start, literal.utf8Start, k.count) == 0
    }

    /// The string as batch text: a slice of the body when it has no escapes (no copy),
    /// otherwise unescaped and appended to the batch's storage. The reader's input must be
    /// the batch's body (offsets are shared).
    @inline(__always) @inlinable public func text(_ s: JSONString, in batch: inout SpanBatch) -> Str {
        if !s.hasEscapes { return s.count == 0 ? .empty : batch.slice(s.range) }
        return batch.appendText(capacity: s.count) { out in JSONReader.unescape(bytes(s.range), into: out) }
    }

    /// Unescapes validated string content (as returned by `readString`) into `out`, which
    /// needs `raw.count` bytes (unescaped text is never longer). Returns the bytes written.
    /// Surrogate pairs become one 4-byte UTF-8 sequence; a lone surrogate becomes U+FFFD.
    public static func unescape(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        precondition(out.count >= raw.count)
        guard let src = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
        let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var i = 0, o = 0
        let n = raw.count
        while i < n {
            let c = src[i]
            if c != UInt8(ascii: "\\") { dst[o] = c; o += 1; i += 1; continue }
            guard i + 1 < n else { break }
            let e = src[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): dst[o] = 0x08
            case UInt8(ascii: "f"): dst[o] = 0x0C
            case UInt8(ascii: "n"): dst[o] = 0x0A
            case UInt8(ascii: "r"): dst[o] = 0x0D
            case UInt8(ascii: "t"): dst[o] = 0x09
            case UInt8(ascii: "u"):
                guard i + 4 <= n, var scalar = hex4(src + i) else { return o }
                i += 4
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    // A high surrogate pairs with an immediately following \uDC00-\uDFFF.
                    if i + 6 <= n, src[i] == UInt8(ascii: "\\"), src[i + 1] == UInt8(ascii: "u"),
                       let low = hex4(src + i + 2), low >= 0xDC00, low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    } else {
                        scalar = 0xFFFD
                    }
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    scalar = 0xFFFD
                }
                o += writeUTF8(scalar, dst + o)
                continue
            default: dst[o] = e // " \ /
            }
            o += 1
        }
        return o
    }

    @usableFromInline static func writeUTF8(_ s: UInt32, _ p: UnsafeMutablePointer<UInt8>) -> Int {
        switch s {
        case 0..<0x80:
            p[0] = UInt8(s); return 1
        case 0x80..<0x800:
            p[0] = UInt8(0xC0 | (s >> 6)); p[1] = UInt8(0x80 | (s & 0x3F)); return 2
        case 0x800..<0x10000:
            p[0] = UInt8(0xE0 | (s >> 12)); p[1] = UInt8(0x80 | ((s >> 6) & 0x3F)); p[2] = UInt8(0x80 | (s & 0x3F)); return 3
        default:
            p[0] = UInt8(0xF0 | (s >> 18)); p[1] = UInt8(0x80 | ((s >> 12) & 0x3F))
            p[2] = UInt8(0x80 | ((s >> 6) & 0x3F)); p[3] = UInt8(0x80 | (s & 0x3F)); return 4
        }
    }
}
