import TestSupport
import Testing
import Spans
@testable import Routing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the `tracerelay explain` command (another process, with its own hash seeds and
/// addresses) and checks it makes the same sampling decisions as this process.
@Suite struct CrossProcessSamplingTests {
    /// `tracerelay` next to this test bundle, when `swift test` built it.
    static var executable: String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        var dir = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        while let last = dir.last, last != "/" { dir.removeLast() }
        for candidate in [dir + "tracerelay", dir + "../../tracerelay", dir + "../../../tracerelay"] where access(candidate, X_OK) == 0 {
            return candidate
        }
        return nil
    }

    /// Runs the command and returns its standard output.
    static func run(_ args: [String]) -> String? {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, nil, &argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        for p in argv { free(p) }
        close(fds[1])
        defer { close(fds[0]) }
        guard rc == 0 else { return nil }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return String(decoding: out, as: UTF8.self)
    }

    @Test(.enabled(if: executable != nil, "tracerelay executable not built next to the tests"))
    func explainInAnotherProcessAgrees() throws {
        let yaml = SamplingTests.config(percent: 37.5)
        let path = "/tmp/tracerelay-sampling-\(getpid()).yaml"
        let f = try #require(fopen(path, "w"))
        fputs(yaml, f)
        fclose(f)
        defer { unlink(path) }
        let t = try table(yaml)
        var rng = SplitMix64(seed: 2024)
        var kept = 0
        for _ in 0..<16 {
            let id = TraceID(high: rng.next(), low: rng.next())
            let here = t.route(0, in: makeBatch([TestSpan(service: "web", trace: id)])).sampled
            let out = try #require(Self.run([Self.executable!, "explain", "--config", path, "--tag", "kuma.io/service=web",
                                              "--trace-id", id.description, "--json"]))
            #expect(out.contains("\"sampled\":\(here)"), "\(id): \(out)")
            if here { kept += 1 }
        }
        #expect(kept > 0 && kept < 16)  // both outcomes exercised
    }
}
