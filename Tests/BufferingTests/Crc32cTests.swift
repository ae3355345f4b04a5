import Testing
@testable import Buffering

/// CRC32C (Castagnoli) as the on-disk format defines it: known answers and agreement with a
/// bitwise reference over many lengths and alignments (whichever implementation the CPU uses).
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

    @Test func knownAnswers() {
        #expect(crc(Array("123456789".utf8)[...]) == 0xE306_9283)
        #expect(crc([UInt8](repeating: 0, count: 32)[...]) == 0x8A91_36AA)
        #expect(crc([UInt8](repeating: 0xFF, count: 32)[...]) == 0x62A8_AB43)
        #expect(crc([][...]) == 0)
    }

    @Test func matchesBitwiseReferenceAtEveryAlignmentAndChains() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for _ in 0..<300 {
            let start = Int.random(in: 0..<64, using: &rng)
            let end = Int.random(in: start...data.count, using: &rng)
            let slice = data[start..<end]
            #expect(crc(slice) == Self.reference(slice), "bytes \(start)..<\(end)")
            let mid = Int.random(in: start...end, using: &rng)
            #expect(crc(data[mid..<end], seed: crc(data[start..<mid])) == crc(slice), "chained at \(mid)")
        }
    }
}
