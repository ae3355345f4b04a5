import TestSupport
import Glibc
import Testing
@testable import Buffering

/// Recovery and fault injection: torn writes, ENOSPC, EIO, bit flips, unreadable segments.
@Suite struct BackendQueueFaultTests {
    func config(_ dir: String, _ mode: DurabilityMode) -> QueueConfiguration {
        var c = QueueConfiguration(backend: "b1", directory: dir, durability: mode)
        c.memoryBytes = 16 << 10
        c.frameBytes = 4 << 10
        c.segmentBytes = 32 << 10
        c.checkpointInterval = 0.02
        c.spillLinger = 0.02
        c.groupCommitInterval = 0.001
        c.maxUnwrittenBytes = 8 << 10
        return c
    }

    /// Writes `n` records to disk with the queue marked down, then shuts it down.
    func writeSegments(_ c: QueueConfiguration, n: Int, fs: any SpillFileSystem = PosixFileSystem()) throws {
        let q = try BackendQueue(configuration: c, fileSystem: fs, logger: testLogger())
        q.markDown()
        for i in 0..<n { #expect(enqueueSync(q, record(i, size: 120)) == nil) }
        q.shutdown()
    }

    func frames(_ path: String) throws -> [FrameInfo] {
        let f = try PosixFileSystem().open(path, create: false)
        defer { f.close() }
        return try scanSegment(f).frames
    }

    @Test func tornTailIsTruncatedAndTheRestReplayed() throws {
        let dir = makeTempDirectory("torn")
        defer { removeTree(dir) }
        let c = config(dir, .spill)
        try writeSegments(c, n: 400)
        let segs = segmentFiles(c.backendDirectory)
        let last = segs.last!
        let fr = try frames(last)
        // Cut the last frame in half: its records are lost, nothing else.
        var bytes = readFile(last)
        let cut = fr.last!.offset + fr.last!.length / 2
        bytes.removeSubrange(cut...)
        writeFile(last, bytes)
        let q = try BackendQueue(configuration: c, logger: testLogger())
        #expect(readFile(last).count == fr.last!.offset)
        let got = drain(q, count: 400, timeout: 3)
        #expect(got.map { number(of: $0.record)! } == Array(0..<(400 - fr.last!.records)))
        q.shutdown()
    }

    @Test func flippedPayloadByteCostsOneFrameAndVerifyFlagsIt() throws {
        let dir = makeTempDirectory("flip")
        defer { removeTree(dir) }
        let c = config(dir, .spill)
        try writeSegments(c, n: 300)
        let (_, clean) = try SpillInspector.verify(dir)
        #expect(clean.isEmpty)
        let seg = segmentFiles(c.backendDirectory)[0]
        let fr = try frames(seg)
        let victim = fr[1]
        var bytes = readFile(seg)
        bytes[victim.offset + SpillFormat.frameHeaderSize + victim.length / 3] ^= 0x01
        writeFile(seg, bytes)
        let (_, problems) = try SpillInspector.verify(dir)
        #expect(problems.count == 1 && problems.first?.offset == victim.offset, "\(problems)")
        let q = try BackendQueue(configuration: c, logger: testLogger())
        let got = drain(q, count: 300, timeout: 3)
        let lost = Set(Int(victim.firstSeq)...Int(victim.lastSeq))
        #expect(got.map { number(of: $0.record)! } == (0..<300).filter { !lost.contains($0) })
        let s = q.statistics()
        #expect(s.corruptFrames == 1 && s.droppedSpans[.corrupt] == victim.spans)
        q.shutdown()
    }

    @Test func flippedFrameHeaderIsSkippedByResync() throws {
        let dir = makeTempDirectory("hdr")
        defer { removeTree(dir) }
        let c = config(dir, .spill)
        try writeSegments(c, n: 300)
        let seg = segmentFiles(c.backendDirectory)[0]
        let fr = try frames(seg)
        var bytes = readFile(seg)
        bytes[fr[2].offset + 5] ^= 0x40 // the compressed length
        writeFile(seg, bytes)
        let q = try BackendQueue(configuration: c, logger: testLogger())
        let got = drain(q, count: 300, timeout: 3)
        let lost = Set(Int(fr[2].firstSeq)...Int(fr[2].lastSeq))
        #expect(got.map { number(of: $0.record)! } == (0..<300).filter { !lost.contains($0) })
        #expect(q.statistics().corruptFrames == 1)
        q.shutdown()
    }

    @Test func unreadableSegmentIsRenamedAndTheRelayStarts() throws {
        let dir = makeTempDirectory("bad")
        defer { removeTree(dir) }
        let c = config(dir, .spill)
        try writeSegments(c, n: 400)
        let segs = segmentFiles(c.backendDirectory)
        let first = try frames(segs[0])
        var bytes = readFile(segs[0])
        bytes[3] = 0 // segment magic
        writeFile(segs[0], bytes)
        writeFile(c.backendDirectory + "/00000000000099999999.seg", Array("garbage".utf8))
        let q = try BackendQueue(configuration: c, logger: testLogger())
        let skipped = first.reduce(0) { $0 + $1.records }
        let got = drain(q, count: 400, timeout: 3)
        #expect(got.map { number(of: $0.record)! } == Array(skipped..<400))
        #expect(q.statistics().corruptSegments == 2)
        let names = (try? PosixFileSystem().listDirectory(c.backendDirectory)) ?? []
        #expect(names.filter { $0.hasSuffix(".corrupt") }.count == 2)
        q.shutdown()
    }

    @Test func walDiskFullRejectsAndRecovers() throws {
        let dir = makeTempDirectory("enospc")
        defer { removeTree(dir) }
        let fs = FaultyFileSystem()
        let c = config(dir, .wal)
        let q = try BackendQueue(configuration: c, fileSystem: fs, logger: testLogger())
        for i in 0..<50 { #expect(enqueueSync(q, record(i)) == nil) }
        fs.writeError = ENOSPC
        var full = 0
        for i in 50..<60 {
            if case .full? = enqueueSync(q, record(i)) { full += 1 }
        }
        #expect(full == 10)
        fs.writeError = nil
        // After ENOSPC the queue refuses until its next checkpoint tick.
        #expect(waitForCheckpoint(q))
        for i in 60..<100 { #expect(enqueueSync(q, record(i)) == nil) }
        let got = drain(q, count: 90, timeout: 3)
        #expect(got.map { number(of: $0.record)! } == Array(0..<50) + Array(60..<100))
        #expect(q.statistics().writeErrors > 0)
        q.shutdown()
    }

    @Test func spillWriteErrorsAreCountedNeverFatal() throws {
        let dir = makeTempDirectory("eio")
        defer { removeTree(dir) }
        let fs = FaultyFileSystem()
        let c = config(dir, .spill)
        let q = try BackendQueue(configuration: c, fileSystem: fs, logger: testLogger())
        q.markDown()
        fs.writeError = EIO
        var spans = 0
        for i in 0..<100 {
            let r = record(i, size: 200)
            if enqueueSync(q, r) == nil { spans += r.spanCount }
        }
        #expect(eventually { q.statistics().droppedSpans[.ioError, default: 0] > 0 })
        fs.writeError = nil
        q.markUp()
        let got = drain(q, count: 100, timeout: 2)
        // Each accepted span is delivered or counted as dropped.
        #expect(eventually { got.reduce(0) { $0 + $1.record.spanCount } + q.statistics().droppedSpans[.ioError, default: 0] == spans })
        q.shutdown()
    }

    @Test func readErrorsAndBitFlipsOnReadSkipFramesWithoutLooping() throws {
        let dir = makeTempDirectory("rd")
        defer { removeTree(dir) }
        let c = config(dir, .spill)
        try writeSegments(c, n: 300)
        let seg = segmentFiles(c.backendDirectory)[0]
        let fr = try frames(seg)
        let fs = FaultyFileSystem()
        fs.flipReadOffset = fr[0].offset + SpillFormat.frameHeaderSize + 10
        let q = try BackendQueue(configuration: c, fileSystem: fs, logger: testLogger())
        let got = drain(q, count: 300, timeout: 3)
        #expect(got.count == 300 - fr[0].records)
        #expect(q.statistics().corruptFrames == 1)
        q.shutdown()
        // EIO on every segment read: everything is skipped and counted, the queue keeps working.
        let fs2 = FaultyFileSystem()
        try writeSegments(c, n: 100)
        fs2.readError = EIO
        let q2 = try BackendQueue(configuration: c, fileSystem: fs2, logger: testLogger())
        #expect(drain(q2, count: 1, timeout: 0.5).isEmpty)
        #expect(eventually { q2.statistics().records == 0 })
        #expect(q2.statistics().corruptSegments + q2.statistics().corruptFrames > 0)
        enqueueSync(q2, record(7))
        #expect(drain(q2, count: 1).map { number(of: $0.record) } == [7])
        q2.shutdown()
    }

    /// A torn write in wal mode, then a crash: every acknowledged record survives.
    @Test func walTornWriteThenCrashKeepsAcknowledged() throws {
        let dir = makeTempDirectory("walc")
        defer { removeTree(dir) }
        let fs = FaultyFileSystem()
        let c = config(dir, .wal)
        let q = try BackendQueue(configuration: c, fileSystem: fs, logger: testLogger())
        fs.tornAfterBytes = 20_000
        var accepted: [Int] = []
        for i in 0..<400 where enqueueSync(q, record(i, size: 100)) == nil { accepted.append(i) }
        #expect(accepted.count > 10 && accepted.count < 400)
        q.simulateCrash()
        let q2 = try BackendQueue(configuration: c, logger: testLogger())
        let got = drain(q2, count: accepted.count, timeout: 3)
        #expect(got.map { number(of: $0.record)! } == accepted)
        q2.shutdown()
    }
}
