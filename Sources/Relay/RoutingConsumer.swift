import Buffering
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

/// Where the routing stage hands one backend's spans: the backend's encoder and queue. Backends
/// without one (`log`, `discard`) are handled in the routing stage itself.
struct BackendTarget: Sendable {
    let encoder: BackendEncoder
    let queue: BackendQueue
    /// Set for a backend with one queue per endpoint: its spans are split by its ring.
    var shards: ShardedBackend? = nil
}

/// One routing configuration as the routing stage runs it: the table, where each backend's
/// spans go, and routers with their decision caches. Immutable; a reload builds the next one
/// and swaps it in whole. A batch reads the generation once and uses it to the end, so
/// in-flight batches finish on the table they started with.
final class RoutingGeneration: Sendable {
    /// 1 for the configuration the relay started with, +1 per successful reload.
    let number: Int
    let table: RoutingTable
    /// Indexed like `table.backends`; nil for backends handled here (`log`, `discard`).
    let targets: [BackendTarget?]
    /// Indexed like `table.backends`: a Datadog backend's latest `rate_by_service`.
    let rates: [DatadogRates?]
    /// One router (with its decision cache) per slot; a batch takes any free one, so loops
    /// rarely wait on each other.
    let routers: [RouterSlot]
    /// Backends of type `log`: each routed batch gets one summary line.
    let logBackends: [Int]
    /// Run once the last batch routed with this generation has handed its records to the
    /// queues (the generation is freed): then a removed backend's queue gets nothing more.
    private let released = Mutex<[@Sendable () -> Void]>([])

    init(number: Int, table: RoutingTable, targets: [BackendTarget?], rates: [DatadogRates?]? = nil, routers count: Int = 4) {
        precondition(targets.count == table.backends.count)
        self.number = number
        self.table = table
        self.targets = targets
        self.rates = rates ?? Array(repeating: nil, count: table.backends.count)
        self.logBackends = table.backends.indices.filter { table.backends[$0].kind == .log }
        self.routers = (0..<max(1, count)).map { _ in RouterSlot(table) }
    }

    /// Calls `body` (on the thread that frees the generation) once no batch uses it any more.
    func whenReleased(_ body: @escaping @Sendable () -> Void) { released.withLock { $0.append(body) } }

    deinit { for body in released.withLock({ $0 }) { body() } }
}

/// The routing stage: decides every span's backend (mesh tags → TrafficTrace/MeshTrace →
/// backend, region pin, sampling), counts what is kept, sampled out and refused, and hands each
/// backend only its own spans — encoded in its format — through its queue. Refused and
/// sampled-out spans never reach a backend. The client is answered once every queue its spans
/// route to has accepted them (in `wal` mode after the group commit): nothing is acknowledged
/// that is not queued.
///
/// The configuration is a `RoutingGeneration` swapped whole by `swap(to:)` (reload): a batch
/// reads it with one uncontended lock and keeps it to the end.
public final class RoutingConsumer: SpanConsumer {
    /// The routing table of the current generation.
    public var table: RoutingTable { generation.table }
    public let stats: RoutingStats
    /// Sees every decoded batch whole (tests and `/debug/captured`); nil when off.
    private let capture: (any SpanConsumer)?
    private let current: Mutex<RoutingGeneration>
    private let logger: Logger

    init(generation: RoutingGeneration, capture: (any SpanConsumer)? = nil, stats: RoutingStats = RoutingStats(),
         logger: Logger = Logger(label: "tracerelay.routing")) {
        self.current = Mutex(generation)
        self.capture = capture
        self.stats = stats
        self.logger = logger
    }

    convenience init(table: RoutingTable, targets: [BackendTarget?], capture: (any SpanConsumer)? = nil, stats: RoutingStats = RoutingStats(),
                     routers count: Int = 4, logger: Logger = Logger(label: "tracerelay.routing")) {
        self.init(generation: RoutingGeneration(number: 1, table: table, targets: targets, routers: count), capture: capture,
                  stats: stats, logger: logger)
    }

    /// Routing only, for tests of ingest: every backend behaves like `discard`; `next` sees
    /// every batch whole.
    public convenience init(table: RoutingTable, next: any SpanConsumer, stats: RoutingStats = RoutingStats(), routers count: Int = 4,
                            logger: Logger = Logger(label: "tracerelay.routing")) {
        self.init(table: table, targets: Array(repeating: nil, count: table.backends.count), capture: next, stats: stats,
                  routers: count, logger: logger)
    }

    /// The generation batches start with now.
    var generation: RoutingGeneration { current.withLock { $0 } }

    /// Makes `next` the generation every new batch uses; returns the previous one (batches
    /// already routing keep it until they have enqueued).
    func swap(to next: RoutingGeneration) -> RoutingGeneration {
        current.withLock { g in
            let old = g
            g = next
            return old
        }
    }

    public func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        // One lock per batch, never per span; `g` stays alive until the records are enqueued.
        let g = generation
        let table = g.table
        let routes = Self.route(batch, g.routers)
        stats.record(routes, backends: table.backends)
        for b in g.logBackends where !routes.perBackend[b].isEmpty {
            let first = batch.spans[Int(routes.perBackend[b][0].span)]
            logger.info("batch", metadata: [
                "backend": "\(table.backends[b].name)", "spans": "\(routes.perBackend[b].count)",
                "format": "\(batch.metadata.format.rawValue)", "first.trace_id": "\(first.traceID)",
                "first.service": "\(batch.string(first.localEndpoint.serviceName))",
            ])
        }
        if !routes.refused.isEmpty {
            // Regions come from span tags: escaped like every value from the wire.
            logger.debug("spans refused", metadata: ["refused": "\(routes.refused.map { "\($0.reason.rawValue)/\($0.region)/\($0.backend)=\($0.count)" })"])
        }
        var work: [(BackendQueue, Record)] = []
        // Rings the records were split by: kept until enqueued (an endpoint that left is drained
        // only once no batch can add to its queue).
        var rings: [ShardSnapshot] = []
        for (b, list) in routes.perBackend.enumerated() where !list.isEmpty {
            guard let t = g.targets[b] else { continue }
            if let shards = t.shards {
                rings.append(shards.split(batch, routed: list, table: table, encoder: t.encoder, into: &work))
                continue
            }
            work.append((t.queue, t.encoder.encode(batch, routed: list, table: table)))
        }
        guard let capture else { return withExtendedLifetime((g, rings)) { Self.enqueue(work, completion: completion) } }
        let work2 = work
        capture.consume(batch) { [rings] r in
            if case .failure = r { return completion(r) }
            withExtendedLifetime((g, rings)) { Self.enqueue(work2, completion: completion) }
        }
    }

    /// Enqueues every record; `completion` runs once all queues answered: success when all took
    /// their record, else the first refusal (a client retry may then duplicate spans in the
    /// queues that took theirs: delivery is at least once).
    static func enqueue(_ work: [(BackendQueue, Record)], completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        if work.isEmpty { return completion(.success(())) }
        if work.count == 1 {
            work[0].0.enqueue(work[0].1) { r in completion(r.mapError(consumeError)) }
            return
        }
        let join = Join(count: work.count, completion: completion)
        for (queue, record) in work {
            queue.enqueue(record) { r in join.done(r.mapError(consumeError)) }
        }
    }

    static func consumeError(_ e: QueueError) -> ConsumeError {
        switch e {
        case .full(let s):
            ConsumeError(.retryable, code: .queueFull, message: "a backend queue is full; retry later", retryAfterSeconds: max(1, s))
        case .io(let m):
            ConsumeError(.retryable, code: .spillFailed, message: "the spill write failed: \(m)", retryAfterSeconds: 1)
        case .shutdown:
            ConsumeError(.retryable, code: .shuttingDown, message: "the relay is shutting down", retryAfterSeconds: 1)
        }
    }

    private static func route(_ batch: SpanBatch, _ routers: [RouterSlot]) -> BatchRoutes {
        for r in routers {
            if let routes = r.router.withLockIfAvailable({ $0.route(batch) }) { return routes }
        }
        return routers[0].router.withLock { $0.route(batch) }
    }

    /// The backend index the first span of `batch` routes to (for answers that depend on the
    /// backend, like Datadog's `rate_by_service`); nil when refused or empty.
    public func firstBackend(of batch: SpanBatch) -> Int? {
        guard !batch.isEmpty else { return nil }
        return table.route(0, in: batch).backend
    }

    /// The latest `rate_by_service` of the Datadog backend the first span of `batch` routes to.
    func datadogRates(of batch: SpanBatch) -> String? {
        guard !batch.isEmpty else { return nil }
        let g = generation
        return g.table.route(0, in: batch).backend.flatMap { g.rates[$0]?.answer }
    }
}

/// Counts answers of several queues and calls the completion once, with the first failure.
private final class Join: Sendable {
    private let state: Mutex<(left: Int, failure: ConsumeError?)>
    private let completion: @Sendable (Result<Void, ConsumeError>) -> Void
    init(count: Int, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
        state = Mutex((count, nil))
        self.completion = completion
    }
    func done(_ r: Result<Void, ConsumeError>) {
        let finished: ConsumeError?? = state.withLock { s in
            if case .failure(let e) = r, s.failure == nil { s.failure = e }
            s.left -= 1
            return s.left == 0 ? .some(s.failure) : .none
        }
        guard let f = finished else { return }
        completion(f.map { .failure($0) } ?? .success(()))
    }
}

/// A `Mutex` is not copyable, so each lives in a class instance of its own.
final class RouterSlot: Sendable {
    let router: Mutex<Router>
    init(_ table: RoutingTable) { router = Mutex(Router(table)) }
}
