/// Appends MessagePack values to a byte array, always in the smallest encoding
/// (what the msgpack spec recommends and what Python's `msgpack` and the Datadog agent expect).
public struct MessagePackWriter {
    public init() {}

    @inlinable
    public static func writeArrayHeader(_ n: Int, into out: inout [UInt8]) {
        if n < 16 { out.append(0x90 | UInt8(n)) }
        else if n <= 0xffff { out.append(0xdc); append16(UInt16(n), &out) }
        else { out.append(0xdd); append32(UInt32(truncatingIfNeeded: n), &out) }
    }

    @inlinable
    public static func writeMapHeader(_ n: Int, into out: inout [UInt8]) {
        if n < 16 { out.append(0x80 | UInt8(n)) }
        else if n <= 0xffff { out.append(0xde); append16(UInt16(n), &out) }
        else { out.append(0xdf); append32(UInt32(truncatingIfNeeded: n), &out) }
    }

    @inlinable
    public static func writeStringHeader(_ n: Int, into out: inout [UInt8]) {
        if n < 32 { out.append(0xa0 | UInt8(n)) }
        else if n <= 0xff { out.append(0xd9); out.append(UInt8(n)) }
        else if n <= 0xffff { out.append(0xda); append16(UInt16(n), &out) }
        else { out.append(0xdb); append32(UInt32(truncatingIfNeeded: n), &out) }
    }

    @inlinable
    public static func writeString(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        writeStringHeader(bytes.count, into: &out)
        out.append(contentsOf: bytes)
    }

    @inlinable
    public static func writeString(_ s: StaticString, into out: inout [UInt8]) {
        s.withUTF8Buffer { writeString(UnsafeRawBufferPointer($0), into: &out) }
    }

    public static func writeString(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { writeString(UnsafeRawBufferPointer($0), into: &out) }
    }

    @inlinable
    public static func writeUInt(_ v: UInt64, into out: inout [UInt8]) {
        if v <= 0x7f { out.append(UInt8(v)) }
        else if v <= 0xff { out.append(0xcc); out.append(UInt8(v)) }
        else if v <= 0xffff { out.append(0xcd); append16(UInt16(v), &out) }
        else if v <= 0xffff_ffff { out.append(0xce); append32(UInt32(v), &out) }
        else { out.append(0xcf); append64(v, &out) }
    }

    @inlinable
    public static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        if v >= 0 { writeUInt(UInt64(v), into: &out); return }
        if v >= -32 { out.append(UInt8(bitPattern: Int8(v))) }
        else if v >= -128 { out.append(0xd0); out.append(UInt8(bitPattern: Int8(v))) }
        else if v >= -32768 { out.append(0xd1); append16(UInt16(bitPattern: Int16(v)), &out) }
        else if v >= -2_147_483_648 { out.append(0xd2); append32(UInt32(bitPattern: Int32(v)), &out) }
        else { out.append(0xd3); append64(UInt64(bitPattern: v), &out) }
    }

    @inlinable
    public static func writeDouble(_ v: Double, into out: inout [UInt8]) {
        out.append(0xcb); append64(v.bitPattern, &out)
    }

    @inlinable
    public static func writeBool(_ v: Bool, into out: inout [UInt8]) { out.append(v ? 0xc3 : 0xc2) }

    @inlinable
    public static func writeNil(into out: inout [UInt8]) { out.append(0xc0) }

    @inlinable
    static func append16(_ v: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(v >> 8)); out.append(UInt8(v & 0xff))
    }

    @inlinable
    static func append32(_ v: UInt32, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }

    @inlinable
    static func append64(_ v: UInt64, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }
}
