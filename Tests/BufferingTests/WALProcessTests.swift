import TestSupport
import Foundation
import Testing
@testable import Buffering

/// Real process test: the `buffering-harness` executable writes numbered records to a `wal`
/// queue and prints each acknowledged one; we kill it with SIGKILL mid-stream, start it again
/// and check that every acknowledged record is still there (and in order).
@Suite struct WALProcessTests {
    func harnessPath() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") || dir.lastPathComponent == "MacOS" { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("buffering-harness").path
    }

    func run(_ args: [String], stdout: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: harnessPath())
        p.arguments = args
        FileManager.default.createFile(atPath: stdout, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: stdout)
        try p.run()
        return p
    }

    func numbers(_ path: String, prefix: String) -> [Int] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            line.hasPrefix(prefix + " ") ? Int(line.dropFirst(prefix.count + 1)) : nil
        }
    }

    @Test func killDashNineLosesNoAcknowledgedRecord() throws {
        #expect(FileManager.default.isExecutableFile(atPath: harnessPath()), "harness not built at \(harnessPath())")
        let dir = makeTempDirectory("kill9")
        defer { removeTree(dir) }
        var expected: [Int] = []
        for round in 0..<2 {
            let out = dir + "/write\(round).out"
            let writer = try run(["write", dir + "/spill", "1000000"], stdout: out)
            // Let it get well into the stream, then kill it without warning.
            #expect(eventually(20) { numbers(out, prefix: "ack").count >= 3000 * (round + 1) })
            kill(writer.processIdentifier, SIGKILL)
            writer.waitUntilExit()
            #expect(writer.terminationReason == .uncaughtSignal)
            let acked = numbers(out, prefix: "ack")
            #expect(acked.count >= 3000)
            // Round 1 writes numbers 0... again: the queue holds both rounds' records.
            expected += acked
            // Segments on disk are valid: checksums hold, every frame decompresses (a torn
            // tail from the kill is allowed and is not counted as data).
            let (frames, problems) = try SpillInspector.verify(dir + "/spill")
            #expect(frames > 0)
            #expect(problems.allSatisfy { $0.message.hasPrefix("torn tail") }, "\(problems)")
        }
        let dumpOut = dir + "/dump.out"
        let dumper = try run(["dump", dir + "/spill"], stdout: dumpOut)
        dumper.waitUntilExit()
        #expect(dumper.terminationStatus == 0)
        let dumped = numbers(dumpOut, prefix: "rec")
        // Every acknowledged record is there; unacknowledged ones may be too (written, not yet answered).
        var counts: [Int: Int] = [:]
        for n in dumped { counts[n, default: 0] += 1 }
        var need: [Int: Int] = [:]
        for n in expected { need[n, default: 0] += 1 }
        let missing = need.filter { counts[$0.key, default: 0] < $0.value }
        #expect(missing.isEmpty, "lost \(missing.count) acknowledged records, e.g. \(missing.keys.sorted().prefix(10))")
        #expect(dumped.count >= expected.count)
    }
}
