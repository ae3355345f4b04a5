import Basics
import Buffering
import Dispatch
import Logging
import Routing
import Spans
import Synchronization
import Transport

/// The running relay: ingest listeners, the admin listener, and the pipeline behind ingest —
/// routing, one queue and one exporter per sending backend. Built from settings, started once,
/// shut down once.
public final class RelayService: Sendable {
    public struct Settings: Sendable {
        /// Ingest listeners: each serves every ingest endpoint (Zipkin and Datadog, HTTP/1.1 and h2c).
        public var listeners: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 9411, name: "default")]
        /// The admin listener (health, status, debug); nil serves those on the ingest listeners.
        public var admin: ListenAddress?
        /// The TLS contexts of the listeners that serve HTTPS, by listener name (a reload
        /// replaces their certificates).
        public var listenerTLS: [String: ListenerTLS] = [:]
        public var server = HTTPServerConfiguration()
        public var ingest = IngestConfiguration()
        /// Keep this many recent batches for `GET /debug/captured` (0 = endpoint off).
        public var debugCapture = 0
        /// How long shutdown may take: in-flight requests finish, then queued spans are sent;
        /// what is left is spilled to disk for the next start.
        public var shutdownGrace: Duration = .seconds(10)
        /// Before shutdown begins, how long the relay goes on serving while `/health/ready`
        /// answers 503 ("draining"), so a load balancer or a Kubernetes Service takes it out of
        /// rotation before its listeners close. Default 0.
        public var drainDelay: Duration = .zero
        /// The compiled routing configuration; nil skips routing and exporting (tests of ingest alone).
        public var routing: RoutingTable?
        /// Queue settings for every backend that sends (`spill.*`).
        public var spill = SpillSettings()
        /// Where SIGHUP and `POST /api/reload` read the configuration (Reload/ReloadTypes.swift).
        public var reload = ReloadSettings()
        public init() {}
    }

    public let settings: Settings
    public let readiness = Readiness()
    public let ingestStats = IngestStats()
    public let capture: CapturingConsumer
    public let routingStats: RoutingStats
    /// Per backend name: the exporter's counters (sending backends only, as configured now).
    public var backendStats: [String: BackendStats] { registry.live.mapValues(\.exporter.stats) }
    /// Returns freed memory to the system after bursts.
    public let trimmer: MemoryTrimmer
    /// The Prometheus registry behind `/metrics` and the figures behind `/api/status`.
    public let metrics: RelayMetrics
    public let status: RelayStatusSource
    /// Sending backends (live and draining after a reload), and the reload machinery.
    let registry: BackendRegistry
    let routingConsumer: RoutingConsumer?
    let reloader: ReloadController?
    private let group: EventLoopGroup
    private let server: HTTPServer
    private let logger: Logger

    /// Builds the pipeline: opens (and recovers) every sending backend's queue under
    /// `settings.spill.directory` and creates its exporter and connections.
    /// - Parameter consumer: replaces the pipeline (tests of ingest alone).
    /// - Throws: `RelayStartError` naming the backend whose queue or target is unusable.
    public init(settings: Settings, consumer: (any SpanConsumer)? = nil, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        self.trimmer = MemoryTrimmer(logger: logger)
        let group = EventLoopGroup(loopCount: settings.server.loops)
        self.group = group
        self.capture = CapturingConsumer(capacity: settings.debugCapture)
        let routingStats = RoutingStats()
        self.routingStats = routingStats
        let metrics = RelayMetrics(listeners: (settings.listeners + (settings.admin.map { [$0] } ?? [])).map(\.name),
                                   admin: settings.admin?.name)
        self.metrics = metrics

        let registry = BackendRegistry(spill: settings.spill, group: group, metrics: metrics, logger: logger)
        self.registry = registry
        let pipeline: any SpanConsumer
        var router: RoutingConsumer?
        if let consumer {
            pipeline = consumer
        } else if let table = settings.routing {
            try registry.openAll(table)
            let (targets, rates) = registry.targets(for: table)
            let r = RoutingConsumer(generation: RoutingGeneration(number: 1, table: table, targets: targets, rates: rates),
                                    capture: settings.debugCapture > 0 ? capture : nil, stats: routingStats, logger: logger)
            router = r
            pipeline = r
        } else {
            pipeline = capture
        }
        self.routingConsumer = router
        let reloader = router.map { ReloadController(router: $0, registry: registry, settings: settings, logger: logger) }
        self.reloader = reloader

        var ingestConfig = settings.ingest
        if let router {
            // Both follow reloads: the generation's rates, the registry's current Datadog backend.
            ingestConfig.datadogRates = { batch in router.datadogRates(of: batch) }
            let log = logger
            ingestConfig.datadogStats = { req in
                registry.statsSender?.forward(req) { outcome in
                    if outcome != .delivered { log.debug("datadog stats not forwarded", metadata: ["outcome": "\(outcome)"]) }
                }
            }
        }
        var ingestRouter = EndpointRouter()
        IngestEndpoints(configuration: ingestConfig, consumer: pipeline, stats: ingestStats).register(into: &ingestRouter)
        var adminRouter = EndpointRouter()
        let serverRef = ServerRef()
        let memory = ingestConfig.memoryBudget
        let backendFigures: @Sendable () -> [(String, BackendStats.Snapshot, QueueStats)] = {
            registry.exporters.map { ($0.name, $0.stats.snapshot, $0.backendQueue.statistics()) }
        }
        let limitFigures: @Sendable () -> [(String, [(String, Int)])] = {
            var out: [(String, [(String, Int)])] = [("memory_budget", [("limit_bytes", memory.limit), ("in_use_bytes", memory.inUse),
                                                                       ("refused_requests", memory.refused)])]
            if let b = serverRef.server.withLock({ $0?.bodyBudget }) {
                out.append(("body_budget", [("limit_bytes", b.limit), ("used_bytes", b.used)]))
            }
            return out
        }
        let status = RelayStatusSource(readiness: readiness, ingestStats: ingestStats, routingStats: routingStats,
                                       table: { [router] in router?.table ?? settings.routing },
                                       spill: settings.spill, backends: backendFigures, limits: limitFigures,
                                       listeners: { serverRef.server.withLock { $0?.boundListeners } ?? [] },
                                       connections: { serverRef.server.withLock { $0?.connectionCount } ?? 0 },
                                       counters: { serverRef.server.withLock { $0?.counters } },
                                       lastReload: { reloader?.lastReload })
        self.status = status
        AdminEndpoints(readiness: readiness, ingestStats: ingestStats, routingStats: routingStats,
                       capture: settings.debugCapture > 0 ? capture : nil, backends: backendFigures, limits: limitFigures,
                       observability: ObservabilityEndpoints(source: status, metrics: metrics, adminName: settings.admin?.name ?? ListenerRouter.adminName))
            .register(into: &adminRouter)
        ReloadEndpoints(controller: reloader).register(into: &adminRouter)
        let handler: any HTTPHandler
        if settings.admin != nil {
            handler = ListenerRouter(admin: adminRouter, ingest: ingestRouter)
        } else {
            // No admin listener: every listener serves both sets of endpoints.
            var both = ingestRouter
            both.merge(adminRouter)
            handler = both
        }
        self.server = HTTPServer(configuration: settings.server, handler: InstrumentedHandler(handler, instruments: metrics.http),
                                 logger: logger, group: group)
        serverRef.server.withLock { $0 = server }
    }

    /// Binds every listener and starts the exporters; throws (naming the address) if a
    /// listener cannot be bound.
    public func start() throws {
        var all = settings.listeners
        if let admin = settings.admin { all.append(admin) }
        try server.start(listeners: all)
        for e in registry.exporters { e.start() }
        trimmer.start()
        status.start()
        let bound = server.boundListeners.map { "\($0.name)=\($0.host):\($0.port)" }.joined(separator: " ")
        readiness.set(ready: true, reason: "listening")
        logger.info("ready: every listener is accepting", metadata: [
            "listeners": "\(bound)",
            "backends": "\(settings.routing?.backends.map { "\($0.name)(\($0.kind.rawValue))" }.joined(separator: ",") ?? "-")",
        ])
    }

    public var boundListeners: [BoundListener] { server.boundListeners }

    /// Stops accepting, lets in-flight requests finish, sends what is queued (to backends that
    /// are up) within the grace period, then stops the exporters — what is left is written to
    /// the spill directory and replayed first by the next start — and calls `completion`.
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        let delay = settings.drainDelay
        guard delay > .zero else {
            readiness.set(ready: false, reason: "shutting down")
            return shutdownNow(completion: completion)
        }
        readiness.set(ready: false, reason: "draining")
        logger.info("draining: not ready, still serving", metadata: ["drain.seconds": "\(delay.components.seconds)"])
        let (sec, atto) = delay.components
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(sec) * 1_000_000_000 + Int(atto / 1_000_000_000))) {
            self.readiness.set(ready: false, reason: "shutting down")
            self.shutdownNow(completion: completion)
        }
    }

    private func shutdownNow(completion: @escaping @Sendable () -> Void) {
        trimmer.stop()
        status.stop()
        logger.info("shutting down", metadata: ["grace.seconds": "\(settings.shutdownGrace.components.seconds)"])
        let grace = settings.shutdownGrace
        let deadline = Clock.monotonicNanos() &+ UInt64(max(0, Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18) * 1e9)
        let exporters = reloader?.close() ?? registry.close()
        let logger = self.logger
        server.shutdown(grace: grace) {
            let group = DispatchGroup()
            for e in exporters {
                group.enter()
                e.flush(until: deadline) { group.leave() }
            }
            group.notify(queue: .global()) {
                for e in exporters {
                    e.stop()
                    let s = e.backendQueue.statistics()
                    if s.records > 0 {
                        logger.info("kept for the next start", metadata: ["backend": "\(e.name)", "records": "\(s.records)", "disk.bytes": "\(s.diskBytes)"])
                    }
                }
                completion()
            }
        }
    }
}

/// The server, for `/status` closures built before it exists.
private final class ServerRef: Sendable {
    let server = Mutex<HTTPServer?>(nil)
}

/// The relay could not start; `message` names the backend or address and why.
public struct RelayStartError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Routes a request by the listener it came in on: the admin listener (named `admin`) serves
/// health, status and debug endpoints; every other listener serves ingest.
struct ListenerRouter: HTTPHandler {
    static let adminName = "admin"
    let admin: EndpointRouter
    let ingest: EndpointRouter
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        if request.listener == Self.adminName { admin.handle(request, respond: respond) } else { ingest.handle(request, respond: respond) }
    }
}
