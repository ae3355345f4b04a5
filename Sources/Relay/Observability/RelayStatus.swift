import Basics
import Buffering
import Routing
import Transport

/// One backend's figures at one moment: its configuration, the exporter's counters and the
/// queue's gauges.
public struct BackendStatus: Sendable {
    public var name: String
    public var kind: String
    public var region: String?
    public var target: String
    /// `memory`, `spill` or `wal` (in `wal` every record is on disk: disk bytes are no alarm there).
    public var durability: String
    public var stats: BackendStats.Snapshot
    public var queue: QueueStats
}

/// Everything the status page and `/metrics` show, read in one go from the counters the relay
/// keeps anyway (nothing here is counted twice).
public struct RelayStatus: Sendable {
    public var version: String
    public var uptimeSeconds: Double
    public var startedAtUnixSeconds: Double
    public var ready: Bool
    public var readyReason: String
    /// Bound listeners; `admin` is the admin listener's name.
    public var listeners: [BoundListener]
    public var openConnections: Int
    /// Answers the server gave itself by status code, h2 streams refused and open (Transport's counters).
    public var serverAnswers: [Int: Int] = [:]
    public var refusedStreams = 0
    public var openStreams = 0
    /// TLS handshakes completed (and how many resumed a session), failures by reason.
    public var tlsHandshakes = (total: 0, resumed: 0)
    public var tlsFailures: [String: Int] = [:]
    /// Connections closed at accept because `maxConnections` were open.
    public var refusedConnections = 0
    public var ingest: [IngestStats.Key: IngestStats.Snapshot]
    public var routing: RoutingStats.Snapshot
    public var backends: [BackendStatus]
    /// Per-backend queue caps: memory before spilling, disk.
    public var queueMemoryLimitBytes: Int
    public var queueDiskLimitBytes: Int
    /// Shared limits (`memory_budget`, `body_budget`): name → figures.
    public var limits: [(String, [(String, Int)])]
    /// The last reload (SIGHUP or `POST /api/reload`), nil before the first.
    public var lastReload: ReloadRecord? = nil
}

/// Reads a `RelayStatus` from the live relay. Built by `RelayService`; the closures reach
/// objects that exist only once the server does.
public final class RelayStatusSource: Sendable {
    let startedMonotonic = Clock.monotonicNanos()
    let startedWall = Double(Clock.wallNanos()) / 1e9
    let readiness: Readiness
    let ingestStats: IngestStats
    let routingStats: RoutingStats
    /// The routing table the relay runs with now (it changes on reload; nil: ingest only, no routing).
    let table: @Sendable () -> RoutingTable?
    let spill: SpillSettings
    let backends: @Sendable () -> [(String, BackendStats.Snapshot, QueueStats)]
    let limits: @Sendable () -> [(String, [(String, Int)])]
    let listeners: @Sendable () -> [BoundListener]
    let connections: @Sendable () -> Int
    let counters: @Sendable () -> ServerCounters?
    let lastReload: @Sendable () -> ReloadRecord?
    /// Recent per-second samples for the page's sparklines.
    public let history: ThroughputHistory

    public init(readiness: Readiness, ingestStats: IngestStats, routingStats: RoutingStats,
                table: @escaping @Sendable () -> RoutingTable?, spill: SpillSettings,
                backends: @escaping @Sendable () -> [(String, BackendStats.Snapshot, QueueStats)],
                limits: @escaping @Sendable () -> [(String, [(String, Int)])] = { [] },
                listeners: @escaping @Sendable () -> [BoundListener] = { [] },
                connections: @escaping @Sendable () -> Int = { 0 },
                counters: @escaping @Sendable () -> ServerCounters? = { nil },
                lastReload: @escaping @Sendable () -> ReloadRecord? = { nil },
                historySeconds: Int = 120) {
        self.readiness = readiness
        self.ingestStats = ingestStats
        self.routingStats = routingStats
        self.table = table
        self.spill = spill
        self.backends = backends
        self.limits = limits
        self.listeners = listeners
        self.connections = connections
        self.counters = counters
        self.lastReload = lastReload
        self.history = ThroughputHistory(capacity: historySeconds)
    }

    /// Starts sampling once a second (the page's sparklines); `stop` ends it.
    public func start() { history.start { [weak self] in self?.current() } }
    public func stop() { history.stop() }

    /// The figures now.
    public func current() -> RelayStatus {
        let configs = Dictionary((table()?.backends ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let r = readiness.current
        var status = RelayStatus(
            version: relayVersion,
            uptimeSeconds: Double(Clock.monotonicNanos() &- startedMonotonic) / 1e9,
            startedAtUnixSeconds: startedWall,
            ready: r.ready, readyReason: r.reason,
            listeners: listeners(), openConnections: connections(),
            ingest: ingestStats.byListener, routing: routingStats.snapshot,
            backends: backends().sorted { $0.0 < $1.0 }.map { name, s, q in
                let c = configs[name]
                return BackendStatus(name: name, kind: c?.kind.rawValue ?? "", region: c?.region, target: c?.target ?? "-",
                                     durability: spill.durability(for: name).rawValue, stats: s, queue: q)
            },
            queueMemoryLimitBytes: spill.memoryBytes, queueDiskLimitBytes: spill.maxDiskBytes,
            limits: limits(), lastReload: lastReload())
        if let c = counters() {
            status.serverAnswers = c.ownAnswers
            status.refusedStreams = c.refusedStreams
            status.tlsHandshakes = c.tlsHandshakes
            status.tlsFailures = c.tlsFailuresByReason
            status.refusedConnections = c.refusedConnections
            status.openStreams = c.openStreams
        }
        return status
    }
}
