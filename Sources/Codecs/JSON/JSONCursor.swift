/// A bare position over JSON bytes, for decoders' fast paths.
///
/// It tests eight or sixteen input bytes at once, with integer operations on a `UInt64`
/// (SWAR) or lane-wise on a `SIMD16<UInt8>`. It knows no grammar and throws nothing: each
/// method handles one simple, common shape and reports anything else (nil, or an index the
/// caller checks), and the caller then hands over to `JSONReader`'s checked methods for the
/// exact error. Copy it out of a reader into a local (`JSONCursor(reader)`), so the
/// optimiser keeps it in registers, and store `i` back into `reader.position` when handing
/// over. Like the reader, it must not outlive the input's `withUnsafeBytes`.
struct JSONCursor {
    let base: UnsafePointer<UInt8>
    let count: Int
    /// Offset of the next byte to look at.
    var i: Int

    @inline(__always) init(_ reader: JSONReader) {
        base = reader.base
        count = reader.count
        i = reader.position
    }

    static let lowBits: UInt64 = 0x0101_0101_0101_0101
    static let highBits: UInt64 = 0x8080_8080_8080_8080

    /// The byte at `k`, or 0 at or past the end (0 is never a structural byte, digit or letter).
    @inline(__always) func byte(_ k: Int) -> UInt8 { k < count ? base[k] : 0 }

    /// The byte at `i`, or 0 at the end.
    @inline(__always) var current: UInt8 { byte(i) }

    /// Eight bytes from offset `k`, the byte at `k` lowest; bytes at or past the end read as 0.
    @inline(__always) func word(_ k: Int) -> UInt64 {
        if k &+ 8 <= count { return UnsafeRawPointer(base + k).loadUnaligned(as: UInt64.self).littleEndian }
        return tailWord(k)
    }

    @inline(never) func tailWord(_ k: Int) -> UInt64 {
        var w: UInt64 = 0
        var n = 0
        while n < 8 && k + n < count {
            w |= UInt64(base[k + n]) << UInt64(8 * n)
            n += 1
        }
        return w
    }

    /// Skips JSON whitespace (space, tab, CR, LF), as `JSONReader.skipWhitespace` does.
    @inline(__always) mutating func skipWhitespace() {
        while i < count {
            let b = base[i]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            i &+= 1
        }
    }

    /// Consumes `byte` (after whitespace) and any whitespace after it; false if it is not next.
    @inline(__always) mutating func consume(_ byte: UInt8) -> Bool {
        if current != byte {
            skipWhitespace()
            guard current == byte else { return false }
        }
        i &+= 1
        if current <= 0x20 { skipWhitespace() }
        return true
    }

    /// True when `null` starts at `i` (exactly what `JSONReader.readNull` accepts there).
    @inline(__always) func atNull() -> Bool {
        word(i) & 0xFFFF_FFFF == 0x6C6C_756E // "null"
    }

    // MARK: Strings

    /// The offset of the first '"', '\\' or control byte at or after `k` (`count` when
    /// there is none). Sixteen bytes a step, lane-wise: the stdlib's SIMD arithmetic
    /// compiles to SSE2/NEON, while its comparison operators do not vectorise. Not
    /// inlined, so the loop keeps its constants in vector registers.
    @inline(never) func stringStop(_ k: Int) -> Int {
        var p = base + k
        let end = base + count
        while end - p >= 16 {
            let n = JSONCursor.stringStop16(p)
            if n < 16 { return p - base + n }
            p += 16
        }
        while p < end {
            let b = p.pointee
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { return p - base }
            p += 1
        }
        return count
    }

    /// The index of the first '"', '\\' or control byte among the 16 at `p`; 16 if none.
    @inline(__always) static func stringStop16(_ p: UnsafePointer<UInt8>) -> Int {
        let v = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<UInt8>.self)
        let q = v ^ SIMD16(repeating: 0x22), s = v ^ SIMD16(repeating: 0x5C)
        // Per byte, the high bit of x &- 1 is set for x == 0 (x < 0x80); of v &- 0x20 for v < 0x20.
        let one = SIMD16<UInt8>(repeating: 1)
        let hits = ((q &- one) | (s &- one) | (v &- SIMD16(repeating: 0x20))) & ~v & SIMD16(repeating: 0x80)
        let halves = unsafeBitCast(hits, to: SIMD2<UInt64>.self)
        let lo = UInt64(littleEndian: halves[0]), hi = UInt64(littleEndian: halves[1])
        let bit = lo == 0 ? 64 &+ hi.trailingZeroBitCount : lo.trailingZeroBitCount
        return bit &>> 3
    }

    /// When a plain string (no escape, no control character) opens at `i`: its contents'
    /// range, with `i` moved past the closing quote. Nil otherwise, `i` unchanged.
    @inline(__always) mutating func plainString() -> Range<Int>? {
        let start = i &+ 1
        // Most strings end within 16 bytes: check those in line, call out for the rest.
        let end: Int
        if start &+ 16 <= count {
            let n = JSONCursor.stringStop16(base + start)
            end = n < 16 ? start &+ n : stringStop(start &+ 16)
        } else {
            end = stringStop(start)
        }
        guard end < count, base[end] == UInt8(ascii: "\"") else { return nil }
        i = end &+ 1
        return start..<end
    }

    // MARK: Numbers

    /// How many of the low bytes of `w` are ASCII digits, before the first other byte (0…8).
    @inline(__always) static func digitRun(_ w: UInt64) -> Int {
        let t = w & 0x7F7F_7F7F_7F7F_7F7F // no carries between bytes below
        let digit = (t &+ 0x5050_5050_5050_5050) & ~(t &+ 0x4646_4646_4646_4646) & ~w & highBits // ≥ '0', < ':'
        return (~digit & highBits).trailingZeroBitCount &>> 3
    }

    /// The value of eight ASCII digits (lowest byte most significant; zero bytes count as
    /// leading zeros).
    @inline(__always) static func eightDigits(_ w: UInt64) -> UInt64 {
        var v = w & 0x0F0F_0F0F_0F0F_0F0F
        v = (v &* 2561) &>> 8
        v = ((v & 0x00FF_00FF_00FF_00FF) &* 6_553_601) &>> 16
        return ((v & 0x0000_FFFF_0000_FFFF) &* 42_949_672_960_001) &>> 32
    }

    @inline(__always) static func power10(_ k: Int) -> UInt64 {
        switch k {
        case 1: 10
        case 2: 100
        case 3: 1000
        case 4: 10_000
        case 5: 100_000
        case 6: 1_000_000
        case 7: 10_000_000
        default: 100_000_000
        }
    }

    /// Reads an integer in its plain form — 1 to 18 digits, no sign, no leading zero, not
    /// followed by '.', 'e' or 'E' — and moves past it. Otherwise nil, `i` unchanged
    /// (`JSONReader.readNumber` handles the whole grammar).
    @inline(__always) mutating func plainInteger() -> UInt64? {
        var k = i
        var v: UInt64 = 0
        while true {
            let w = word(k)
            let n = JSONCursor.digitRun(w)
            if n == 0 { break }
            v = v &* JSONCursor.power10(n) &+ JSONCursor.eightDigits(w &<< UInt64(64 &- 8 &* n))
            k &+= n
            if n < 8 || k &- i > 18 { break }
        }
        let digits = k &- i
        guard digits >= 1, digits <= 18, digits == 1 || base[i] != UInt8(ascii: "0") else { return nil }
        let next = byte(k)
        guard next != UInt8(ascii: "."), next | 0x20 != UInt8(ascii: "e") else { return nil }
        i = k
        return v
    }

    // MARK: Hex

    /// The value of eight lower-case hex digits (lowest byte most significant), nil when
    /// any byte is something else.
    @inline(__always) static func lowerHex8(_ w: UInt64) -> UInt64? {
        let hb = highBits
        guard w & hb == 0 else { return nil } // below, no carries between bytes
        let digit = (w &+ 0x5050_5050_5050_5050) & ~(w &+ 0x4646_4646_4646_4646)   // '0'…'9'
        let letter = (w &+ 0x1F1F_1F1F_1F1F_1F1F) & ~(w &+ 0x1919_1919_1919_1919)  // 'a'…'f'
        guard (digit | letter) & hb == hb else { return nil }
        // Nibble values: '0'…'9' → 0…9, 'a'…'f' → 10…15 (bit 6 marks the letters).
        let n = (w & 0x0F0F_0F0F_0F0F_0F0F) &+ ((w &>> 6) & lowBits) &* 9
        // Pack the eight nibbles: pairs into bytes, then bytes into a big-endian 32-bit value.
        var t = ((n & 0x000F_000F_000F_000F) &<< 4) | ((n & 0x0F00_0F00_0F00_0F00) &>> 8)
        t = (t & 0x0000_00FF_0000_00FF) | ((t & 0x00FF_0000_00FF_0000) &>> 8)
        t = (t & 0xFFFF) | ((t &>> 16) & 0xFFFF_0000)
        return UInt64(UInt32(truncatingIfNeeded: t).byteSwapped)
    }

    /// Sixteen lower-case hex digits starting at `k`, nil when any byte is something else.
    @inline(__always) func lowerHex16(_ k: Int) -> UInt64? {
        guard let hi = JSONCursor.lowerHex8(word(k)), let lo = JSONCursor.lowerHex8(word(k &+ 8)) else { return nil }
        return hi &<< 32 | lo
    }
}
