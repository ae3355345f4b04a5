import TestSupport
import Foundation
import Glibc
import Testing
@testable import Buffering

/// Model-style test: random enqueue / take / ack / nack / markDown / markUp / restart / crash
/// sequences, checked against a simple in-memory model of what was accepted and acknowledged.
///
/// Invariants: every delivery was accepted; nothing is delivered twice within one process
/// lifetime unless nacked; after a restart only records at or above the restart's watermark
/// (lowest unacknowledged number) may come again; and in the end every accepted, unacknowledged
/// record is delivered (graceful restarts in every mode; kill-style crashes only in `wal`).
@Suite struct BackendQueueModelTests {
    @Test(arguments: [DurabilityMode.spill, .wal, .memory])
    func randomOperationsMatchTheModel(mode: DurabilityMode) throws {
        if let only = ProcessInfo.processInfo.environment["MODEL_MODE"], only != mode.rawValue { return }
        for seed in UInt64(1)...4 {
            try run(mode: mode, seed: seed &* 7919 &+ UInt64(mode.rawValue.count))
        }
    }

    func run(mode: DurabilityMode, seed: UInt64) throws {
        let dir = makeTempDirectory("model")
        defer { removeTree(dir) }
        var c = QueueConfiguration(backend: "m", directory: dir, durability: mode)
        c.memoryBytes = mode == .memory ? 1 << 20 : 12 << 10
        c.frameBytes = 3 << 10
        c.segmentBytes = 16 << 10
        c.checkpointInterval = 0.005
        c.spillLinger = 0.01
        c.groupCommitInterval = 0.001
        c.maxUnwrittenBytes = 6 << 10
        var rng = SplitMix64(seed: seed)
        var q = try BackendQueue(configuration: c, logger: testLogger())
        var nextNumber = 0
        var outstanding = Set<Int>()          // accepted, not acknowledged
        var acked = Set<Int>()
        var ackedEpoch: [Int: Int] = [:]
        var epoch = 0
        var watermark = 0                     // lowest outstanding number at the last restart
        // Acknowledged above the watermark of a restart: may come again (documented window) and
        // count as pending for the queue until they do.
        var ghosts = Set<Int>()
        var held: [Delivery] = []             // taken by the "exporter", not yet acked/nacked
        var heldNumbers = Set<Int>()
        let ctx = "mode \(mode) seed \(seed)"

        func check(_ ds: [Delivery]) {
            for d in ds {
                guard let n = number(of: d.record) else { Issue.record("unparsable record \(ctx)"); continue }
                #expect(n < nextNumber, "delivered a record never enqueued \(ctx)")
                #expect(!heldNumbers.contains(n), "record \(n) delivered twice while in flight \(ctx)")
                if acked.contains(n) {
                    #expect(ghosts.contains(n),
                            "acknowledged record \(n) resent outside the window (watermark \(watermark)) acked in \(ackedEpoch[n] ?? -1) now \(epoch) lastCrash \(lastCrash) seq \(d.seq) \(ctx)")
                    // A resent record is pending again until it is acknowledged again.
                    acked.remove(n)
                    ghosts.remove(n)
                    outstanding.insert(n)
                }
                held.append(d)
                heldNumbers.insert(n)
            }
        }

        var lastCrash = false
        func restart(crash: Bool) throws {
            lastCrash = crash
            if crash {
                // Let the ledger catch up (the documented window is one checkpoint interval).
                #expect(waitForCheckpoint(q), "no checkpoint before the crash \(ctx)")
                q.simulateCrash()
            } else {
                q.shutdown()
            }
            held.removeAll()
            heldNumbers.removeAll()
            watermark = min(outstanding.min() ?? nextNumber, ghosts.min() ?? nextNumber)
            ghosts = ghosts.filter { $0 >= watermark }.union(acked.filter { $0 >= watermark })
            epoch += 1
            q = try BackendQueue(configuration: c, logger: testLogger())
            if ProcessInfo.processInfo.environment["MODEL_DEBUG"] != nil {
                print("\(ctx) restart epoch \(epoch) crash \(crash) model W \(watermark) queue W \(q.recoveredWatermark) segs \(segmentFiles(c.backendDirectory).map { $0.suffix(8) })")
            }
        }

        for _ in 0..<400 {
            let op = Int.random(in: 0..<100, using: &rng)
            switch op {
            case 0..<40:
                let n = nextNumber
                nextNumber += 1
                if enqueueSync(q, record(n, size: Int.random(in: 60...500, using: &rng))) == nil { outstanding.insert(n) }
            case 40..<65:
                check(q.next(maxBytes: Int.random(in: 1...4000, using: &rng)))
            case 65..<80:
                for d in held.shuffled(using: &rng).prefix(Int.random(in: 0...held.count, using: &rng)) {
                    q.ack(d)
                    let n = number(of: d.record)!
                    outstanding.remove(n)
                    acked.insert(n)
                    ackedEpoch[n] = epoch
                    held.removeAll { $0.seq == d.seq }
                    heldNumbers.remove(n)
                }
            case 80..<88:
                if let d = held.randomElement(using: &rng) {
                    q.nack(d)
                    held.removeAll { $0.seq == d.seq }
                    heldNumbers.remove(number(of: d.record)!)
                }
            case 88..<92: q.markDown()
            case 92..<96: q.markUp()
            case 96..<98: try restart(crash: false)
            default: if mode == .wal { try restart(crash: true) }
            }
            if ProcessInfo.processInfo.environment["MODEL_DEBUG"] != nil, let m = outstanding.min() {
                // Numbers and seqs differ after restarts; within epoch 0 they coincide.
                if epoch == 0 && q.lowestPendingForTesting() > UInt64(m) {
                    print("\(ctx) op \(op) queue low \(q.lowestPendingForTesting()) > outstanding min \(m)")
                }
            }
        }
        // Drain: every outstanding record must come.
        for d in held { q.nack(d) }
        held.removeAll()
        heldNumbers.removeAll()
        q.markUp()
        let deadline = now() + 10
        while !outstanding.isEmpty && now() < deadline {
            let ds = q.next(maxBytes: 1 << 16)
            if ds.isEmpty { usleep(500); continue }
            check(ds)
            for d in ds {
                q.ack(d)
                let n = number(of: d.record)!
                outstanding.remove(n)
                acked.insert(n)
                ackedEpoch[n] = epoch
            }
            held.removeAll()
            heldNumbers.removeAll()
        }
        #expect(outstanding.isEmpty, "accepted records never delivered: \(outstanding.sorted().prefix(20)) \(ctx)")
        q.shutdown()
    }
}
