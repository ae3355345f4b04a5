import Dispatch
import Logging
import Routing
import Spans
import Transport

/// The running relay: its HTTP server with the ingest, health and status endpoints, and the
/// pipeline behind ingest. Built from settings, started once, shut down once.
public final class RelayService: Sendable {
    public struct Settings: Sendable {
        public var listeners: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 9411, name: "default")]
        public var server = HTTPServerConfiguration()
        public var ingest = IngestConfiguration()
        /// Keep this many recent batches for `GET /debug/captured` (0 = endpoint off).
        public var debugCapture = 0
        /// How long in-flight requests may take to finish on shutdown.
        public var shutdownGrace: Duration = .seconds(10)
        /// The compiled routing configuration; nil skips the routing stage (tests of ingest alone).
        public var routing: RoutingTable?
        public init() {}
    }

    public let settings: Settings
    public let readiness = Readiness()
    public let ingestStats = IngestStats()
    public let capture: CapturingConsumer
    public let routingStats: RoutingStats
    private let server: HTTPServer
    private let logger: Logger

    /// - Parameter consumer: where decoded batches go; by default a `CapturingConsumer` that
    ///   keeps `settings.debugCapture` batches (the exporters replace it).
    public init(settings: Settings, consumer: (any SpanConsumer)? = nil, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.capture = CapturingConsumer(capacity: settings.debugCapture)
        var router = EndpointRouter()
        let terminal = consumer ?? capture
        let routingStats = RoutingStats()
        self.routingStats = routingStats
        let pipeline: any SpanConsumer = settings.routing.map { RoutingConsumer(table: $0, next: terminal, stats: routingStats, logger: logger) } ?? terminal
        IngestEndpoints(configuration: settings.ingest, consumer: pipeline, stats: ingestStats).register(into: &router)
        AdminEndpoints(readiness: readiness, ingestStats: ingestStats, routingStats: routingStats,
                       capture: settings.debugCapture > 0 ? capture : nil).register(into: &router)
        self.server = HTTPServer(configuration: settings.server, handler: router, logger: logger)
    }

    /// Binds every listener; throws (naming the address) if one cannot be bound.
    public func start() throws {
        try server.start(listeners: settings.listeners)
        for l in server.boundListeners {
            logger.info("listening", metadata: ["listener.name": "\(l.name)", "listener.address": "\(l.host):\(l.port)"])
        }
        readiness.set(ready: true, reason: "listening")
    }

    public var boundListeners: [BoundListener] { server.boundListeners }

    /// Stops accepting, lets in-flight requests finish within the grace period, then calls `completion`.
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        readiness.set(ready: false, reason: "shutting down")
        logger.info("shutting down", metadata: ["grace.seconds": "\(settings.shutdownGrace.components.seconds)"])
        server.shutdown(grace: settings.shutdownGrace, completion: completion)
    }
}
