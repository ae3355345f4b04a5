import Buffering
import Dispatch
import Logging
import Routing
import Spans
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The endpoint set a batch is split by: the ring and, in the same order, each endpoint's
/// queue. Immutable; replaced whole on a membership change. Hooks registered with
/// `whenReleased` run once no batch holds it any more — then the queue of an endpoint that
/// left gets nothing new, and its drain can finish.
final class ShardSnapshot: Sendable {
    let ring: EndpointRing
    /// Indexed like `ring.endpoints`.
    let queues: [BackendQueue]
    /// Round-robin position for `routingKey: none`.
    let turn = Atomic<Int>(0)
    private let released = Mutex<[@Sendable () -> Void]>([])

    init(ring: EndpointRing, queues: [BackendQueue]) {
        precondition(ring.count == queues.count)
        self.ring = ring
        self.queues = queues
    }

    func whenReleased(_ body: @escaping @Sendable () -> Void) { released.withLock { $0.append(body) } }
    deinit { for body in released.withLock({ $0 }) { body() } }
}

/// A backend with several endpoints (issue 13): one queue, exporter and single-endpoint HTTP
/// sender per endpoint, and a consistent-hash ring that sends every span of a trace (or of a
/// service) to the same endpoint.
///
/// - Routing: `split` divides a backend's spans of a batch by the ring into one record per
///   endpoint (the routing stage then enqueues them like any record).
/// - An endpoint that is *down* keeps its queue and its place in the ring: its exporter spills
///   and probes as for any backend, and no trace moves.
/// - An endpoint that *leaves* the resolved set leaves the ring at once; its exporter's sender
///   is replaced by a `RerouteSender`, which splits what it held (memory and spill) over the new
///   ring. Once no batch holds the old ring and its queue is empty, the queue is closed and its
///   directory deleted. If it comes back meanwhile it gets its queue back.
/// - The backend's own queue (`<spill>/<name>`) holds spans that arrived while no endpoint was
///   known and is rerouted like a leaver's; so is an endpoint directory found on disk at start
///   (`<spill>/<name>@<endpoint>`) that is no longer resolved.
///
/// Membership changes run on `control`, a serial queue; the routing stage reads `snapshot`
/// (one short lock per batch).
final class ShardedBackend: Sendable {
    struct Child: Sendable {
        let url: String
        let exporter: BackendExporter
        /// 0 while live; the drain generation once it left (a later revival calls it off).
        var drain = 0
    }

    private struct State {
        var live: [String: Child] = [:]
        /// By queue name: endpoints that left (and directories found on disk), being rerouted.
        var draining: [String: Child] = [:]
        var drains = 0
        var closed = false
    }

    let config: BackendConfig
    let key: EndpointsOptions.RoutingKey
    /// Trace ids hash by their low 64 bits only where the backend sees only those (Zipkin
    /// without `traceId128bit`, Datadog): a rerouted record then hashes as it did at ingest.
    private let lowOnly: Bool
    /// The backend's own queue and its rerouting exporter.
    let holding: BackendExporter
    private let opener: ShardOpener
    private let resolver: any EndpointResolver
    private let control: DispatchQueue
    private let logger: Logger
    private let state = Mutex(State())
    private let current: Mutex<ShardSnapshot>
    private let counters = Mutex((ringChanges: 0, reroutedSpans: 0))

    /// Opens the holding queue, resolves the endpoints once, opens (and starts) one child per
    /// endpoint and reroutes endpoint directories left on disk by endpoints no longer resolved.
    init(_ b: BackendConfig, opener: ShardOpener, logger: Logger) throws(RelayStartError) {
        config = b
        key = b.routingKey
        lowOnly = b.kind == .datadog || (b.kind == .zipkin && !b.traceId128bit)
        self.opener = opener
        var logger = logger
        logger[metadataKey: "backend"] = .string(b.name)
        self.logger = logger
        control = DispatchQueue(label: "tracerelay.shards.\(b.name)")
        resolver = makeResolver(b, logger: logger)
        current = Mutex(ShardSnapshot(ring: EndpointRing([]), queues: []))
        let holdingQueue = try opener.queue(b, b.name)
        holding = BackendExporter(name: b.name, backendQueue: holdingQueue, sender: PlaceholderSender(),
                                  options: Self.rerouteOptions(b.export), stats: opener.stats(b), logger: logger)
        holding.replace(sender: RerouteSender(self), options: Self.rerouteOptions(b.export))
        let first = resolver.resolveNow() ?? []
        do {
            try apply(first, initial: true)
            var known = Set(first.map { Self.queueName(b.name, $0) })
            known.insert(b.name)
            for dir in opener.leftovers(b.name) where !known.contains(dir) {
                let exporter = try opener.rerouter(b, dir, RerouteSender(self), Self.rerouteOptions(b.export))
                exporter.start()
                logger.notice("rerouting an endpoint queue found on disk whose endpoint is no longer resolved", metadata: ["queue": "\(dir)"])
                let child = Child(url: dir, exporter: exporter, drain: 1)
                state.withLock { $0.draining[dir] = child }
                startDrain(child, queueName: dir)
            }
        } catch {
            close()
            for e in exporters { e.stop() }
            throw error
        }
        resolver.start { [weak self] set in
            guard let self else { return }
            self.control.async { self.membershipChanged(set) }
        }
    }

    /// `<backend>@<endpoint>` with the endpoint's URL made a file name (scheme dropped).
    static func queueName(_ backend: String, _ url: String) -> String {
        var s = url
        for p in ["http://", "https://"] where s.hasPrefix(p) { s.removeFirst(p.count) }
        let safe = String(s.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
        return backend + "@" + safe
    }

    /// A rerouting exporter sends as soon as it can and retries soon: it only moves records
    /// between local queues.
    static func rerouteOptions(_ o: ExportOptions) -> ExportOptions {
        var r = o
        r.batchDelayMillis = 0
        r.maxBackoffSeconds = 1
        r.concurrency = 1
        return r
    }

    // MARK: routing

    var snapshot: ShardSnapshot { current.withLock { $0 } }

    /// The holding queue, where spans go while no endpoint is known.
    var holdingQueue: BackendQueue { holding.backendQueue }

    /// The key hash of one span.
    @inline(__always) private func keyHash(_ s: Span, _ batch: SpanBatch) -> UInt64 {
        switch key {
        case .traceID: EndpointRing.hash(lowOnly ? TraceID(low: s.traceID.low) : s.traceID)
        case .service: batch.withBytes(s.localEndpoint.serviceName) { EndpointRing.hash(service: $0) }
        case .none: 0
        }
    }

    /// The spans `indices` of `batch` grouped by endpoint index of `snap` (round-robin per call
    /// for `routingKey: none`).
    func group(_ indices: some Collection<Int>, of batch: SpanBatch, ring snap: ShardSnapshot) -> [[Int]] {
        var groups = [[Int]](repeating: [], count: snap.ring.count)
        if key == .none {
            groups[(snap.turn.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max) % groups.count] = Array(indices)
            return groups
        }
        for i in indices { groups[snap.ring.index(forHash: keyHash(batch.spans[i], batch))].append(i) }
        return groups
    }

    /// Appends one record per endpoint for the `routed` spans of `batch`; returns the snapshot
    /// to keep alive until those records are enqueued.
    func split(_ batch: SpanBatch, routed: [BatchRoutes.Routed], table: RoutingTable, encoder: BackendEncoder,
               into work: inout [(BackendQueue, Record)]) -> ShardSnapshot {
        let snap = snapshot
        switch snap.ring.count {
        case 0: work.append((holdingQueue, encoder.encode(batch, routed: routed, table: table)))
        case 1: work.append((snap.queues[0], encoder.encode(batch, routed: routed, table: table)))
        default:
            var parts = [[BatchRoutes.Routed]](repeating: [], count: snap.ring.count)
            if key == .none {
                parts[(snap.turn.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max) % parts.count] = routed
            } else {
                for r in routed { parts[snap.ring.index(forHash: keyHash(batch.spans[Int(r.span)], batch))].append(r) }
            }
            for (i, p) in parts.enumerated() where !p.isEmpty {
                work.append((snap.queues[i], encoder.encode(batch, routed: p, table: table)))
            }
        }
        return snap
    }

    // MARK: membership

    /// Every exporter: holding, live and draining (start, figures, shutdown).
    var exporters: [BackendExporter] {
        state.withLock { s in [holding] + s.live.values.map(\.exporter) + s.draining.values.map(\.exporter) }
    }

    /// Live endpoints, sorted (status and metrics).
    var endpoints: [String] { snapshot.ring.endpoints }

    var figures: (ringChanges: Int, reroutedSpans: Int) { counters.withLock { $0 } }

    func countRerouted(_ spans: Int) { counters.withLock { $0.reroutedSpans += spans } }

    private func membershipChanged(_ set: [String]) {
        dispatchPrecondition(condition: .onQueue(control))
        guard !state.withLock({ $0.closed }) else { return }
        do { try apply(set, initial: false) } catch {
            logger.error("cannot open a queue for a new endpoint; keeping the previous endpoints", metadata: ["error": "\(error)"])
        }
    }

    /// Makes `set` the ring: opens (or revives) new endpoints, moves leavers to rerouting.
    private func apply(_ set: [String], initial: Bool) throws(RelayStartError) {
        let ring = EndpointRing(set)
        let (live, draining) = state.withLock { ($0.live, $0.draining) }
        var opened: [String: Child] = [:]
        for url in ring.endpoints where live[url] == nil {
            let name = Self.queueName(config.name, url)
            if let back = draining[name], back.drain != 0 {
                // It came back before its queue was rerouted: the queue is its own again.
                back.exporter.replace(sender: try opener.sender(config.single(endpoint: url)), options: config.export)
                back.exporter.resumeBatching()
                opened[url] = Child(url: url, exporter: back.exporter)
                continue
            }
            do {
                opened[url] = Child(url: url, exporter: try opener.child(config.single(endpoint: url), name))
            } catch {
                for (u, c) in opened where live[u] == nil && draining[Self.queueName(config.name, u)] == nil { c.exporter.stop() }
                throw error
            }
        }
        let leaving = live.filter { !ring.endpoints.contains($0.key) }.map(\.value)
        for c in leaving { c.exporter.replace(sender: RerouteSender(self), options: Self.rerouteOptions(config.export)) }
        let next = state.withLock { s -> ShardSnapshot in
            for (url, c) in opened {
                s.draining[Self.queueName(config.name, url)] = nil
                s.live[url] = c
            }
            for c in leaving {
                s.drains += 1
                var d = c
                d.drain = s.drains
                s.live[c.url] = nil
                s.draining[Self.queueName(config.name, c.url)] = d
            }
            return ShardSnapshot(ring: ring, queues: ring.endpoints.map { s.live[$0]!.exporter.backendQueue })
        }
        for (url, c) in opened where live[url] == nil { c.exporter.start() }
        let old = current.withLock { cur in
            defer { cur = next }
            return cur
        }
        if !initial { counters.withLock { $0.ringChanges += 1 } }
        let drains = state.withLock { s in leaving.compactMap { c in s.draining[Self.queueName(config.name, c.url)] } }
        // Reroute a leaver's queue to its end only once no batch can still add to it.
        old.whenReleased { [weak self] in
            guard let self else { return }
            self.control.async { for d in drains { self.startDrain(d, queueName: Self.queueName(self.config.name, d.url)) } }
        }
        logger.notice(initial ? "endpoints resolved" : "endpoints changed", metadata: [
            "endpoints": "\(ring.endpoints)", "added": "\(opened.keys.sorted())", "removed": "\(leaving.map(\.url).sorted())",
        ])
    }

    /// Sends everything the draining child holds through its rerouting sender; then closes its
    /// queue and deletes the directory — unless the endpoint came back meanwhile.
    private func startDrain(_ child: Child, queueName: String) {
        let token = child.drain
        child.exporter.flush(until: .max, evenWhenDown: true) { [weak self] in
            guard let self else { return }
            self.control.async {
                let mine = self.state.withLock { s -> Bool in
                    guard !s.closed, s.draining[queueName]?.drain == token else { return false }
                    s.draining[queueName] = nil
                    return true
                }
                guard mine else { return }
                child.exporter.stop()
                let left = child.exporter.backendQueue.statistics()
                // Segments of acknowledged records may still be on disk (deleted lazily): with no
                // record left, nothing in the directory is needed.
                if left.records == 0 {
                    self.opener.removeDirectory(queueName)
                    self.logger.info("rerouted an endpoint's queue", metadata: ["queue": "\(queueName)"])
                } else {
                    self.logger.warning("an endpoint's queue still holds records after rerouting; kept for the next start",
                                        metadata: ["queue": "\(queueName)", "records": "\(left.records)"])
                }
            }
        }
    }

    /// Shutdown: no more membership changes; the exporters are flushed and stopped by the caller.
    func close() {
        resolver.stop()
        state.withLock { $0.closed = true }
    }
}

/// The holding exporter's sender until `init` can hand it one that refers to the backend.
private struct PlaceholderSender: PayloadSender {
    func send(_ payload: Payload, completion: @escaping @Sendable (SendOutcome) -> Void) {
        completion(.retryable("not ready", retryAfter: nil))
    }
    func shutdown() {}
    var target: String { "-" }
}

/// What a sharded backend needs from the registry: queues, senders and exporters opened the
/// way every backend's are (spill settings, metrics), and its spill directory.
struct ShardOpener: Sendable {
    let queue: @Sendable (BackendConfig, String) throws(RelayStartError) -> BackendQueue
    let sender: @Sendable (BackendConfig) throws(RelayStartError) -> any PayloadSender
    /// Queue + HTTP sender + exporter for one endpoint (not started).
    let child: @Sendable (BackendConfig, String) throws(RelayStartError) -> BackendExporter
    /// Queue + the given sender + exporter (not started).
    let rerouter: @Sendable (BackendConfig, String, any PayloadSender, ExportOptions) throws(RelayStartError) -> BackendExporter
    let stats: @Sendable (BackendConfig) -> BackendStats
    /// Queue names under the spill directory that start with `<backend>@`.
    let leftovers: @Sendable (String) -> [String]
    let removeDirectory: @Sendable (String) -> Void
}

/// Deletes a closed, empty queue's directory (its ledger and empty segment files).
func removeQueueDirectory(_ path: String) {
    let fs = PosixFileSystem()
    for f in (try? fs.listDirectory(path)) ?? [] { try? fs.remove(path + "/" + f) }
    _ = path.withCString { rmdir($0) }
}
