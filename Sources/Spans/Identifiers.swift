/// A 128-bit trace id. Zipkin and Datadog both allow 64-bit ids; those have `high == 0`.
public struct TraceID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    @inlinable public init(high: UInt64 = 0, low: UInt64) {
        self.high = high
        self.low = low
    }

    @inlinable public var isZero: Bool { high == 0 && low == 0 }
    @inlinable public var is128Bit: Bool { high != 0 }

    /// Lower-case hex, 16 digits for 64-bit ids and 32 for 128-bit ones (Zipkin's rule).
    public var description: String { is128Bit ? hex16(high) + hex16(low) : hex16(low) }

    /// Parses 1...32 hex digits (either case), left-padding short ids. Returns nil for other input.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard let id = utf8.withUnsafeBufferPointer({ TraceID(hexBytes: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = id
    }

    public init?(hexBytes b: UnsafeRawBufferPointer) {
        guard b.count >= 1, b.count <= 32 else { return nil }
        if b.count <= 16 {
            guard let lo = parseHex64(b) else { return nil }
            self.init(high: 0, low: lo)
        } else {
            let split = b.count - 16
            guard let hi = parseHex64(UnsafeRawBufferPointer(rebasing: b[0..<split])),
                  let lo = parseHex64(UnsafeRawBufferPointer(rebasing: b[split...])) else { return nil }
            self.init(high: hi, low: lo)
        }
    }

    public static func < (a: TraceID, b: TraceID) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

/// Parses 1...16 hex digits into a UInt64; nil on any other byte or length.
@inlinable @inline(__always)
public func parseHex64(_ b: UnsafeRawBufferPointer) -> UInt64? {
    guard b.count >= 1, b.count <= 16 else { return nil }
    var v: UInt64 = 0
    for c in b {
        let d: UInt8
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
        v = (v << 4) | UInt64(d)
    }
    return v
}

/// Parses an id given as text (1...16 hex digits). Convenience for tests and config.
public func parseHex64(_ s: some StringProtocol) -> UInt64? {
    Array(s.utf8).withUnsafeBytes { parseHex64($0) }
}

/// Lower-case, zero-padded 16-digit hex.
public func hex16(_ v: UInt64) -> String {
    String(unsafeUninitializedCapacity: 16) { buf in
        writeHex16(v, into: UnsafeMutableRawBufferPointer(buf))
        return 16
    }
}

/// Writes `v` as 16 lower-case hex digits into `out` (which must hold 16 bytes).
@inlinable
public func writeHex16(_ v: UInt64, into out: UnsafeMutableRawBufferPointer) {
    let digits: StaticString = "0123456789abcdef"
    digits.withUTF8Buffer { d in
        for i in 0..<16 {
            out[i] = d[Int((v >> UInt64(60 - 4 * i)) & 0xF)]
        }
    }
}
