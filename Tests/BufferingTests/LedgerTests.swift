import Testing
@testable import Buffering

@Suite struct LedgerTests {
    @Test func storesAndSurvivesATornSlot() throws {
        let dir = makeTempDirectory("ledger")
        defer { removeTree(dir) }
        let path = dir + "/ledger"
        let fs = PosixFileSystem()
        let l = Ledger(file: try fs.open(path, create: true))
        #expect(l.watermark == 0)
        try l.store(10)
        try l.store(20)
        l.close()
        #expect(Ledger(file: try fs.open(path, create: false)).watermark == 20)
        // Damage the newest slot (generation 2 lives in slot 0): the older one wins.
        var bytes = readFile(path)
        bytes[16] ^= 1
        writeFile(path, bytes)
        #expect(Ledger(file: try fs.open(path, create: false)).watermark == 10)
        // Both damaged: start from 0 (replay everything, never skip).
        bytes[32 + 16] ^= 1
        writeFile(path, bytes)
        #expect(Ledger(file: try fs.open(path, create: false)).watermark == 0)
    }
}
