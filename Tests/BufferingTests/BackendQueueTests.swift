import TestSupport
import Glibc
import Testing
@testable import Buffering

@Suite struct BackendQueueTests {
    func config(_ dir: String, _ mode: DurabilityMode = .spill) -> QueueConfiguration {
        var c = QueueConfiguration(backend: "b1", directory: dir, durability: mode)
        c.memoryBytes = 64 << 10
        c.frameBytes = 8 << 10
        c.segmentBytes = 64 << 10
        c.checkpointInterval = 0.02
        c.spillLinger = 0.05
        c.groupCommitInterval = 0.002
        c.maxUnwrittenBytes = 16 << 10
        return c
    }

    @Test func memoryTierDeliversInOrderAndNackComesBackFirst() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let q = try BackendQueue(configuration: config(dir), logger: testLogger())
        for i in 0..<10 { #expect(enqueueSync(q, record(i)) == nil) }
        let first = q.next(maxBytes: 1)
        #expect(first.count == 1 && number(of: first[0].record) == 0)
        let more = q.next(maxBytes: 100)
        #expect(more.map { number(of: $0.record) } == [1, 2])
        q.nack(more[1])
        q.nack(first[0])
        q.ack(more[0])
        let again = q.next(maxBytes: 1 << 20)
        #expect(again.map { number(of: $0.record)! } == [0, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(again[0].attempt == 1 && again[2].attempt == 0)
        again.forEach(q.ack)
        let s = q.statistics()
        #expect(s.ackedRecords == 10 && s.memoryBytes == 0 && s.records == 0 && s.enqueuedRecords == 10)
        #expect(s.enqueuedSpans == (0..<10).reduce(0) { $0 + $1 % 5 + 1 })
        q.shutdown()
        #expect(enqueueSync(q, record(11)) == .shutdown)
    }

    @Test func spillsUnderPressureAndReplaysInOrder() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let q = try BackendQueue(configuration: config(dir), logger: testLogger())
        let n = 3000 // ~600 KB of records against a 64 KB memory tier
        for i in 0..<n { #expect(enqueueSync(q, record(i, size: 200)) == nil) }
        #expect(eventually { q.statistics().diskBytes > 0 })
        let s = q.statistics()
        #expect(s.memoryBytes <= 64 << 10 + 16 << 10 + 1024, "memory tier bounded while spilling: \(s.memoryBytes)")
        // The oldest unsent spill segment ages (the metrics' oldest-spilled age).
        #expect(eventually { q.statistics().oldestSpilledAgeSeconds >= 0.05 })
        let got = drain(q, count: n)
        #expect(got.map { number(of: $0.record)! } == Array(0..<n))
        #expect(got.map(\.seq) == (0..<n).map(UInt64.init))
        // Acknowledged segments are deleted.
        #expect(eventually { q.statistics().segments == 0 }, "\(q.statistics())")
        #expect(q.statistics().records == 0)
        #expect(q.statistics().oldestSpilledAgeSeconds == 0)
        q.shutdown()
    }

    /// A record read back from disk and nacked comes back equal, with storage of its own (it must
    /// not pin its frame buffer while it waits), before anything newer.
    @Test func nackedDiskRecordComesBackCompacted() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let q = try BackendQueue(configuration: config(dir), logger: testLogger())
        q.markDown()
        for i in 0..<100 { #expect(enqueueSync(q, record(i, size: 150)) == nil) }
        #expect(eventually { q.statistics().diskBytes > 0 })
        q.markUp()
        var got: [Delivery] = []
        let deadline = now() + 10
        while got.count < 10 && now() < deadline {
            let d = q.next(maxBytes: 1)
            if d.isEmpty { usleep(500) } else { got += d }
        }
        #expect(got.map { number(of: $0.record)! } == Array(0..<10))
        #expect(got[3].record.bytes.startIndex > 0, "read back from a frame: a slice of its buffer")
        q.nack(got[3])
        for (i, d) in got.enumerated() where i != 3 { q.ack(d) }
        let again = drain(q, count: 91)
        #expect(again.map { number(of: $0.record)! } == [3] + Array(10..<100))
        #expect(again.first?.attempt == 1)
        #expect(again.first?.record == record(3, size: 150))
        #expect(again.first?.record.bytes.startIndex == 0 && again.first?.record.metadata.startIndex == 0)
        q.shutdown()
    }

    @Test func markDownSendsToDiskAndMarkUpReplays() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let q = try BackendQueue(configuration: config(dir), logger: testLogger())
        for i in 0..<5 { enqueueSync(q, record(i)) }
        q.markDown()
        for i in 5..<200 { enqueueSync(q, record(i, size: 100)) }
        #expect(eventually { q.statistics().diskBytes > 0 })
        q.markUp()
        let got = drain(q, count: 200)
        #expect(got.map { number(of: $0.record)! } == Array(0..<200))
        // After the episode, new records go to memory again.
        #expect(eventually { enqueueSync(q, record(200)) == nil && q.statistics().memoryBytes > 0 })
        q.shutdown()
    }

    @Test func restartReplaysUnackedOnlyAndShutdownSpillsMemory() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        for mode in [DurabilityMode.memory, .spill, .wal] {
            var c = config(dir + "/" + mode.rawValue, mode)
            if mode == .memory { c.memoryBytes = 1 << 20 }
            do {
                let q = try BackendQueue(configuration: c, logger: testLogger())
                for i in 0..<1000 { #expect(enqueueSync(q, record(i, size: 150)) == nil, "\(mode)") }
                let got = drain(q, count: 300)
                #expect(got.count == 300)
                let inflight = q.next(maxBytes: 1) // in flight at shutdown: must come back
                #expect(inflight.count == 1)
                // Let the ledger catch up with the acks.
                #expect(waitForCheckpoint(q), "\(mode)")
                q.shutdown()
            }
            let q2 = try BackendQueue(configuration: c, logger: testLogger())
            let got = drain(q2, count: 700, timeout: 5)
            #expect(got.map { number(of: $0.record)! } == Array(300..<1000), "\(mode)")
            #expect(drain(q2, count: 1, timeout: 0.2).isEmpty, "\(mode): nothing resent")
            // New records continue after the recovered ones.
            enqueueSync(q2, record(5000))
            let next = drain(q2, count: 1)
            #expect(next.first.map { number(of: $0.record) } == 5000)
            #expect((next.first?.seq ?? 0) > (got.last?.seq ?? .max))
            q2.shutdown()
        }
    }

    @Test func rejectWhenFullGivesRetryAfter() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        var c = config(dir)
        c.maxDiskBytes = 32 << 10
        c.whenFull = .reject
        let q = try BackendQueue(configuration: c, logger: testLogger())
        q.markDown()
        var rejected = 0
        for i in 0..<2000 {
            if case .full(let after)? = enqueueSync(q, record(i, size: 300)) {
                rejected += 1
                #expect((1...60).contains(after))
            }
        }
        #expect(rejected > 0)
        #expect(q.statistics().rejectedRecords == rejected)
        #expect(q.statistics().diskBytes <= 32 << 10 + 16 << 10)
        q.shutdown()
    }

    @Test func memoryModeRejectsOrDropsOldestWhenFull() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        var c = config(dir, .memory)
        c.memoryBytes = 4096
        let q = try BackendQueue(configuration: c, logger: testLogger())
        var ok = 0
        for i in 0..<100 { if enqueueSync(q, record(i, size: 100)) == nil { ok += 1 } }
        #expect(ok < 100 && ok > 10)
        q.shutdown()
        c.whenFull = .dropOldest
        c.directory = dir + "/drop"
        let q2 = try BackendQueue(configuration: c, logger: testLogger())
        for i in 0..<100 { #expect(enqueueSync(q2, record(i, size: 100)) == nil) }
        let got = drain(q2, count: 100, timeout: 0.5)
        #expect(got.last.map { number(of: $0.record) } == 99)
        let dropped = q2.statistics().droppedSpans[.memoryFull] ?? 0
        let expected = (0..<(100 - got.count)).reduce(0) { $0 + $1 % 5 + 1 }
        #expect(dropped == expected && dropped > 0)
        q2.shutdown()
    }

    @Test func dropOldestDeletesSegmentsAndCountsSpans() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        var c = config(dir)
        c.maxDiskBytes = 48 << 10
        c.segmentBytes = 8 << 10
        c.whenFull = .dropOldest
        let q = try BackendQueue(configuration: c, logger: testLogger())
        q.markDown()
        // Random-ish bytes compress badly, so the cap is reached quickly.
        var rng = SplitMix64(seed: 0xD0_0D, printing: "dropOldest random bytes")
        var spans = 0
        for i in 0..<600 {
            var r = record(i, size: 100)
            r.bytes += (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
            spans += r.spanCount
            #expect(enqueueSync(q, r) == nil)
        }
        #expect(eventually { q.statistics().droppedSpans[.diskFull, default: 0] > 0 })
        q.markUp()
        let got = drain(q, count: 600, timeout: 3)
        let s = q.statistics()
        #expect(s.diskBytes <= 48 << 10 + 8 << 10)
        // Every span is either delivered or counted as dropped; the delivered ones are in order.
        #expect(got.reduce(0) { $0 + $1.record.spanCount } + s.droppedSpans[.diskFull, default: 0] == spans)
        let numbers = got.map { number(of: $0.record)! }
        #expect(numbers == numbers.sorted())
        q.shutdown()
    }

    @Test func sharedDiskBudgetCapsBothBackends() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let budget = DiskBudget(limit: 24 << 10)
        var a = config(dir), b = config(dir)
        a.backend = "a"
        b.backend = "b"
        a.totalDiskBudget = budget
        b.totalDiskBudget = budget
        let qa = try BackendQueue(configuration: a, logger: testLogger())
        let qb = try BackendQueue(configuration: b, logger: testLogger())
        qa.markDown()
        qb.markDown()
        var rng = SplitMix64(seed: 0xB0D6E7, printing: "shared budget random bytes")
        var rejected = 0
        for i in 0..<300 {
            for q in [qa, qb] {
                var r = record(i)
                r.bytes += (0..<200).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if case .full? = enqueueSync(q, r) { rejected += 1 }
            }
        }
        #expect(rejected > 0)
        #expect(qa.statistics().rejectedRecords > 0 && qb.statistics().rejectedRecords > 0)
        #expect(budget.usedBytes <= (24 << 10) + 2 * (16 << 10))
        #expect(budget.usedBytes == qa.statistics().diskBytes + qb.statistics().diskBytes)
        qa.shutdown()
        qb.shutdown()
    }

    @Test func maxAgeDropsOldSegmentsAndCounts() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        var c = config(dir)
        c.maxAgeSeconds = 0.1
        let q = try BackendQueue(configuration: c, logger: testLogger())
        q.markDown()
        var spans = 0
        for i in 0..<500 {
            spans += record(i, size: 100).spanCount
            enqueueSync(q, record(i, size: 100))
        }
        #expect(eventually { q.statistics().droppedSpans[.maxAge, default: 0] > 0 && q.statistics().segments == 0 })
        q.markUp()
        let got = drain(q, count: 500, timeout: 1)
        #expect(got.reduce(0) { $0 + $1.record.spanCount } + q.statistics().droppedSpans[.maxAge, default: 0] == spans)
        q.shutdown()
    }

    @Test func asyncNextIsCalledWhenRecordsArrive() throws {
        let dir = makeTempDirectory("q")
        defer { removeTree(dir) }
        let q = try BackendQueue(configuration: config(dir), logger: testLogger())
        let box = DeliveryBox()
        q.next(maxBytes: 1 << 20, on: .global()) { box.add($0) }
        // Nothing was taken for the handler (a handler is only scheduled with records in hand).
        #expect(q.statistics().inFlight == 0)
        #expect(box.all.isEmpty)
        enqueueSync(q, record(1))
        #expect(eventually { box.all.count == 1 })
        // Also from disk.
        q.markDown()
        for i in 2..<50 { enqueueSync(q, record(i)) }
        box.all.forEach(q.ack)
        q.markUp()
        var seen: [Int] = []
        while seen.count < 48 {
            let b = DeliveryBox()
            q.next(maxBytes: 1 << 20, on: .global()) { b.add($0) }
            #expect(eventually(5) { !b.all.isEmpty })
            if b.all.isEmpty { break }
            b.all.forEach(q.ack)
            seen += b.all.map { number(of: $0.record)! }
        }
        #expect(seen == Array(2..<50))
        q.shutdown()
    }

    /// `shutdown` waits for the I/O queue, so calling it there (e.g. from a spilled batch's
    /// enqueue completion) could only hang: debug builds stop the process at once instead.
    @Test func shutdownOnTheQueuesOwnIOQueueStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let dir = makeTempDirectory("selfshutdown")
            let q = try! BackendQueue(configuration: QueueConfiguration(backend: "b", directory: dir), logger: testLogger())
            q.io.sync { q.shutdown() }
        }
    }
}

final class DeliveryBox: @unchecked Sendable {
    private let lock = NSLockish()
    private var items: [Delivery] = []
    func add(_ d: [Delivery]) { lock.run { items += d } }
    var all: [Delivery] { lock.run { items } }
}
