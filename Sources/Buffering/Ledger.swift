/// The read checkpoint of one backend's queue: the lowest sequence number still pending.
///
/// Format: two 32-byte slots, written alternately so a torn write leaves the other intact:
/// magic u32 "TRLG" | version u16 | reserved u16 | generation u64 | watermark u64 | reserved u32
/// | CRC32C u32 (over the 28 bytes before it). The valid slot with the higher generation wins; no
/// valid slot means watermark 0 (everything on disk is replayed: duplicates, never loss).
final class Ledger {
    static let fileName = "ledger"
    static let magic: UInt32 = 0x474C_5254 // "TRLG"
    private let file: any SpillFile
    private(set) var generation: UInt64 = 0
    private(set) var watermark: UInt64 = 0

    init(file: any SpillFile) {
        self.file = file
        var buf = [UInt8](repeating: 0, count: 64)
        let n = (try? buf.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }) ?? 0
        buf.withUnsafeBytes { b in
            for slot in 0..<2 where n >= slot * 32 + 32 {
                let s = UnsafeRawBufferPointer(rebasing: b[(slot * 32)..<(slot * 32 + 32)])
                guard s.u32(0) == Self.magic, s.u16(4) == 1,
                      crc32c(UnsafeRawBufferPointer(rebasing: s[0..<28])) == s.u32(28) else { continue }
                let gen = s.u64(8)
                if gen >= generation { generation = gen; watermark = s.u64(16) }
            }
        }
    }

    /// Writes a new watermark to the older slot and syncs it.
    func store(_ newWatermark: UInt64) throws {
        generation += 1
        var slot = [UInt8](repeating: 0, count: 32)
        slot.withUnsafeMutableBytes { s in
            s.put(Self.magic, 0)
            s.put(UInt16(1), 4)
            s.put(generation, 8)
            s.put(newWatermark, 16)
            s.put(crc32c(UnsafeRawBufferPointer(rebasing: s[0..<28])), 28)
        }
        try slot.withUnsafeBytes { try file.write($0, at: Int(generation % 2) * 32) }
        try file.sync()
        watermark = newWatermark
    }

    func close() { file.close() }
}
