import ArgumentParser
import Dispatch
import Foundation
import LoadtestCore
import Synchronization
import Transport

struct LoadtestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "tracerelay's load rig: a mesh-shaped span generator, a verifying sink, scenarios.",
        subcommands: [SendCommand.self, SinkCommand.self, RunCommand.self])
}

/// SIGINT/SIGTERM handling without Dispatch signal sources (which did not fire here while
/// the main thread waited on a semaphore): block both signals first thing, so every thread
/// created later inherits the mask, and take them synchronously with `sigwait`/`sigtimedwait`.
enum TerminationSignals {
    static func blockAll() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// Waits up to `seconds` (forever when nil) for SIGINT/SIGTERM; true if one came.
    static func wait(_ set: sigset_t, seconds: Double?) -> Bool {
        var set = set
        guard let seconds else { var sig: Int32 = 0; return sigwait(&set, &sig) == 0 }
        let deadline = monoNanos() + UInt64(seconds * 1e9)
        while true {
            let now = monoNanos()
            if now >= deadline { return false }
            let left = deadline - now
            var ts = timespec(tv_sec: Int(left / 1_000_000_000), tv_nsec: Int(left % 1_000_000_000))
            if sigtimedwait(&set, nil, &ts) > 0 { return true }
        }
    }

    /// Runs `body` on a background thread when SIGINT/SIGTERM arrives.
    static func onSignal(_ set: sigset_t, _ body: @escaping @Sendable () -> Void) {
        let s = set
        Thread.detachNewThread { if wait(s, seconds: nil) { body() } }
    }
}

/// Lets a signal stop a sender created after the handler.
final class Stopper: Sendable {
    let sender = Mutex<LoadSender?>(nil)
    func stop() { sender.withLock { $0?.stop() } }
}

struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send mesh-shaped traces (Envoy-like spans with a per-span checksum) at a set rate.",
        discussion: """
        Open loop with --rate N (spans/s): request k is due at k × batch / N seconds and its latency
        counts from that intended time, so a stalled server shows as latency (no coordinated
        omission). --rate max keeps connections × streams requests in flight instead.
        Payloads are pre-encoded templates whose ids, start times and checksums are patched per
        request: every span id of a run is unique and its `loadtest.sum` tag proves its content.
        """)

    @Option(help: "Collector base URL (the format's path is used unless the URL has one).") var target = "http://127.0.0.1:9411"
    @Option(help: "zipkin-json | zipkin-proto | datadog-v04 | datadog-v05.") var format = "zipkin-json"
    @Option(help: "1.1 or 2 (h2c, prior knowledge).") var http = "1.1"
    @Option(help: "Connections.") var connections = 4
    @Option(help: "Concurrent streams per h2c connection.") var streams = 10
    @Option(help: "Spans per request.") var batch = 500
    @Option(help: "Content-Encoding of the bodies: none | gzip | zstd (level 1, compressed per request).") var compress = "none"
    @Option(help: "Spans per second, or max.") var rate = "max"
    @Option(help: "Seconds to run (default 10 unless --requests is given).") var duration: Double?
    @Option(help: "Requests to send.") var requests: Int?
    @Option(help: "Services in the mesh.") var services = 50
    @Option(help: "Zones, comma separated.") var zones = "zone-eu-1,zone-us-1"
    @Option(name: .customLong("zone-regions"), help: "zone=region pairs, comma separated.") var zoneRegions = "zone-eu-1=eu-west-1,zone-us-1=us-east-1"
    @Option(help: "Mesh name.") var mesh = "default"
    @Option(help: "Seed (0: from the clock).") var seed: UInt64 = 0
    @Option(help: "Event loops for the connections.") var loops = 1
    @Option(help: "Write the JSON report here.") var report: String?
    @Option(help: "Write a self-contained HTML report here (throughput and latency over time).") var html: String?
    @Flag(help: "No progress line.") var quiet = false

    func run() throws {
        let signals = TerminationSignals.blockAll()  // before any thread exists: they inherit the mask
        let stopper = Stopper()
        TerminationSignals.onSignal(signals) { stopper.stop() }
        var c = SendConfiguration(target: try ClientEndpoint(url: target))
        guard let f = WireFormat(rawValue: format) else { throw ValidationError("unknown --format \(format)") }
        c.format = f
        switch http {
        case "1.1", "1", "http1": c.http = .http1
        case "2", "h2c", "h2": c.http = .h2c
        default: throw ValidationError("--http is 1.1 or 2")
        }
        guard let comp = BodyCompression(rawValue: compress) else { throw ValidationError("--compress is none, gzip or zstd") }
        c.compression = comp
        c.connections = connections; c.streams = streams; c.batch = batch; c.seed = seed; c.loops = loops
        if rate != "max" {
            guard let r = Double(rate), r > 0 else { throw ValidationError("--rate is a positive number of spans/s or max") }
            c.rate = r
        }
        c.requests = requests
        c.durationSeconds = duration ?? (requests == nil ? 10 : nil)
        c.shape = MeshShape(services: services, zones: zones.split(separator: ",").map(String.init),
                            zoneRegions: try MeshShape.parsePairs(zoneRegions), mesh: mesh)
        c.progress = !quiet && isatty(2) != 0
        let sender = try LoadSender(configuration: c)
        stopper.sender.withLock { $0 = sender }
        let r = sender.run()
        print(r.summary())
        if let report { try writeFile(report, r.json() + "\n") }
        if let html { try writeFile(html, r.html()) }
        if r.sentRequests > 0 && r.acceptedRequests == 0 { throw ExitCode(1) }
    }
}

struct SinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "A Zipkin collector and Datadog agent that checks and counts every span.",
        discussion: """
        Serves POST /api/v2/spans (JSON, proto3; gzip/deflate/zstd), PUT|POST /v0.4|v0.5/traces,
        GET /info, GET /stats (JSON counts) on every --listen address. Counts unique spans,
        duplicates, altered spans (loadtest.sum mismatch), residency violations (--region), per
        service. Writes --report on SIGINT/SIGTERM or after --duration.
        """)

    @Option(help: "HOST:PORT to listen on (repeatable).") var listen: [String] = ["127.0.0.1:9412"]
    @Option(help: "Expected region: spans whose region tag differs are violations.") var region: String?
    @Option(help: "Answer this many seconds late.") var delay: Double = 0
    @Option(name: .customLong("fail-ratio"), help: "Fraction of span requests answered 503.") var failRatio: Double = 0
    @Option(name: .customLong("down-for"), help: "Seconds before listening (connections refused until then).") var downFor: Double = 0
    @Flag(help: "Only read bodies (no decoding or checks): to measure a generator.") var discard = false
    @Option(help: "Event loops.") var loops: Int?
    @Option(help: "Exit after this many seconds.") var duration: Double?
    @Option(help: "Write the JSON stats here on exit.") var report: String?

    func run() throws {
        var c = SinkConfiguration()
        c.listen = listen; c.region = region; c.delaySeconds = delay; c.failRatio = failRatio
        c.downForSeconds = downFor; c.discard = discard; c.loops = loops
        let signals = TerminationSignals.blockAll()  // before any thread exists: they inherit the mask
        let sink = SinkServer(configuration: c)
        try sink.start()
        writeStdout("loadtest sink: listening on \(listen.joined(separator: ", "))\(downFor > 0 ? " in \(downFor) s" : "")\n")
        _ = TerminationSignals.wait(signals, seconds: duration)
        sink.shutdown()
        let json = sink.statsJSON()
        print(json)
        if let report { try writeFile(report, json + "\n") }
    }
}
