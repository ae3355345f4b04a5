import Spans

/// A bounds-checked, allocation-free MessagePack reader over borrowed bytes.
///
/// Every read checks the remaining length first and throws a `DecodeError` naming the byte
/// offset and what was expected, so truncated or hostile input can never read out of bounds.
/// Strings are returned as byte ranges of the input (the caller turns them into `Str`s that
/// point into the batch storage), so reading a string copies nothing. Nesting is limited by
/// `maxDepth` when skipping unknown values, so a deeply nested payload cannot exhaust the stack.
///
/// The reader does not own the memory: the caller keeps the buffer alive while reading
/// (decoders create it inside `withUnsafeBytes`).
public struct MessagePackReader {
    public let bytes: UnsafeRawBufferPointer
    /// The next byte to read, as an offset from the start of `bytes`.
    public var position: Int
    /// Reported in errors.
    public var format: SpanFormat?
    /// Deepest nesting `skip()` accepts.
    public var maxDepth: Int

    public init(_ bytes: UnsafeRawBufferPointer, format: SpanFormat? = nil, maxDepth: Int = 64) {
        self.bytes = bytes
        self.position = 0
        self.format = format
        self.maxDepth = maxDepth
    }

    @inlinable public var isAtEnd: Bool { position >= bytes.count }
    @inlinable public var remaining: Int { bytes.count - position }

    /// The kinds of value a MessagePack type byte announces.
    public enum ValueType: Sendable, Equatable {
        case nil_, bool, int, float, string, binary, array, map, ext
    }

    // MARK: Errors

    @usableFromInline
    func error(_ message: String, at offset: Int? = nil) -> DecodeError {
        DecodeError(.malformed, format: format, offset: offset ?? position, message)
    }

    @usableFromInline
    func truncated(_ what: StaticString, at offset: Int) -> DecodeError {
        DecodeError(.malformed, format: format, offset: offset,
                    "msgpack: truncated \(what): needs more bytes than the \(bytes.count)-byte body holds")
    }

    @usableFromInline
    func typeError(_ expected: StaticString, got byte: UInt8, at offset: Int) -> DecodeError {
        DecodeError(.malformed, format: format, offset: offset,
                    "msgpack: expected \(expected), found \(Self.describe(byte))")
    }

    /// A human name for a type byte, for error messages.
    public static func describe(_ b: UInt8) -> String {
        switch b {
        case 0x00...0x7f, 0xe0...0xff, 0xcc...0xd3: return "integer (0x\(hexByte(b)))"
        case 0x80...0x8f, 0xde, 0xdf: return "map (0x\(hexByte(b)))"
        case 0x90...0x9f, 0xdc, 0xdd: return "array (0x\(hexByte(b)))"
        case 0xa0...0xbf, 0xd9...0xdb: return "string (0x\(hexByte(b)))"
        case 0xc0: return "nil"
        case 0xc2, 0xc3: return "bool"
        case 0xc4...0xc6: return "binary (0x\(hexByte(b)))"
        case 0xca, 0xcb: return "float (0x\(hexByte(b)))"
        case 0xc1: return "reserved byte 0xc1"
        default: return "extension (0x\(hexByte(b)))"
        }
    }

    // MARK: Primitive loads

    @inlinable @inline(__always)
    mutating func need(_ n: Int, _ what: StaticString) throws(DecodeError) {
        if _slowPath(n > bytes.count &- position) { throw truncated(what, at: position) }
    }

    @inlinable
    func load8(_ at: Int) -> UInt8 { bytes.load(fromByteOffset: at, as: UInt8.self) }

    @inlinable
    func load16(_ at: Int) -> UInt16 { UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt16.self)) }

    @inlinable
    func load32(_ at: Int) -> UInt32 { UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }

    @inlinable
    func load64(_ at: Int) -> UInt64 { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }

    /// The type byte at the current position, without consuming it.
    @inlinable @inline(__always)
    public func peekByte() throws(DecodeError) -> UInt8 {
        if _slowPath(position >= bytes.count) { throw truncated("value", at: position) }
        return load8(position)
    }

    /// What kind of value comes next.
    @inlinable
    public func peekType() throws(DecodeError) -> ValueType {
        let b = try peekByte()
        switch b {
        case 0x00...0x7f, 0xe0...0xff, 0xcc...0xd3: return .int
        case 0x80...0x8f, 0xde, 0xdf: return .map
        case 0x90...0x9f, 0xdc, 0xdd: return .array
        case 0xa0...0xbf, 0xd9...0xdb: return .string
        case 0xc0: return .nil_
        case 0xc2, 0xc3: return .bool
        case 0xc4...0xc6: return .binary
        case 0xca, 0xcb: return .float
        case 0xc1: throw error("msgpack: reserved type byte 0xc1")
        default: return .ext
        }
    }

    /// Consumes a nil if one comes next.
    @inlinable
    public mutating func readNilIfPresent() -> Bool {
        if position < bytes.count && load8(position) == 0xc0 { position &+= 1; return true }
        return false
    }

    // MARK: Containers

    /// Reads an array header and returns its element count. Nil reads as an empty array.
    @inlinable
    public mutating func readArrayHeader() throws(DecodeError) -> Int {
        let start = position
        let b = try peekByte()
        if b & 0xf0 == 0x90 { position &+= 1; return try checkedCount(Int(b & 0x0f), start) }
        switch b {
        case 0xdc: try need(3, "array header"); let n = Int(load16(position + 1)); position &+= 3; return try checkedCount(n, start)
        case 0xdd: try need(5, "array header"); let n = Int(load32(position + 1)); position &+= 5; return try checkedCount(n, start)
        case 0xc0: position &+= 1; return 0
        default: throw typeError("array", got: b, at: start)
        }
    }

    /// Reads a map header and returns its entry count. Nil reads as an empty map.
    @inlinable @inline(__always)
    public mutating func readMapHeader() throws(DecodeError) -> Int {
        let start = position
        let b = try peekByte()
        if b & 0xf0 == 0x80 { position &+= 1; return try checkedCount(Int(b & 0x0f), start) }
        switch b {
        case 0xde: try need(3, "map header"); let n = Int(load16(position + 1)); position &+= 3; return try checkedCount(n, start)
        case 0xdf: try need(5, "map header"); let n = Int(load32(position + 1)); position &+= 5; return try checkedCount(n, start)
        case 0xc0: position &+= 1; return 0
        default: throw typeError("map", got: b, at: start)
        }
    }

    /// Every element takes at least one byte, so a count above the remaining bytes is a lie;
    /// rejecting it early keeps callers from reserving memory for it.
    @inlinable @inline(__always)
    func checkedCount(_ n: Int, _ start: Int) throws(DecodeError) -> Int {
        if _slowPath(n > bytes.count &- position) {
            throw error("msgpack: container declares \(n) elements but only \(bytes.count - position) bytes remain", at: start)
        }
        return n
    }

    // MARK: Strings

    /// Reads a string (or binary) and returns its byte range within `bytes`.
    /// Nil reads as an empty range (Datadog clients send nil for absent strings).
    @inlinable
    public mutating func readStringRange() throws(DecodeError) -> Range<Int> {
        let start = position
        let b = try peekByte()
        var len: Int
        var head: Int
        if b & 0xe0 == 0xa0 {
            len = Int(b & 0x1f); head = 1
        } else {
            switch b {
            case 0xd9, 0xc4: try need(2, "string header"); len = Int(load8(position + 1)); head = 2
            case 0xda, 0xc5: try need(3, "string header"); len = Int(load16(position + 1)); head = 3
            case 0xdb, 0xc6: try need(5, "string header"); len = Int(load32(position + 1)); head = 5
            case 0xc0: position &+= 1; return position..<position
            default: throw typeError("string", got: b, at: start)
            }
        }
        let from = position &+ head
        if _slowPath(len > bytes.count &- from) { throw truncated("string", at: start) }
        position = from &+ len
        return from..<position
    }

    /// Reads a string and hands its bytes to `body` (valid only inside it).
    @inlinable
    public mutating func readString<R>(_ body: (UnsafeRawBufferPointer) -> R) throws(DecodeError) -> R {
        let r = try readStringRange()
        return body(UnsafeRawBufferPointer(rebasing: bytes[r]))
    }

    // MARK: Numbers

    /// Reads an integer of any width as its 64-bit two's-complement pattern: negative values
    /// come back as large unsigned numbers, which is how clients that only have signed 64-bit
    /// integers (Java, some Go encoders) send ids ≥ 2^63. Nil reads as 0.
    @inlinable
    public mutating func readUInt64Bits() throws(DecodeError) -> UInt64 {
        let start = position
        let b = try peekByte()
        if b <= 0x7f { position &+= 1; return UInt64(b) }
        if b >= 0xe0 { position &+= 1; return UInt64(bitPattern: Int64(Int8(bitPattern: b))) }
        switch b {
        case 0xcc: try need(2, "uint8"); let v = UInt64(load8(position + 1)); position &+= 2; return v
        case 0xcd: try need(3, "uint16"); let v = UInt64(load16(position + 1)); position &+= 3; return v
        case 0xce: try need(5, "uint32"); let v = UInt64(load32(position + 1)); position &+= 5; return v
        case 0xcf: try need(9, "uint64"); let v = load64(position + 1); position &+= 9; return v
        case 0xd0: try need(2, "int8"); let v = Int64(Int8(bitPattern: load8(position + 1))); position &+= 2; return UInt64(bitPattern: v)
        case 0xd1: try need(3, "int16"); let v = Int64(Int16(bitPattern: load16(position + 1))); position &+= 3; return UInt64(bitPattern: v)
        case 0xd2: try need(5, "int32"); let v = Int64(Int32(bitPattern: load32(position + 1))); position &+= 5; return UInt64(bitPattern: v)
        case 0xd3: try need(9, "int64"); let v = load64(position + 1); position &+= 9; return v
        case 0xc0: position &+= 1; return 0
        default: throw typeError("integer", got: b, at: start)
        }
    }

    /// Reads an integer of any width as a signed value (uint64 above Int64.max wraps).
    /// Floats with an integral value are accepted too, as some clients send them for times.
    @inlinable @inline(__always)
    public mutating func readInt64() throws(DecodeError) -> Int64 {
        let b = try peekByte()
        if _slowPath(b == 0xca || b == 0xcb) {
            let start = position
            let d = try readDouble()
            guard d.isFinite, d >= -9.2e18, d <= 9.2e18 else { throw error("msgpack: float \(d) does not fit an integer", at: start) }
            return Int64(d)
        }
        return Int64(bitPattern: try readUInt64Bits())
    }

    /// Reads a float or an integer as a Double. Nil reads as 0.
    @inlinable
    public mutating func readDouble() throws(DecodeError) -> Double {
        let start = position
        let b = try peekByte()
        switch b {
        case 0xcb: try need(9, "float64"); let v = Double(bitPattern: load64(position + 1)); position &+= 9; return v
        case 0xca: try need(5, "float32"); let v = Double(Float(bitPattern: load32(position + 1))); position &+= 5; return v
        case 0xcf: try need(9, "uint64"); let v = Double(load64(position + 1)); position &+= 9; return v
        case 0x00...0x7f, 0xe0...0xff, 0xcc...0xce, 0xd0...0xd3:
            return Double(Int64(bitPattern: try readUInt64Bits()))
        case 0xc0: position &+= 1; return 0
        default: throw typeError("number", got: b, at: start)
        }
    }

    /// Reads a bool; integers read as `!= 0` and nil as false.
    @inlinable
    public mutating func readBool() throws(DecodeError) -> Bool {
        let b = try peekByte()
        switch b {
        case 0xc2: position &+= 1; return false
        case 0xc3: position &+= 1; return true
        default: return try readUInt64Bits() != 0
        }
    }

    // MARK: Skipping

    /// Skips one complete value of any type, nested up to `maxDepth` levels.
    public mutating func skip() throws(DecodeError) {
        try skip(depth: 0)
    }

    @usableFromInline
    mutating func skip(depth: Int) throws(DecodeError) {
        let start = position
        let b = try peekByte()
        switch b {
        case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3:
            position &+= 1
        case 0xcc, 0xd0: try need(2, "integer"); position &+= 2
        case 0xcd, 0xd1: try need(3, "integer"); position &+= 3
        case 0xce, 0xd2, 0xca: try need(5, "number"); position &+= 5
        case 0xcf, 0xd3, 0xcb: try need(9, "number"); position &+= 9
        case 0xa0...0xbf, 0xd9, 0xda, 0xdb, 0xc4, 0xc5, 0xc6:
            _ = try readStringRange()
        case 0xd4: try need(3, "fixext"); position &+= 3
        case 0xd5: try need(4, "fixext"); position &+= 4
        case 0xd6: try need(6, "fixext"); position &+= 6
        case 0xd7: try need(10, "fixext"); position &+= 10
        case 0xd8: try need(18, "fixext"); position &+= 18
        case 0xc7, 0xc8, 0xc9:
            let head = b == 0xc7 ? 3 : (b == 0xc8 ? 4 : 6)
            try need(head, "ext header")
            let len = b == 0xc7 ? Int(load8(position + 1)) : (b == 0xc8 ? Int(load16(position + 1)) : Int(load32(position + 1)))
            try need(head + len, "ext")
            position &+= head + len
        case 0x90...0x9f, 0xdc, 0xdd:
            if depth >= maxDepth { throw error("msgpack: nesting deeper than \(maxDepth) levels", at: start) }
            let n = try readArrayHeader()
            for _ in 0..<n { try skip(depth: depth + 1) }
        case 0x80...0x8f, 0xde, 0xdf:
            if depth >= maxDepth { throw error("msgpack: nesting deeper than \(maxDepth) levels", at: start) }
            let n = try readMapHeader()
            for _ in 0..<n { try skip(depth: depth + 1); try skip(depth: depth + 1) }
        default: // 0xc1
            throw error("msgpack: reserved type byte 0xc1", at: start)
        }
    }
}

@usableFromInline
func hexByte(_ b: UInt8) -> String {
    let d: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
    return String([d[Int(b >> 4)], d[Int(b & 0xf)]])
}
