import Basics
import Dispatch
import DequeModule
import Logging
import Synchronization
import TLS

/// The outbound HTTP client for one backend endpoint: a keep-alive pool (HTTP/1.1) or one
/// multiplexed connection per address (h2c), on the event loops of a shared group.
///
/// Promises:
/// - every `send` completes exactly once, on some thread (usually an event loop: keep the
///   completion short and never block in it);
/// - the host name is resolved with `getaddrinfo` on a worker queue (never on a loop), again
///   at the first `send` after `resolveInterval` and after a connect failure, so a backend behind
///   DNS can move; connections to addresses that left the answer are retired once idle;
/// - every address of the name is used: connections go to the address with the fewest of them,
///   round-robin on ties; an address whose connect failed is skipped for `failedAddressDelay`
///   while another one can be used;
/// - HTTP/1.1: up to `poolSize` connections per address, one request at a time each; h2c: one
///   connection per address with up to the engine's `capacity` requests on it;
/// - requests wait in a FIFO while every connection is busy; a connection that closes is
///   replaced when requests need it;
/// - a request on a kept-alive connection that ends before any byte of its response (the
///   server closed it just before our write) is sent again once, on a fresh connection;
/// - when no address can be connected (and no connection is left), the waiting requests fail
///   with `.connectFailed` (`.resolveFailed` if the name never resolved), so callers back off;
/// - `https`: every connection speaks TLS with `configuration.tls` (default: the system CA
///   roots), verifying the host name and sending it as SNI; a failed handshake is a failed
///   connect (`.tlsFailed`, its reason logged once until a handshake succeeds again); the last
///   TLS session of each address is resumed by the next connection there; with `h2c`
///   configured, HTTP/2 is used where the server chooses `h2` by ALPN, else HTTP/1.1 with
///   the HTTP/1.1 pool size.
///
/// Pool mechanics: the pool state sits behind one mutex; connections *pull* requests (on their
/// own queue, where the engine's capacity is known) whenever they have capacity, and the pool
/// only wakes idle connections or opens new ones when the waiting requests exceed what is
/// already promised (woken idle connections plus connections still connecting).
public final class HTTPClient: Sendable {
    public let endpoint: ClientEndpoint
    public let configuration: HTTPClientConfiguration
    let group: EventLoopGroup
    private let logger: Logger
    private let resolver: Resolver
    private let isNumericHost: Bool
    private let state: Mutex<PoolState>
    /// `https` endpoints: the TLS client context (the configured one or the system roots).
    private let tlsContext: TLSContext?
    /// Why no TLS context could be made (only when the default one fails): every send fails.
    private let tlsSetupError: ClientError?

    private struct Entry {
        let connection: ClientConnection
        let address: ResolvedAddress
        var connecting = true
        /// Capacity left at its last pull while nothing was waiting (> 0: idle).
        var free = 0
        /// Woken to pull; `free` is promised to the waiting requests.
        var woken = false
        var retired = false
        var fresh = true
    }

    private struct AddressState {
        let address: ResolvedAddress
        var failedUntil: UInt64 = 0
    }

    private struct PoolState {
        var addresses: [AddressState] = []
        var nextAddress = 0
        var entries: [ObjectIdentifier: Entry] = [:]
        var waiting = Deque<PendingRequest>()
        /// Requests of stale connections, for fresh connections only.
        var retries = Deque<PendingRequest>()
        var shutDown = false
        var resolving = false
        var resolvedAt: UInt64 = 0
        var lastError: ClientError?
        var opened = 0
        var retried = 0
        /// Whether connections speak HTTP/2 (the configuration; over TLS the server's ALPN choice).
        var http2: Bool
        /// TLS: the last resumable session per address.
        var sessions: [ResolvedAddress: TLSSession] = [:]
        var handshakes = 0
        var resumed = 0
        /// The last TLS failure logged; the same one is not logged again until a handshake works.
        var loggedTLSFailure: String?
    }

    private enum Action {
        case start(ClientConnection)
        case wake(ClientConnection)
        case retire(ClientConnection)
        case fail([PendingRequest], ClientError)
        case resolve
        case log(Logger.Level, String, Logger.Metadata)
    }

    /// - Parameters:
    ///   - endpoint: where requests go; `endpoint.authority` is their `Host`.
    ///   - group: the event loops to run connections on (share the server's: `HTTPServer.group`).
    public convenience init(endpoint: ClientEndpoint, configuration: HTTPClientConfiguration = .init(),
                            group: EventLoopGroup, logger: Logger) {
        self.init(endpoint: endpoint, configuration: configuration, group: group, logger: logger, resolver: .system)
    }

    /// With an injected resolver (tests).
    package init(endpoint: ClientEndpoint, configuration: HTTPClientConfiguration = .init(),
                 group: EventLoopGroup, logger: Logger, resolver: Resolver) {
        self.endpoint = endpoint
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.resolver = resolver
        var tlsSetupError: ClientError?
        if endpoint.tls {
            if let given = configuration.tls {
                tlsContext = given
            } else {
                do {
                    tlsContext = try TLSContext(.client(alpn: configuration.protocolVersion.alpnOffer))
                } catch {
                    tlsContext = nil
                    tlsSetupError = ClientError(.tlsFailed, "no TLS context for \(endpoint): \(error.message)")
                }
            }
        } else {
            tlsContext = nil
        }
        self.tlsSetupError = tlsSetupError
        var s = PoolState(http2: configuration.protocolVersion == .h2c)
        if let numeric = ResolvedAddress.numeric(host: endpoint.host, port: endpoint.port) {
            isNumericHost = true
            s.addresses = [AddressState(address: numeric)]
        } else {
            isNumericHost = false
            s.resolving = true
        }
        state = Mutex(s)
        if !isNumericHost { startResolve() }
    }

    deinit {
        shutdown()
    }

    // MARK: public API

    /// Sends `request` to the backend; `completion` runs exactly once.
    public func send(_ request: ClientRequest, completion: @escaping @Sendable (Result<ClientResponse, ClientError>) -> Void) {
        if let tlsSetupError { return completion(.failure(tlsSetupError)) }
        let p = PendingRequest(request: request, completion: completion)
        let now = Clock.monotonicNanos()
        let actions: [Action]? = state.withLock { s in
            if s.shutDown { return nil }
            s.waiting.append(p)
            var a = maybeResolve(&s, now: now, force: false)
            a += rebalance(&s, now: now, allowFallback: true)
            return a
        }
        guard let actions else {
            return completion(.failure(ClientError(.shutdown, "the client for \(endpoint) is shut down")))
        }
        perform(actions)
    }

    /// Fails waiting and in-flight requests with `.shutdown` and closes every connection;
    /// later `send`s fail at once. Idempotent.
    public func shutdown() {
        let taken: ([PendingRequest], [ClientConnection])? = state.withLock { s in
            if s.shutDown { return nil }
            s.shutDown = true
            let requests = Array(s.retries) + Array(s.waiting)
            s.retries.removeAll()
            s.waiting.removeAll()
            let connections = s.entries.values.map(\.connection)
            s.entries.removeAll()
            return (requests, connections)
        }
        guard let (requests, connections) = taken else { return }
        let error = ClientError(.shutdown, "the client for \(endpoint) was shut down")
        for p in requests { p.completion(.failure(error)) }
        for c in connections { c.queue.async { c.shutdown() } }
    }

    /// The backend's current addresses, "ip:port" ("[v6]:port"), for status pages and logs.
    public var resolvedAddresses: [String] { state.withLock { $0.addresses.map(\.address.text) } }

    // MARK: figures for tests and status

    /// Connections open or connecting.
    package var connectionCount: Int { state.withLock { $0.entries.count } }
    /// Connections opened since the start.
    package var connectionsOpened: Int { state.withLock { $0.opened } }
    /// Requests sent again after a stale keep-alive connection.
    package var retriedRequests: Int { state.withLock { $0.retried } }
    /// Requests waiting for a connection.
    package var waitingRequests: Int { state.withLock { $0.waiting.count + $0.retries.count } }
    /// TLS handshakes completed, and how many of them resumed a session.
    package var tlsHandshakes: (completed: Int, resumed: Int) { state.withLock { ($0.handshakes, $0.resumed) } }
    /// Whether connections speak HTTP/2 now (over TLS: what the server chose).
    package var speaksHTTP2: Bool { state.withLock { $0.http2 } }

    // MARK: pool logic (under the lock)

    private func connectionCapacity(_ s: PoolState) -> Int {
        s.http2 ? max(1, configuration.maxConcurrentStreams) : 1
    }

    private func addressLimit(_ s: PoolState) -> Int {
        s.http2 ? 1 : max(1, configuration.poolSize)
    }

    private func maybeResolve(_ s: inout PoolState, now: UInt64, force: Bool) -> [Action] {
        guard !isNumericHost, !s.resolving, !s.shutDown else { return [] }
        guard force || now &- s.resolvedAt >= nanos(configuration.resolveInterval) else { return [] }
        s.resolving = true
        return [.resolve]
    }

    /// Wakes idle connections and opens new ones until the waiting requests are covered.
    /// `allowFallback`: when every address is being skipped after failures and no connection
    /// is left, try the one skipped longest anyway (not after a connect failure, which would loop).
    private func rebalance(_ s: inout PoolState, now: UInt64, allowFallback: Bool) -> [Action] {
        guard !s.shutDown, !(s.waiting.isEmpty && s.retries.isEmpty) else { return [] }
        if s.addresses.isEmpty {
            if s.resolving { return [] }
            return failAll(&s, s.lastError ?? ClientError(.resolveFailed, "'\(endpoint.host)' has no address"))
        }
        var actions: [Action] = []
        let perConnection = connectionCapacity(s)
        let demand = s.waiting.count + s.retries.count
        var supply = 0
        for e in s.entries.values where !e.retired {
            if e.connecting { supply += perConnection } else if e.woken { supply += e.free }
        }
        if supply < demand {
            for (id, e) in s.entries where supply < demand && !e.retired && !e.connecting && !e.woken && e.free > 0 {
                if s.waiting.isEmpty && !e.fresh { continue } // only retries wait: they need a fresh one
                s.entries[id]!.woken = true
                supply += e.free
                actions.append(.wake(e.connection))
            }
        }
        while supply < demand, let c = openConnection(&s, now: now, allowFallback: allowFallback, extra: 0) {
            supply += perConnection
            actions.append(.start(c))
        }
        if !s.retries.isEmpty {
            // Retried requests only go to connections that never carried one: make sure some come,
            // past the pool limit if need be.
            var fresh = 0
            for e in s.entries.values where !e.retired && e.fresh {
                if e.connecting { fresh += perConnection } else if e.woken { fresh += e.free }
            }
            while fresh < s.retries.count,
                  let c = openConnection(&s, now: now, allowFallback: allowFallback, extra: s.retries.count) {
                fresh += perConnection
                actions.append(.start(c))
            }
        }
        if !s.entries.values.contains(where: { !$0.retired }) && !s.resolving {
            // Nothing connects and nothing will: let the callers back off.
            actions += failAll(&s, s.lastError ?? ClientError(.connectFailed, "no address of \(endpoint.host) can be connected"))
        }
        return actions
    }

    /// A new connection to the least used address that is not being skipped; nil at the limit.
    private func openConnection(_ s: inout PoolState, now: UInt64, allowFallback: Bool, extra: Int) -> ClientConnection? {
        let n = s.addresses.count
        guard n > 0 else { return nil }
        let perAddress = addressLimit(s)
        var counts = [Int](repeating: 0, count: n)
        var total = 0
        for e in s.entries.values where !e.retired {
            total += 1
            if let i = s.addresses.firstIndex(where: { $0.address == e.address }) { counts[i] += 1 }
        }
        guard total < perAddress * n + extra else { return nil }
        var best: Int?
        for k in 0..<n {
            let i = (s.nextAddress + k) % n
            guard counts[i] < perAddress || extra > 0, s.addresses[i].failedUntil <= now else { continue }
            if best == nil || counts[i] < counts[best!] { best = i }
        }
        if best == nil && allowFallback && total == 0 {
            best = s.addresses.indices.min { s.addresses[$0].failedUntil < s.addresses[$1].failedUntil }
        }
        guard let i = best else { return nil }
        s.nextAddress = (i + 1) % n
        let c = ClientConnection(address: s.addresses[i].address, authority: endpoint.authority, loop: group.nextLoop(),
                                 config: configuration, tls: tlsContext, serverName: configuration.tlsServerName ?? endpoint.host, owner: self)
        s.entries[ObjectIdentifier(c)] = Entry(connection: c, address: s.addresses[i].address)
        s.opened += 1
        return c
    }

    private func failAll(_ s: inout PoolState, _ error: ClientError) -> [Action] {
        let all = Array(s.retries) + Array(s.waiting)
        s.retries.removeAll()
        s.waiting.removeAll()
        return all.isEmpty ? [] : [.fail(all, error)]
    }

    /// Runs what the locked part decided, outside the lock.
    private func perform(_ actions: [Action]) {
        for a in actions {
            switch a {
            case .start(let c): c.queue.async { c.start() }
            case .wake(let c): c.queue.async { c.wake() }
            case .retire(let c): c.queue.async { c.retire() }
            case .fail(let requests, let error): for p in requests { p.completion(.failure(error)) }
            case .resolve: startResolve()
            case .log(let level, let message, let metadata): logger.log(level: level, "\(message)", metadata: metadata)
            }
        }
    }

    private func startResolve() {
        let host = endpoint.host
        let port = endpoint.port
        let resolver = self.resolver
        DispatchQueue.global(qos: .utility).async { [weak self] in
            let result = resolver.resolve(host, port)
            self?.resolved(result)
        }
    }

    private func resolved(_ result: Result<[ResolvedAddress], ClientError>) {
        let now = Clock.monotonicNanos()
        let actions: [Action] = state.withLock { s in
            s.resolving = false
            s.resolvedAt = now
            guard !s.shutDown else { return [] }
            var actions: [Action] = []
            var changed = false
            switch result {
            case .success(let list):
                let old = s.addresses
                changed = Set(list) != Set(old.map(\.address))
                s.addresses = list.map { a in old.first { $0.address == a } ?? AddressState(address: a) }
                if s.nextAddress >= list.count { s.nextAddress = 0 }
                if changed {
                    s.sessions = s.sessions.filter { list.contains($0.key) }
                    for (id, e) in s.entries where !e.retired && !list.contains(e.address) {
                        s.entries[id]!.retired = true
                        actions.append(.retire(e.connection))
                    }
                    actions.append(.log(.info, "backend addresses changed", [
                        "client.backend": "\(endpoint)", "client.addresses": "\(list.map(\.text).joined(separator: ","))"]))
                }
            case .failure(let e):
                s.lastError = e
                actions.append(.log(s.addresses.isEmpty ? .warning : .info, "backend name did not resolve", [
                    "client.backend": "\(endpoint)", "error": "\(e)",
                    "client.addresses_kept": "\(s.addresses.map(\.address.text).joined(separator: ","))"]))
            }
            actions += rebalance(&s, now: now, allowFallback: changed)
            return actions
        }
        perform(actions)
    }
}

extension HTTPClient: ClientConnectionOwner {
    var isShutDown: Bool { state.withLock { $0.shutDown } }

    func pull(_ connection: ClientConnection, capacity: Int, fresh: Bool) -> (requests: [PendingRequest], retire: Bool) {
        state.withLock { s in
            let id = ObjectIdentifier(connection)
            guard !s.shutDown, var e = s.entries[id] else { return ([], true) }
            if e.connecting {
                e.connecting = false
                if let i = s.addresses.firstIndex(where: { $0.address == e.address }) { s.addresses[i].failedUntil = 0 }
            }
            e.woken = false
            if e.retired {
                s.entries[id] = e
                return ([], true)
            }
            var taken: [PendingRequest] = []
            if fresh {
                while taken.count < capacity, let p = s.retries.popFirst() { taken.append(p) }
            }
            while taken.count < capacity, let p = s.waiting.popFirst() { taken.append(p) }
            if !taken.isEmpty { e.fresh = false }
            e.free = capacity - taken.count
            s.entries[id] = e
            return (taken, false)
        }
    }

    func connectFailed(_ connection: ClientConnection, _ error: ClientError) {
        let now = Clock.monotonicNanos()
        let actions: [Action] = state.withLock { s in
            guard s.entries.removeValue(forKey: ObjectIdentifier(connection)) != nil, !s.shutDown else { return [] }
            var actions: [Action] = []
            s.lastError = error
            if error.code == .tlsFailed {
                // A handshake that fails once fails every time (a certificate, a name, a CA):
                // say why once, not on every retry.
                if s.loggedTLSFailure != error.message {
                    s.loggedTLSFailure = error.message
                    actions.append(.log(.warning, "TLS handshake with backend failed", [
                        "client.backend": "\(endpoint)", "client.address": "\(connection.address.text)", "error": "\(error)"]))
                }
                if let i = s.addresses.firstIndex(where: { $0.address == connection.address }) {
                    s.addresses[i].failedUntil = now + nanos(configuration.failedAddressDelay)
                }
            } else if let i = s.addresses.firstIndex(where: { $0.address == connection.address }) {
                if s.addresses[i].failedUntil <= now {
                    actions.append(.log(.warning, "cannot connect to backend address", [
                        "client.backend": "\(endpoint)", "client.address": "\(connection.address.text)", "error": "\(error)"]))
                }
                s.addresses[i].failedUntil = now + nanos(configuration.failedAddressDelay)
            }
            // The backend may have moved: ask DNS again (at most once per failedAddressDelay).
            if now &- s.resolvedAt >= nanos(configuration.failedAddressDelay) {
                actions += maybeResolve(&s, now: now, force: true)
            }
            actions += rebalance(&s, now: now, allowFallback: false)
            return actions
        }
        perform(actions)
    }

    func connectionClosed(_ connection: ClientConnection) {
        let now = Clock.monotonicNanos()
        let actions: [Action] = state.withLock { s in
            guard s.entries.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return [] }
            return rebalance(&s, now: now, allowFallback: true)
        }
        perform(actions)
    }

    func tlsSession(for address: ResolvedAddress) -> TLSSession? {
        state.withLock { $0.sessions[address] }
    }

    func keepTLSSession(_ session: TLSSession, for address: ResolvedAddress) {
        state.withLock { $0.sessions[address] = session }
    }

    func tlsHandshakeCompleted(_ connection: ClientConnection, _ handshake: TLSHandshake) {
        let now = Clock.monotonicNanos()
        let actions: [Action] = state.withLock { s in
            s.handshakes += 1
            if handshake.resumed { s.resumed += 1 }
            s.loggedTLSFailure = nil
            guard configuration.protocolVersion == .h2c else { return [] }
            let h2 = handshake.alpn == "h2"
            guard h2 != s.http2 else { return [] }
            s.http2 = h2
            let message = h2 ? "backend speaks HTTP/2 again (ALPN h2)"
                             : "backend did not choose h2 by ALPN: using HTTP/1.1 and its connection pool"
            // The pool's sizes changed (one HTTP/2 connection vs poolSize HTTP/1.1 ones).
            return [.log(.info, message, ["client.backend": "\(endpoint)", "client.alpn": "\(handshake.alpn ?? "none")"])]
                + rebalance(&s, now: now, allowFallback: true)
        }
        perform(actions)
    }

    func retry(_ request: PendingRequest, anyConnection: Bool) {
        let now = Clock.monotonicNanos()
        let actions: [Action]? = state.withLock { s in
            if s.shutDown { return nil }
            s.retried += 1
            if anyConnection { s.waiting.prepend(request) } else { s.retries.append(request) }
            return rebalance(&s, now: now, allowFallback: true)
        }
        guard let actions else {
            return request.completion(.failure(ClientError(.shutdown, "the client for \(endpoint) was shut down")))
        }
        perform(actions)
    }
}

private func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }
