import ArgumentParser
import Dispatch
import Logging
import Relay
import Routing
import Transport
#if canImport(Glibc)
import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the relay: accept Zipkin and Datadog spans, route them by mesh tags, forward them to their backends.",
        discussion: """
        Ingest endpoints on every --listen address (HTTP/1.1 and h2c; with
        --tls-cert/--tls-key HTTPS, and HTTP/2 over TLS by ALPN, instead):
          POST /api/v2/spans   Zipkin v2 JSON or proto3 (application/x-protobuf)
          POST /api/v1/spans   Zipkin v1 JSON
          PUT|POST /v0.3|v0.4|v0.5|v0.7/traces   Datadog traces (msgpack;
                               v0.3 also JSON); GET /info like an agent
          PUT|POST /v0.6/stats Datadog client stats (to the Datadog backend)
        Admin endpoints, on the admin address only:
          GET /                the status page (problems first)
          GET /metrics         Prometheus exposition
          GET /api/status      the status page's figures as JSON
          GET /api/routes?tag=k=v&...   what `explain` answers
          POST /api/reload     re-read --config (as SIGHUP does)
          GET /health/live, /health/ready, /status
          (and /debug/captured with --debug-capture)

        Without --config the embedded default runs: Zipkin on 127.0.0.1:9411,
        Datadog on 127.0.0.1:8126, admin on 127.0.0.1:9901, and a `log`
        backend that prints a line per batch — no tracing backend needed.
        Flags override the config's Relay document.

        Spans are answered (202 / 200) once every backend queue they route to
        has taken them. Each sending backend has its own queue (memory, then
        zstd spill files under --spill-dir/<backend>/) and exporter (batching,
        retries with backoff). SIGINT/SIGTERM (after --drain-delay seconds of
        serving while /health/ready answers 503) stop accepting, let requests
        finish, send what is queued within --grace seconds and spill the rest,
        which the next start replays first. Request bodies may be gzip, deflate
        or zstd encoded.

        SIGHUP or POST /api/reload re-reads --config, validates it like `check`
        and swaps the routing table without dropping a connection or a queued
        span; an invalid file is refused and the running configuration stays.
        Listener, admin and spill changes need a restart; listeners' TLS
        certificates and keys are re-read on reload (new connections use them,
        open ones keep theirs).

        Logs go to standard error: one JSON object per line (time, level,
        label, source, message, then the metadata as fields) unless standard
        error is a terminal, where lines are for people (--log-format
        overrides). Refused requests log one warning per reason and minute;
        repeats are counted into the next line ("… (repeated 1,234 times in
        60 s)").
        """)

    @Option(name: .long, help: ArgumentHelp("Ingest address HOST:PORT (repeatable; IPv6 as [::1]:9411). Replaces the config's listeners; each serves Zipkin and Datadog.", valueName: "host:port"))
    var listen: [String] = []

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("PEM certificate chain: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) on every --listen address. Needs --tls-key.", valueName: "file"))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(name: .customLong("tls-client-ca"), help: ArgumentHelp("PEM CA bundle: require client certificates signed by it on the --listen addresses (mutual TLS).", valueName: "file"))
    var tlsClientCA: String?

    @Option(name: .long, help: ArgumentHelp("Admin address HOST:PORT for health, status and debug endpoints (default: the config's admin.address, else 127.0.0.1:9901).", valueName: "host:port"))
    var admin: String?

    @Option(name: .long, help: ArgumentHelp("Config file (Relay document and Kuma resources). Without it the embedded default runs.", valueName: "file"))
    var config: String?

    @Option(name: .customLong("spill-dir"), help: ArgumentHelp("Directory for the backends' spill segments (overrides spill.directory; default ./tracerelay-spill).", valueName: "dir"))
    var spillDir: String?

    @Option(name: .long, help: ArgumentHelp("This relay's own region (overrides the config's region).", valueName: "name"))
    var region: String?

    @Option(name: .long, help: "Event loops (default: one per core).")
    var loops: Int?

    @Option(name: .long, help: "Seconds shutdown may take: requests finish, queued spans are sent, the rest is spilled.")
    var grace: Int = 10

    @Option(name: .customLong("drain-delay"), help: "Seconds to go on serving after SIGINT/SIGTERM while /health/ready answers 503, so a load balancer or Kubernetes Service stops sending first; then the --grace shutdown begins.")
    var drainDelay: Int = 0

    @Option(name: .long, help: "Largest request body accepted, in bytes (after that: 413).")
    var maxBodyBytes: Int = 25 * 1024 * 1024

    @Option(name: .long, help: "Most spans one request may carry (after that: 413; Datadog tracers get the agent's answer).")
    var maxSpansPerRequest: Int = IngestConfiguration().maxSpansPerRequest

    @Option(name: .long, help: "Bytes that decompressed bodies and decoded spans of all requests in flight may hold (after that: 503 with Retry-After; default: a quarter of RAM, at most 2 GiB).")
    var memoryBudgetBytes: Int?

    @Option(name: .long, help: "Request-body bytes all connections together may buffer before new bodies get 503 / REFUSED_STREAM (default: an eighth of RAM, at most 128 MiB).")
    var maxBufferedBodyBytes: Int?

    @Option(name: .long, help: "Connections open at once over every listener; one more is accepted and closed at once (counted as tracerelay_http_connections_refused_total). Keep it below `ulimit -n`.")
    var maxConnections: Int = HTTPServerConfiguration().maxConnections

    @Option(name: .long, help: "Keep this many recent batches for GET /debug/captured (0 = off; for tests and debugging).")
    var debugCapture: Int = 0

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: ArgumentHelp("Log lines on standard error: json (one object per line), text (for people), or auto: text on a terminal, else json.", valueName: "auto|json|text"))
    var logFormat: String = "auto"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard logFormat == "auto" || LogFormat(rawValue: logFormat) != nil else { throw ValidationError("unknown --log-format \(logFormat); use auto, json or text") }
        guard grace >= 0 else { throw ValidationError("--grace must be 0 or more seconds") }
        guard drainDelay >= 0 else { throw ValidationError("--drain-delay must be 0 or more seconds") }
        guard maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be positive") }
        guard maxSpansPerRequest > 0 else { throw ValidationError("--max-spans-per-request must be positive") }
        if let memoryBudgetBytes, memoryBudgetBytes <= 0 { throw ValidationError("--memory-budget-bytes must be positive") }
        if let maxBufferedBodyBytes, maxBufferedBodyBytes <= 0 { throw ValidationError("--max-buffered-body-bytes must be positive") }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be positive") }
        if let loops, loops < 1 { throw ValidationError("--loops must be at least 1") }
        if let spillDir, spillDir.isEmpty { throw ValidationError("--spill-dir must not be empty") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
        if tlsCert != nil && listen.isEmpty { throw ValidationError("--tls-cert applies to --listen addresses; give at least one (or use tls: in the config's listeners)") }
    }

    func run() throws {
        // SIGINT, SIGTERM and SIGHUP are blocked before any thread exists (threads inherit the
        // mask) and taken with sigwait on this thread once the relay runs: a signal sent at
        // any moment — even while it starts — stays pending until it is handled, never lost.
        let signals = blockControlSignals()
        let level = Logger.Level(rawValue: logLevel) ?? .info
        // Values from the wire (service names, answers, headers) cannot split a log line in either format.
        RelayLogging.bootstrap(format: LogFormat(rawValue: logFormat), level: level)
        let logger = Logger(label: "tracerelay")
        var overrides = RelayOverrides()
        overrides.listen = listen
        overrides.admin = admin
        overrides.spillDirectory = spillDir
        overrides.region = region
        if let tlsCert, let tlsKey {
            overrides.tls = ListenerTLSSettings(certificate: tlsCert, privateKey: tlsKey, clientCA: tlsClientCA)
        }
        let file: RelayFile
        let table: RoutingTable
        do {
            let loaded = try config.map { path throws(ConfigError) in try RelayFile.load(path: path) } ?? RelayFile.embeddedDefault
            file = loaded.applying(overrides)
            table = try RoutingTable(file.routing)
        } catch {
            printError("tracerelay: \(config ?? "embedded default config") is not valid:\n\(error)\nRun `tracerelay check --config FILE` for the full report.")
            throw ExitCode(1)
        }
        for issue in table.warnings {
            logger.warning("config", metadata: ["issue": "\(issue)"])
        }
        logger.info("config loaded", metadata: ["config": "\(config ?? "embedded default")",
                                                "backends": "\(file.routing.backends.map(\.name).joined(separator: ","))",
                                                "residency": "\(table.residencyEnabled ? "on" : "off (no region configured)")"])
        var settings: RelayService.Settings
        do { settings = try RelayService.Settings(file: file, table: table, overrides: overrides) } catch {
            printError("tracerelay: \(error)")
            throw ExitCode(1)
        }
        settings.server.loops = loops
        settings.server.maxBodyBytes = maxBodyBytes
        settings.ingest.maxSpansPerRequest = maxSpansPerRequest
        if let memoryBudgetBytes { settings.ingest.memoryBudget = MemoryBudget(limit: memoryBudgetBytes) }
        if let maxBufferedBodyBytes { settings.server.maxBufferedBodyBytes = maxBufferedBodyBytes }
        settings.server.maxConnections = maxConnections
        settings.shutdownGrace = .seconds(grace)
        settings.drainDelay = .seconds(drainDelay)
        settings.debugCapture = debugCapture
        settings.reload.source = ConfigSource(path: config, overrides: overrides)
        let refusals = RateLimitedLogger(logger: Logger(label: "tracerelay.ingest"))
        settings.ingest.refusalLog = refusals
        let service: RelayService
        do {
            service = try RelayService(settings: settings, logger: logger)
            try service.start()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            printError("tracerelay: cannot start: \(error)")
            throw ExitCode(1)
        }
        waitForSignals(signals, service: service, logger: logger) { refusals.flush(.warning, "ingest requests refused") }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every thread it starts).
private func blockControlSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    for sig in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, sig) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
    return set
}

/// Takes the blocked signals on this thread for the life of the process:
/// SIGINT/SIGTERM → graceful shutdown, then exit 0 (a second one exits at once with 1);
/// SIGHUP → reload the configuration. `beforeExit` runs once shutdown is done (last words:
/// counts of rate-limited log lines).
private func waitForSignals(_ set: sigset_t, service: RelayService, logger: Logger,
                            beforeExit: @escaping @Sendable () -> Void = {}) -> Never {
    var set = set
    var stopping = false
    while true {
        var sig: Int32 = 0
        guard sigwait(&set, &sig) == 0 else { continue }
        switch sig {
        case SIGHUP:
            logger.info("SIGHUP received: reloading the configuration")
            service.reload(trigger: "signal")
        case _ where !stopping:
            stopping = true
            logger.info("signal received, stopping", metadata: ["signal": "\(sig)"])
            service.shutdown { beforeExit(); exit(0) }
        default:
            logger.warning("second signal, exiting now")
            exit(1)
        }
    }
}
