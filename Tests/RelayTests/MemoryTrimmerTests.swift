import Logging
import Testing
@testable import Relay

@Suite struct MemoryTrimmerTests {
    /// Memory freed after a burst of heap allocations goes back to the system: the resident set
    /// falls once the trimmer runs (glibc keeps it otherwise).
    @Test func aBurstIsGivenBack() throws {
        var settings = MemoryTrimmer.Settings()
        settings.threshold = 32 << 20
        settings.interval = .seconds(3600)  // ticks come from the test
        let trimmer = MemoryTrimmer(settings: settings, logger: Logger(label: "test"))
        trimmer.start()  // takes the baseline
        defer { trimmer.stop() }
        let before = MemoryTrimmer.residentBytes()
        #expect(before > 0)
        // 4,000 × 48 KiB = 188 MiB from the heap (below the mmap threshold), touched, then freed
        // except the last one, which pins the top of the heap so a plain `sbrk` shrink cannot help.
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<4_000 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 48 << 10, alignment: 16)
            p.initializeMemory(as: UInt8.self, repeating: 1, count: 48 << 10)
            blocks.append(p)
        }
        let peak = MemoryTrimmer.residentBytes()
        #expect(peak - before > 150 << 20, "the burst is resident: \(before) → \(peak)")
        for p in blocks.dropLast() { p.deallocate() }
        trimmer.tick()
        let after = MemoryTrimmer.residentBytes()
        blocks.last!.deallocate()
        let s = trimmer.snapshot
        #expect(s.trims == 1)
        #expect(peak - after > 100 << 20, "trimmed: peak \(peak) → \(after), released \(s.releasedBytes)")
    }

    /// Below the threshold nothing is trimmed.
    @Test func smallGrowthIsLeftAlone() {
        var settings = MemoryTrimmer.Settings()
        settings.threshold = 1 << 40
        let trimmer = MemoryTrimmer(settings: settings, logger: Logger(label: "test"))
        trimmer.start()
        defer { trimmer.stop() }
        trimmer.tick()
        trimmer.tick()
        #expect(trimmer.snapshot.trims == 0)
        #expect(trimmer.snapshot.lastResidentBytes > 0)
    }
}
