// Over 500 lines (unchanged by the pipeline issue): queue state, spill writer, reader, segment
// catalog and recovery; issue 9 splits them.
import Dispatch
import Glibc
import Logging

/// One backend's queue: a memory tier, spilled to zstd segment files (see SegmentFormat.swift for
/// the format and guarantees), replayed in sequence order when the backend recovers or after a
/// restart. A corrupt file costs at most that file.
///
/// Threading:
/// - `enqueue`, `next`, `ack`, `nack`, `markDown/markUp`, `stats` may be called from any thread;
///   they take a short internal lock and never do file I/O. A slow backend therefore never blocks
///   ingest for others: each queue has its own lock and its own I/O queue.
/// - All file I/O (pwrite/pread/fsync, segment roll and deletion, ledger) runs on the queue's
///   serial I/O queue (`tracerelay.spill.<backend>`), never on a network loop.
/// - `enqueue` completions run on the caller's thread when the batch went to memory, otherwise on
///   the I/O queue once written (`wal`: once fsynced). `next(maxBytes:on:_:)` handlers run on the
///   given queue. Keep both short.
/// - Order: deliveries come in seq order; a `nack`ed delivery comes again before anything newer.
public final class BackendQueue: @unchecked Sendable {
    public let configuration: QueueConfiguration
    private let fileSystem: any SpillFileSystem
    private let logger: Logger
    private let io: DispatchQueue
    private let directory: String
    private let lock = Lock()

    // MARK: state under `lock`

    private struct Entry {
        var stored: StoredRecord
        var attempts = 0
        var onDisk: Bool
        /// Read back from disk: the record's bytes are a slice of its frame's buffer.
        var sharesFrame = false
        var size: Int { stored.record.size }
    }

    private struct PendingWrite {
        var stored: StoredRecord
        /// Completion still owed (wal; or spill past `maxUnwrittenBytes`).
        var completion: (@Sendable (Result<Void, QueueError>) -> Void)?
    }

    private struct Waiter {
        var maxBytes: Int
        var queue: DispatchQueue
        var handler: @Sendable ([Delivery]) -> Void
    }

    private var nextSeq: UInt64 = 0
    private var retry: [Entry] = []          // nacked, sorted by seq; delivered first
    private var ram = Fifo<Entry>()          // memory tier, in seq order
    private var diskBuffer = Fifo<Entry>()   // decoded from disk, awaiting delivery
    private var inflight: [UInt64: Entry] = [:]
    private var pending = Fifo<PendingWrite>()  // to be written (spill: disk-only; wal: everything)
    private var pendingBytes = 0
    private var owedCompletions = 0          // spill: pending writes whose caller waits
    private var heldBytes = 0                // ram + retry + inflight + diskBuffer
    private var diskBufferBytes = 0          // read ahead from disk, not yet delivered
    /// Disk-only records have seq ≥ readFromSeq (and the ones below were delivered from memory).
    private var readFromSeq: UInt64 = 0
    private var spilling = false
    private var markedDown = false
    private var rollBeforeNextWrite = false
    private var writeScheduled = false
    private var readScheduled = false
    private var diskFull = false
    private var closed = false
    private var segments: [SegmentState] = []
    private var diskBytes = 0
    private var waiter: Waiter?
    private var stats = QueueStats()
    private var ackedBytesSinceTick = 0
    private var drainBytesPerSecond: Double = 0
    private var oldestPendingSince: UInt64 = 0
    /// The ledger watermark found at start (tests and logs).
    private(set) var recoveredWatermark: UInt64 = 0

    // MARK: state used only on `io`

    private let encoder: FrameEncoder
    private let decoder = FrameDecoder()
    private var ledger: Ledger?
    private var active: SegmentState?
    private var timer: DispatchSourceTimer?
    private var lastWriteNanos = Clock.monotonicNanos()

    /// A segment file and what is in it.
    final class SegmentState {
        let firstSeq: UInt64
        let path: String
        var createdAtMillis: UInt64
        var frames: [FrameInfo] = []
        var size: Int
        var file: (any SpillFile)?
        var lastSeq: UInt64 { frames.last?.lastSeq ?? firstSeq }

        init(firstSeq: UInt64, path: String, createdAtMillis: UInt64, size: Int) {
            self.firstSeq = firstSeq
            self.path = path
            self.createdAtMillis = createdAtMillis
            self.size = size
        }
    }

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
        try recover()
        startTimer()
    }

    deinit {
        timer?.cancel()
    }

    // MARK: public API

    /// Accepts a batch. The completion says whether it was accepted: in `wal` mode only once it is
    /// on disk and fsynced; `.full(retryAfter:)` when a cap is reached and `whenFull` is `reject`.
    public func enqueue(_ record: Record, completion: @escaping @Sendable (Result<Void, QueueError>) -> Void) {
        let c = configuration
        let size = record.size
        var result: Result<Void, QueueError>? = nil
        var wake: (Waiter, [Delivery])? = nil
        var schedule: (write: Bool, delay: Double)? = nil
        lock.withLock {
            if closed { result = .failure(.shutdown); return }
            let stored = StoredRecord(seq: nextSeq, timeMillis: Clock.wallMillis(), record: record)
            switch c.durability {
            case .memory:
                if heldBytes + size > c.memoryBytes {
                    if c.whenFull == .dropOldest {
                        while heldBytes + size > c.memoryBytes, let old = ram.popFirst() {
                            heldBytes -= old.size
                            stats.droppedSpans[.memoryFull, default: 0] += old.stored.record.spanCount
                        }
                    }
                    if heldBytes + size > c.memoryBytes {
                        stats.rejectedRecords += 1
                        result = .failure(.full(retryAfter: retryAfterLocked()))
                        return
                    }
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
                    if c.whenFull == .reject && diskCapReachedLocked(adding: size) {
                        stats.rejectedRecords += 1
                        result = .failure(.full(retryAfter: retryAfterLocked()))
                        return
                    }
                    // Callers that do not wait for completions still cannot grow memory without bound.
                    if pendingBytes > 2 * c.maxUnwrittenBytes {
                        stats.rejectedRecords += 1
                        result = .failure(.full(retryAfter: 1))
                        return
                    }
                    if !spilling {
                        spilling = true
                        readFromSeq = stored.seq
                        rollBeforeNextWrite = true
                    }
                    let owed = pendingBytes + size > c.maxUnwrittenBytes
                    pending.append(PendingWrite(stored: stored, completion: owed ? completion : nil))
                    pendingBytes += size
                    if !owed { result = .success(()) }
                    if owed { owedCompletions += 1 }
                    // A caller waiting on a completion must not wait for the linger timer.
                    if (pendingBytes >= c.frameBytes || owed) && !writeScheduled {
                        writeScheduled = true
                        schedule = (true, 0)
                    }
                }
            case .wal:
                if pendingBytes > 2 * c.maxUnwrittenBytes + c.frameBytes {
                    stats.rejectedRecords += 1
                    result = .failure(.full(retryAfter: 1))
                    return
                }
                if c.whenFull == .reject && diskCapReachedLocked(adding: size) {
                    stats.rejectedRecords += 1
                    result = .failure(.full(retryAfter: retryAfterLocked()))
                    return
                }
                pending.append(PendingWrite(stored: stored, completion: completion))
                pendingBytes += size
                if !writeScheduled {
                    writeScheduled = true
                    schedule = (true, pendingBytes >= c.frameBytes ? 0 : c.groupCommitInterval)
                }
            }
            nextSeq += 1
            stats.enqueuedRecords += 1
            stats.enqueuedSpans += record.spanCount
            wake = serveWaiterLocked()
        }
        if let result { completion(result) }
        if let (w, d) = wake { w.queue.async { w.handler(d) } }
        if let schedule {
            if schedule.delay > 0 {
                io.asyncAfter(deadline: .now() + schedule.delay) { self.performWrite() }
            } else {
                io.async { self.performWrite() }
            }
        }
    }

    /// Takes records for sending, oldest first, up to about `maxBytes` (at least one record when
    /// any is ready). Returns [] when nothing is ready now (a disk read may have been started:
    /// use the handler form to be called when records arrive).
    public func next(maxBytes: Int) -> [Delivery] {
        var startRead = false
        let out = lock.withLock { () -> [Delivery] in
            let out = takeLocked(maxBytes: maxBytes)
            startRead = wantReadLocked()
            return out
        }
        if startRead { io.async { self.performRead() } }
        return out
    }

    /// Calls `handler` on `queue` with the next records as soon as some are ready. At most one
    /// handler may be waiting; a second call replaces the first (which is then never called).
    public func next(maxBytes: Int, on queue: DispatchQueue, _ handler: @escaping @Sendable ([Delivery]) -> Void) {
        var startRead = false
        let out = lock.withLock { () -> [Delivery] in
            let out = takeLocked(maxBytes: maxBytes)
            if out.isEmpty { waiter = Waiter(maxBytes: maxBytes, queue: queue, handler: handler) }
            startRead = wantReadLocked()
            return out
        }
        if !out.isEmpty { queue.async { handler(out) } }
        if startRead { io.async { self.performRead() } }
    }

    /// The record was delivered, or dropped permanently by the exporter: forget it.
    public func ack(_ delivery: Delivery) {
        lock.withLock {
            guard let e = inflight.removeValue(forKey: delivery.seq) else { return }
            heldBytes -= e.size
            stats.ackedRecords += 1
            ackedBytesSinceTick += e.size
        }
    }

    /// The send failed in a retryable way: deliver the record again, before anything newer.
    public func nack(_ delivery: Delivery) {
        var wake: (Waiter, [Delivery])? = nil
        lock.withLock {
            guard var e = inflight.removeValue(forKey: delivery.seq) else { return }
            e.attempts += 1
            // A record waiting for a retry may wait long: it must not keep its whole frame alive.
            if e.sharesFrame {
                e.stored.record = e.stored.record.compacted()
                e.sharesFrame = false
            }
            var i = retry.count
            while i > 0 && retry[i - 1].stored.seq > e.stored.seq { i -= 1 }
            retry.insert(e, at: i)
            wake = serveWaiterLocked()
        }
        if let (w, d) = wake { w.queue.async { w.handler(d) } }
    }

    /// The backend is down: in `spill` and `wal` mode new batches go to disk only.
    public func markDown() {
        lock.withLock { markedDown = true }
    }

    /// The backend is back: disk-only batches are replayed (in order) after the memory tier.
    public func markUp() {
        let startRead = lock.withLock { () -> Bool in
            markedDown = false
            return wantReadLocked()
        }
        if startRead { io.async { self.performRead() } }
    }

    /// Current counters and gauges.
    public func statistics() -> QueueStats {
        lock.withLock {
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
            if unread > 0, let seg = segments.first(where: { $0.lastSeq >= readFromSeq }) { oldest = min(oldest, seg.createdAtMillis) }
            if oldest != .max {
                let now = Clock.wallMillis()
                s.oldestAgeSeconds = now > oldest ? Double(now - oldest) / 1000 : 0
            }
            return s
        }
    }

    /// Stops the queue: writes unwritten batches and (in `memory`/`spill` mode) the memory tier,
    /// including records in flight, to disk, stores the ledger and closes files. Blocks until done.
    /// Later `enqueue` calls fail with `.shutdown`.
    public func shutdown() {
        io.sync {
            timer?.cancel()
            timer = nil
            let alreadyClosed = lock.withLock { () -> Bool in
                let was = closed
                closed = true
                return was
            }
            if alreadyClosed { return }
            while lock.withLock({ !pending.isEmpty }) { writeOnce(force: true) }
            if configuration.durability != .wal { spillMemoryTier() }
            try? active?.file?.sync()
            storeLedger(force: true)
            for seg in lock.withLock({ segments }) { seg.file?.close(); seg.file = nil }
            ledger?.close()
            active = nil
        }
    }

    /// Test hook: the lowest pending seq (what the ledger would store now).
    func lowestPendingForTesting() -> UInt64 { lock.withLock { lowestPendingLocked() } }

    /// Test hook: stop as a crash would (no flush, nothing written).
    func simulateCrash() {
        io.sync {
            timer?.cancel()
            timer = nil
            lock.withLock {
                closed = true
                pending.removeAll()
            }
            for seg in lock.withLock({ segments }) { seg.file?.close(); seg.file = nil }
            ledger?.close()
            active = nil
        }
    }

    // MARK: locked helpers

    private func takeLocked(maxBytes: Int) -> [Delivery] {
        var out: [Delivery] = []
        var bytes = 0
        while bytes < maxBytes || out.isEmpty {
            let e: Entry
            // Memory and read-back records are each in seq order; take the older head. (In
            // `memory` mode, batches enqueued while a restart's backlog replays are newer than it.)
            if !retry.isEmpty { e = retry.removeFirst() }
            else if let r = ram.first, diskBuffer.first.map({ r.stored.seq < $0.stored.seq }) ?? true { e = ram.popFirst()! }
            else if let x = diskBuffer.popFirst() { e = x; diskBufferBytes -= x.size }
            else { break }
            inflight[e.stored.seq] = e
            bytes += e.size
            out.append(Delivery(seq: e.stored.seq, record: e.stored.record, attempt: e.attempts, enqueuedAtMillis: e.stored.timeMillis))
        }
        return out
    }

    private func serveWaiterLocked() -> (Waiter, [Delivery])? {
        guard let w = waiter else { return nil }
        let out = takeLocked(maxBytes: w.maxBytes)
        if out.isEmpty { return nil }
        waiter = nil
        return (w, out)
    }

    private func wantReadLocked() -> Bool {
        // Read ahead up to about two frames, so decoding overlaps with delivery.
        guard spilling, !closed, diskBufferBytes < configuration.frameBytes, !readScheduled else { return false }
        readScheduled = true
        return true
    }

    private func diskCapReachedLocked(adding size: Int) -> Bool {
        if diskFull { return true }
        // Unwritten bytes are counted at a conservative ratio of 1 (they are not compressed yet).
        let projected = diskBytes + pendingBytes + size
        if projected > configuration.maxDiskBytes { return true }
        if let budget = configuration.totalDiskBudget, budget.wouldExceed(pendingBytes + size) { return true }
        return false
    }

    /// Seconds until the drain is likely to have freed a frame's worth, clamped to 1...60.
    private func retryAfterLocked() -> Int {
        let need = Double(max(configuration.frameBytes, configuration.memoryBytes / 10))
        guard drainBytesPerSecond > 1 else { return 30 }
        return Int(min(60, max(1, (need / drainBytesPerSecond).rounded(.up))))
    }

    private func lowestPendingLocked() -> UInt64 {
        var low = nextSeq
        if let e = retry.first { low = min(low, e.stored.seq) }
        if let e = ram.first { low = min(low, e.stored.seq) }
        if let e = diskBuffer.first { low = min(low, e.stored.seq) }
        if let e = pending.first { low = min(low, e.stored.seq) }
        for k in inflight.keys { low = min(low, k) }
        if spilling { low = min(low, readFromSeq) }
        return low
    }

    // MARK: I/O queue

    private func startTimer() {
        let t = DispatchSource.makeTimerSource(queue: io)
        let interval = configuration.checkpointInterval
        t.schedule(deadline: .now() + interval, repeating: interval)
        t.setEventHandler { [weak self] in self?.maintenance() }
        timer = t
        t.activate()
    }

    private func performWrite() {
        lock.withLock { writeScheduled = false }
        writeOnce(force: configuration.durability == .wal)
        // Keep going while a full frame (or, in wal, anything) is waiting.
        let again = lock.withLock { () -> Bool in
            guard !pending.isEmpty, !writeScheduled else { return false }
            if configuration.durability == .wal || pendingBytes >= configuration.frameBytes || owedCompletions > 0 {
                writeScheduled = true
                return true
            }
            return false
        }
        if again {
            if configuration.durability == .wal && pendingBytesSnapshot() < configuration.frameBytes {
                io.asyncAfter(deadline: .now() + configuration.groupCommitInterval) { self.performWrite() }
            } else {
                io.async { self.performWrite() }
            }
        }
    }

    private func pendingBytesSnapshot() -> Int { lock.withLock { pendingBytes } }

    /// Writes one frame from the head of `pending`. Runs on `io`.
    private func writeOnce(force: Bool) {
        let c = configuration
        var roll = false
        let batch: [StoredRecord] = lock.withLock {
            var out: [StoredRecord] = []
            var bytes = 0
            var i = 0
            while i < pending.count {
                let p = pending[i]
                if !out.isEmpty && bytes + p.stored.record.size > c.frameBytes { break }
                out.append(p.stored)
                bytes += p.stored.record.size
                i += 1
            }
            roll = rollBeforeNextWrite
            rollBeforeNextWrite = false
            return out
        }
        if batch.isEmpty { return }
        var failure: Error? = nil
        var written: FrameInfo? = nil
        var segment: SegmentState? = nil
        for attempt in 0..<2 {
            do {
                let header = try encoder.encode(batch[...])
                let length = encoder.frameLength
                try makeRoom(for: length)
                let seg = try activeSegment(firstSeq: batch[0].seq, roll: roll, adding: length)
                roll = false
                let offset = seg.size
                do {
                    try encoder.frame.withUnsafeBytes { try seg.file!.write(UnsafeRawBufferPointer(rebasing: $0[0..<length]), at: offset) }
                    if c.durability == .wal { try seg.file!.sync() }
                } catch {
                    try? seg.file?.truncate(to: offset)
                    throw error
                }
                written = FrameInfo(offset: offset, length: length, firstSeq: header.firstSeq, lastSeq: header.lastSeq,
                                    records: Int(header.recordCount), spans: Int(header.spanCount), rawBytes: Int(header.rawLength))
                segment = seg
                failure = nil
                break
            } catch let e as FileError where e.isDiskFull && c.whenFull == .dropOldest && attempt == 0 {
                failure = e
                if !dropOldestSegment(reason: .diskFull) { break }
            } catch {
                failure = error
                break
            }
        }
        lastWriteNanos = Clock.monotonicNanos()
        var completions: [(@Sendable (Result<Void, QueueError>) -> Void, Result<Void, QueueError>)] = []
        var wake: (Waiter, [Delivery])? = nil
        var startRead = false
        lock.withLock {
            if let written, let segment {
                segment.frames.append(written)
                segment.size += written.length
                diskBytes += written.length
                configuration.totalDiskBudget?.add(written.length)
                diskFull = false
            }
            let high = Int(Double(c.memoryBytes) * c.highWatermark)
            for _ in 0..<batch.count {
                let p = pending.popFirst()!
                let size = p.stored.record.size
                pendingBytes -= size
                if p.completion != nil && c.durability == .spill { owedCompletions -= 1 }
                if failure == nil {
                    if c.durability == .wal {
                        if !spilling && !markedDown && heldBytes + size <= high {
                            ram.append(Entry(stored: p.stored, onDisk: true))
                            heldBytes += size
                        } else if !spilling {
                            spilling = true
                            readFromSeq = p.stored.seq
                        }
                    }
                    if let done = p.completion { completions.append((done, .success(()))) }
                } else {
                    let diskFullError = (failure as? FileError)?.isDiskFull ?? false
                    if let done = p.completion {
                        let err: QueueError = diskFullError ? .full(retryAfter: retryAfterLocked()) : .io("\(failure!)")
                        completions.append((done, .failure(err)))
                    } else {
                        stats.droppedSpans[diskFullError ? .diskFull : .ioError, default: 0] += p.stored.record.spanCount
                    }
                }
            }
            if let failure {
                stats.writeErrors += 1
                if (failure as? FileError)?.isDiskFull ?? false { diskFull = true }
                rollBeforeNextWrite = true
            }
            wake = serveWaiterLocked()
            if waiter != nil { startRead = wantReadLocked() }
        }
        if let failure { logger.error("spill write failed", metadata: ["spill.error": "\(failure)", "spill.records": "\(batch.count)"]) }
        for (done, result) in completions { done(result) }
        if let (w, d) = wake { w.queue.async { w.handler(d) } }
        if startRead { io.async { self.performRead() } }
    }

    /// Returns the segment to append to, rolling to a new one when asked or when full. Runs on `io`.
    private func activeSegment(firstSeq: UInt64, roll: Bool, adding length: Int) throws -> SegmentState {
        if let a = active, a.file != nil, !(roll && !a.frames.isEmpty), a.frames.isEmpty || a.size + length <= configuration.segmentBytes {
            return a
        }
        sealActive()
        let name = SpillFormat.segmentName(firstSeq: firstSeq)
        let path = directory + "/" + name
        let file = try fileSystem.open(path, create: true)
        let header = SegmentHeader(backend: configuration.backend, createdAtMillis: Clock.wallMillis()).encode()
        do {
            try file.truncate(to: 0)
            try header.withUnsafeBytes { try file.write($0, at: 0) }
            if configuration.durability == .wal {
                try file.sync()
                try fileSystem.syncDirectory(directory)
            }
        } catch {
            file.close()
            try? fileSystem.remove(path)
            throw error
        }
        let seg = SegmentState(firstSeq: firstSeq, path: path, createdAtMillis: Clock.wallMillis(), size: header.count)
        seg.file = file
        lock.withLock {
            segments.append(seg)
            diskBytes += header.count
        }
        configuration.totalDiskBudget?.add(header.count)
        active = seg
        return seg
    }

    private func sealActive() {
        guard let a = active else { return }
        try? a.file?.sync()
        active = nil
    }

    /// Under `dropOldest`, deletes oldest segments until `length` more bytes fit the caps.
    private func makeRoom(for length: Int) throws {
        guard configuration.whenFull == .dropOldest else { return }
        while true {
            let over = lock.withLock { () -> Bool in
                diskBytes + length > configuration.maxDiskBytes
                    || (configuration.totalDiskBudget?.wouldExceed(length) ?? false)
            }
            if !over { return }
            if !dropOldestSegment(reason: .diskFull) { return }
        }
    }

    /// Deletes the oldest segment, counting its unread spans as dropped. Runs on `io`.
    @discardableResult
    private func dropOldestSegment(reason: DropReason) -> Bool {
        guard let seg = lock.withLock({ segments.first }) else { return false }
        if seg === active { sealActive() }
        lock.withLock {
            if spilling {
                for f in seg.frames where f.lastSeq >= readFromSeq {
                    stats.droppedSpans[reason, default: 0] += f.spans
                }
                readFromSeq = max(readFromSeq, seg.lastSeq + 1)
            }
        }
        logger.warning("spill segment dropped", metadata: ["spill.segment": "\(seg.path)", "spill.reason": "\(reason.rawValue)"])
        deleteSegment(seg)
        return true
    }

    private func deleteSegment(_ seg: SegmentState) {
        if seg === active { active = nil }
        seg.file?.close()
        seg.file = nil
        do { try fileSystem.remove(seg.path) } catch {
            logger.error("spill segment delete failed", metadata: ["spill.error": "\(error)"])
        }
        lock.withLock {
            segments.removeAll { $0 === seg }
            diskBytes -= seg.size
            diskFull = false
        }
        configuration.totalDiskBudget?.add(-seg.size)
    }

    /// Reads the next disk-only frame into `diskBuffer`, or — when the reader has caught up —
    /// ends the spill episode. Runs on `io`.
    private func performRead() {
        let c = configuration
        let target: (SegmentState, FrameInfo)? = lock.withLock {
            for seg in segments where seg.lastSeq >= readFromSeq {
                if let f = seg.frames.first(where: { $0.lastSeq >= readFromSeq }) { return (seg, f) }
            }
            return nil
        }
        guard let (seg, frame) = target else {
            // Caught up with everything written.
            var wake: (Waiter, [Delivery])? = nil
            var completions: [@Sendable (Result<Void, QueueError>) -> Void] = []
            lock.withLock {
                readScheduled = false
                guard spilling else { return }
                if markedDown && !closed { return }
                // Read-ahead records are older than anything unwritten: they go first.
                if !diskBuffer.isEmpty {
                    var merged = Fifo<Entry>()
                    while true {
                        if let r = ram.first, diskBuffer.first.map({ r.stored.seq < $0.stored.seq }) ?? true { merged.append(ram.popFirst()!) }
                        else if let d = diskBuffer.popFirst() { merged.append(d) }
                        else { break }
                    }
                    ram = merged
                }
                diskBufferBytes = 0
                if c.durability == .spill {
                    // Unwritten batches need not touch the disk at all: they join the memory tier.
                    owedCompletions = 0
                    while let p = pending.popFirst() {
                        pendingBytes -= p.stored.record.size
                        heldBytes += p.stored.record.size
                        ram.append(Entry(stored: p.stored, onDisk: false))
                        if let done = p.completion { completions.append(done) }
                    }
                    rollBeforeNextWrite = true
                }
                // wal: batches still unwritten are placed (memory or disk-only) when written.
                spilling = false
                wake = serveWaiterLocked()
            }
            for done in completions { done(.success(())) }
            if let (w, d) = wake { w.queue.async { w.handler(d) } }
            return
        }
        var result: Result<[StoredRecord], FrameReadError>
        do {
            if seg.file == nil { seg.file = try fileSystem.open(seg.path, create: false) }
            result = .success(try decoder.read(seg.file!, at: frame.offset).1)
        } catch let e as FrameReadError {
            result = .failure(e)
        } catch let e as FileError {
            result = .failure(.io(e))
        } catch {
            result = .failure(.badHeader)
        }
        var wake: (Waiter, [Delivery])? = nil
        var again = false
        lock.withLock {
            readScheduled = false
            switch result {
            case .success(let records):
                for r in records where r.seq >= readFromSeq {
                    diskBuffer.append(Entry(stored: r, onDisk: true, sharesFrame: true))
                    heldBytes += r.record.size
                    diskBufferBytes += r.record.size
                }
            case .failure:
                stats.corruptFrames += 1
                stats.droppedSpans[.corrupt, default: 0] += frame.spans
            }
            readFromSeq = max(readFromSeq, frame.lastSeq + 1)
            wake = serveWaiterLocked()
            again = wantReadLocked()
        }
        if case .failure(let e) = result {
            logger.error("spill frame unreadable, skipped", metadata: [
                "spill.segment": "\(seg.path)", "spill.offset": "\(frame.offset)", "spill.error": "\(e)", "spill.spans": "\(frame.spans)",
            ])
        }
        if let (w, d) = wake { w.queue.async { w.handler(d) } }
        if again { io.async { self.performRead() } }
    }

    /// Periodic: linger flush, drain-rate estimate, maxAge, deleting acknowledged segments, ledger.
    private func maintenance() {
        let c = configuration
        let (flush, expired): (Bool, [SegmentState]) = lock.withLock {
            // After ENOSPC, refuse for one tick, then let the next write probe the disk again.
            diskFull = false
            let rate = Double(ackedBytesSinceTick) / c.checkpointInterval
            ackedBytesSinceTick = 0
            drainBytesPerSecond = drainBytesPerSecond == 0 ? rate : drainBytesPerSecond * 0.7 + rate * 0.3
            let flush = c.durability == .spill && !pending.isEmpty && !writeScheduled
            var expired: [SegmentState] = []
            if let maxAge = c.maxAgeSeconds {
                let cutoff = Clock.wallMillis() &- UInt64(maxAge * 1000)
                expired = segments.filter { $0.createdAtMillis < cutoff }
            }
            return (flush, expired)
        }
        if flush && Double(Clock.monotonicNanos() - lastWriteNanos) / 1e9 >= c.spillLinger {
            writeOnce(force: true)
        }
        for seg in expired { dropSegment(seg, reason: .maxAge) }
        // Delete segments whose every record is acknowledged.
        let done: [SegmentState] = lock.withLock {
            let low = lowestPendingLocked()
            return segments.filter { seg in seg.lastSeq < low && !(pending.first.map { p in p.stored.seq <= seg.lastSeq } ?? false) }
        }
        for seg in done {
            if seg === active {
                if lock.withLock({ !pending.isEmpty }) { continue }
                sealActive()
            }
            deleteSegment(seg)
        }
        storeLedger(force: !done.isEmpty)
    }

    private func dropSegment(_ seg: SegmentState, reason: DropReason) {
        if seg === active { sealActive() }
        lock.withLock {
            for f in seg.frames where f.lastSeq >= readFromSeq && spilling {
                stats.droppedSpans[reason, default: 0] += f.spans
            }
            if spilling { readFromSeq = max(readFromSeq, seg.lastSeq + 1) }
        }
        logger.warning("spill segment dropped", metadata: ["spill.segment": "\(seg.path)", "spill.reason": "\(reason.rawValue)"])
        deleteSegment(seg)
    }

    private func storeLedger(force: Bool) {
        guard let ledger else { return }
        let (low, hasSegments) = lock.withLock { (lowestPendingLocked(), !segments.isEmpty) }
        guard low != ledger.watermark, hasSegments || force else { return }
        do { try ledger.store(low) } catch {
            logger.error("spill ledger write failed", metadata: ["spill.error": "\(error)"])
        }
    }

    /// `memory`/`spill` shutdown: writes every record held only in memory to new segments, split
    /// so that segment ranges stay disjoint (replay order = name order). Runs on `io`.
    private func spillMemoryTier() {
        let (entries, existing): ([StoredRecord], [UInt64]) = lock.withLock {
            var all: [StoredRecord] = []
            for e in retry where !e.onDisk { all.append(e.stored) }
            for e in inflight.values where !e.onDisk { all.append(e.stored) }
            for e in ram.elements where !e.onDisk { all.append(e.stored) }
            all.sort { $0.seq < $1.seq }
            return (all, segments.map(\.firstSeq))
        }
        guard !entries.isEmpty else { return }
        var i = 0
        while i < entries.count {
            // A group ends before the next existing segment's first seq.
            let boundary = existing.first { $0 > entries[i].seq } ?? .max
            var j = i
            while j < entries.count && entries[j].seq < boundary { j += 1 }
            sealActive()
            var k = i
            while k < j {
                var end = k, bytes = 0
                while end < j && (end == k || bytes + entries[end].record.size <= configuration.frameBytes) {
                    bytes += entries[end].record.size
                    end += 1
                }
                do {
                    let header = try encoder.encode(entries[k..<end])
                    let length = encoder.frameLength
                    let seg = try activeSegment(firstSeq: entries[k].seq, roll: false, adding: length)
                    let offset = seg.size
                    try encoder.frame.withUnsafeBytes { try seg.file!.write(UnsafeRawBufferPointer(rebasing: $0[0..<length]), at: offset) }
                    lock.withLock {
                        seg.frames.append(FrameInfo(offset: offset, length: length, firstSeq: header.firstSeq, lastSeq: header.lastSeq,
                                                    records: Int(header.recordCount), spans: Int(header.spanCount), rawBytes: Int(header.rawLength)))
                        seg.size += length
                        diskBytes += length
                    }
                } catch {
                    logger.error("spill of memory tier at shutdown failed", metadata: ["spill.error": "\(error)"])
                    lock.withLock {
                        stats.droppedSpans[(error as? FileError)?.isDiskFull ?? false ? .diskFull : .ioError, default: 0] +=
                            entries[k..<end].reduce(0) { $0 + $1.record.spanCount }
                    }
                }
                k = end
            }
            i = j
        }
        try? active?.file?.sync()
        sealActive()
        // The entries stay in place (the queue is closed): the ledger written next must not skip them.
    }

    // MARK: recovery

    /// Scans the backend directory. Runs in `init`, before the queue is shared.
    private func recover() throws {
        let names = try fileSystem.listDirectory(directory)
        var found: [(UInt64, String)] = []
        for name in names {
            if let seq = SpillFormat.firstSeq(ofSegmentNamed: name) { found.append((seq, name)) }
        }
        found.sort { $0.0 < $1.0 }
        var maxSeq: UInt64? = nil
        for (seq, name) in found {
            let path = directory + "/" + name
            let file: any SpillFile
            do { file = try fileSystem.open(path, create: false) } catch {
                quarantine(path, reason: "\(error)")
                continue
            }
            let scan: SegmentScan
            do { scan = try scanSegment(file) } catch {
                file.close()
                quarantine(path, reason: "\(error)")
                continue
            }
            if scan.header.backend != configuration.backend {
                logger.warning("spill segment written for another backend name", metadata: ["spill.segment": "\(path)", "spill.header.backend": "\(scan.header.backend)"])
            }
            if scan.skippedRegions > 0 {
                stats.corruptFrames += scan.skippedRegions
                logger.error("spill segment has damaged frames, skipped", metadata: ["spill.segment": "\(path)", "spill.regions": "\(scan.skippedRegions)", "spill.bytes": "\(scan.skippedBytes)"])
            }
            if scan.tornTail || scan.validEnd < scan.fileSize {
                logger.warning("spill segment has a torn tail, truncated", metadata: ["spill.segment": "\(path)", "spill.bytes": "\(scan.fileSize - scan.validEnd)"])
                do { try file.truncate(to: scan.validEnd) } catch {
                    logger.error("spill truncate failed", metadata: ["spill.error": "\(error)"])
                }
            }
            if scan.frames.isEmpty {
                file.close()
                try? fileSystem.remove(path)
                continue
            }
            let seg = SegmentState(firstSeq: seq, path: path, createdAtMillis: scan.header.createdAtMillis, size: scan.validEnd)
            seg.frames = scan.frames
            seg.file = file
            segments.append(seg)
            diskBytes += scan.validEnd
            maxSeq = max(maxSeq ?? 0, seg.lastSeq)
        }
        configuration.totalDiskBudget?.add(diskBytes)
        let ledgerFile = try fileSystem.open(directory + "/" + Ledger.fileName, create: true)
        let ledger = Ledger(file: ledgerFile)
        self.ledger = ledger
        readFromSeq = ledger.watermark
        recoveredWatermark = ledger.watermark
        nextSeq = max(ledger.watermark, maxSeq.map { $0 + 1 } ?? 0)
        // Segments entirely below the watermark were delivered: delete them now.
        for seg in segments where seg.lastSeq < readFromSeq {
            seg.file?.close()
            try? fileSystem.remove(seg.path)
            diskBytes -= seg.size
            configuration.totalDiskBudget?.add(-seg.size)
        }
        segments.removeAll { $0.lastSeq < readFromSeq }
        spilling = !segments.isEmpty
        if !segments.isEmpty {
            var records = 0
            for seg in segments { for f in seg.frames where f.lastSeq >= readFromSeq { records += f.records } }
            logger.info("spill recovered", metadata: ["spill.segments": "\(segments.count)", "spill.records": "\(records)", "spill.bytes": "\(diskBytes)"])
        }
    }

    private func quarantine(_ path: String, reason: String) {
        stats.corruptSegments += 1
        logger.error("spill segment unreadable, renamed to .corrupt", metadata: ["spill.segment": "\(path)", "spill.error": "\(reason)"])
        do { try fileSystem.rename(path, to: path + SpillFormat.corruptSuffix) } catch {
            logger.error("spill rename failed", metadata: ["spill.error": "\(error)"])
        }
    }
}
