import ArgumentParser
import Dispatch
import Logging
import Relay
import Transport
#if canImport(Glibc)
import Glibc
#endif

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the relay: accept Zipkin and Datadog spans over HTTP/1.1 and h2c.",
        discussion: """
        Endpoints on every listener:
          POST /api/v2/spans            Zipkin v2 JSON or proto3 (Content-Type application/x-protobuf)
          POST /api/v1/spans            Zipkin v1 JSON
          PUT|POST /v0.3|v0.4|v0.5/traces   Datadog traces (msgpack; v0.3 also JSON); GET /info like an agent
          GET /health/live, /health/ready, /status
        Request bodies may be gzip, deflate or zstd encoded. SIGINT/SIGTERM stop accepting, let
        in-flight requests finish within --grace seconds, and exit 0.
        """)

    @Option(name: .long, help: ArgumentHelp("Address to listen on, HOST:PORT (repeatable; IPv6 as [::1]:9411).", valueName: "host:port"))
    var listen: [String] = []

    @Option(name: .long, help: ArgumentHelp("Config file (Relay document and Kuma resources). Without it the embedded default runs.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: "Event loops (default: one per core).")
    var loops: Int?

    @Option(name: .long, help: "Seconds in-flight requests get to finish on shutdown.")
    var grace: Int = 10

    @Option(name: .long, help: "Largest request body accepted, in bytes (after that: 413).")
    var maxBodyBytes: Int = 25 * 1024 * 1024

    @Option(name: .long, help: "Keep this many recent batches for GET /debug/captured (0 = off; for tests and debugging).")
    var debugCapture: Int = 0

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard grace >= 0 else { throw ValidationError("--grace must be 0 or more seconds") }
        guard maxBodyBytes > 0 else { throw ValidationError("--max-body-bytes must be positive") }
        if let loops, loops < 1 { throw ValidationError("--loops must be at least 1") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "tracerelay")
        var settings = RelayService.Settings()
        if !listen.isEmpty {
            settings.listeners = try listen.enumerated().map { i, text in
                do { return try ListenAddress(parsing: text, name: i == 0 ? "default" : "listener\(i)") } catch {
                    throw ValidationError("--listen \(text): \(error)")
                }
            }
        }
        settings.server.loops = loops
        settings.server.maxBodyBytes = maxBodyBytes
        settings.shutdownGrace = .seconds(grace)
        settings.debugCapture = debugCapture
        let service = RelayService(settings: settings, logger: logger)
        do { try service.start() } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        installSignalHandlers(service: service, logger: logger)
        dispatchMain()
    }
}

/// SIGINT/SIGTERM → graceful shutdown, then exit 0. A second signal exits at once.
private func installSignalHandlers(service: RelayService, logger: Logger) {
    let queue = DispatchQueue(label: "tracerelay.signals")
    let stopping = SignalState()
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        source.setEventHandler {
            if stopping.begin() {
                logger.info("signal received, stopping", metadata: ["signal": "\(sig)"])
                service.shutdown { exit(0) }
            } else {
                logger.warning("second signal, exiting now")
                exit(1)
            }
        }
        source.resume()
        SignalState.keep(source)
    }
}

/// Signal sources must live for the process; the flag is only touched on the signal queue.
private final class SignalState: @unchecked Sendable {
    private var started = false
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []
    func begin() -> Bool { defer { started = true }; return !started }
    static func keep(_ s: any DispatchSourceSignal) { sources.append(s) }
}
