import Logging
import Routing
import Spans
import Synchronization

/// Counters of the routing stage, read by `/status` (and later the metrics endpoint).
public final class RoutingStats: Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// Spans kept for each backend (after sampling), by backend name.
        public var routed: [String: Int] = [:]
        /// Spans dropped by sampling, by backend name.
        public var sampledOut: [String: Int] = [:]
        /// `spans_refused_residency_total{region,backend}` and the other refusals, keyed "reason|region|backend".
        public var refused: [String: Int] = [:]
    }
    private let state = Mutex(Snapshot())
    public init() {}
    public var snapshot: Snapshot { state.withLock { $0 } }

    func record(_ routes: BatchRoutes, backends: [BackendConfig]) {
        state.withLock { s in
            for (i, list) in routes.perBackend.enumerated() where !list.isEmpty { s.routed[backends[i].name, default: 0] += list.count }
            for (i, n) in routes.sampledOut.enumerated() where n > 0 { s.sampledOut[backends[i].name, default: 0] += n }
            for r in routes.refused { s.refused["\(r.reason.rawValue)|\(r.region)|\(r.backend)", default: 0] += r.count }
        }
    }
}

/// The routing stage: decides every span's backend (mesh tags → TrafficTrace/MeshTrace →
/// backend, region pin, sampling), counts what is kept, sampled out and refused, and hands the
/// batch on. Until the exporters exist the next stage receives the whole batch; refused spans
/// are never forwarded to a backend because nothing forwards yet, and the counts are real.
public final class RoutingConsumer: SpanConsumer {
    public let table: RoutingTable
    public let stats: RoutingStats
    private let next: any SpanConsumer
    /// One router (with its decision cache) per slot; a batch takes any free one, so loops
    /// rarely wait on each other.
    private let routers: [RouterSlot]

    private let logger: Logger
    /// Backends of type `log`: each routed batch gets one summary line.
    private let logBackends: [Int]

    public init(table: RoutingTable, next: any SpanConsumer, stats: RoutingStats = RoutingStats(), routers count: Int = 4,
                logger: Logger = Logger(label: "tracerelay.routing")) {
        self.table = table
        self.next = next
        self.stats = stats
        self.logger = logger
        self.logBackends = table.backends.indices.filter { table.backends[$0].kind == .log }
        self.routers = (0..<max(1, count)).map { _ in RouterSlot(table) }
    }

    public func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        let routes = route(batch)
        stats.record(routes, backends: table.backends)
        for b in logBackends where !routes.perBackend[b].isEmpty {
            let first = batch.spans[Int(routes.perBackend[b][0].span)]
            logger.info("batch", metadata: [
                "backend": "\(table.backends[b].name)", "spans": "\(routes.perBackend[b].count)",
                "format": "\(batch.metadata.format.rawValue)", "first.trace_id": "\(first.traceID)",
                "first.service": "\(batch.string(first.localEndpoint.serviceName))",
            ])
        }
        if !routes.refused.isEmpty {
            logger.debug("spans refused", metadata: ["refused": "\(routes.refused.map { "\($0.reason.rawValue)/\($0.region)/\($0.backend)=\($0.count)" })"])
        }
        next.consume(batch, completion: completion)
    }

    private func route(_ batch: SpanBatch) -> BatchRoutes {
        for r in routers {
            if let routes = r.router.withLockIfAvailable({ $0.route(batch) }) { return routes }
        }
        return routers[0].router.withLock { $0.route(batch) }
    }
}

/// A `Mutex` is not copyable, so each lives in a class instance of its own.
private final class RouterSlot: Sendable {
    let router: Mutex<Router>
    init(_ table: RoutingTable) { router = Mutex(Router(table)) }
}
