// Entry point for the libFuzzer harness in Fuzz/ (a separate package, so it cannot reach this
// module's internal types): arbitrary bytes as a spill segment file, scanned and read the way
// recovery and the spill reader do. Nothing in the product calls it; it changes no behaviour.

@_spi(Fuzzing) public enum SpillFuzz {
    /// One segment file. `bytes[0]` picks repairs that let mutated files get past the checksums
    /// (bit 0: recompute the segment header CRC and every frame's CRCs; bit 1: frame payloads
    /// are raw records, compressed here first; bit 2: with bit 1, set each frame header's record
    /// count and first/last seq from its records). The rest is the file.
    ///
    /// The scan must end in frames or a `SegmentScanError`, reading each frame must give its
    /// records or a `FrameReadError` (verifying and decoding agreeing), and records read must
    /// match the frame header they came with. Any trap is a bug.
    public static func segment(_ bytes: [UInt8]) {
        guard let control = bytes.first else { return }
        var file = Array(bytes.dropFirst())
        if control & 3 != 0 { file = repaired(file, compress: control & 2 != 0, fixCounts: control & 4 != 0) }
        let f = MemoryFile(file)
        guard let scan = try? scanSegment(f) else { return }
        spillCheck(scan.validEnd <= scan.fileSize && scan.headerLength <= scan.validEnd, "scan bounds: \(scan)")
        var end = scan.headerLength
        let decoder = FrameDecoder()
        for frame in scan.frames {
            spillCheck(frame.offset >= end && frame.offset + frame.length <= scan.fileSize, "frames overlap or overrun: \(scan.frames)")
            end = frame.offset + frame.length
            let verified = Result { () throws(FrameReadError) in try decoder.read(f, at: frame.offset, verifyOnly: true).0 }
            let decoded = Result { () throws(FrameReadError) in try decoder.read(f, at: frame.offset) }
            switch (verified, decoded) {
            case (.success(let h1), .success(let (h2, records))):
                spillCheck(h1 == h2 && records.count == frame.records, "frame \(frame) read as \(records.count) records")
                spillCheck(records.first?.seq == frame.firstSeq && records.last?.seq == frame.lastSeq, "seqs differ from \(frame)")
                spillCheck(records.allSatisfy { $0.encodedSize <= Int(h2.rawLength) }, "record larger than its frame")
            case (.failure(let e1), .failure(let e2)):
                spillCheck("\(e1)" == "\(e2)", "verify says \(e1), read says \(e2)")
            default:
                spillCheck(false, "verify and read disagree at \(frame): \(verified) vs \(decoded)")
            }
        }
    }

    /// `precondition` whose message survives -O (the harness is a release build).
    private static func spillCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError(message()) }
    }

    /// `file` with its checksums (and optionally compression and counts) made to hold, walking
    /// the frames the way the writer lays them out; bytes past a frame without magic are kept.
    static func repaired(_ file: [UInt8], compress: Bool, fixCounts: Bool) -> [UInt8] {
        guard file.count >= 24 else { return file }
        let nameLength = Int(file.withUnsafeBytes { $0.u16(10) })
        guard nameLength <= 255, file.count >= 24 + nameLength else { return file }
        var out = file
        out.withUnsafeMutableBytes { b in
            b.put(crc32c(UnsafeRawBufferPointer(rebasing: b[0..<(20 + nameLength)])), 20 + nameLength)
        }
        var offset = 24 + nameLength
        out.removeSubrange(offset...)
        let compressor = ZstdCompressor(level: 1)
        while offset + SpillFormat.frameHeaderSize <= file.count,
              file.withUnsafeBytes({ $0.u32(offset) }) == SpillFormat.frameMagic {
            var head = Array(file[offset..<(offset + SpillFormat.frameHeaderSize)])
            let start = offset + SpillFormat.frameHeaderSize
            let available = min(Int(head.withUnsafeBytes { $0.u32(4) }), file.count - start)
            var payload = Array(file[start..<(start + available)])
            if compress {
                let raw = payload
                payload = (try? compressor.compress(raw)) ?? raw
                head.withUnsafeMutableBytes { h in
                    h.put(UInt32(raw.count), 8)
                    h.put(UInt32(payload.count), 4)
                    if fixCounts { recount(raw, into: h) }
                }
            }
            head.withUnsafeMutableBytes { h in
                h.put(payload.withUnsafeBytes { crc32c($0) }, 36)
                h.put(crc32c(UnsafeRawBufferPointer(rebasing: h[0..<40])), 40)
            }
            out += head + payload
            offset = start + available
        }
        out += file[min(offset, file.count)...]
        return out
    }

    /// Sets a frame header's record count and first/last seq from the records in `raw` (as far
    /// as they parse).
    private static func recount(_ raw: [UInt8], into h: UnsafeMutableRawBufferPointer) {
        raw.withUnsafeBytes { b in
            var o = 0, count: UInt32 = 0
            var first: UInt64?, last: UInt64 = 0
            while b.count - o >= SpillFormat.recordHeaderSize {
                let seq = b.u64(o)
                first = first ?? seq
                last = seq
                count += 1
                o += SpillFormat.recordHeaderSize + Int(b.u16(o + 20)) + Int(b.u32(o + 22))
            }
            h.put(count, 12)
            h.put(first ?? 0, 20)
            h.put(last, 28)
        }
    }

    /// A read-only segment file in memory.
    private final class MemoryFile: SpillFile {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        func size() throws -> Int { bytes.count }
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
            let n = min(buffer.count, max(0, bytes.count - offset))
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            return n
        }
        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws { throw FileError("write", "fuzz", errno: 30) }
        func sync() throws {}
        func truncate(to size: Int) throws { throw FileError("truncate", "fuzz", errno: 30) }
        func close() {}
    }
}
