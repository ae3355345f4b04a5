import Dispatch
import DequeModule
import Basics

/// An enqueue completion.
typealias EnqueueCompletion = @Sendable (Result<Void, QueueError>) -> Void

/// A `next(maxBytes:on:_:)` handler waiting for records.
struct Waiter: Sendable {
    var maxBytes: Int
    var queue: DispatchQueue
    var handler: @Sendable ([Delivery]) -> Void
}

/// What a mutation of `QueueState` asks for once the mutex is released: the caller performs it
/// (`BackendQueue.perform`), so no completion, handler or I/O ever runs under the lock.
struct QueueActions: Sendable {
    /// Enqueue completions owed, with their results, in order.
    var completions: [(EnqueueCompletion, Result<Void, QueueError>)] = []
    /// A waiting `next` handler and the records to hand it.
    var wake: (Waiter, [Delivery])? = nil
    /// Schedule a frame write on the I/O queue after this many seconds (0: now).
    var writeAfter: Double? = nil
    /// Schedule a disk read on the I/O queue.
    var read = false
}

/// The memory side of one backend's queue: every field `BackendQueue` guards with its mutex, as
/// one value. Mutations do no I/O and call nothing: they return `QueueActions` for the caller to
/// perform outside the lock. The writer, reader and segment catalog add their own mutations in
/// SpillWriter.swift, SpillReader.swift and SegmentCatalog.swift.
struct QueueState: Sendable {
    struct Entry: Sendable {
        var stored: StoredRecord
        var attempts = 0
        var onDisk: Bool
        /// Read back from disk: the record's bytes are a slice of its frame's buffer.
        var sharesFrame = false
        var size: Int { stored.record.size }
    }

    struct PendingWrite: Sendable {
        var stored: StoredRecord
        /// Completion still owed (wal; or spill past `maxUnwrittenBytes`).
        var completion: EnqueueCompletion?
    }

    let configuration: QueueConfiguration

    var nextSeq: UInt64
    var retry: [Entry] = []                 // nacked, sorted by seq; delivered first
    var ram = Deque<Entry>()                // memory tier, in seq order
    var diskBuffer = Deque<Entry>()         // decoded from disk, awaiting delivery
    var inflight: [UInt64: Entry] = [:]
    var pending = Deque<PendingWrite>()     // to be written (spill: disk-only; wal: everything)
    var pendingBytes = 0
    var owedCompletions = 0                 // spill: pending writes whose caller waits
    var heldBytes = 0                       // ram + retry + inflight + diskBuffer
    var diskBufferBytes = 0                 // read ahead from disk, not yet delivered
    /// Disk-only records have seq ≥ readFromSeq (and the ones below were delivered from memory).
    var readFromSeq: UInt64
    /// A spill episode is on: some records live on disk only and the reader replays them.
    var spilling: Bool
    var markedDown = false
    var rollBeforeNextWrite = false
    var writeScheduled = false
    var readScheduled = false
    var diskFull = false
    var closed = false
    /// The segment catalog, oldest first (segment ranges are disjoint).
    var segments: [SegmentState]
    var diskBytes: Int
    var waiter: Waiter?
    var stats: QueueStats
    var ackedBytesSinceTick = 0
    var drainBytesPerSecond: Double = 0
    /// Completed periodic checkpoints (tests wait on it instead of sleeping).
    var checkpoints = 0

    init(configuration: QueueConfiguration, recovered r: RecoveredSegments) {
        self.configuration = configuration
        self.segments = r.segments
        self.diskBytes = r.diskBytes
        self.readFromSeq = r.watermark
        self.nextSeq = r.nextSeq
        self.spilling = !r.segments.isEmpty
        var stats = QueueStats()
        stats.corruptFrames = r.corruptFrames
        stats.corruptSegments = r.corruptSegments
        self.stats = stats
    }

    // MARK: memory tier

    /// Accepts or refuses a record. The result is nil when the completion is owed later (it is
    /// then in `pending` and will come back in a writer's `QueueActions`).
    mutating func enqueue(_ record: Record, completion: @escaping EnqueueCompletion)
        -> (Result<Void, QueueError>?, QueueActions) {
        let c = configuration
        let size = record.size
        var actions = QueueActions()
        if closed { return (.failure(.shutdown), actions) }
        let stored = StoredRecord(seq: nextSeq, timeMillis: Clock.wallMillis(), record: record)
        var result: Result<Void, QueueError>? = nil
        switch c.durability {
        case .memory:
            if heldBytes + size > c.memoryBytes {
                if c.whenFull == .dropOldest {
                    while heldBytes + size > c.memoryBytes, let old = ram.popFirst() {
                        heldBytes -= old.size
                        stats.droppedSpans[.memoryFull, default: 0] += old.stored.record.spanCount
                    }
                }
                if heldBytes + size > c.memoryBytes { return (refuse(retryAfter: retryAfter()), actions) }
            }
            ram.append(Entry(stored: stored, onDisk: false))
            heldBytes += size
            result = .success(())
        case .spill:
            let high = Int(Double(c.memoryBytes) * c.highWatermark)
            if !spilling && !markedDown && heldBytes + pendingBytes + size <= high {
                ram.append(Entry(stored: stored, onDisk: false))
                heldBytes += size
                result = .success(())
            } else {
                if c.whenFull == .reject && diskCapReached(adding: size) { return (refuse(retryAfter: retryAfter()), actions) }
                // Callers that do not wait for completions still cannot grow memory without bound.
                if pendingBytes > 2 * c.maxUnwrittenBytes { return (refuse(retryAfter: 1), actions) }
                if !spilling {
                    spilling = true
                    readFromSeq = stored.seq
                    rollBeforeNextWrite = true
                }
                let owed = pendingBytes + size > c.maxUnwrittenBytes
                pending.append(PendingWrite(stored: stored, completion: owed ? completion : nil))
                pendingBytes += size
                if owed { owedCompletions += 1 } else { result = .success(()) }
                // A caller waiting on a completion must not wait for the linger timer.
                if (pendingBytes >= c.frameBytes || owed) && !writeScheduled {
                    writeScheduled = true
                    actions.writeAfter = 0
                }
            }
        case .wal:
            if pendingBytes > 2 * c.maxUnwrittenBytes + c.frameBytes { return (refuse(retryAfter: 1), actions) }
            if c.whenFull == .reject && diskCapReached(adding: size) { return (refuse(retryAfter: retryAfter()), actions) }
            pending.append(PendingWrite(stored: stored, completion: completion))
            pendingBytes += size
            if !writeScheduled {
                writeScheduled = true
                actions.writeAfter = pendingBytes >= c.frameBytes ? 0 : c.groupCommitInterval
            }
        }
        nextSeq += 1
        stats.enqueuedRecords += 1
        stats.enqueuedSpans += record.spanCount
        actions.wake = serveWaiter()
        return (result, actions)
    }

    private mutating func refuse(retryAfter: Int) -> Result<Void, QueueError> {
        stats.rejectedRecords += 1
        return .failure(.full(retryAfter: retryAfter))
    }

    /// Takes what is ready now; when nothing is and `waiter` is given, it waits instead.
    mutating func next(maxBytes: Int, waiter newWaiter: Waiter?) -> ([Delivery], QueueActions) {
        let out = take(maxBytes: maxBytes)
        if out.isEmpty, let newWaiter { waiter = newWaiter }
        var actions = QueueActions()
        actions.read = wantRead()
        return (out, actions)
    }

    mutating func ack(seq: UInt64) {
        guard let e = inflight.removeValue(forKey: seq) else { return }
        heldBytes -= e.size
        stats.ackedRecords += 1
        ackedBytesSinceTick += e.size
    }

    mutating func nack(seq: UInt64) -> QueueActions {
        var actions = QueueActions()
        guard var e = inflight.removeValue(forKey: seq) else { return actions }
        e.attempts += 1
        // A record waiting for a retry may wait long: it must not keep its whole frame alive.
        if e.sharesFrame {
            e.stored.record = e.stored.record.compacted()
            e.sharesFrame = false
        }
        var i = retry.count
        while i > 0 && retry[i - 1].stored.seq > e.stored.seq { i -= 1 }
        retry.insert(e, at: i)
        actions.wake = serveWaiter()
        return actions
    }

    mutating func markUp() -> QueueActions {
        markedDown = false
        var actions = QueueActions()
        actions.read = wantRead()
        return actions
    }

    func statistics(nowMillis: UInt64) -> QueueStats {
        var s = stats
        s.memoryBytes = heldBytes + pendingBytes
        s.diskBytes = diskBytes
        s.segments = segments.count
        s.inFlight = inflight.count
        var unread = 0
        for seg in segments where seg.lastSeq >= readFromSeq {
            for f in seg.frames where f.lastSeq >= readFromSeq { unread += f.records }
        }
        let memoryCount = retry.count + ram.count + diskBuffer.count + inflight.count
        // Disk-only records exist only while spilling; otherwise what is on disk is also in memory.
        s.records = memoryCount + pending.count + (spilling ? unread : 0)
        var oldest = UInt64.max
        if let r = retry.first { oldest = min(oldest, r.stored.timeMillis) }
        if let r = ram.first { oldest = min(oldest, r.stored.timeMillis) }
        if let r = diskBuffer.first { oldest = min(oldest, r.stored.timeMillis) }
        if let r = pending.first { oldest = min(oldest, r.stored.timeMillis) }
        for e in inflight.values { oldest = min(oldest, e.stored.timeMillis) }
        if unread > 0, let seg = segments.first(where: { $0.lastSeq >= readFromSeq }) {
            oldest = min(oldest, seg.createdAtMillis)
            s.oldestSpilledAgeSeconds = nowMillis > seg.createdAtMillis ? Double(nowMillis - seg.createdAtMillis) / 1000 : 0
        }
        if oldest != .max {
            s.oldestAgeSeconds = nowMillis > oldest ? Double(nowMillis - oldest) / 1000 : 0
        }
        return s
    }

    /// Marks the queue closed; returns whether it already was.
    mutating func close() -> Bool {
        defer { closed = true }
        return closed
    }

    // MARK: helpers

    mutating func take(maxBytes: Int) -> [Delivery] {
        var out: [Delivery] = []
        var bytes = 0
        while bytes < maxBytes || out.isEmpty {
            let e: Entry
            // Memory and read-back records are each in seq order; take the older head. (In
            // `memory` mode, batches enqueued while a restart's backlog replays are newer than it.)
            if !retry.isEmpty { e = retry.removeFirst() }
            else if let r = ram.first, diskBuffer.first.map({ r.stored.seq < $0.stored.seq }) ?? true { e = ram.removeFirst() }
            else if let x = diskBuffer.popFirst() { e = x; diskBufferBytes -= x.size }
            else { break }
            inflight[e.stored.seq] = e
            bytes += e.size
            out.append(Delivery(seq: e.stored.seq, record: e.stored.record, attempt: e.attempts, enqueuedAtMillis: e.stored.timeMillis))
        }
        return out
    }

    mutating func serveWaiter() -> (Waiter, [Delivery])? {
        guard let w = waiter else { return nil }
        let out = take(maxBytes: w.maxBytes)
        if out.isEmpty { return nil }
        waiter = nil
        return (w, out)
    }

    /// Whether to start a disk read now (and marks it scheduled).
    mutating func wantRead() -> Bool {
        // Read ahead up to about two frames, so decoding overlaps with delivery.
        guard spilling, !closed, diskBufferBytes < configuration.frameBytes, !readScheduled else { return false }
        readScheduled = true
        return true
    }

    func diskCapReached(adding size: Int) -> Bool {
        if diskFull { return true }
        // Unwritten bytes are counted at a conservative ratio of 1 (they are not compressed yet).
        let projected = diskBytes + pendingBytes + size
        if projected > configuration.maxDiskBytes { return true }
        if let budget = configuration.totalDiskBudget, budget.wouldExceed(pendingBytes + size) { return true }
        return false
    }

    /// Seconds until the drain is likely to have freed a frame's worth, clamped to 1...60.
    func retryAfter() -> Int {
        let need = Double(max(configuration.frameBytes, configuration.memoryBytes / 10))
        guard drainBytesPerSecond > 1 else { return 30 }
        return Int(min(60, max(1, (need / drainBytesPerSecond).rounded(.up))))
    }

    /// The lowest seq not yet acknowledged: what the ledger stores.
    func lowestPending() -> UInt64 {
        var low = nextSeq
        if let e = retry.first { low = min(low, e.stored.seq) }
        if let e = ram.first { low = min(low, e.stored.seq) }
        if let e = diskBuffer.first { low = min(low, e.stored.seq) }
        if let e = pending.first { low = min(low, e.stored.seq) }
        for k in inflight.keys { low = min(low, k) }
        if spilling { low = min(low, readFromSeq) }
        return low
    }
}
