import Spans

/// A bounds-checked protobuf wire-format reader over a byte range, allocation-free.
/// Errors name the format and the absolute byte offset.
struct ProtoReader {
    let base: UnsafePointer<UInt8>
    var position: Int
    let end: Int
    let format: SpanFormat

    init(_ bytes: UnsafeRawBufferPointer, format: SpanFormat) {
        self.base = bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
        self.position = 0
        self.end = bytes.count
        self.format = format
    }

    /// A reader over `range` of the same input (offsets stay absolute).
    @inline(__always)
    func sub(_ range: Range<Int>) -> ProtoReader {
        var r = self
        r.position = range.lowerBound
        return ProtoReader(base: base, position: range.lowerBound, end: range.upperBound, format: format)
    }

    private init(base: UnsafePointer<UInt8>, position: Int, end: Int, format: SpanFormat) {
        self.base = base; self.position = position; self.end = end; self.format = format
    }

    @inline(__always)
    var atEnd: Bool { position >= end }

    func error(_ message: String, at: Int? = nil, code: DecodeError.Code = .malformed) -> DecodeError {
        DecodeError(code, format: format, offset: at ?? position, message)
    }

    @inline(__always)
    mutating func varint() throws(DecodeError) -> UInt64 {
        // Most varints on this path (tags, lengths, kinds) are one byte.
        if position < end, base[position] < 0x80 {
            position += 1
            return UInt64(base[position - 1])
        }
        return try varintSlow()
    }

    mutating func varintSlow() throws(DecodeError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while position < end {
            let b = base[position]
            position += 1
            if shift == 63 && b > 1 { throw error("varint overflows 64 bits", at: start) }
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        throw error("truncated varint", at: start)
    }

    /// The next field's number and wire type.
    @inline(__always)
    mutating func tag() throws(DecodeError) -> (field: UInt64, wire: UInt8) {
        let at = position
        let t = try varint()
        let field = t >> 3
        guard field > 0 else { throw error("field number 0", at: at) }
        return (field, UInt8(t & 7))
    }

    @inline(__always)
    mutating func fixed64() throws(DecodeError) -> UInt64 {
        guard end - position >= 8 else { throw error("truncated fixed64") }
        let v = UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self).littleEndian
        position += 8
        return v
    }

    /// A length-delimited field's byte range (absolute offsets).
    @inline(__always)
    mutating func lengthDelimited() throws(DecodeError) -> Range<Int> {
        let at = position
        let n = try varint()
        guard n <= UInt64(end - position) else { throw error("length \(n) runs past the end of its message", at: at) }
        let r = position..<(position + Int(n))
        position += Int(n)
        return r
    }

    mutating func skip(_ wire: UInt8) throws(DecodeError) {
        switch wire {
        case 0: _ = try varint()
        case 1: guard end - position >= 8 else { throw error("truncated fixed64") }; position += 8
        case 2: _ = try lengthDelimited()
        case 5: guard end - position >= 4 else { throw error("truncated fixed32") }; position += 4
        default: throw error("unsupported wire type \(wire)")
        }
    }

    /// Fails unless `wire` is what the field needs.
    @inline(__always)
    func expect(_ wire: UInt8, _ want: UInt8, _ field: StaticString, at: Int) throws(DecodeError) {
        if wire != want { throw wireError(wire, want, field, at: at) }
    }

    @inline(never)
    func wireError(_ wire: UInt8, _ want: UInt8, _ field: StaticString, at: Int) -> DecodeError {
        error("\(field) has wire type \(wire), expected \(want)", at: at)
    }

    @inline(__always)
    func bytes(_ r: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + r.lowerBound, count: r.count)
    }

    /// Big-endian unsigned integer from up to 8 bytes.
    @inline(__always)
    func bigEndian(_ r: Range<Int>) -> UInt64 {
        var v: UInt64 = 0
        for i in r { v = v << 8 | UInt64(base[i]) }
        return v
    }
}

/// Protobuf wire-format writing helpers over a growing byte array.
enum ProtoWriter {
    @inline(__always) static func varint(_ v: UInt64, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 { out.append(UInt8(truncatingIfNeeded: v) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    @inline(__always) static func tag(_ field: UInt64, _ wire: UInt8, to out: inout [UInt8]) {
        varint(field << 3 | UInt64(wire), to: &out)
    }

    static func fixed64(_ field: UInt64, _ v: UInt64, to out: inout [UInt8]) {
        tag(field, 1, to: &out)
        withUnsafeBytes(of: v.littleEndian) { out.appendBytes($0) }
    }

    static func bytes(_ field: UInt64, _ b: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        tag(field, 2, to: &out)
        varint(UInt64(b.count), to: &out)
        out.appendBytes(b)
    }

    /// 8 big-endian bytes of `v` as a length-delimited field.
    static func id(_ field: UInt64, _ v: UInt64, to out: inout [UInt8]) {
        tag(field, 2, to: &out)
        out.append(8)
        withUnsafeBytes(of: v.bigEndian) { out.appendBytes($0) }
    }

    /// Writes a length-delimited submessage produced by `body`, patching in its length
    /// afterwards (one memmove when the guess of two length bytes was wrong).
    static func message(_ field: UInt64, to out: inout [UInt8], _ body: (inout [UInt8]) -> Void) {
        tag(field, 2, to: &out)
        let lenAt = out.count
        out.append(0); out.append(0)
        body(&out)
        let n = out.count - lenAt - 2
        var len: [UInt8] = []
        if n < 0x4000 {
            if n < 0x80 {
                out[lenAt] = UInt8(n)
                out.remove(at: lenAt + 1)
            } else {
                out[lenAt] = UInt8(truncatingIfNeeded: n) | 0x80
                out[lenAt + 1] = UInt8(n >> 7)
            }
            return
        }
        varint(UInt64(n), to: &len)
        out.replaceSubrange(lenAt..<(lenAt + 2), with: len)
    }
}
