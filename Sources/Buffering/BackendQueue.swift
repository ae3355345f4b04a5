import Dispatch
import Logging
import Synchronization
import Basics

/// One backend's queue: a memory tier, spilled to zstd segment files (see SegmentFormat.swift for
/// the format and guarantees), replayed in sequence order when the backend recovers or after a
/// restart. A corrupt file costs at most that file.
///
/// Threading:
/// - `enqueue`, `next`, `ack`, `nack`, `markDown/markUp`, `statistics` may be called from any
///   thread; they take a short internal lock and never do file I/O. A slow backend therefore never
///   blocks ingest for others: each queue has its own lock and its own I/O queue.
/// - All file I/O (pwrite/pread/fsync, segment roll and deletion, ledger) runs on the queue's
///   serial I/O queue (`tracerelay.spill.<backend>`), never on a network loop.
/// - `enqueue` completions run on the caller's thread when the batch went to memory, otherwise on
///   the I/O queue once written (`wal`: once fsynced). `next(maxBytes:on:_:)` handlers run on the
///   given queue. Keep both short.
/// - Order: deliveries come in seq order; a `nack`ed delivery comes again before anything newer.
///
/// Which field belongs to which domain:
/// - Immutable after `init`: `configuration`, `fileSystem`, `logger`, `io`, `directory`,
///   `recoveredWatermark`, and each `SegmentState`'s `firstSeq`, `path` and `createdAtMillis`.
/// - Behind the mutex `state` (`QueueState`, a value): the memory tier, pending writes, in-flight
///   records, flags, counters and the segment catalog (`segments`, `diskBytes`). A segment's
///   `frames` and `size` change only on `io` while the mutex is held: read them under the mutex,
///   or on `io` without it.
/// - Confined to the I/O queue `io` (asserted with `dispatchPrecondition` in debug builds):
///   `encoder`, `decoder`, `ledger`, `active`, `timer`, `lastWriteNanos` and every segment's
///   `file`. `init` touches them before the queue is shared; `deinit` after.
///
/// The work on `io` lives in its own files: SpillWriter.swift (frames to segments),
/// SpillReader.swift (segments back to records), SegmentCatalog.swift (drop, delete, max age,
/// ledger) and QueueRecovery.swift (the directory scan at start).
public final class BackendQueue: @unchecked Sendable {
    public let configuration: QueueConfiguration
    let fileSystem: any SpillFileSystem
    let logger: Logger
    let io: DispatchQueue
    let directory: String
    /// The ledger watermark found at start (tests and logs).
    let recoveredWatermark: UInt64

    // MARK: behind the mutex

    let state: Mutex<QueueState>

    // MARK: confined to `io`

    let encoder: FrameEncoder
    let decoder = FrameDecoder()
    var ledger: Ledger?
    var active: SegmentState?
    var timer: DispatchSourceTimer?
    var lastWriteNanos = Clock.monotonicNanos()

    /// Opens (and recovers) the queue of one backend. Never fails because of bad data on disk:
    /// a torn tail is truncated, a damaged frame skipped and counted, an unreadable segment renamed
    /// to `*.corrupt`. Throws only when the directory cannot be created or listed.
    public init(configuration: QueueConfiguration, fileSystem: any SpillFileSystem = PosixFileSystem(),
                logger: Logger, ioQueueTarget: DispatchQueue? = nil) throws {
        self.configuration = configuration
        self.fileSystem = fileSystem
        var logger = logger
        logger[metadataKey: "spill.backend"] = .string(configuration.backend)
        self.logger = logger
        self.directory = configuration.backendDirectory
        self.io = DispatchQueue(label: "tracerelay.spill.\(configuration.backend)", target: ioQueueTarget)
        self.encoder = FrameEncoder(level: configuration.compressionLevel)
        try fileSystem.createDirectory(directory)
        let recovered = try QueueRecovery(configuration: configuration, fileSystem: fileSystem, logger: logger).run()
        self.ledger = recovered.ledger
        self.recoveredWatermark = recovered.watermark
        self.state = Mutex(QueueState(configuration: configuration, recovered: recovered))
        startTimer()
    }

    deinit {
        timer?.cancel()
    }

    // MARK: public API

    /// Accepts a batch. The completion says whether it was accepted: in `wal` mode only once it is
    /// on disk and fsynced; `.full(retryAfter:)` when a cap is reached and `whenFull` is `reject`.
    public func enqueue(_ record: Record, completion: @escaping @Sendable (Result<Void, QueueError>) -> Void) {
        let (result, actions) = state.withLock { $0.enqueue(record, completion: completion) }
        if let result { completion(result) }
        perform(actions)
    }

    /// Takes records for sending, oldest first, up to about `maxBytes` (at least one record when
    /// any is ready). Returns [] when nothing is ready now (a disk read may have been started:
    /// use the handler form to be called when records arrive).
    public func next(maxBytes: Int) -> [Delivery] {
        let (out, actions) = state.withLock { $0.next(maxBytes: maxBytes, waiter: nil) }
        perform(actions)
        return out
    }

    /// Calls `handler` on `queue` with the next records as soon as some are ready. At most one
    /// handler may be waiting; a second call replaces the first (which is then never called).
    public func next(maxBytes: Int, on queue: DispatchQueue, _ handler: @escaping @Sendable ([Delivery]) -> Void) {
        let waiter = Waiter(maxBytes: maxBytes, queue: queue, handler: handler)
        let (out, actions) = state.withLock { $0.next(maxBytes: maxBytes, waiter: waiter) }
        if !out.isEmpty { queue.async { handler(out) } }
        perform(actions)
    }

    /// The record was delivered, or dropped permanently by the exporter: forget it.
    public func ack(_ delivery: Delivery) {
        state.withLock { $0.ack(seq: delivery.seq) }
    }

    /// The send failed in a retryable way: deliver the record again, before anything newer.
    public func nack(_ delivery: Delivery) {
        perform(state.withLock { $0.nack(seq: delivery.seq) })
    }

    /// The backend is down: in `spill` and `wal` mode new batches go to disk only.
    public func markDown() {
        state.withLock { $0.markedDown = true }
    }

    /// The backend is back: disk-only batches are replayed (in order) after the memory tier.
    public func markUp() {
        perform(state.withLock { $0.markUp() })
    }

    /// Current counters and gauges.
    public func statistics() -> QueueStats {
        let now = Clock.wallMillis()
        return state.withLock { $0.statistics(nowMillis: now) }
    }

    /// Stops the queue: writes unwritten batches and (in `memory`/`spill` mode) the memory tier,
    /// including records in flight, to disk, stores the ledger and closes files. Blocks until done.
    /// Later `enqueue` calls fail with `.shutdown`. Must not be called on the queue's own I/O
    /// queue (that is, from an enqueue completion of a spilled batch): it would wait for itself.
    public func shutdown() {
        dispatchPrecondition(condition: .notOnQueue(io))
        io.sync {
            timer?.cancel()
            timer = nil
            if state.withLock({ $0.close() }) { return }
            while state.withLock({ !$0.pending.isEmpty }) { writeOnce() }
            if configuration.durability != .wal { spillMemoryTier() }
            try? active?.file?.sync()
            storeLedger(force: true)
            closeFiles()
        }
    }

    /// Test hook: the lowest pending seq (what the ledger would store now).
    func lowestPendingForTesting() -> UInt64 { state.withLock { $0.lowestPending() } }

    /// Test hook: how many periodic checkpoints have completed.
    func checkpointsForTesting() -> Int { state.withLock { $0.checkpoints } }

    /// Test hook: stop as a crash would (no flush, nothing written).
    func simulateCrash() {
        dispatchPrecondition(condition: .notOnQueue(io))
        io.sync {
            timer?.cancel()
            timer = nil
            state.withLock {
                $0.closed = true
                $0.pending.removeAll()
            }
            closeFiles()
        }
    }

    // MARK: performing actions

    /// Runs what a state mutation asked for, outside the lock: completions, a waiting handler
    /// (on its queue), and writes or reads scheduled on `io`.
    func perform(_ actions: QueueActions) {
        for (done, result) in actions.completions { done(result) }
        if let (w, d) = actions.wake { w.queue.async { w.handler(d) } }
        if let delay = actions.writeAfter {
            if delay > 0 {
                io.asyncAfter(deadline: .now() + delay) { self.performWrite() }
            } else {
                io.async { self.performWrite() }
            }
        }
        if actions.read { io.async { self.performRead() } }
    }

    private func startTimer() {
        let t = DispatchSource.makeTimerSource(queue: io)
        let interval = configuration.checkpointInterval
        t.schedule(deadline: .now() + interval, repeating: interval)
        t.setEventHandler { [weak self] in self?.maintenance() }
        timer = t
        t.activate()
    }

    /// Closes every segment file and the ledger. Runs on `io`, after `closed` is set.
    private func closeFiles() {
        for seg in state.withLock({ $0.segments }) { seg.file?.close(); seg.file = nil }
        ledger?.close()
        active = nil
    }
}
