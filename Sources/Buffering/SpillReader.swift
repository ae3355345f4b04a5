import Dispatch
import DequeModule

// The spill reader: disk-only frames → `diskBuffer`, in seq order, on `io`, about two frames
// ahead of delivery. Records read back share their frame's decompressed buffer (one allocation
// per frame). When it has caught up with everything written, the spill episode ends.

extension QueueState {
    /// The next frame holding disk-only records, or nil when the reader has caught up.
    func nextFrameToRead() -> (SegmentState, FrameInfo)? {
        for seg in segments where seg.lastSeq >= readFromSeq {
            if let f = seg.frames.first(where: { $0.lastSeq >= readFromSeq }) { return (seg, f) }
        }
        return nil
    }

    /// The reader caught up with everything written: unless the backend is still down, the spill
    /// episode ends and (in `spill` mode) unwritten batches join the memory tier.
    mutating func readCaughtUp() -> QueueActions {
        var actions = QueueActions()
        readScheduled = false
        guard spilling else { return actions }
        if markedDown && !closed { return actions }
        // Read-ahead records are older than anything unwritten: they go first.
        if !diskBuffer.isEmpty {
            var merged = Deque<Entry>()
            merged.reserveCapacity(ram.count + diskBuffer.count)
            while true {
                if let r = ram.first, diskBuffer.first.map({ r.stored.seq < $0.stored.seq }) ?? true { merged.append(ram.removeFirst()) }
                else if let d = diskBuffer.popFirst() { merged.append(d) }
                else { break }
            }
            ram = merged
        }
        diskBufferBytes = 0
        if configuration.durability == .spill {
            // Unwritten batches need not touch the disk at all: they join the memory tier.
            owedCompletions = 0
            while let p = pending.popFirst() {
                pendingBytes -= p.stored.record.size
                heldBytes += p.stored.record.size
                ram.append(Entry(stored: p.stored, onDisk: false))
                if let done = p.completion { actions.completions.append((done, .success(()))) }
            }
            rollBeforeNextWrite = true
        }
        // wal: batches still unwritten are placed (memory or disk-only) when written.
        spilling = false
        actions.wake = serveWaiter()
        return actions
    }

    /// A frame was read (or found unreadable, and counted as corrupt).
    mutating func frameRead(_ result: Result<[StoredRecord], FrameReadError>, frame: FrameInfo) -> QueueActions {
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
        var actions = QueueActions()
        actions.wake = serveWaiter()
        actions.read = wantRead()
        return actions
    }
}

extension BackendQueue {
    /// Reads the next disk-only frame into `diskBuffer`, or — when the reader has caught up —
    /// ends the spill episode. Runs on `io`.
    func performRead() {
        dispatchPrecondition(condition: .onQueue(io))
        guard let (seg, frame) = state.withLock({ $0.nextFrameToRead() }) else {
            perform(state.withLock { $0.readCaughtUp() })
            return
        }
        let result: Result<[StoredRecord], FrameReadError>
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
        let actions = state.withLock { $0.frameRead(result, frame: frame) }
        if case .failure(let e) = result {
            logger.error("spill frame unreadable, skipped", metadata: [
                "spill.segment": "\(seg.path)", "spill.offset": "\(frame.offset)", "spill.error": "\(e)", "spill.spans": "\(frame.spans)",
            ])
        }
        perform(actions)
    }
}
