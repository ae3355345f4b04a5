import TestSupport
import Foundation
import Testing
@testable import Buffering

@Suite struct SegmentFormatTests {
    func stored(_ range: Range<Int>) -> [StoredRecord] {
        range.map { StoredRecord(seq: UInt64($0), timeMillis: 1_700_000_000_000 + UInt64($0), record: record($0, size: 200)) }
    }

    /// Builds a segment file with `frames` frames of `perFrame` records; returns its bytes.
    func segmentBytes(frames: Int, perFrame: Int) throws -> [UInt8] {
        var out = SegmentHeader(backend: "jaeger", createdAtMillis: 42).encode()
        let enc = FrameEncoder(level: 1)
        for f in 0..<frames {
            _ = try enc.encode(stored((f * perFrame)..<((f + 1) * perFrame))[...])
            out += enc.frame[0..<enc.frameLength]
        }
        return out
    }

    @Test func headerRoundTripAndRejections() throws {
        let h = SegmentHeader(backend: "zipkin-eu", createdAtMillis: 123_456)
        let bytes = h.encode()
        let (back, len) = try bytes.withUnsafeBytes { try SegmentHeader.decode($0) }
        #expect(back == h && len == bytes.count)
        var bad = bytes
        bad[0] = 0
        #expect(throws: SegmentHeader.DecodeError.self) { try bad.withUnsafeBytes { try SegmentHeader.decode($0) } }
        bad = bytes
        bad[13] ^= 4
        #expect(throws: SegmentHeader.DecodeError.self) { try bad.withUnsafeBytes { try SegmentHeader.decode($0) } }
        #expect(throws: SegmentHeader.DecodeError.self) { try Array(bytes.prefix(10)).withUnsafeBytes { try SegmentHeader.decode($0) } }
    }

    @Test func framesRoundTripThroughAFile() throws {
        let dir = makeTempDirectory("fmt")
        defer { removeTree(dir) }
        let path = dir + "/00000000000000000000.seg"
        writeFile(path, try segmentBytes(frames: 3, perFrame: 50))
        let file = try PosixFileSystem().open(path, create: false)
        defer { file.close() }
        let scan = try scanSegment(file)
        #expect(scan.frames.count == 3 && !scan.tornTail && scan.skippedRegions == 0)
        #expect(scan.header.backend == "jaeger")
        let dec = FrameDecoder()
        var all: [StoredRecord] = []
        for f in scan.frames { all += try dec.read(file, at: f.offset).1 }
        #expect(all.map(\.seq) == (0..<150).map(UInt64.init))
        #expect(all.map(\.record) == stored(0..<150).map(\.record))
        #expect(all[7].timeMillis == 1_700_000_000_007)
    }

    /// Decoded records are slices of one buffer per frame (no per-record copy), with their own
    /// bytes and metadata at non-zero offsets; `compacted()` gives an equal, self-owned copy.
    @Test func decodedRecordsShareTheFrameBuffer() throws {
        let dir = makeTempDirectory("share")
        defer { removeTree(dir) }
        let path = dir + "/00000000000000000000.seg"
        writeFile(path, try segmentBytes(frames: 1, perFrame: 5))
        let file = try PosixFileSystem().open(path, create: false)
        defer { file.close() }
        let scan = try scanSegment(file)
        let records = try FrameDecoder().read(file, at: scan.frames[0].offset).1.map(\.record)
        #expect(records == stored(0..<5).map(\.record))
        // Record i starts after i earlier records: header (26) + metadata + payload each.
        var offset = 0
        for (i, r) in records.enumerated() {
            offset += SpillFormat.recordHeaderSize
            #expect(r.metadata.startIndex == offset, "record \(i) metadata")
            offset += r.metadata.count
            #expect(r.bytes.startIndex == offset, "record \(i) payload")
            offset += r.bytes.count
            let ptrs = (r.bytes.withUnsafeBytes { $0.baseAddress }, records[0].bytes.withUnsafeBytes { $0.baseAddress })
            #expect(ptrs.0! - ptrs.1! == offset - r.bytes.count - records[0].bytes.startIndex, "same buffer")
            let own = r.compacted()
            #expect(own == r && own.bytes.startIndex == 0 && own.metadata.startIndex == 0)
            #expect(number(of: own) == i)
        }
    }

    /// Each frame's payload is a standard zstd frame: `zstd -t` accepts it.
    @Test func payloadIsValidZstdForTheCLI() throws {
        let bytes = try segmentBytes(frames: 2, perFrame: 300)
        let dir = makeTempDirectory("zstdt")
        defer { removeTree(dir) }
        let path = dir + "/s.seg"
        writeFile(path, bytes)
        let file = try PosixFileSystem().open(path, create: false)
        let scan = try scanSegment(file)
        file.close()
        for (i, f) in scan.frames.enumerated() {
            let payload = Array(bytes[(f.offset + SpillFormat.frameHeaderSize)..<(f.offset + f.length)])
            let zpath = dir + "/frame\(i).zst"
            writeFile(zpath, payload)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/zstd")
            p.arguments = ["-q", "-t", zpath]
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "zstd -t rejected frame \(i)")
        }
        // And it really is compressed.
        #expect(scan.frames.reduce(0) { $0 + $1.length } * 3 < scan.frames.reduce(0) { $0 + $1.rawBytes })
    }

    /// Randomly mutated and truncated segments: scanning and reading throw or succeed, never trap,
    /// and whatever is returned verified its CRC.
    @Test func mutatedSegmentsNeverTrap() throws {
        let good = try segmentBytes(frames: 4, perFrame: 20)
        let dir = makeTempDirectory("mut")
        defer { removeTree(dir) }
        let path = dir + "/m.seg"
        var rng = SplitMix64(seed: 0x5E6_3E47, printing: "segment mutations")
        let dec = FrameDecoder()
        for round in 0..<300 {
            var bytes = good
            switch round % 3 {
            case 0:
                for _ in 0..<Int.random(in: 1...8, using: &rng) { bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng) }
            case 1:
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            default:
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                bytes.insert(contentsOf: (0..<Int.random(in: 1...60, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            }
            writeFile(path, bytes)
            let file = try PosixFileSystem().open(path, create: false)
            defer { file.close() }
            guard let scan = try? scanSegment(file) else { continue }
            for f in scan.frames {
                if let (_, recs) = try? dec.read(file, at: f.offset) {
                    #expect(recs.count == f.records)
                }
            }
        }
    }
}
