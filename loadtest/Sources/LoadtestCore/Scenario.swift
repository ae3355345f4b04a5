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
        /// Content-Encoding of the bodies: none, gzip, zstd.
        public var compress: String?
    }
    /// `kill -9` of a relay under load, restarted on the same ports and spill directory.
    public struct Kill: Codable, Sendable, Equatable {
        /// Seconds into the load.
        public var afterSeconds: Double
        /// Seconds between the kill and the restart (default 1).
        public var downSeconds: Double?
        /// Which relay of a chain (default: the one the load goes to).
        public var relay: String?
    }
    /// A slow or failing backend must not slow the healthy one: the healthy sink's delivery lag
    /// (arrival − span start) p99 stays under a bound, and the slow sink really was slow.
    public struct Isolation: Codable, Sendable, Equatable {
        public var healthy: String
        public var slow: String
        public var maxHealthyLagP99Seconds: Double
    }
    public var description: String
    public var sinks: [Sink]
    /// The relay's config (one relay), or `relays` (a chain).
    public var relayConfig: String?
    public var relayArgs: [String]?
    public var relays: [Relay]?
    public var send: Load
    public var killRelay: Kill?
    public var isolation: Isolation?
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

/// Runs a scenario: sinks in this process, the built `tracerelay` as child processes, the
/// generator in this process; injects the plan's faults (sink outages, `kill -9` of a relay),
/// waits for delivery and judges, span id by span id.
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
        var relays: [RelayProcess] = []
        defer { for r in relays.reversed() { r.stop() } }
        var relayPorts: [String: Int] = [:]
        var ingestPort = 0
        for spec in plan.relayChain {
            let template = try String(contentsOfFile: URL(fileURLWithPath: directory).appendingPathComponent(spec.config).path, encoding: .utf8)
            let configPath = work.appendingPathComponent("\(spec.name).yaml").path
            try ScenarioPlan.substitute(template, ports: ports, relayPorts: relayPorts).write(toFile: configPath, atomically: true, encoding: .utf8)
            let port = try Self.freePort(), adminPort = try Self.freePort()
            let relay = RelayProcess(
                name: spec.name, binary: relayBinary,
                arguments: ["serve", "--config", configPath, "--listen", "127.0.0.1:\(port)", "--admin", "127.0.0.1:\(adminPort)",
                            "--spill-dir", work.appendingPathComponent("spill-\(spec.name)").path] + (spec.args ?? []),
                logPath: work.appendingPathComponent("\(spec.name).log").path, adminPort: adminPort)
            relays.append(relay)
            try relay.start()
            log("scenario \(name): relay \(spec.name) pid \(relay.pid) on :\(port) (admin :\(adminPort))")
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
        if let c = load.compress {
            guard let comp = BodyCompression(rawValue: c) else { throw LoadtestError("plan: compress is none, gzip or zstd, not \(c)") }
            sc.compression = comp
        }
        sc.progress = progress
        let cpu0 = relays.map(\.cpuSeconds)
        let logBox = UncheckedLog(log: self.log)

        // Faults, on timers from the start of the load.
        let faults = DispatchGroup()
        for (spec, sink) in zip(plan.sinks, sinks) {
            guard let planned = spec.downForSeconds, case let downFor = outageSeconds ?? planned, downFor > 0 else { continue }
            let after = spec.downAfterSeconds ?? 0
            let sinkName = spec.name
            faults.enter()
            DispatchQueue.global().asyncAfter(deadline: .now() + after) {
                logBox.log("scenario \(name): sink \(sinkName) down for \(downFor) s")
                sink.goDown()
                DispatchQueue.global().asyncAfter(deadline: .now() + downFor) {
                    do { try sink.comeBack(); logBox.log("scenario \(name): sink \(sinkName) back") } catch {
                        logBox.log("scenario \(name): sink \(sinkName) could not listen again: \(error)")
                    }
                    faults.leave()
                }
            }
        }
        let restartErrors = Mutex<[String]>([])
        if let kill = plan.killRelay {
            guard let victim = relays.first(where: { $0.name == (kill.relay ?? relays.last?.name) }) else {
                throw LoadtestError("plan: killRelay.relay \(kill.relay ?? "") is not a relay of the scenario")
            }
            faults.enter()
            DispatchQueue.global().asyncAfter(deadline: .now() + kill.afterSeconds) {
                logBox.log("scenario \(name): kill -9 relay \(victim.name) (pid \(victim.pid))")
                victim.kill9()
                DispatchQueue.global().asyncAfter(deadline: .now() + (kill.downSeconds ?? 1)) {
                    do {
                        try victim.start()
                        logBox.log("scenario \(name): relay \(victim.name) restarted (pid \(victim.pid)) on the same spill directory")
                    } catch {
                        restartErrors.withLock { $0.append("relay \(victim.name) did not restart: \(error)") }
                    }
                    faults.leave()
                }
            }
        }
        let sender = try LoadSender(configuration: sc)
        let report = sender.run()
        faults.wait()

        // Delivery: wait until the sinks hold everything accepted (or stop changing). After a
        // kill the sinks may also hold spans never acknowledged, so the count alone does not
        // say the acknowledged ones are all there: check them id by id (once a second).
        let deadline = monoNanos() + UInt64(plan.drainSeconds * 1e9)
        let killed = plan.killRelay != nil
        var last = -1, stableSince = monoNanos()
        while monoNanos() < deadline {
            let got = sinks.reduce(0) { $0 + $1.uniqueSpans }
            if got >= report.acceptedSpans && (!killed || Self.checkAcknowledged(sender: sender, sinks: sinks).missing == 0) { break }
            if got != last { last = got; stableSince = monoNanos() }
            else if monoNanos() - stableSince > (killed ? 10_000_000_000 : 5_000_000_000) { break }
            usleep(killed ? 1_000_000 : 50_000)
        }
        let cpu1 = relays.map(\.cpuSeconds)
        for r in relays.reversed() { r.stop() }
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

        let acknowledged = Self.checkAcknowledged(sender: sender, sinks: sinks)
        let stats = sinks.map(\.report)
        var failures = restartErrors.withLock { $0 }, notes: [String] = []
        if let iso = plan.isolation { Self.judgeIsolation(iso, plan: plan, stats: stats, ingestP99Micros: report.latencyMicros.p99,
                                                            failures: &failures, notes: &notes) }
        if plan.killRelay != nil {
            let restarts = relays.reduce(0) { $0 + $1.restarts }
            if restarts == 0 { failures.append("the relay was never killed") }
            if report.failedRequests == 0 { notes.append("no request failed across the kill (the relay was down only briefly)") }
        }
        let verdict = ScenarioVerdict(scenario: name, send: report, sinks: stats, sinkNames: plan.sinks.map(\.name),
                                      relayCPUSeconds: relayCPU, acknowledged: acknowledged,
                                      relayRestarts: relays.reduce(0) { $0 + $1.restarts }, failures: failures, notes: notes)
        if !verdict.passed {
            for r in relays {
                if let text = r.lastLogLines(20) { log("relay \(r.name) log (last lines):\n" + text) }
            }
        }
        return verdict
    }

    /// Every acknowledged span id against the union of what the sinks received: how many
    /// were acknowledged, how many of those no sink holds, how many delivered were never
    /// acknowledged (sent, then the answer lost — at a kill, or an error answer after queueing).
    static func checkAcknowledged(sender: LoadSender, sinks: [SinkServer]) -> (count: Int, missing: Int, unacknowledgedDelivered: Int) {
        var delivered = SpanIDSet(capacity: sinks.reduce(0) { $0 + $1.uniqueSpans })
        for s in sinks { s.forEachSpan { _, id in _ = delivered.insert(traceLow: 0, id: id) } }
        var acked = 0, missing = 0
        sender.forEachAcknowledgedSpanID { id in
            acked += 1
            if !delivered.contains(traceLow: 0, id: id) { missing += 1 }
        }
        return (acked, missing, max(0, delivered.count - (acked - missing)))
    }

    /// The isolation check: the healthy sink's delivery lag p99 at most the bound past the
    /// load's own latency p99 (a span cannot reach a backend before the relay has taken it; on a
    /// starved machine every answer is late, and that is not the slow backend's doing), and the
    /// slow one visibly slow or failing (else the scenario proves nothing).
    static func judgeIsolation(_ iso: ScenarioPlan.Isolation, plan: ScenarioPlan, stats: [SinkStats], ingestP99Micros: UInt64,
                               failures: inout [String], notes: inout [String]) {
        let names = plan.sinks.map(\.name)
        guard let h = names.firstIndex(of: iso.healthy), let s = names.firstIndex(of: iso.slow) else {
            failures.append("plan: isolation names sinks \(iso.healthy) and \(iso.slow); the plan has \(names)")
            return
        }
        let bound = UInt64(iso.maxHealthyLagP99Seconds * 1e6) + ingestP99Micros
        let boundText = String(format: "%.3f s (%.3f s + the load's latency p99 %.3f s)", Double(bound) / 1e6,
                               iso.maxHealthyLagP99Seconds, Double(ingestP99Micros) / 1e6)
        guard let healthy = stats[h].deliveryLagMicros, stats[h].uniqueSpans > 0 else {
            failures.append("isolation: the healthy sink \(iso.healthy) received nothing")
            return
        }
        let p99 = String(format: "%.3f s", Double(healthy.p99) / 1e6), slowP50 = stats[s].deliveryLagMicros.map { String(format: "%.3f s", Double($0.p50) / 1e6) } ?? "-"
        if healthy.p99 > bound {
            failures.append("isolation: the healthy sink \(iso.healthy)'s delivery lag p99 \(p99) exceeds \(boundText) (slow sink \(iso.slow) p50 \(slowP50))")
        } else {
            notes.append("isolation: healthy sink \(iso.healthy) delivery lag p99 \(p99) ≤ \(boundText) while slow sink \(iso.slow) lagged p50 \(slowP50)")
        }
        let spec = plan.sinks[s]
        let slowLag = stats[s].deliveryLagMicros?.p50 ?? 0
        let wasSlow = (spec.delaySeconds ?? 0) > 0 && Double(slowLag) >= (spec.delaySeconds ?? 0) * 1e6
        let wasFailing = (spec.failRatio ?? 0) > 0 && stats[s].failedOnPurpose > 0
        if !wasSlow && !wasFailing {
            failures.append("isolation: the slow sink \(iso.slow) was neither slow nor failing (lag p50 \(slowP50), \(stats[s].failedOnPurpose) failures): the check proves nothing")
        }
    }
}

/// The runner's `log` closure, handed to the fault timers.
private struct UncheckedLog: @unchecked Sendable {
    let log: (String) -> Void
}
