import Dispatch
import Basics

// The spill writer: pending records → compressed frames appended to the active segment, on `io`.
// One frame per `writeOnce`; the records' bytes are copied once into the frame encoder (no
// per-record work beyond that). `wal` fsyncs each frame before completing its records.

extension QueueState {
    /// The records of the next frame (the head of `pending`, up to `frameBytes`), and whether to
    /// roll to a new segment first.
    mutating func nextFrameBatch() -> (batch: [StoredRecord], roll: Bool) {
        var out: [StoredRecord] = []
        var bytes = 0
        for p in pending {
            if !out.isEmpty && bytes + p.stored.record.size > configuration.frameBytes { break }
            out.append(p.stored)
            bytes += p.stored.record.size
        }
        defer { rollBeforeNextWrite = false }
        return (out, rollBeforeNextWrite)
    }

    /// After `writeOnce`: the first `count` pending records were written (`failure == nil`) or
    /// not. Places `wal` records, settles completions, counts drops.
    mutating func frameWritten(count: Int, frame: FrameInfo?, in segment: SegmentState?, failure: Error?) -> QueueActions {
        let c = configuration
        var actions = QueueActions()
        if let frame, let segment {
            segment.frames.append(frame)
            segment.size += frame.length
            diskBytes += frame.length
            c.totalDiskBudget?.add(frame.length)
            diskFull = false
        }
        let high = Int(Double(c.memoryBytes) * c.highWatermark)
        let diskFullError = (failure as? FileError)?.isDiskFull ?? false
        for _ in 0..<count {
            let p = pending.removeFirst()
            let size = p.stored.record.size
            pendingBytes -= size
            if p.completion != nil && c.durability == .spill { owedCompletions -= 1 }
            if let failure {
                if let done = p.completion {
                    let err: QueueError = diskFullError ? .full(retryAfter: retryAfter()) : .io("\(failure)")
                    actions.completions.append((done, .failure(err)))
                } else {
                    stats.droppedSpans[diskFullError ? .diskFull : .ioError, default: 0] += p.stored.record.spanCount
                }
                continue
            }
            if c.durability == .wal {
                if !spilling && !markedDown && heldBytes + size <= high {
                    ram.append(Entry(stored: p.stored, onDisk: true))
                    heldBytes += size
                } else if !spilling {
                    spilling = true
                    readFromSeq = p.stored.seq
                }
            }
            if let done = p.completion { actions.completions.append((done, .success(()))) }
        }
        if failure != nil {
            stats.writeErrors += 1
            if diskFullError { diskFull = true }
            rollBeforeNextWrite = true
        }
        actions.wake = serveWaiter()
        if waiter != nil { actions.read = wantRead() }
        return actions
    }

    /// After a write: whether to write again (a full frame waits, a caller waits, or in `wal`
    /// anything waits), and after how long.
    mutating func writeAgain() -> Double? {
        let c = configuration
        guard !pending.isEmpty, !writeScheduled else { return nil }
        guard c.durability == .wal || pendingBytes >= c.frameBytes || owedCompletions > 0 else { return nil }
        writeScheduled = true
        return c.durability == .wal && pendingBytes < c.frameBytes ? c.groupCommitInterval : 0
    }

    /// Records held only in memory (not on disk), in seq order, and the first seqs of the
    /// segments: what shutdown writes out.
    func memoryOnlyRecords() -> (records: [StoredRecord], segmentStarts: [UInt64]) {
        var all: [StoredRecord] = []
        for e in retry where !e.onDisk { all.append(e.stored) }
        for e in inflight.values where !e.onDisk { all.append(e.stored) }
        for e in ram where !e.onDisk { all.append(e.stored) }
        all.sort { $0.seq < $1.seq }
        return (all, segments.map(\.firstSeq))
    }
}

extension BackendQueue {
    func performWrite() {
        dispatchPrecondition(condition: .onQueue(io))
        state.withLock { $0.writeScheduled = false }
        writeOnce()
        perform(QueueActions(writeAfter: state.withLock { $0.writeAgain() }))
    }

    /// Writes one frame from the head of `pending`. Runs on `io`.
    func writeOnce() {
        let c = configuration
        var (batch, roll) = state.withLock { $0.nextFrameBatch() }
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
                written = FrameInfo(header, offset: offset, length: length)
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
        let actions = state.withLock { $0.frameWritten(count: batch.count, frame: written, in: segment, failure: failure) }
        if let failure { logger.error("spill write failed", metadata: ["spill.error": "\(failure)", "spill.records": "\(batch.count)"]) }
        perform(actions)
    }

    /// Returns the segment to append to, rolling to a new one when asked or when full. Runs on `io`.
    func activeSegment(firstSeq: UInt64, roll: Bool, adding length: Int) throws -> SegmentState {
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
        state.withLock { $0.segmentCreated(seg) }
        active = seg
        return seg
    }

    func sealActive() {
        guard let a = active else { return }
        try? a.file?.sync()
        active = nil
    }

    /// `memory`/`spill` shutdown: writes every record held only in memory to new segments, split
    /// so that segment ranges stay disjoint (replay order = name order). Runs on `io`.
    func spillMemoryTier() {
        dispatchPrecondition(condition: .onQueue(io))
        let (entries, existing) = state.withLock { $0.memoryOnlyRecords() }
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
                    state.withLock { $0.frameAppended(FrameInfo(header, offset: offset, length: length), to: seg) }
                } catch {
                    logger.error("spill of memory tier at shutdown failed", metadata: ["spill.error": "\(error)"])
                    let spans = entries[k..<end].reduce(0) { $0 + $1.record.spanCount }
                    let reason: DropReason = (error as? FileError)?.isDiskFull ?? false ? .diskFull : .ioError
                    state.withLock { $0.stats.droppedSpans[reason, default: 0] += spans }
                }
                k = end
            }
            i = j
        }
        try? active?.file?.sync()
        sealActive()
        // The entries stay in place (the queue is closed): the ledger written next must not skip them.
    }
}

extension FrameInfo {
    /// Where a frame just written sits, from the header the encoder produced.
    init(_ header: FrameHeader, offset: Int, length: Int) {
        self.init(offset: offset, length: length, firstSeq: header.firstSeq, lastSeq: header.lastSeq,
                  records: Int(header.recordCount), spans: Int(header.spanCount), rawBytes: Int(header.rawLength))
    }
}
