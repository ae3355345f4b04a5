// Buffering: per-backend queues — a memory tier, then zstd spill segments on disk.
//
// ON-DISK FORMAT (version 1). All integers little-endian. CRC = CRC32C (Castagnoli).
//
//   <spill.directory>/<backend>/
//       00000000000000000042.seg   segment files, named by the sequence number of their first
//                                  record (20 digits), so name order is replay order
//       ledger                     read checkpoint (see Ledger.swift)
//       *.corrupt                  segments whose header could not be read; kept for inspection
//
//   Segment = header, then frames back to back:
//     header:  "TRSPILL\0" (8) | version u16 = 1 | name length u16 | created at, unix ms u64
//              | backend name (UTF-8, ≤ 255 bytes) | CRC of everything before it (u32)
//     frame:   magic u32 "TRFR" | compressed length u32 | raw length u32 | record count u32
//              | span count u32 | first seq u64 | last seq u64 | payload CRC u32
//              | header CRC u32 (over the 40 bytes before it)  = 44 bytes
//              | payload: ONE complete zstd frame (compressed length bytes), which decompresses
//                to exactly raw length bytes of records
//     record:  seq u64 | enqueued at, unix ms u64 | span count u32 | metadata length u16
//              | payload length u32 | metadata | payload                      (26 + m + p bytes)
//
// INVARIANTS
//   - Sequence numbers are per backend, strictly increasing in enqueue order, never reused while
//     a record carrying them may still be on disk. Within a segment records are in increasing seq
//     order and segments' [first, last] ranges do not overlap, so name order = replay order.
//   - A frame is many records (the writer aims for ≥ 1 MiB of input: small frames lose ~20 % of
//     the ratio). Each frame carries its own length and two CRCs: a torn write or a flipped bit
//     is detected, and a damaged header can be skipped by searching for the next header whose
//     CRC holds.
//   - Files are only appended to (pwrite at the end) and truncated to a frame boundary during
//     recovery. A segment is deleted only when every record in it is acknowledged (its last seq
//     is below the queue's lowest pending seq), or when a cap drops it (counted as dropped).
//   - The ledger holds the lowest pending seq ("watermark"), written at most every
//     `checkpointInterval`. On restart, records below it are skipped.
//
// DELIVERY GUARANTEE (at-least-once) and where duplicates can occur after a restart:
//   - records acknowledged after the last ledger write (≤ checkpointInterval before the crash);
//   - records acknowledged out of order above the watermark (e.g. seq 11 acked, 10 still in
//     flight: 11 is sent again);
//   - in `wal` mode, a batch whose fsync finished but whose ingest answer was not sent.
// Loss: `memory`/`spill` lose the memory tier (and unwritten spill buffer) on a crash, not on a
// graceful shutdown; `wal` loses nothing it acknowledged. Caps and corrupt frames drop data,
// always counted in `QueueStats.droppedSpans`.


enum SpillFormat {
    static let segmentMagic: [UInt8] = Array("TRSPILL".utf8) + [0]
    static let version: UInt16 = 1
    static let frameMagic: UInt32 = 0x5246_5254 // "TRFR" little-endian
    static let frameHeaderSize = 44
    static let recordHeaderSize = 26
    static let segmentSuffix = ".seg"
    static let corruptSuffix = ".corrupt"

    static func segmentName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + segmentSuffix
    }

    /// The first seq encoded in a segment file name, or nil when the name is not a segment's.
    static func firstSeq(ofSegmentNamed name: String) -> UInt64? {
        guard name.hasSuffix(segmentSuffix) else { return nil }
        return UInt64(name.dropLast(segmentSuffix.count))
    }
}

// MARK: little-endian helpers

extension UnsafeRawBufferPointer {
    @inline(__always) func u16(_ at: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    @inline(__always) func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    @inline(__always) func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}

extension UnsafeMutableRawBufferPointer {
    @inline(__always) func put(_ v: UInt16, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt16.self) }
    @inline(__always) func put(_ v: UInt32, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt32.self) }
    @inline(__always) func put(_ v: UInt64, _ at: Int) { storeBytes(of: v.littleEndian, toByteOffset: at, as: UInt64.self) }
}

// MARK: segment header

/// The header at the start of every segment file.
struct SegmentHeader: Equatable {
    var backend: String
    var createdAtMillis: UInt64

    static let maxSize = 24 + 255

    func encode() -> [UInt8] {
        let name = Array(backend.utf8.prefix(255))
        var out = [UInt8](repeating: 0, count: 24 + name.count)
        out.withUnsafeMutableBytes { b in
            for i in 0..<8 { b[i] = SpillFormat.segmentMagic[i] }
            b.put(SpillFormat.version, 8)
            b.put(UInt16(name.count), 10)
            b.put(createdAtMillis, 12)
            for i in 0..<name.count { b[20 + i] = name[i] }
            b.put(crc32c(UnsafeRawBufferPointer(rebasing: b[0..<(20 + name.count)])), 20 + name.count)
        }
        return out
    }

    enum DecodeError: Error, CustomStringConvertible {
        case tooShort, badMagic, unsupportedVersion(UInt16), badChecksum
        var description: String {
            switch self {
            case .tooShort: "segment header truncated"
            case .badMagic: "not a tracerelay spill segment (bad magic)"
            case .unsupportedVersion(let v): "unsupported segment version \(v)"
            case .badChecksum: "segment header checksum mismatch"
            }
        }
    }

    /// Decodes a header from the first bytes of a file; returns it and its length.
    static func decode(_ b: UnsafeRawBufferPointer) throws(DecodeError) -> (SegmentHeader, Int) {
        guard b.count >= 24 else { throw .tooShort }
        for i in 0..<8 where b[i] != SpillFormat.segmentMagic[i] { throw .badMagic }
        let version = b.u16(8)
        guard version == SpillFormat.version else { throw .unsupportedVersion(version) }
        let n = Int(b.u16(10))
        guard n <= 255, b.count >= 24 + n else { throw .tooShort }
        guard crc32c(UnsafeRawBufferPointer(rebasing: b[0..<(20 + n)])) == b.u32(20 + n) else { throw .badChecksum }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[20..<(20 + n)]), as: UTF8.self)
        return (SegmentHeader(backend: name, createdAtMillis: b.u64(12)), 24 + n)
    }
}

// MARK: frame header

/// The fixed header in front of each compressed frame.
struct FrameHeader: Equatable {
    var compressedLength: UInt32
    var rawLength: UInt32
    var recordCount: UInt32
    var spanCount: UInt32
    var firstSeq: UInt64
    var lastSeq: UInt64
    var payloadCRC: UInt32

    func encode(into b: UnsafeMutableRawBufferPointer) {
        b.put(SpillFormat.frameMagic, 0)
        b.put(compressedLength, 4)
        b.put(rawLength, 8)
        b.put(recordCount, 12)
        b.put(spanCount, 16)
        b.put(firstSeq, 20)
        b.put(lastSeq, 28)
        b.put(payloadCRC, 36)
        b.put(crc32c(UnsafeRawBufferPointer(rebasing: b[0..<40])), 40)
    }

    /// Decodes a header, or nil when the magic or the header CRC does not hold.
    static func decode(_ b: UnsafeRawBufferPointer) -> FrameHeader? {
        guard b.count >= SpillFormat.frameHeaderSize, b.u32(0) == SpillFormat.frameMagic else { return nil }
        guard crc32c(UnsafeRawBufferPointer(rebasing: b[0..<40])) == b.u32(40) else { return nil }
        let h = FrameHeader(compressedLength: b.u32(4), rawLength: b.u32(8), recordCount: b.u32(12),
                            spanCount: b.u32(16), firstSeq: b.u64(20), lastSeq: b.u64(28), payloadCRC: b.u32(36))
        guard h.firstSeq <= h.lastSeq, h.recordCount > 0 else { return nil }
        return h
    }
}

// MARK: records

/// One record as stored: its sequence number and enqueue time plus the caller's record.
struct StoredRecord: Sendable {
    var seq: UInt64
    var timeMillis: UInt64
    var record: Record

    var encodedSize: Int { SpillFormat.recordHeaderSize + record.metadata.count + record.bytes.count }
}

/// Turns records into frames. Owns a compression context and reusable buffers; one per I/O queue.
final class FrameEncoder {
    private let compressor: ZstdCompressor
    private var raw: [UInt8] = []
    private(set) var frame: [UInt8] = []
    private(set) var frameLength = 0

    init(level: Int32) { compressor = ZstdCompressor(level: level) }

    /// Encodes `records` (non-empty, increasing seq) into `frame[0..<frameLength]`.
    func encode(_ records: ArraySlice<StoredRecord>) throws -> FrameHeader {
        var rawSize = 0
        var spans: UInt64 = 0
        for r in records {
            rawSize += r.encodedSize
            spans += UInt64(r.record.spanCount)
        }
        if raw.count < rawSize { raw = [UInt8](repeating: 0, count: rawSize) }
        raw.withUnsafeMutableBytes { b in
            var o = 0
            for r in records {
                b.put(r.seq, o)
                b.put(r.timeMillis, o + 8)
                b.put(UInt32(clamping: r.record.spanCount), o + 16)
                b.put(UInt16(r.record.metadata.count), o + 20)
                b.put(UInt32(r.record.bytes.count), o + 22)
                o += SpillFormat.recordHeaderSize
                r.record.metadata.withUnsafeBytes { m in
                    if m.count > 0 { (b.baseAddress! + o).copyMemory(from: m.baseAddress!, byteCount: m.count) }
                }
                o += r.record.metadata.count
                r.record.bytes.withUnsafeBytes { p in
                    if p.count > 0 { (b.baseAddress! + o).copyMemory(from: p.baseAddress!, byteCount: p.count) }
                }
                o += r.record.bytes.count
            }
        }
        let needed = SpillFormat.frameHeaderSize + ZstdCompressor.bound(rawSize)
        if frame.count < needed { frame = [UInt8](repeating: 0, count: needed) }
        let compressed = try raw.withUnsafeBytes { r in
            try frame.withUnsafeMutableBytes { f in
                try compressor.compress(UnsafeRawBufferPointer(rebasing: r[0..<rawSize]),
                                        into: UnsafeMutableRawBufferPointer(rebasing: f[SpillFormat.frameHeaderSize...]))
            }
        }
        let header = frame.withUnsafeMutableBytes { f -> FrameHeader in
            let payload = UnsafeRawBufferPointer(rebasing: f[SpillFormat.frameHeaderSize..<(SpillFormat.frameHeaderSize + compressed)])
            let h = FrameHeader(compressedLength: UInt32(compressed), rawLength: UInt32(rawSize),
                                recordCount: UInt32(records.count), spanCount: UInt32(clamping: spans),
                                firstSeq: records.first!.seq, lastSeq: records.last!.seq, payloadCRC: crc32c(payload))
            h.encode(into: f)
            return h
        }
        frameLength = SpillFormat.frameHeaderSize + compressed
        return header
    }
}

/// Why a frame could not be read back.
enum FrameReadError: Error, Sendable, CustomStringConvertible {
    case io(FileError)
    case truncated
    case badHeader
    case checksum
    case decompress(String)
    case malformedRecords(String)

    var description: String {
        switch self {
        case .io(let e): "I/O error: \(e)"
        case .truncated: "frame truncated"
        case .badHeader: "frame header damaged"
        case .checksum: "payload checksum mismatch"
        case .decompress(let m): "zstd: \(m)"
        case .malformedRecords(let m): "records malformed: \(m)"
        }
    }
}

/// Reads frames back. Owns a decompression context and reusable buffers; one per I/O queue.
final class FrameDecoder {
    private let decompressor = ZstdDecompressor()
    private var compressed: [UInt8] = []
    private var raw: [UInt8] = []
    /// Frames larger than this are rejected as damaged (a lying length must not allocate GBs).
    static let maxFrameBytes = 1 << 30

    /// Reads and verifies the frame at `offset`, returning its header and records.
    func read(_ file: any SpillFile, at offset: Int, verifyOnly: Bool = false) throws(FrameReadError) -> (FrameHeader, [StoredRecord]) {
        var head = [UInt8](repeating: 0, count: SpillFormat.frameHeaderSize)
        let n: Int
        do { n = try head.withUnsafeMutableBytes { try file.read(into: $0, at: offset) } } catch let e as FileError { throw .io(e) } catch { throw .badHeader }
        guard n == head.count else { throw .truncated }
        guard let header = head.withUnsafeBytes({ FrameHeader.decode($0) }) else { throw .badHeader }
        let clen = Int(header.compressedLength), rlen = Int(header.rawLength)
        guard clen <= Self.maxFrameBytes, rlen <= Self.maxFrameBytes else { throw .badHeader }
        if compressed.count < clen { compressed = [UInt8](repeating: 0, count: clen) }
        let got: Int
        do { got = try compressed.withUnsafeMutableBytes { try file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<clen]), at: offset + SpillFormat.frameHeaderSize) } } catch let e as FileError { throw .io(e) } catch { throw .truncated }
        guard got == clen else { throw .truncated }
        let crc = compressed.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<clen])) }
        guard crc == header.payloadCRC else { throw .checksum }
        // The raw length sizes the buffer: it must be what the zstd frame itself declares.
        let declared = compressed.withUnsafeBytes { ZstdDecompressor.declaredContentSize(UnsafeRawBufferPointer(rebasing: $0[0..<clen])) }
        guard declared == rlen else {
            throw .decompress("the frame header's raw length \(rlen) is not the \(declared.map(String.init) ?? "unknown") bytes its zstd frame declares")
        }
        // Verification decompresses into a reused buffer; decoding gives each frame a fresh buffer
        // that its records then share (one allocation per frame, no per-record copy).
        if verifyOnly {
            if raw.count < rlen { raw = [UInt8](repeating: 0, count: rlen) }
            do {
                try compressed.withUnsafeBytes { c in
                    try raw.withUnsafeMutableBytes { r in
                        try decompressor.decompress(UnsafeRawBufferPointer(rebasing: c[0..<clen]), into: UnsafeMutableRawBufferPointer(rebasing: r[0..<rlen]))
                    }
                }
            } catch let e as ZstdError { throw .decompress(e.message) } catch { throw .decompress("\(error)") }
            do {
                try raw.withUnsafeBytes { r in
                    try Self.forEachRecord(UnsafeRawBufferPointer(rebasing: r[0..<rlen]), header: header) { _, _, _, _, _ in }
                }
            } catch let e as FrameReadError { throw e } catch { throw .malformedRecords("\(error)") }
            return (header, [])
        }
        let frame: [UInt8]
        do {
            frame = try compressed.withUnsafeBytes { c in
                // Uninitialized: zstd writes every byte (it fails unless it produces exactly rlen).
                try [UInt8](unsafeUninitializedCapacity: rlen) { r, initialized in
                    try decompressor.decompress(UnsafeRawBufferPointer(rebasing: c[0..<clen]), into: UnsafeMutableRawBufferPointer(r))
                    initialized = rlen
                }
            }
        } catch let e as ZstdError { throw .decompress(e.message) } catch { throw .decompress("\(error)") }
        return (header, try Self.parseRecords(frame, header: header))
    }

    /// Parses the records of a decompressed frame, checking them against its header. The records'
    /// bytes and metadata are slices of `frame` (no copy).
    static func parseRecords(_ frame: [UInt8], header: FrameHeader) throws(FrameReadError) -> [StoredRecord] {
        var out: [StoredRecord] = []
        out.reserveCapacity(Int(min(header.recordCount, 1 << 16)))
        do {
            try frame.withUnsafeBytes { b in
                try forEachRecord(b, header: header) { seq, time, spans, meta, payload in
                    out.append(StoredRecord(seq: seq, timeMillis: time,
                                            record: Record(bytes: frame[payload], spanCount: Int(spans), metadata: meta.isEmpty ? [] : frame[meta])))
                }
            }
        } catch let e as FrameReadError { throw e } catch { throw .malformedRecords("\(error)") }
        return out
    }

    /// Walks the records of a decompressed frame, checking their framing, order and count against
    /// the frame header; `body` gets each record's seq, time, span count and the byte ranges of its
    /// metadata and payload within `b`.
    static func forEachRecord(_ b: UnsafeRawBufferPointer, header: FrameHeader,
                              _ body: (UInt64, UInt64, UInt32, Range<Int>, Range<Int>) -> Void) throws(FrameReadError) {
        var o = 0
        var count = 0
        var first: UInt64? = nil
        var previous: UInt64? = nil
        while o < b.count {
            guard b.count - o >= SpillFormat.recordHeaderSize else { throw .malformedRecords("record header truncated at byte \(o)") }
            let seq = b.u64(o), time = b.u64(o + 8), spans = b.u32(o + 16)
            let m = Int(b.u16(o + 20)), p = Int(b.u32(o + 22))
            o += SpillFormat.recordHeaderSize
            guard b.count - o >= m + p else { throw .malformedRecords("record \(seq) longer than the frame") }
            if let previous, seq <= previous { throw .malformedRecords("seq \(seq) not increasing") }
            if first == nil { first = seq }
            previous = seq
            body(seq, time, spans, o..<(o + m), (o + m)..<(o + m + p))
            o += m + p
            count += 1
        }
        guard count == Int(header.recordCount), first == header.firstSeq, previous == header.lastSeq else {
            throw .malformedRecords("frame header says \(header.recordCount) records \(header.firstSeq)...\(header.lastSeq), found \(count)")
        }
    }
}
