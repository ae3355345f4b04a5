import Foundation
import Testing
@testable import Buffering

@Suite struct SpillInspectorTests {
    func writeSpill(_ dir: String, n: Int) throws {
        var c = QueueConfiguration(backend: "insp", directory: dir, durability: .spill)
        c.frameBytes = 4 << 10
        c.segmentBytes = 8 << 10
        let q = try BackendQueue(configuration: c, logger: testLogger())
        q.markDown()
        for i in 0..<n { #expect(enqueueSync(q, record(i, size: 150)) == nil) }
        q.shutdown()
    }

    @Test func listCountsWhatWasWritten() throws {
        let dir = makeTempDirectory("insp")
        defer { removeTree(dir) }
        try writeSpill(dir, n: 500)
        // Both the spill directory and the backend directory are accepted.
        for path in [dir, dir + "/insp"] {
            let segs = try SpillInspector.list(path)
            var records = 0, spans = 0, raw = 0
            for s in segs {
                records += s.records
                spans += s.spans
                raw += s.rawBytes
                #expect(s.backend == "insp" && s.error == nil && !s.tornTail && s.ratio > 1)
            }
            var expectedSpans = 0, expectedRaw = 0
            for i in 0..<500 {
                expectedSpans += i % 5 + 1
                expectedRaw += 26 + record(i, size: 150).size
            }
            #expect(records == 500)
            #expect(spans == expectedSpans)
            #expect(raw == expectedRaw)
        }
    }

    @Test func catEmitsOneJSONObjectPerRecord() throws {
        let dir = makeTempDirectory("insp")
        defer { removeTree(dir) }
        try writeSpill(dir, n: 50)
        var lines: [String] = []
        let problems = try SpillInspector.dump(dir) { lines.append($0) }
        #expect(problems.isEmpty)
        #expect(lines.count == 50)
        for (i, line) in lines.enumerated() {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(obj?["seq"] as? Int == i)
            #expect((obj?["payload"] as? String).map { Array($0.utf8) } == Array(record(i, size: 150).bytes))
            #expect(obj?["metadata"] as? String == "m\(i % 3)")
        }
        #expect(SpillInspector.base64([0xFF, 0x00, 0x10, 0x20]) == "/wAQIA==")
    }

    @Test func verifyFlagsAFlippedByteAndATornTail() throws {
        let dir = makeTempDirectory("insp")
        defer { removeTree(dir) }
        try writeSpill(dir, n: 500)
        let (frames, ok) = try SpillInspector.verify(dir)
        #expect(frames > 2 && ok.isEmpty)
        let segs = segmentFiles(dir + "/insp")
        let f = try PosixFileSystem().open(segs[0], create: false)
        let first = try scanSegment(f).frames[0]
        f.close()
        var a = readFile(segs[0])
        a[first.offset + SpillFormat.frameHeaderSize + first.length / 2] ^= 0x80
        writeFile(segs[0], a)
        var b = readFile(segs.last!)
        b.removeLast(7)
        writeFile(segs.last!, b)
        let (_, problems) = try SpillInspector.verify(dir)
        #expect(problems.count == 2, "\(problems)")
        #expect(problems.contains { $0.path == segs[0] && $0.message.contains("checksum") })
        #expect(problems.contains { $0.path == segs.last! && $0.message.hasPrefix("torn tail") })
    }
}
