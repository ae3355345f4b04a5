import Dispatch
import Foundation
import Logging
import Synchronization
import Transport

/// One `tracerelay serve` child of a scenario: started with fixed ports and spill directory, so
/// it can be killed (`kill -9`) and started again on the same ports and spill directory; its
/// CPU is summed over every incarnation.
final class RelayProcess: @unchecked Sendable {
    let name: String
    let binary: String
    let arguments: [String]
    let logPath: String
    let adminPort: Int
    /// Guards `process`, `handle` and `cpuOfEarlier` (the kill timer runs on another thread).
    private let lock = NSLock()
    private var process: Process?
    private var handle: FileHandle?
    /// CPU seconds of incarnations that were killed.
    private var cpuOfEarlier: Double = 0
    private(set) var restarts = 0

    init(name: String, binary: String, arguments: [String], logPath: String, adminPort: Int) {
        self.name = name; self.binary = binary; self.arguments = arguments; self.logPath = logPath; self.adminPort = adminPort
    }

    var pid: Int32 { lock.withLock { process?.processIdentifier ?? 0 } }

    /// Starts the relay (appending to its log) and waits until `/health/ready` answers 200.
    func start() throws {
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        h.seekToEndOfFile()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.standardOutput = h
        p.standardError = h
        try p.run()
        lock.withLock { process = p; handle = h }
        try waitReady(p)
    }

    /// `kill -9`, reaped; its CPU so far is kept for `cpuSeconds`.
    func kill9() {
        lock.withLock {
            guard let p = process, p.isRunning else { return }
            cpuOfEarlier += Self.cpuSeconds(pid: p.processIdentifier) ?? 0
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            try? handle?.close()
            process = nil; handle = nil
            restarts += 1
        }
    }

    /// SIGTERM and wait (a graceful stop).
    func stop() {
        let p = lock.withLock { process }
        guard let p else { return }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        lock.withLock { try? handle?.close(); handle = nil }
    }

    /// CPU seconds of every incarnation so far (nil when /proc cannot be read).
    var cpuSeconds: Double? {
        lock.withLock {
            guard let p = process else { return cpuOfEarlier }
            return Self.cpuSeconds(pid: p.processIdentifier).map { $0 + cpuOfEarlier }
        }
    }

    func lastLogLines(_ n: Int) -> String? {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8), !text.isEmpty else { return nil }
        return text.split(separator: "\n").suffix(n).joined(separator: "\n")
    }

    private func waitReady(_ relay: Process) throws {
        let group = EventLoopGroup(loopCount: 1)
        var lg = Logger(label: "loadtest.run"); lg.logLevel = .critical
        let client = HTTPClient(endpoint: try ClientEndpoint(url: "http://127.0.0.1:\(adminPort)"), group: group, logger: lg)
        defer { client.shutdown() }
        let deadline = monoNanos() + 20_000_000_000
        while monoNanos() < deadline {
            guard relay.isRunning else {
                throw LoadtestError("tracerelay \(name) exited (\(relay.terminationStatus)) before it was ready:\n\(lastLogLines(30) ?? "")")
            }
            let done = DispatchSemaphore(value: 0)
            let ok = Mutex(false)
            client.send(ClientRequest(method: "GET", path: "/health/ready")) { r in
                if case .success(let resp) = r, resp.status == 200 { ok.withLock { $0 = true } }
                done.signal()
            }
            done.wait()
            if ok.withLock({ $0 }) { return }
            usleep(100_000)
        }
        throw LoadtestError("tracerelay \(name) was not ready within 20 s")
    }

    /// utime + stime of a process, from /proc/<pid>/stat.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After ")": state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
