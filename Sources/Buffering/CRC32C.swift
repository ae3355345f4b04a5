import Glibc
private import CShims

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the spill format and
/// the ledger. Uses the CPU's CRC32 instruction (SSE4.2, through CShims' `tr_crc32c_hw`) when the
/// CPU has it, otherwise slicing-by-8 tables built here. The tables are a `static let`: Swift
/// builds them exactly once, thread-safely, on first use. Tests run `software` next to
/// `checksum` on every machine, so the table path is checked on SSE4.2 machines too.
enum CRC32C {
    /// Whether `checksum` uses the CPU instruction.
    static let usesHardware: Bool = tr_cpu_has_crc32c() != 0

    /// The CRC of `bytes`, continuing from `seed` (the CRC of what came before; 0 to start).
    @inline(__always)
    static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        usesHardware ? UInt32(tr_crc32c_hw(UInt32(seed), bytes.baseAddress, UInt(bytes.count))) : software(bytes, seed: seed)
    }

    /// Slicing-by-8: table `t` (entries `t*256 ..< t*256+256`) advances the CRC over a byte
    /// followed by `t` zero bytes.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            var c = t[i]
            for k in 1..<8 {
                c = t[Int(c & 0xFF)] ^ (c >> 8)
                t[k * 256 + i] = c
            }
        }
        return t
    }()

    /// The table implementation (what `checksum` uses without SSE4.2).
    static func software(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        tables.withUnsafeBufferPointer { t in
            var c = ~seed
            var i = 0
            let n = bytes.count
            while i + 8 <= n {
                let w = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) ^ UInt64(c)
                c = t[7 * 256 + Int(w & 0xFF)] ^ t[6 * 256 + Int((w >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((w >> 16) & 0xFF)] ^ t[4 * 256 + Int((w >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((w >> 32) & 0xFF)] ^ t[2 * 256 + Int((w >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((w >> 48) & 0xFF)] ^ t[Int(w >> 56)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
            return ~c
        }
    }
}

/// CRC32C of `bytes` continuing from `seed` (see `CRC32C`).
@inline(__always)
func crc32c(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
    CRC32C.checksum(bytes, seed: seed)
}
