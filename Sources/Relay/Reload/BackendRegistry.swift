import Buffering
import Logging
import Routing
import Synchronization
import Transport

/// The relay's sending backends as they run — queue, sender, exporter — by name, plus those a
/// reload removed that are still draining. Built once at start (`openAll`) and changed only by
/// `ReloadController`, on its serial queue; readers (`/status`, shutdown) take a snapshot.
final class BackendRegistry: Sendable {
    /// One sending backend as it runs.
    struct Entry: Sendable {
        var config: BackendConfig
        let exporter: BackendExporter
        /// Set for HTTP backends (rates, Datadog stats forwarding); replaced with the sender.
        var http: HTTPSender?
        /// The generation whose reload retired it (0 while live): a drain started for an
        /// older retirement (the backend was configured again meanwhile) is called off.
        var retiredAt = 0
        /// Set for backends with one queue per endpoint (ScaleOut/); `exporter` is then its
        /// holding exporter.
        var shards: ShardedBackend? = nil
        var queue: BackendQueue { exporter.backendQueue }
        /// Its exporters: one, or a sharded backend's holding, endpoint and rerouting ones.
        var exporters: [BackendExporter] { shards?.exporters ?? [exporter] }
    }

    private struct State {
        var live: [String: Entry] = [:]
        /// Removed by a reload (or displaced by a kind change); sending what they hold.
        var draining: [Entry] = []
        /// Where Datadog client stats go (a Mesh's default Datadog backend, else the first one).
        var statsSender: HTTPSender?
        var closed = false
    }

    let spill: SpillSettings
    private let budget: DiskBudget?
    private let group: EventLoopGroup
    private let metrics: RelayMetrics
    private let logger: Logger
    private let state = Mutex(State())
    /// Each HTTP backend's `conf.auth` header, shared by its senders (Auth/BackendCredentials.swift).
    private let credentials = BackendCredentials()

    init(spill: SpillSettings, group: EventLoopGroup, metrics: RelayMetrics, logger: Logger) {
        self.spill = spill
        self.budget = spill.maxTotalDiskBytes.map { DiskBudget(limit: $0) }
        self.group = group
        self.metrics = metrics
        self.logger = logger
        metrics.shardFigures.withLock {
            $0 = { [weak self] in
                (self?.live.values.compactMap(\.shards) ?? []).map { s in
                    let f = s.figures
                    return ShardFigures(backend: s.config.name, endpoints: s.endpoints, ringChanges: f.ringChanges, reroutedSpans: f.reroutedSpans)
                }
            }
        }
    }

    /// Backends of these kinds get a queue and an exporter; `log` and `discard` are handled
    /// by the routing stage.
    static func sends(_ kind: BackendConfig.Kind) -> Bool { [.zipkin, .datadog, .tracerelay, .file].contains(kind) }

    /// Opens every sending backend of `table` (exporters not started yet).
    /// - Throws: `RelayStartError` naming the backend; nothing stays open.
    func openAll(_ table: RoutingTable) throws(RelayStartError) {
        var opened: [Entry] = []
        do {
            for b in table.backends where Self.sends(b.kind) { opened.append(try open(b)) }
        } catch {
            for e in opened { for x in e.exporters { x.stop() } }
            throw error
        }
        state.withLock { s in
            for e in opened { s.live[e.config.name] = e }
        }
        chooseStatsSender(table)
    }

    // MARK: building blocks

    /// A backend's sender: an HTTP client for its URL(s), or the file writer.
    func makeSender(_ b: BackendConfig) throws(RelayStartError) -> (any PayloadSender, HTTPSender?) {
        do {
            if b.kind == .file {
                return (try FileSender(directory: b.path ?? "tracerelay-spans", maxFileBytes: b.maxFileBytes, logger: logger), nil)
            }
            if b.isSharded {
                throw RelayStartError(message: "it has several endpoints (one queue each): changing its settings needs a restart")
            }
            let h = try HTTPSender(backend: b, group: group, logger: logger, credential: credentials.credential(for: b))
            return (h, h)
        } catch {
            throw RelayStartError(message: "backend \(b.name): \(error)")
        }
    }

    /// Opens (and recovers) a backend's queue under `spill.directory/<queueName>`.
    func makeQueue(_ b: BackendConfig, queueName: String? = nil) throws(RelayStartError) -> BackendQueue {
        var q = QueueConfiguration(backend: queueName ?? b.name, directory: spill.directory,
                                   durability: spill.durability(for: b.name))
        q.memoryBytes = spill.memoryBytes
        q.maxDiskBytes = spill.maxDiskBytes
        q.totalDiskBudget = budget
        q.maxAgeSeconds = spill.maxAgeSeconds.map(Double.init)
        q.whenFull = spill.whenFull
        do {
            return try BackendQueue(configuration: q, logger: logger)
        } catch {
            throw RelayStartError(message: "backend \(b.name): cannot open its spill directory \(q.backendDirectory): \(error)")
        }
    }

    /// Queue, sender and exporter of one backend; the exporter is not started.
    func open(_ b: BackendConfig, queueName: String? = nil, stats: BackendStats? = nil) throws(RelayStartError) -> Entry {
        if b.isSharded && queueName == nil {
            let shards = try ShardedBackend(b, opener: shardOpener, logger: logger)
            return Entry(config: b, exporter: shards.holding, http: nil, shards: shards)
        }
        let queue = try makeQueue(b, queueName: queueName)
        let sender: (any PayloadSender, HTTPSender?)
        do { sender = try makeSender(b) } catch {
            queue.shutdown()
            throw error
        }
        let s = stats ?? BackendStats(exportLatency: metrics.exportLatency(backend: b.name))
        let exporter = BackendExporter(name: queueName ?? b.name, backendQueue: queue, sender: sender.0, options: b.export, stats: s, logger: logger)
        return Entry(config: b, exporter: exporter, http: sender.1)
    }

    /// How a sharded backend opens its queues and exporters (ScaleOut/ShardedBackend.swift).
    private var shardOpener: ShardOpener {
        let spillDirectory = spill.directory
        return ShardOpener(
            queue: { b, name throws(RelayStartError) in try self.makeQueue(b, queueName: name) },
            sender: { b throws(RelayStartError) in try self.makeSender(b).0 },
            child: { b, name throws(RelayStartError) in try self.open(b, queueName: name).exporter },
            rerouter: { b, name, sender, options throws(RelayStartError) in
                BackendExporter(name: name, backendQueue: try self.makeQueue(b, queueName: name), sender: sender, options: options,
                                stats: BackendStats(exportLatency: self.metrics.exportLatency(backend: b.name)), logger: self.logger)
            },
            stats: { b in BackendStats(exportLatency: self.metrics.exportLatency(backend: b.name)) },
            leftovers: { name in
                ((try? PosixFileSystem().listDirectory(spillDirectory)) ?? []).filter { $0.hasPrefix(name + "@") }.sorted()
            },
            removeDirectory: { name in removeQueueDirectory(spillDirectory + "/" + name) })
    }

    // MARK: reading

    var live: [String: Entry] { state.withLock { $0.live } }
    var draining: [Entry] { state.withLock { $0.draining } }
    /// Every exporter, live and draining (figures, shutdown).
    var exporters: [BackendExporter] { state.withLock { s in s.live.values.flatMap(\.exporters) + s.draining.flatMap(\.exporters) } }
    var statsSender: HTTPSender? { state.withLock { $0.statsSender } }
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Where each backend of `table` hands its spans (same order), and its Datadog rates.
    func targets(for table: RoutingTable) -> ([BackendTarget?], [DatadogRates?]) {
        let live = self.live
        let targets = table.backends.map { b in live[b.name].map { BackendTarget(encoder: BackendEncoder(b), queue: $0.queue, shards: $0.shards) } }
        return (targets, table.backends.map { live[$0.name]?.http?.rates })
    }

    // MARK: changing (the reload queue only)

    func setLive(_ e: Entry) { state.withLock { $0.live[e.config.name] = e } }

    /// Reload: every HTTP backend's senders take the token `table` read (or drop theirs); a
    /// backend whose token changed retries at once rather than after its backoff.
    func updateCredentials(_ table: RoutingTable) {
        for b in table.backends where Self.sends(b.kind) && b.kind != .file {
            guard credentials.update(b), let e = live[b.name], e.config.kind == b.kind else { continue }
            for x in e.exporters { x.retryNow() }
        }
    }

    /// Moves a live backend to the draining list; nil when there is none of that name.
    func moveToDraining(_ name: String, generation: Int) -> Entry? {
        state.withLock { s in
            guard var e = s.live.removeValue(forKey: name) else { return nil }
            e.retiredAt = generation
            s.draining.append(e)
            return e
        }
    }

    /// Takes a live backend out (kind change).
    func removeLive(_ name: String) -> Entry? { state.withLock { $0.live.removeValue(forKey: name) } }

    /// Takes a draining backend of that name back (re-added by a later reload).
    func takeDraining(_ name: String) -> Entry? {
        state.withLock { s in
            guard let i = s.draining.firstIndex(where: { $0.config.name == name && $0.exporter.name == name }) else { return nil }
            return s.draining.remove(at: i)
        }
    }

    func addDraining(_ e: Entry) { state.withLock { $0.draining.append(e) } }

    /// Forgets a draining exporter once it has stopped; false when it was taken back meanwhile
    /// (or the relay is shutting down, which stops it itself).
    func finishDraining(_ exporter: BackendExporter) -> Bool {
        state.withLock { s in
            guard !s.closed, let i = s.draining.firstIndex(where: { $0.exporter === exporter }) else { return false }
            s.draining.remove(at: i)
            return true
        }
    }

    /// Shutdown: no more changes; every exporter, for the caller to flush and stop.
    func close() -> [BackendExporter] {
        state.withLock { s in
            s.closed = true
            for e in s.live.values { e.shards?.close() }
            for e in s.draining { e.shards?.close() }
            return s.live.values.flatMap(\.exporters) + s.draining.flatMap(\.exporters)
        }
    }

    /// Client-computed stats go to the Datadog backend a Mesh defaults to, else the first one.
    func chooseStatsSender(_ table: RoutingTable) {
        let live = self.live
        var chosen: HTTPSender?
        for b in table.backends where b.kind == .datadog {
            guard let h = live[b.name]?.http else { continue }
            if chosen == nil || table.config.meshes.contains(where: { $0.defaultBackend == b.name }) { chosen = h }
        }
        state.withLock { $0.statsSender = chosen }
    }
}
