/// Where one frame sits in a segment, and what it holds (from its verified header).
struct FrameInfo: Sendable, Equatable {
    var offset: Int
    var length: Int
    var firstSeq: UInt64
    var lastSeq: UInt64
    var records: Int
    var spans: Int
    var rawBytes: Int
}

/// The result of scanning a segment's frame headers (payloads are checked when read).
struct SegmentScan {
    var header: SegmentHeader
    var headerLength: Int
    var frames: [FrameInfo]
    /// End of the last good frame: the file is truncated here when `tornTail` is set.
    var validEnd: Int
    var fileSize: Int
    /// Damaged regions skipped by searching for the next valid frame header.
    var skippedRegions: Int
    var skippedBytes: Int
    var tornTail: Bool
}

enum SegmentScanError: Error, CustomStringConvertible {
    case io(FileError)
    case header(SegmentHeader.DecodeError)
    var description: String {
        switch self {
        case .io(let e): "\(e)"
        case .header(let e): "\(e)"
        }
    }
}

/// Scans a segment: reads the header and walks the frame headers. A frame header that does not
/// verify is skipped by searching forward for the next one that does; a frame that runs past the
/// end of the file (a torn write) ends the scan at the last good frame.
func scanSegment(_ file: any SpillFile) throws(SegmentScanError) -> SegmentScan {
    do {
        let size = try file.size()
        var head = [UInt8](repeating: 0, count: min(size, SegmentHeader.maxSize))
        _ = try head.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        let (header, headerLength): (SegmentHeader, Int)
        do { (header, headerLength) = try head.withUnsafeBytes { try SegmentHeader.decode($0) } } catch let e as SegmentHeader.DecodeError { throw SegmentScanError.header(e) }
        var scan = SegmentScan(header: header, headerLength: headerLength, frames: [], validEnd: headerLength,
                               fileSize: size, skippedRegions: 0, skippedBytes: 0, tornTail: false)
        var offset = headerLength
        var buf = [UInt8](repeating: 0, count: SpillFormat.frameHeaderSize)
        while offset < size {
            let n = try buf.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
            let frame = n == buf.count ? buf.withUnsafeBytes { FrameHeader.decode($0) } : nil
            if let frame {
                let end = offset + SpillFormat.frameHeaderSize + Int(frame.compressedLength)
                if end > size { scan.tornTail = true; break }
                scan.frames.append(FrameInfo(offset: offset, length: end - offset, firstSeq: frame.firstSeq, lastSeq: frame.lastSeq,
                                             records: Int(frame.recordCount), spans: Int(frame.spanCount), rawBytes: Int(frame.rawLength)))
                offset = end
                scan.validEnd = end
                continue
            }
            // Damaged header (or a partial one at the end): look for the next verifiable header.
            if let next = try findNextFrame(file, from: offset + 1, size: size) {
                scan.skippedRegions += 1
                scan.skippedBytes += next - offset
                offset = next
            } else {
                scan.tornTail = true
                break
            }
        }
        return scan
    } catch let e as SegmentScanError {
        throw e
    } catch let e as FileError {
        throw .io(e)
    } catch {
        throw .io(FileError("scan", "?", errno: 5))
    }
}

/// The offset of the next frame header at or after `from` that verifies and fits in the file.
func findNextFrame(_ file: any SpillFile, from: Int, size: Int) throws -> Int? {
    // Up to 1 MiB at a time, never more than the rest of the file.
    let chunk = min(1 << 20, max(0, size - from))
    var buf = [UInt8](repeating: 0, count: chunk + SpillFormat.frameHeaderSize)
    var base = from
    while base + SpillFormat.frameHeaderSize <= size {
        let n = try buf.withUnsafeMutableBytes { try file.read(into: $0, at: base) }
        if n < SpillFormat.frameHeaderSize { return nil }
        let found: Int? = buf.withUnsafeBytes { b in
            var i = 0
            while i + SpillFormat.frameHeaderSize <= n {
                if b[i] == 0x54, b.u32(i) == SpillFormat.frameMagic,
                   let h = FrameHeader.decode(UnsafeRawBufferPointer(rebasing: b[i..<(i + SpillFormat.frameHeaderSize)])),
                   base + i + SpillFormat.frameHeaderSize + Int(h.compressedLength) <= size {
                    return base + i
                }
                i += 1
            }
            return nil
        }
        if let found { return found }
        base += n - SpillFormat.frameHeaderSize + 1
    }
    return nil
}
