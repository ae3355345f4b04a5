import Dispatch
import Foundation
import Logging
import Synchronization
import Transport

/// A scenario folder, `loadtest/scenarios/<name>/`:
/// - `plan.json` — sinks, the load, how long to wait for delivery (`ScenarioPlan`);
/// - `relay.yaml` — the relay's config, where `${SINK_<name>}` is replaced by the sink's
///   port (the runner picks free ports; listeners, admin and spill dir come as flags).
public struct ScenarioPlan: Codable, Sendable, Equatable {
    public struct Sink: Codable, Sendable, Equatable {
        public var name: String
        /// Expected region: spans of another region arriving here are violations.
        public var region: String?
        public var delaySeconds: Double?
        public var failRatio: Double?
        /// A backend outage during the load: this many seconds after the load starts the sink
        /// closes its listeners and connections (connections refused) …
        public var downAfterSeconds: Double?
        /// … for this long, then listens again on the same port.
        public var downForSeconds: Double?
    }
    /// One relay of a chain (`relays`), started in order: `${RELAY_<name>}` in the configs of
    /// the relays after it becomes its ingest port. The load goes to the last one.
    public struct Relay: Codable, Sendable, Equatable {
        public var name: String
        public var config: String
        public var args: [String]?
    }
    public struct Load: Codable, Sendable, Equatable {
        public var format: String
        public var http: String?
        public var rate: Double?
        public var durationSeconds: Double
        public var batch: Int?
        public var connections: Int?
        public var streams: Int?
        public var services: Int?
        public var zones: [String]?
        public var zoneRegions: [String: String]?
    }
    public var description: String
    public var sinks: [Sink]
    /// The relay's config (one relay), or `relays` (a chain).
    public var relayConfig: String?
    public var relayArgs: [String]?
    public var relays: [Relay]?
    public var send: Load
    /// How long to wait after the load for the sinks to receive everything accepted.
    public var drainSeconds: Double

    public static func load(directory: String) throws -> ScenarioPlan {
        let data = try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent("plan.json"))
        do { return try JSONDecoder().decode(ScenarioPlan.self, from: data) } catch {
            throw LoadtestError("\(directory)/plan.json: \(error)")
        }
    }

    /// The relays to start, in order (sink side first, the load's target last).
    public var relayChain: [Relay] {
        if let relays, !relays.isEmpty { return relays }
        return [Relay(name: "relay", config: relayConfig ?? "relay.yaml", args: relayArgs)]
    }

    /// The relay config with `${SINK_<name>}` replaced by each sink's port and
    /// `${RELAY_<name>}` by each relay's ingest port.
    public static func substitute(_ text: String, ports: [String: Int], relayPorts: [String: Int] = [:]) throws(LoadtestError) -> String {
        var out = text
        for (name, port) in ports { out = out.replacingOccurrences(of: "${SINK_\(name)}", with: String(port)) }
        for (name, port) in relayPorts { out = out.replacingOccurrences(of: "${RELAY_\(name)}", with: String(port)) }
        if let r = out.range(of: "${") {
            let rest = out[r.lowerBound...].prefix(while: { $0 != "}" })
            throw LoadtestError("relay config: unknown placeholder \(rest)}")
        }
        return out
    }
}

/// What a scenario proves: every accepted span delivered once and unaltered, in its region.
public struct ScenarioVerdict: Codable, Sendable, Equatable {
    public var scenario: String
    public var sent: Int
    public var accepted: Int
    public var delivered: Int
    public var lost: Int
    public var duplicated: Int
    public var altered: Int
    public var unverified: Int
    public var violations: Int
    public var relayCPUSeconds: Double?
    /// Spans delivered per second of relay CPU (per core of relay CPU).
    public var spansPerRelayCoreSecond: Double?
    public var latencyMicros: LatencySummary
    public var passed: Bool
    public var reasons: [String]
    /// The load's own report (for `--html`).
    public var send: SendReport?

    public init(scenario: String, send: SendReport, sinks: [SinkStats], relayCPUSeconds: Double?) {
        self.scenario = scenario
        sent = send.sentSpans
        accepted = send.acceptedSpans
        let delivered = sinks.reduce(0) { $0 + $1.uniqueSpans }
        self.delivered = delivered
        lost = max(0, send.acceptedSpans - delivered)
        duplicated = sinks.reduce(0) { $0 + $1.duplicates }
        altered = sinks.reduce(0) { $0 + $1.altered }
        unverified = sinks.reduce(0) { $0 + $1.unverified }
        violations = sinks.reduce(0) { $0 + $1.violations }
        self.relayCPUSeconds = relayCPUSeconds
        spansPerRelayCoreSecond = relayCPUSeconds.flatMap { $0 > 0 ? (Double(delivered) / $0).rounded() : nil }
        latencyMicros = send.latencyMicros
        var r: [String] = []
        let lost = self.lost, altered = self.altered, unverified = self.unverified, violations = self.violations
        if send.acceptedSpans == 0 { r.append("the relay accepted nothing") }
        if lost > 0 { r.append("\(lost) accepted spans were not delivered") }
        if altered > 0 { r.append("\(altered) spans arrived altered") }
        if unverified > 0 { r.append("\(unverified) spans arrived without their checksum") }
        if violations > 0 { r.append("\(violations) spans reached a sink outside their region") }
        reasons = r
        passed = r.isEmpty
        self.send = send
    }

    public func table() -> String {
        func ms(_ us: UInt64) -> String { String(format: "%.2f ms", Double(us) / 1000) }
        var lines = [
            "scenario \(scenario): \(passed ? "PASS" : "FAIL")",
            "  sent        \(sent)", "  accepted    \(accepted)", "  delivered   \(delivered)", "  lost        \(lost)",
            "  duplicated  \(duplicated)", "  altered     \(altered)", "  violations  \(violations)",
        ]
        if let c = relayCPUSeconds, let per = spansPerRelayCoreSecond {
            lines.append(String(format: "  relay CPU   %.2f s → %.0f spans/s per relay core", c, per))
        }
        lines.append("  latency     p50 \(ms(latencyMicros.p50))  p99 \(ms(latencyMicros.p99))  max \(ms(latencyMicros.max))")
        for reason in reasons { lines.append("  ✗ \(reason)") }
        return lines.joined(separator: "\n")
    }

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// Runs a scenario: sinks in this process, the built `tracerelay` as a child process, the
/// generator in this process; then waits for delivery and judges.
public struct ScenarioRunner {
    public var directory: String
    public var relayBinary: String
    /// Overrides of the plan's load (`--rate`, `--duration`).
    public var rate: Double?
    public var durationSeconds: Double?
    /// Overrides every outage's length (`--outage`).
    public var outageSeconds: Double?
    public var progress = false
    public var log: (String) -> Void = { writeStderr($0 + "\n") }

    public init(directory: String, relayBinary: String) {
        self.directory = directory
        self.relayBinary = relayBinary
    }

    /// A free TCP port on 127.0.0.1 (bound to 0 and released).
    static func freePort() throws -> Int {
        let s = SinkServer(configuration: { var c = SinkConfiguration(); c.listen = ["127.0.0.1:0"]; c.loops = 1; return c }())
        try s.start()
        defer { s.shutdown() }
        guard let p = s.boundPorts.first else { throw LoadtestError("could not find a free port") }
        return p
    }

    public func run() throws -> ScenarioVerdict {
        let name = URL(fileURLWithPath: directory).lastPathComponent
        let plan = try ScenarioPlan.load(directory: directory)
        guard FileManager.default.isExecutableFile(atPath: relayBinary) else {
            throw LoadtestError("no tracerelay binary at \(relayBinary) (build it, or pass --relay)")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("loadtest-\(name)-\(getpid())-\(monoNanos())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        // Sinks.
        var sinks: [SinkServer] = []
        var ports: [String: Int] = [:]
        defer { for s in sinks { s.shutdown() } }
        for spec in plan.sinks {
            var c = SinkConfiguration()
            c.listen = ["127.0.0.1:0"]; c.region = spec.region; c.loops = 1
            c.delaySeconds = spec.delaySeconds ?? 0; c.failRatio = spec.failRatio ?? 0
            let s = SinkServer(configuration: c)
            try s.start()
            sinks.append(s)
            ports[spec.name] = s.boundPorts.first ?? 0
        }

        // The relays, sink side first.
        var relays: [(name: String, process: Process, log: String, handle: FileHandle)] = []
        defer {
            for r in relays.reversed() where r.process.isRunning { r.process.terminate(); r.process.waitUntilExit() }
        }
        var relayPorts: [String: Int] = [:]
        var ingestPort = 0
        for spec in plan.relayChain {
            let template = try String(contentsOfFile: URL(fileURLWithPath: directory).appendingPathComponent(spec.config).path, encoding: .utf8)
            let configPath = work.appendingPathComponent("\(spec.name).yaml").path
            try ScenarioPlan.substitute(template, ports: ports, relayPorts: relayPorts).write(toFile: configPath, atomically: true, encoding: .utf8)
            let port = try Self.freePort(), adminPort = try Self.freePort()
            let relay = Process()
            relay.executableURL = URL(fileURLWithPath: relayBinary)
            relay.arguments = ["serve", "--config", configPath, "--listen", "127.0.0.1:\(port)", "--admin", "127.0.0.1:\(adminPort)",
                               "--spill-dir", work.appendingPathComponent("spill-\(spec.name)").path] + (spec.args ?? [])
            let relayLog = work.appendingPathComponent("\(spec.name).log").path
            _ = FileManager.default.createFile(atPath: relayLog, contents: nil)
            let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: relayLog))
            relay.standardOutput = logHandle
            relay.standardError = logHandle
            try relay.run()
            relays.append((spec.name, relay, relayLog, logHandle))
            log("scenario \(name): relay \(spec.name) pid \(relay.processIdentifier) on :\(port) (admin :\(adminPort))")
            try waitReady(port: adminPort, relay: relay, logPath: relayLog)
            relayPorts[spec.name] = port
            ingestPort = port
        }
        log("scenario \(name): sinks \(ports), load → :\(ingestPort)")

        // The load.
        let load = plan.send
        var sc = SendConfiguration(target: try ClientEndpoint(url: "http://127.0.0.1:\(ingestPort)"))
        guard let f = WireFormat(rawValue: load.format) else { throw LoadtestError("plan: unknown format \(load.format)") }
        sc.format = f
        sc.http = load.http == "2" ? .h2c : .http1
        sc.rate = rate ?? load.rate
        sc.durationSeconds = durationSeconds ?? load.durationSeconds
        sc.batch = load.batch ?? 500; sc.connections = load.connections ?? 4; sc.streams = load.streams ?? 10
        sc.shape = MeshShape(services: load.services ?? 50, zones: load.zones ?? MeshShape().zones,
                             zoneRegions: load.zoneRegions ?? MeshShape().zoneRegions)
        sc.progress = progress
        let cpu0 = relays.map { Self.cpuSeconds(pid: $0.process.processIdentifier) }

        // Outages: each sink with `downForSeconds` goes down `downAfterSeconds` into the load.
        let outages = DispatchGroup()
        for (spec, sink) in zip(plan.sinks, sinks) {
            guard let planned = spec.downForSeconds, case let downFor = outageSeconds ?? planned, downFor > 0 else { continue }
            let after = spec.downAfterSeconds ?? 0
            let sinkName = spec.name, logBox = UncheckedLog(log: self.log)
            outages.enter()
            DispatchQueue.global().asyncAfter(deadline: .now() + after) {
                logBox.log("scenario \(name): sink \(sinkName) down for \(downFor) s")
                sink.goDown()
                DispatchQueue.global().asyncAfter(deadline: .now() + downFor) {
                    do { try sink.comeBack(); logBox.log("scenario \(name): sink \(sinkName) back") } catch {
                        logBox.log("scenario \(name): sink \(sinkName) could not listen again: \(error)")
                    }
                    outages.leave()
                }
            }
        }
        let report = try LoadSender(configuration: sc).run()
        outages.wait()

        // Delivery: wait until the sinks hold everything accepted (or stop changing).
        let deadline = monoNanos() + UInt64(plan.drainSeconds * 1e9)
        var last = -1, stableSince = monoNanos()
        while monoNanos() < deadline {
            let got = sinks.reduce(0) { $0 + $1.stats.uniqueSpans }
            if got >= report.acceptedSpans { break }
            if got != last { last = got; stableSince = monoNanos() }
            else if monoNanos() - stableSince > 5_000_000_000 { break }
            usleep(50_000)
        }
        let cpu1 = relays.map { Self.cpuSeconds(pid: $0.process.processIdentifier) }
        for r in relays.reversed() {
            r.process.terminate()
            r.process.waitUntilExit()
            try? r.handle.close()
        }
        var relayCPU: Double? = 0
        for (a, b) in zip(cpu0, cpu1) {
            if let a, let b, let sum = relayCPU { relayCPU = sum + (b - a) } else { relayCPU = nil }
        }
        if relays.count > 1 {
            let each = zip(relays, zip(cpu0, cpu1)).map { r, c in
                "\(r.name) " + (c.0.flatMap { a in c.1.map { String(format: "%.2f s", $0 - a) } } ?? "?")
            }
            log("scenario \(name): relay CPU " + each.joined(separator: ", "))
        }
        let verdict = ScenarioVerdict(scenario: name, send: report, sinks: sinks.map(\.stats), relayCPUSeconds: relayCPU)
        if !verdict.passed {
            for r in relays {
                if let text = try? String(contentsOfFile: r.log, encoding: .utf8), !text.isEmpty {
                    log("relay \(r.name) log (last lines):\n" + text.split(separator: "\n").suffix(20).joined(separator: "\n"))
                }
            }
        }
        return verdict
    }

    private func waitReady(port: Int, relay: Process, logPath: String) throws {
        let group = EventLoopGroup(loopCount: 1)
        var lg = Logger(label: "loadtest.run"); lg.logLevel = .critical
        let client = HTTPClient(endpoint: try ClientEndpoint(url: "http://127.0.0.1:\(port)"), group: group, logger: lg)
        defer { client.shutdown() }
        let deadline = monoNanos() + 20_000_000_000
        while monoNanos() < deadline {
            guard relay.isRunning else {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw LoadtestError("tracerelay exited (\(relay.terminationStatus)) before it was ready:\n\(text.suffix(2000))")
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
        throw LoadtestError("tracerelay was not ready within 20 s")
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

/// The runner's `log` closure, handed to the outage timers.
private struct UncheckedLog: @unchecked Sendable {
    let log: (String) -> Void
}
