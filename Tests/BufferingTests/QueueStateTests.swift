import Dispatch
import Testing
@testable import Buffering

/// The queue's locked state as a value: each mutation's result and the actions it asks for,
/// without files, queues or threads.
@Suite struct QueueStateTests {
    func state(_ mode: DurabilityMode, _ edit: (inout QueueConfiguration) -> Void = { _ in }) -> QueueState {
        var c = QueueConfiguration(backend: "b", directory: "/nonexistent", durability: mode)
        c.memoryBytes = 1000
        c.frameBytes = 300
        c.maxUnwrittenBytes = 500
        edit(&c)
        return QueueState(configuration: c, recovered: RecoveredSegments())
    }

    func rec(_ n: Int) -> Record { Record(bytes: [UInt8](repeating: UInt8(n & 0xFF), count: 100), spanCount: 2) }
    let ignore: EnqueueCompletion = { _ in }

    func accepted(_ r: Result<Void, QueueError>?) -> Bool { if case .success? = r { return true }; return false }
    func refusal(_ r: Result<Void, QueueError>?) -> QueueError? { if case .failure(let e)? = r { return e }; return nil }

    @Test func memoryModeRefusesPastTheCapOrDropsOldest() {
        var s = state(.memory)
        for i in 0..<10 { #expect(accepted(s.enqueue(rec(i), completion: ignore).0)) }
        let (refused, actions) = s.enqueue(rec(10), completion: ignore)
        #expect(refusal(refused) == .full(retryAfter: 30))
        #expect(actions.writeAfter == nil && actions.wake == nil && !actions.read)
        #expect(s.stats.rejectedRecords == 1)

        var d = state(.memory) { $0.whenFull = .dropOldest }
        for i in 0..<11 { #expect(accepted(d.enqueue(rec(i), completion: ignore).0)) }
        #expect(d.stats.droppedSpans[.memoryFull] == 2)
        #expect(d.take(maxBytes: 1).first?.seq == 1)
    }

    @Test func spillWhileDownQueuesWritesAndAsksForOneWhenAFrameIsFull() {
        var s = state(.spill)
        s.markedDown = true
        let first = s.enqueue(rec(0), completion: ignore)
        #expect(accepted(first.0) && first.1.writeAfter == nil)
        #expect(s.spilling && s.readFromSeq == 0 && s.pending.count == 1)
        _ = s.enqueue(rec(1), completion: ignore)
        let third = s.enqueue(rec(2), completion: ignore)
        #expect(third.1.writeAfter == 0, "300 bytes pending = one frame: write now")
        #expect(s.enqueue(rec(3), completion: ignore).1.writeAfter == nil, "a write is already scheduled")
        let (batch, roll) = s.nextFrameBatch()
        #expect(batch.map(\.seq) == [0, 1, 2] && roll)
    }

    @Test func walCompletesOnlyAfterTheWrite() {
        var s = state(.wal) { $0.groupCommitInterval = 0.005 }
        let (result, actions) = s.enqueue(rec(0), completion: ignore)
        #expect(result == nil, "owed until written")
        #expect(actions.writeAfter == 0.005)
        let done = s.frameWritten(count: 1, frame: nil, in: nil, failure: nil)
        #expect(done.completions.count == 1)
        #expect(s.ram.count == 1 && s.pending.isEmpty)
    }

    @Test func aWaitingHandlerIsWokenByEnqueueAndNackedRecordsComeFirst() {
        var s = state(.memory)
        let waiter = Waiter(maxBytes: 1, queue: .global(), handler: { _ in })
        let (none, _) = s.next(maxBytes: 1, waiter: waiter)
        #expect(none.isEmpty && s.waiter != nil)
        let woken = s.enqueue(rec(0), completion: ignore).1.wake
        #expect(woken?.1.map(\.seq) == [0] && s.waiter == nil)
        _ = s.enqueue(rec(1), completion: ignore)
        _ = s.nack(seq: 0)
        let again = s.take(maxBytes: 1)
        #expect(again.map(\.seq) == [0] && again.map(\.attempt) == [1])
        s.ack(seq: 0)
        #expect(s.lowestPending() == 1)
    }
}
