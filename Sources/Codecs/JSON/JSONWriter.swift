import Spans

/// Small helpers that append JSON text to a byte array, shared by the JSON encoders.
/// They never allocate beyond the growth of `out`.
public enum JSONWriter {
    /// Appends an ASCII literal (`{"traceId":`, `,`, …) unchanged.
    @inlinable public static func raw(_ literal: StaticString, to out: inout [UInt8]) {
        literal.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// Appends `bytes` as a quoted JSON string, escaping `"`, `\` and control characters.
    /// Other bytes (including UTF-8 ≥ 0x80) are copied as they are.
    public static func string(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most text needs no escaping: find the first byte that does, 8 bytes at a time.
        var clean = 0
        if let base = bytes.baseAddress {
            let lo: UInt64 = 0x0101_0101_0101_0101, hi: UInt64 = 0x8080_8080_8080_8080
            while clean + 8 <= bytes.count {
                let w = (base + clean).loadUnaligned(as: UInt64.self).littleEndian
                let q = w ^ (lo &* 0x22), s = w ^ (lo &* 0x5C)
                let hits = (((q &- lo) & ~q) | ((s &- lo) & ~s) | (w &- (lo &* 0x20))) & ~w & hi
                if hits != 0 { clean += hits.trailingZeroBitCount >> 3; break }
                clean += 8
            }
        }
        if clean >= bytes.count {
            out.appendBytes(bytes)
            out.append(UInt8(ascii: "\""))
            return
        }
        var runStart = 0
        for i in clean..<bytes.count {
            let c = bytes[i]
            if c >= 0x20 && c != UInt8(ascii: "\"") && c != UInt8(ascii: "\\") { continue }
            if i > runStart { out.appendBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart..<i])) }
            runStart = i + 1
            out.append(UInt8(ascii: "\\"))
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(c)
            case 0x0A: out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "t"))
            case 0x08: out.append(UInt8(ascii: "b"))
            case 0x0C: out.append(UInt8(ascii: "f"))
            default:
                let hex: StaticString = "0123456789abcdef"
                out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30,
                                        hex.utf8Start[Int(c >> 4)], hex.utf8Start[Int(c & 0xF)]])
            }
        }
        if bytes.count > runStart { out.appendBytes(UnsafeRawBufferPointer(rebasing: bytes[runStart...])) }
        out.append(UInt8(ascii: "\""))
    }

    /// Appends batch text as a quoted JSON string.
    @inlinable public static func string(_ s: Str, of batch: SpanBatch, to out: inout [UInt8]) {
        batch.withBytes(s) { string($0, to: &out) }
    }

    /// Appends a decimal integer.
    public static func int(_ v: Int64, to out: inout [UInt8]) {
        if v == 0 { out.append(UInt8(ascii: "0")); return }
        var m = v.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var i = 20
            while m > 0 { i -= 1; buf[i] = UInt8(truncatingIfNeeded: m % 10) + 48; m /= 10 }
            if v < 0 { out.append(UInt8(ascii: "-")) }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[i..<20]))
        }
    }

    /// Appends `"` + 16 lower-case hex digits + `"`.
    public static func quotedHex16(_ v: UInt64, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        hex16(v, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// Appends 16 lower-case hex digits.
    public static func hex16(_ v: UInt64, to out: inout [UInt8]) {
        var buf: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &buf) { b in
            writeHex16(v, into: b)
            out.appendBytes(UnsafeRawBufferPointer(b))
        }
    }
}
