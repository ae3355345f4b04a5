import Logging

/// What recovery found on disk: the segments to replay and where to start.
struct RecoveredSegments {
    var segments: [SegmentState] = []
    var diskBytes = 0
    /// The ledger's watermark: records below it were delivered.
    var watermark: UInt64 = 0
    var nextSeq: UInt64 = 0
    var corruptFrames = 0
    var corruptSegments = 0
    var ledger: Ledger? = nil
}

/// Scans one backend's directory when its queue opens, before the queue is shared: a torn tail is
/// truncated, damaged frames are skipped and counted, an unreadable segment is renamed to
/// `*.corrupt`, and segments wholly below the ledger's watermark are deleted.
struct QueueRecovery {
    let configuration: QueueConfiguration
    let fileSystem: any SpillFileSystem
    let logger: Logger

    /// Throws only when the directory cannot be listed or the ledger cannot be opened.
    func run() throws -> RecoveredSegments {
        let directory = configuration.backendDirectory
        var r = RecoveredSegments()
        var found: [(UInt64, String)] = []
        for name in try fileSystem.listDirectory(directory) {
            if let seq = SpillFormat.firstSeq(ofSegmentNamed: name) { found.append((seq, name)) }
        }
        found.sort { $0.0 < $1.0 }
        var maxSeq: UInt64? = nil
        for (seq, name) in found {
            let path = directory + "/" + name
            let file: any SpillFile
            do { file = try fileSystem.open(path, create: false) } catch {
                quarantine(path, reason: "\(error)", &r)
                continue
            }
            let scan: SegmentScan
            do { scan = try scanSegment(file) } catch {
                file.close()
                quarantine(path, reason: "\(error)", &r)
                continue
            }
            if scan.header.backend != configuration.backend {
                logger.warning("spill segment written for another backend name", metadata: ["spill.segment": "\(path)", "spill.header.backend": "\(scan.header.backend)"])
            }
            if scan.skippedRegions > 0 {
                r.corruptFrames += scan.skippedRegions
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
            r.segments.append(seg)
            r.diskBytes += scan.validEnd
            maxSeq = max(maxSeq ?? 0, seg.lastSeq)
        }
        configuration.totalDiskBudget?.add(r.diskBytes)
        let ledger = Ledger(file: try fileSystem.open(directory + "/" + Ledger.fileName, create: true))
        r.ledger = ledger
        r.watermark = ledger.watermark
        r.nextSeq = max(ledger.watermark, maxSeq.map { $0 + 1 } ?? 0)
        // Segments entirely below the watermark were delivered: delete them now.
        for seg in r.segments where seg.lastSeq < r.watermark {
            seg.file?.close()
            try? fileSystem.remove(seg.path)
            r.diskBytes -= seg.size
            configuration.totalDiskBudget?.add(-seg.size)
        }
        r.segments.removeAll { $0.lastSeq < r.watermark }
        if !r.segments.isEmpty {
            var records = 0
            for seg in r.segments { for f in seg.frames where f.lastSeq >= r.watermark { records += f.records } }
            logger.info("spill recovered", metadata: ["spill.segments": "\(r.segments.count)", "spill.records": "\(records)", "spill.bytes": "\(r.diskBytes)"])
        }
        return r
    }

    private func quarantine(_ path: String, reason: String, _ r: inout RecoveredSegments) {
        r.corruptSegments += 1
        logger.error("spill segment unreadable, renamed to .corrupt", metadata: ["spill.segment": "\(path)", "spill.error": "\(reason)"])
        do { try fileSystem.rename(path, to: path + SpillFormat.corruptSuffix) } catch {
            logger.error("spill rename failed", metadata: ["spill.error": "\(error)"])
        }
    }
}
