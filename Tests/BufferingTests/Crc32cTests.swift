import TestSupport
import Testing
@testable import Buffering

/// CRC32C (Castagnoli) as the on-disk format defines it: known answers (RFC 3720 B.4 and the
/// common check value), agreement with a bitwise reference over many lengths and alignments, and
/// the table path (`CRC32C.software`) against whatever `crc32c` uses on this CPU — so the table
/// path is tested on SSE4.2 machines too.
@Suite struct Crc32cTests {
    static func reference(_ bytes: ArraySlice<UInt8>, seed: UInt32 = 0) -> UInt32 {
        var c = ~seed
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    func crc(_ bytes: ArraySlice<UInt8>, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { crc32c($0, seed: seed) }
    }

    func software(_ bytes: ArraySlice<UInt8>, seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { CRC32C.software($0, seed: seed) }
    }

    /// RFC 3720 appendix B.4 (iSCSI) vectors, plus "123456789" and the empty input.
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ((0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ([0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
          0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
          0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], 0xD996_3A56),
        ([], 0),
    ]

    @Test func knownAnswersOnBothPaths() {
        print("crc32c: this CPU uses \(CRC32C.usesHardware ? "the SSE4.2 instruction" : "the tables")")
        for (bytes, want) in Self.vectors {
            #expect(crc(bytes[...]) == want, "crc32c of \(bytes.count) bytes")
            #expect(software(bytes[...]) == want, "table path on \(bytes.count) bytes")
        }
    }

    @Test func tablePathMatchesTheCPUPathAndTheReference() {
        let seed = UInt64(0x5EED_C3C3_2024)
        print("crc32c random inputs: seed \(seed)")
        var rng = SplitMix64(seed: seed)
        let data = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for _ in 0..<300 {
            let start = Int.random(in: 0..<64, using: &rng)
            let end = Int.random(in: start...data.count, using: &rng)
            let slice = data[start..<end]
            let want = Self.reference(slice)
            #expect(crc(slice) == want, "seed \(seed): bytes \(start)..<\(end)")
            #expect(software(slice) == want, "seed \(seed): table path, bytes \(start)..<\(end)")
            let mid = Int.random(in: start...end, using: &rng)
            #expect(crc(data[mid..<end], seed: crc(data[start..<mid])) == want, "seed \(seed): chained at \(mid)")
            #expect(software(data[mid..<end], seed: software(data[start..<mid])) == want, "seed \(seed): table path chained at \(mid)")
        }
    }
}
