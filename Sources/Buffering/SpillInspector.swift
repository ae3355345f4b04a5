import Basics

/// Read-only inspection of spill segments, for `tracerelay spill ls|verify|cat`. Never modifies
/// files (a running relay may own them), never traps on damaged data.
public enum SpillInspector {
    /// What one segment holds, from its headers.
    public struct SegmentSummary: Sendable, Equatable {
        public var path: String
        public var backend: String
        public var createdAtMillis: UInt64
        public var frames: Int
        public var records: Int
        public var spans: Int
        /// Input (uncompressed record) bytes.
        public var rawBytes: Int
        /// File size.
        public var fileBytes: Int
        public var firstSeq: UInt64?
        public var lastSeq: UInt64?
        /// Damaged frame headers skipped, and whether the file ends in a partial frame.
        public var damagedRegions: Int
        public var tornTail: Bool
        /// Set when the segment header itself is unreadable.
        public var error: String?

        public var ratio: Double { fileBytes > 0 ? Double(rawBytes) / Double(fileBytes) : 0 }
    }

    /// One problem found by `verify`.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        public var path: String
        public var offset: Int
        public var message: String
        public var description: String { "\(path) @\(offset): \(message)" }
    }

    /// The segment files under `directory`: either a backend directory holding `*.seg`, or the
    /// spill directory holding one directory per backend. Sorted by path.
    public static func segmentPaths(in directory: String, fileSystem: any SpillFileSystem = PosixFileSystem()) throws -> [String] {
        var paths: [String] = []
        for name in try fileSystem.listDirectory(directory).sorted() {
            let path = directory + "/" + name
            if SpillFormat.firstSeq(ofSegmentNamed: name) != nil {
                paths.append(path)
            } else if !name.contains("."), let inner = try? fileSystem.listDirectory(path) {
                for n in inner.sorted() where SpillFormat.firstSeq(ofSegmentNamed: n) != nil { paths.append(path + "/" + n) }
            }
        }
        return paths
    }

    /// Summaries of every segment (headers only: fast).
    public static func list(_ directory: String, fileSystem: any SpillFileSystem = PosixFileSystem()) throws -> [SegmentSummary] {
        try segmentPaths(in: directory, fileSystem: fileSystem).map { summarize($0, fileSystem: fileSystem) }
    }

    static func summarize(_ path: String, fileSystem: any SpillFileSystem) -> SegmentSummary {
        var s = SegmentSummary(path: path, backend: "", createdAtMillis: 0, frames: 0, records: 0, spans: 0, rawBytes: 0,
                               fileBytes: 0, damagedRegions: 0, tornTail: false)
        do {
            let file = try fileSystem.open(path, create: false)
            defer { file.close() }
            s.fileBytes = (try? file.size()) ?? 0
            let scan = try scanSegment(file)
            s.backend = scan.header.backend
            s.createdAtMillis = scan.header.createdAtMillis
            s.frames = scan.frames.count
            for f in scan.frames {
                s.records += f.records
                s.spans += f.spans
                s.rawBytes += f.rawBytes
            }
            s.firstSeq = scan.frames.first?.firstSeq
            s.lastSeq = scan.frames.last?.lastSeq
            s.damagedRegions = scan.skippedRegions
            s.tornTail = scan.tornTail
        } catch {
            s.error = "\(error)"
        }
        return s
    }

    /// Reads every frame of every segment: checks both CRCs, decompresses, parses the records.
    /// Returns the problems found (empty: all good) and how many frames were checked.
    public static func verify(_ directory: String, fileSystem: any SpillFileSystem = PosixFileSystem()) throws -> (frames: Int, problems: [Problem]) {
        var problems: [Problem] = []
        var frames = 0
        let decoder = FrameDecoder()
        for path in try segmentPaths(in: directory, fileSystem: fileSystem) {
            forEachFrame(path, fileSystem: fileSystem, decoder: decoder, problems: &problems) { _, _ in frames += 1 }
        }
        return (frames, problems)
    }

    /// Emits every readable record as one JSON object per line: segment, seq, time (unix ms),
    /// spans, metadata and payload (as a string when UTF-8, else `payload_base64`). Damaged frames
    /// are reported through `problems`.
    public static func dump(_ directory: String, fileSystem: any SpillFileSystem = PosixFileSystem(),
                            emit: (String) -> Void) throws -> [Problem] {
        var problems: [Problem] = []
        let decoder = FrameDecoder()
        for path in try segmentPaths(in: directory, fileSystem: fileSystem) {
            forEachFrame(path, fileSystem: fileSystem, decoder: decoder, problems: &problems, decodeRecords: true) { _, records in
                for r in records {
                    var line = "{\"segment\":\(jsonQuoted(path)),\"seq\":\(r.seq),\"time\":\(r.timeMillis),\"spans\":\(r.record.spanCount)"
                    line += ",\"metadata\":" + jsonValue(Array(r.record.metadata), key: "metadata")
                    line += "," + jsonField(Array(r.record.bytes), key: "payload") + "}"
                    emit(line)
                }
            }
        }
        return problems
    }

    private static func forEachFrame(_ path: String, fileSystem: any SpillFileSystem, decoder: FrameDecoder,
                                     problems: inout [Problem], decodeRecords: Bool = false,
                                     _ body: (FrameHeader, [StoredRecord]) -> Void) {
        let file: any SpillFile
        do { file = try fileSystem.open(path, create: false) } catch {
            problems.append(Problem(path: path, offset: 0, message: "\(error)"))
            return
        }
        defer { file.close() }
        let scan: SegmentScan
        do { scan = try scanSegment(file) } catch {
            problems.append(Problem(path: path, offset: 0, message: "\(error)"))
            return
        }
        var expected = scan.headerLength
        for f in scan.frames {
            if f.offset != expected {
                problems.append(Problem(path: path, offset: expected, message: "damaged frame header; \(f.offset - expected) bytes skipped"))
            }
            expected = f.offset + f.length
            do {
                let (h, records) = try decoder.read(file, at: f.offset, verifyOnly: !decodeRecords)
                body(h, records)
            } catch {
                problems.append(Problem(path: path, offset: f.offset, message: "\(error)"))
            }
        }
        if scan.tornTail {
            problems.append(Problem(path: path, offset: scan.validEnd, message: "torn tail: \(scan.fileSize - scan.validEnd) bytes after the last complete frame"))
        } else if expected < scan.fileSize {
            problems.append(Problem(path: path, offset: expected, message: "damaged data at end of segment"))
        }
    }

    private static func jsonField(_ bytes: [UInt8], key: String) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return "\"\(key)\":" + jsonQuoted(s) }
        return "\"\(key)_base64\":\"" + base64(bytes) + "\""
    }

    private static func jsonValue(_ bytes: [UInt8], key: String) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return jsonQuoted(s) }
        return "{\"base64\":\"" + base64(bytes) + "\"}"
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i]), b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0, b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(table[Int(v >> 18 & 63)])
            out.append(table[Int(v >> 12 & 63)])
            out.append(i + 1 < bytes.count ? table[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? table[Int(v & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
