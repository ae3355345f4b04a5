import Logging
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import Relay

@Suite struct MemoryTrimmerTests {
    /// Memory freed after a burst of heap allocations goes back to the system once the trimmer
    /// runs (glibc keeps it otherwise). The test counts the resident pages of the burst's own
    /// blocks with `mincore`, not the process's resident set: other suites run in parallel and
    /// allocate and free their own memory meanwhile (a clean CI run saw the process RSS grow by
    /// only 146 MiB during a 188 MiB burst).
    @Test func aBurstIsGivenBack() throws {
        var settings = MemoryTrimmer.Settings()
        settings.threshold = 32 << 20
        settings.interval = .seconds(3600)  // ticks come from the test
        let trimmer = MemoryTrimmer(settings: settings, logger: Logger(label: "test"))
        trimmer.start()  // takes the baseline
        defer { trimmer.stop() }
        // 4,000 × 48 KiB = 188 MiB from the heap (below the mmap threshold), touched, then freed
        // except the last one, which pins the top of the heap so a plain `sbrk` shrink cannot help.
        let size = 48 << 10
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<4_000 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            p.initializeMemory(as: UInt8.self, repeating: 1, count: size)
            blocks.append(p)
        }
        let freed = Array(blocks.dropLast())
        let peak = Self.residentBytes(of: freed, size: size)
        #expect(peak > 150 << 20, "the burst is resident: \(peak) bytes")
        for p in freed { p.deallocate() }
        // Freeing alone keeps the pages (this is what makes the trimmer worth having) ...
        let freedOnly = Self.residentBytes(of: freed, size: size)
        #expect(freedOnly > 150 << 20, "free() kept the pages: \(freedOnly) bytes")
        // ... the trim gives them back.
        trimmer.tick()
        let after = Self.residentBytes(of: freed, size: size)
        blocks.last!.deallocate()
        let s = trimmer.snapshot
        #expect(s.trims == 1)
        #expect(after < 32 << 20, "trimmed: \(freedOnly) → \(after) resident bytes, the trimmer saw \(s.releasedBytes) released")
    }

    /// Resident bytes of the whole pages inside the given blocks (`mincore`); a range that is no
    /// longer mapped counts as not resident.
    static func residentBytes(of blocks: [UnsafeMutableRawPointer], size: Int) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: size / page + 1)
        var total = 0
        for block in blocks {
            let start = (Int(bitPattern: block) + page - 1) / page * page
            let end = (Int(bitPattern: block) + size) / page * page
            guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { continue }
            let pages = (end - start) / page
            let ok = vector.withUnsafeMutableBufferPointer { mincore(address, end - start, $0.baseAddress) == 0 }
            guard ok else { continue }
            total += vector[0..<pages].reduce(0) { $0 + Int($1 & 1) } * page
        }
        return total
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
