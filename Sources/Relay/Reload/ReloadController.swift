import Basics
import Buffering
import Dispatch
import Logging
import Routing
import Synchronization
import Transport

/// Reloads the configuration while the relay runs (SIGHUP, `POST /api/reload`): reads and
/// validates it like `check`, diffs the backends by name, and swaps the routing generation
/// whole. Batches routing when the swap happens finish on the old generation; new ones use the
/// new one. Nothing queued is lost:
/// - unchanged backend: keeps its queue and exporter;
/// - changed URL or export settings (same kind): the exporter's sender is replaced; queued and
///   retried spans go to the new target;
/// - new backend: a new queue and exporter, started before the swap;
/// - removed backend: gets nothing more once the old generation is released, sends what it
///   holds to its old target until empty (or `drainLimit`), then stops; what it could not send
///   stays in its spill directory (logged);
/// - kind change: removed + added. Both need the directory `spill/<name>`, so the old queue is
///   closed (written to disk), its directory renamed `<name>.retired-<kind>-g<generation>`,
///   reopened there and drained to the old target. Batches that were being enqueued to it at
///   that instant get a retryable 503 (never a lost span).
/// Listeners' TLS certificates and keys are read again and used for new connections (open ones
/// keep theirs); listeners' ingest tokens and backends' `conf.auth` tokens are read again and
/// apply from the next request (a backend's token without a new sender). Other
/// listener settings, the admin address and spill settings are not changed: the summary says a
/// restart is needed. Reloads run one at a time on their own queue, never on a network loop.
final class ReloadController: Sendable {
    private let router: RoutingConsumer
    private let registry: BackendRegistry
    private let settings: RelayService.Settings
    private let logger: Logger
    private let queue = DispatchQueue(label: "tracerelay.reload")
    private let last = Mutex<ReloadRecord?>(nil)

    init(router: RoutingConsumer, registry: BackendRegistry, settings: RelayService.Settings, logger: Logger) {
        self.router = router
        self.registry = registry
        self.settings = settings
        var logger = logger
        logger[metadataKey: "component"] = "reload"
        self.logger = logger
    }

    var lastReload: ReloadRecord? { last.withLock { $0 } }

    /// Shutdown: waits for a reload in progress, then closes the registry (later reloads are
    /// refused); every exporter, live and draining, for the caller to flush and stop.
    func close() -> [BackendExporter] { queue.sync { registry.close() } }
    var generation: Int { router.generation.number }

    /// Reads the source again and applies it; `completion` gets the record (ok) or the reason
    /// it was refused, on the reload queue.
    func reload(trigger: String, completion: @escaping @Sendable (Result<ReloadRecord, ReloadError>) -> Void) {
        queue.async {
            let result = self.reloadNow(trigger: trigger)
            let record: ReloadRecord
            switch result {
            case .success(let r): record = r
            case .failure(let e):
                record = ReloadRecord(time: Double(Clock.wallNanos()) / 1e9, ok: false, message: e.message,
                                      generation: self.generation, summary: nil, trigger: trigger)
                self.logger.error("configuration reload refused; the running configuration stays",
                                  metadata: ["reload.trigger": "\(trigger)", "reload.error": "\(e.code)", "reason": "\(e.message)"])
            }
            self.last.withLock { $0 = record }
            completion(result)
        }
    }

    private func reloadNow(trigger: String) -> Result<ReloadRecord, ReloadError> {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let source = settings.reload.source else {
            return .failure(ReloadError(code: "reload_unavailable", message: "this relay was not started with a reloadable configuration"))
        }
        guard !registry.isClosed else { return .failure(ReloadError(code: "reload_unavailable", message: "the relay is shutting down")) }
        let file: RelayFile, table: RoutingTable, next: RelayService.Settings
        do {
            (file, table) = try source.load()
            next = try RelayService.Settings(file: file, table: table, overrides: source.overrides)
        } catch {
            let where_ = source.path ?? "embedded default config"
            return .failure(ReloadError(code: "invalid_config", message: "\(where_) is not valid: \(error)"))
        }
        var summary: ReloadSummary
        do { summary = try apply(table) } catch {
            return .failure(ReloadError(code: "apply_failed", message: "\(error)"))
        }
        summary.restartNeeded = restartNeeded(next)
        // Certificates: the new contexts were built (files read and checked) with `next`; a
        // listener that keeps serving TLS takes its new context for connections from now on.
        for (name, tls) in settings.listenerTLS.sorted(by: { $0.key < $1.key }) {
            guard let fresh = next.listenerTLS[name] else { continue }
            tls.replace(fresh.current)
            summary.certificatesReloaded.append(name)
        }
        // Ingest tokens (Auth/): read and checked with `next` too; a listener that keeps asking
        // for tokens accepts the new file's from the next request on (revoked ones get 401).
        for (name, tokens) in settings.ingest.tokens.sorted(by: { $0.key < $1.key }) {
            guard let fresh = next.ingest.tokens[name]?.current else { continue }
            tokens.replace(fresh)
            summary.tokensReloaded.append(name)
            logger.notice("ingest tokens reloaded", metadata: ["listener": "\(name)", "tokens.file": "\(fresh.path)", "tokens.count": "\(fresh.entries.count)"])
        }
        summary.warnings = table.warnings.map(\.description)
        for w in summary.warnings { logger.warning("config", metadata: ["issue": "\(w)"]) }
        let number = generation
        logger.notice("configuration reloaded", metadata: [
            "reload.trigger": "\(trigger)", "reload.generation": "\(number)", "config": "\(source.path ?? "embedded default")",
            "summary": "\(summary.text)",
        ])
        return .success(ReloadRecord(time: Double(Clock.wallNanos()) / 1e9, ok: true, message: summary.text,
                                     generation: number, summary: summary, trigger: trigger))
    }

    /// What differs in the file but is not reloaded.
    private func restartNeeded(_ next: RelayService.Settings) -> [String] {
        var out: [String] = []
        let tags = { (s: RelayService.Settings) in s.ingest.listenerTags.mapValues { $0.map { "\($0.0)=\($0.1)" } } }
        // A listener's TLS context is a new object on every read: compare whether it has one
        // (its certificates are reloaded), and its client-certificate and identity settings.
        let plain = { (s: RelayService.Settings) in s.listeners.map { l -> ListenAddress in var l = l; l.tls = nil; return l } }
        let tlsShape = { (s: RelayService.Settings) in s.listeners.map { $0.tls != nil } }
        if plain(next) != plain(settings) || tags(next) != tags(settings) || next.ingest.trustedListeners != settings.ingest.trustedListeners
            || tlsShape(next) != tlsShape(settings) || next.ingest.identityListeners != settings.ingest.identityListeners
            || next.ingest.peers != settings.ingest.peers || Set(next.ingest.tokens.keys) != Set(settings.ingest.tokens.keys) {
            out.append("listener changes need a restart")
        }
        if settings.admin != nil, next.admin != settings.admin { out.append("admin address changes need a restart") }
        if next.spill != settings.spill { out.append("spill settings changes need a restart") }
        return out
    }

    // MARK: applying

    /// The settings the sender is built from (URL, addresses, file path, export options).
    static func sameSender(_ a: BackendConfig, _ b: BackendConfig) -> Bool {
        a.kind == b.kind && a.url == b.url && a.urls == b.urls && a.address == b.address && a.port == b.port
            && a.path == b.path && a.maxFileBytes == b.maxFileBytes && a.export == b.export && a.tls == b.tls
            && a.endpoints == b.endpoints
    }

    private static func sameSettings(_ a: BackendConfig, _ b: BackendConfig) -> Bool {
        var a = a
        a.definedIn = b.definedIn
        return a == b
    }

    private func apply(_ table: RoutingTable) throws(RelayStartError) -> ReloadSummary {
        let old = router.generation
        let oldByName = Dictionary(old.table.backends.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newNames = Set(table.backends.map(\.name))
        var s = ReloadSummary()

        // 1. Everything that can fail, before anything changes: new senders and new queues.
        var replacements: [(BackendConfig, (any PayloadSender, HTTPSender?))] = []
        var added: [BackendRegistry.Entry] = []
        var revived: [BackendRegistry.Entry] = []
        var kindChanges: [BackendConfig] = []
        func undo() {
            for r in replacements { r.1.0.shutdown() }
            for e in added { e.exporter.stop() }
            for e in revived { registry.addDraining(e) }
        }
        do {
            for b in table.backends {
                let before = oldByName[b.name]
                if let before, before.kind != b.kind {
                    s.kindChanged.append(b.name)
                } else if before == nil {
                    s.added.append(b.name)
                } else if Self.sameSettings(before!, b) {
                    s.unchanged.append(b.name)
                } else {
                    s.changed.append(b.name)
                }
                guard BackendRegistry.sends(b.kind) else { continue }
                if let e = registry.live[b.name] {
                    if e.config.kind != b.kind { kindChanges.append(b); continue }
                    if !Self.sameSender(e.config, b) { replacements.append((b, try registry.makeSender(b))) }
                } else if let e = registry.takeDraining(b.name) {
                    // Removed by an earlier reload, still draining, configured again: take it back.
                    revived.append(e)
                    if e.config.kind != b.kind { registry.addDraining(revived.removeLast()); kindChanges.append(b); continue }
                    if !Self.sameSender(e.config, b) { replacements.append((b, try registry.makeSender(b))) }
                } else {
                    added.append(try registry.open(b))
                }
            }
        } catch {
            undo()
            throw error
        }
        s.removed = old.table.backends.map(\.name).filter { !newNames.contains($0) }
        let sendingNames = Set(table.backends.filter { BackendRegistry.sends($0.kind) }.map(\.name))
        let retiring = registry.live.keys.filter { !sendingNames.contains($0) }.sorted()

        // 2. Apply. Kind changes first: moving a spill directory aside is the one step left
        // that can fail, and then nothing else has changed yet.
        var displaced: [BackendRegistry.Entry] = []
        var fresh: [BackendRegistry.Entry] = []
        for b in kindChanges {
            do {
                let (e, moved) = try changeKind(b, generation: old.number + 1)
                fresh.append(e)
                if let moved { displaced.append(moved) }
            } catch {
                undo()
                for e in fresh { e.exporter.stop() }
                throw error
            }
        }
        for e in fresh {
            registry.setLive(e)
            e.exporter.start()
        }
        for var e in revived {
            e.retiredAt = 0
            registry.setLive(e)
            e.exporter.resumeBatching()
            logger.notice("backend configured again while draining: it stays", metadata: ["backend": "\(e.config.name)"])
        }
        for (b, sender) in replacements {
            guard var e = registry.live[b.name] else { continue }
            e.exporter.replace(sender: sender.0, options: b.export)
            e.http = sender.1
            e.config = b
            registry.setLive(e)
            s.senderReplaced.append(b.name)
            logger.notice("backend target changed: new requests and what is queued go to the new target",
                          metadata: ["backend": "\(b.name)", "target": "\(sender.0.target)"])
        }
        for b in table.backends where BackendRegistry.sends(b.kind) {
            if var e = registry.live[b.name], e.config.kind == b.kind { e.config = b; registry.setLive(e) }
        }
        registry.updateCredentials(table)
        for e in added {
            registry.setLive(e)
            e.exporter.start()
            logger.notice("backend added", metadata: ["backend": "\(e.config.name)", "kind": "\(e.config.kind.rawValue)", "target": "\(e.config.target)"])
        }
        var removed: [BackendRegistry.Entry] = []
        for name in retiring {
            if let e = registry.moveToDraining(name, generation: old.number + 1) { removed.append(e) }
        }

        // 3. Swap. Removed backends drain once no batch routes with the old generation.
        let (targets, rates) = registry.targets(for: table)
        let previous = router.swap(to: RoutingGeneration(number: old.number + 1, table: table, targets: targets, rates: rates))
        registry.chooseStatsSender(table)
        for e in displaced { drain(e, reason: "kind changed") }
        if !removed.isEmpty {
            let queue = self.queue, retired = removed
            previous.whenReleased { [self] in queue.async { for e in retired { self.drain(e, reason: "removed") } } }
        }
        return s
    }

    /// A backend changed kind: closes its old queue (everything written to disk), moves the
    /// directory aside, reopens it there to drain to the old target, and opens the new kind's
    /// queue. Returns the new entry and the moved one (nil when it held nothing).
    private func changeKind(_ b: BackendConfig, generation: Int) throws(RelayStartError) -> (BackendRegistry.Entry, BackendRegistry.Entry?) {
        var moved: BackendRegistry.Entry?
        if let old = registry.removeLive(b.name) ?? registry.takeDraining(b.name) {
            old.exporter.stop()
            let aside = "\(b.name).retired-\(old.config.kind.rawValue)-g\(generation)"
            let from = registry.spill.directory + "/" + b.name, to = registry.spill.directory + "/" + aside
            do { try PosixFileSystem().rename(from, to: to) } catch {
                // Keep the old kind's records where they are; the new kind cannot share them.
                logger.error("backend changed kind but its spill directory cannot be moved aside; keeping the old kind",
                             metadata: ["backend": "\(b.name)", "error": "\(error)"])
                let back = try registry.open(old.config, stats: old.exporter.stats)
                back.exporter.start()
                throw RelayStartError(message: "backend \(b.name): cannot move \(from) aside for its new kind: \(error)")
            }
            logger.notice("backend changed kind: handled as removed + added; the old kind's queue drains to its old target",
                          metadata: ["backend": "\(b.name)", "kind.old": "\(old.config.kind.rawValue)", "kind.new": "\(b.kind.rawValue)",
                                     "spill.moved_to": "\(to)"])
            let e = try registry.open(old.config, queueName: aside)
            registry.addDraining(e)
            e.exporter.start()
            moved = e
        }
        return (try registry.open(b), moved)
    }

    /// Sends what a removed backend holds until empty or `drainLimit`, then stops it.
    private func drain(_ e: BackendRegistry.Entry, reason: String) {
        let limit = settings.reload.drainLimit
        let deadline = Clock.monotonicNanos() &+ UInt64(max(0, limit.components.seconds)) * 1_000_000_000
            &+ UInt64(max(0, limit.components.attoseconds / 1_000_000_000))
        // Configured again by a later reload before this one's batches were done: nothing to drain.
        guard registry.draining.contains(where: { $0.exporter === e.exporter && $0.retiredAt == e.retiredAt }) else { return }
        let held = e.queue.statistics()
        logger.notice("backend \(reason): it gets no new spans and sends what it holds to its old target",
                      metadata: ["backend": "\(e.exporter.name)", "target": "\(e.config.target)", "records": "\(held.records)"])
        let registry = self.registry, logger = self.logger, queue = self.queue
        // A backend with one queue per endpoint drains every one of them (and its holding queue).
        let group = DispatchGroup()
        for x in e.exporters {
            group.enter()
            x.flush(until: deadline, evenWhenDown: true) { group.leave() }
        }
        group.notify(queue: queue) {
            do {
                // Taken back by a later reload, or the relay is stopping (shutdown stops it).
                guard registry.finishDraining(e.exporter) else { return }
                let left = e.exporters.map { $0.backendQueue.statistics() }.reduce(into: (records: 0, inFlight: 0)) {
                    $0.records += $1.records; $0.inFlight += $1.inFlight
                }
                e.shards?.close()
                for x in e.exporters { x.stop() }
                if left.records + left.inFlight > 0 {
                    logger.warning("removed backend could not send everything before the drain limit; the rest stays on disk",
                                   metadata: ["backend": "\(e.exporter.name)", "records": "\(left.records + left.inFlight)",
                                              "spill.directory": "\(e.queue.configuration.backendDirectory)"])
                } else {
                    logger.notice("removed backend drained and stopped", metadata: ["backend": "\(e.exporter.name)"])
                }
            }
        }
    }
}
