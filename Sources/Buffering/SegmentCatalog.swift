import Dispatch
import Basics

// The segment catalog: which segment files exist and what they hold, and the periodic upkeep on
// `io` — linger flush, drain-rate estimate, max age, dropping the oldest segment when full,
// deleting acknowledged segments, and storing the ledger watermark.

/// A segment file and what is in it. `firstSeq`, `path` and `createdAtMillis` are immutable;
/// `frames` and `size` change only on the I/O queue with the queue's mutex held; `file` is
/// confined to the I/O queue (see BackendQueue's field domains). Hence `@unchecked Sendable`.
final class SegmentState: @unchecked Sendable {
    let firstSeq: UInt64
    let path: String
    let createdAtMillis: UInt64
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

extension QueueState {
    mutating func segmentCreated(_ seg: SegmentState) {
        segments.append(seg)
        diskBytes += seg.size
        configuration.totalDiskBudget?.add(seg.size)
    }

    /// A frame written at shutdown (the queue is closed: the shared budget no longer matters).
    mutating func frameAppended(_ frame: FrameInfo, to seg: SegmentState) {
        seg.frames.append(frame)
        seg.size += frame.length
        diskBytes += frame.length
    }

    mutating func segmentDeleted(_ seg: SegmentState) {
        segments.removeAll { $0 === seg }
        diskBytes -= seg.size
        diskFull = false
        configuration.totalDiskBudget?.add(-seg.size)
    }

    /// A segment is dropped unread: its disk-only spans are counted, and the reader skips it.
    mutating func segmentDropped(_ seg: SegmentState, reason: DropReason) {
        guard spilling else { return }
        for f in seg.frames where f.lastSeq >= readFromSeq {
            stats.droppedSpans[reason, default: 0] += f.spans
        }
        readFromSeq = max(readFromSeq, seg.lastSeq + 1)
    }

    /// Whether `length` more bytes on disk would pass a cap.
    func overDiskCap(adding length: Int) -> Bool {
        diskBytes + length > configuration.maxDiskBytes || (configuration.totalDiskBudget?.wouldExceed(length) ?? false)
    }

    /// The periodic tick: clears a disk-full refusal, updates the drain rate. Returns whether a
    /// partial `spill` frame may need a linger flush, and the segments past `maxAgeSeconds`.
    mutating func tick(nowMillis: UInt64) -> (flush: Bool, expired: [SegmentState]) {
        let c = configuration
        // After ENOSPC, refuse for one tick, then let the next write probe the disk again.
        diskFull = false
        let rate = Double(ackedBytesSinceTick) / c.checkpointInterval
        ackedBytesSinceTick = 0
        drainBytesPerSecond = drainBytesPerSecond == 0 ? rate : drainBytesPerSecond * 0.7 + rate * 0.3
        let flush = c.durability == .spill && !pending.isEmpty && !writeScheduled
        var expired: [SegmentState] = []
        if let maxAge = c.maxAgeSeconds {
            let cutoff = nowMillis &- UInt64(maxAge * 1000)
            expired = segments.filter { $0.createdAtMillis < cutoff }
        }
        return (flush, expired)
    }

    /// Segments whose every record is acknowledged (and none still waits to be written into them).
    func acknowledgedSegments() -> [SegmentState] {
        let low = lowestPending()
        let firstPending = pending.first?.stored.seq
        return segments.filter { seg in seg.lastSeq < low && !(firstPending.map { $0 <= seg.lastSeq } ?? false) }
    }
}

extension BackendQueue {
    /// Periodic: linger flush, drain-rate estimate, maxAge, deleting acknowledged segments, ledger.
    func maintenance() {
        dispatchPrecondition(condition: .onQueue(io))
        let c = configuration
        let now = Clock.wallMillis()
        let (flush, expired) = state.withLock { $0.tick(nowMillis: now) }
        if flush && Double(Clock.monotonicNanos() - lastWriteNanos) / 1e9 >= c.spillLinger {
            writeOnce()
        }
        for seg in expired { dropSegment(seg, reason: .maxAge) }
        let done = state.withLock { $0.acknowledgedSegments() }
        for seg in done {
            if seg === active {
                if state.withLock({ !$0.pending.isEmpty }) { continue }
                sealActive()
            }
            deleteSegment(seg)
        }
        storeLedger(force: !done.isEmpty)
        state.withLock { $0.checkpoints += 1 }
    }

    /// Stores the lowest pending seq, when it moved (and segments exist, or `force`).
    func storeLedger(force: Bool) {
        guard let ledger else { return }
        let (low, hasSegments) = state.withLock { ($0.lowestPending(), !$0.segments.isEmpty) }
        guard low != ledger.watermark, hasSegments || force else { return }
        do { try ledger.store(low) } catch {
            logger.error("spill ledger write failed", metadata: ["spill.error": "\(error)"])
        }
    }

    /// Under `dropOldest`, deletes oldest segments until `length` more bytes fit the caps.
    func makeRoom(for length: Int) throws {
        guard configuration.whenFull == .dropOldest else { return }
        while state.withLock({ $0.overDiskCap(adding: length) }) {
            if !dropOldestSegment(reason: .diskFull) { return }
        }
    }

    /// Deletes the oldest segment, counting its unread spans as dropped. Runs on `io`.
    @discardableResult
    func dropOldestSegment(reason: DropReason) -> Bool {
        guard let seg = state.withLock({ $0.segments.first }) else { return false }
        dropSegment(seg, reason: reason)
        return true
    }

    /// Deletes a segment before it was read, counting its unread spans as dropped. Runs on `io`.
    func dropSegment(_ seg: SegmentState, reason: DropReason) {
        if seg === active { sealActive() }
        state.withLock { $0.segmentDropped(seg, reason: reason) }
        logger.warning("spill segment dropped", metadata: ["spill.segment": "\(seg.path)", "spill.reason": "\(reason.rawValue)"])
        deleteSegment(seg)
    }

    func deleteSegment(_ seg: SegmentState) {
        if seg === active { active = nil }
        seg.file?.close()
        seg.file = nil
        do { try fileSystem.remove(seg.path) } catch {
            logger.error("spill segment delete failed", metadata: ["spill.error": "\(error)"])
        }
        state.withLock { $0.segmentDeleted(seg) }
    }
}
