import Dispatch
import Logging
import Synchronization
import TLS
#if canImport(Glibc)
import Glibc
#endif

/// Where to listen: a host (IPv4 or IPv6 literal, or a name) and a port (0 → the OS picks).
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Copied into `HTTPRequest.listener`; defaults to "host:port" as given.
    public var name: String
    /// Honour `Upgrade: h2c` on this listener (and only if
    /// `HTTPServerConfiguration.allowH2CUpgrade` is on too). Default true.
    public var allowH2CUpgrade: Bool = true
    /// Serve HTTPS (and HTTP/2 over TLS, by ALPN) on this listener instead of plain HTTP/h2c.
    public var tls: ListenerTLS?

    public init(host: String, port: Int, name: String? = nil) {
        self.host = host
        self.port = port
        self.name = name ?? (host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)")
    }

    /// Parses "HOST:PORT", "[IPv6]:PORT" or ":PORT" (all interfaces).
    public init(parsing text: String, name: String? = nil) throws {
        guard let colon = text.lastIndex(of: ":") else {
            throw ListenError(address: text, reason: "expected HOST:PORT, e.g. 127.0.0.1:9411 or [::1]:9411")
        }
        var host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ListenError(address: text, reason: "port '\(portText)' is not a number between 0 and 65535")
        }
        if host.contains(":") && !text.hasPrefix("[") {
            throw ListenError(address: text, reason: "write IPv6 addresses in brackets: [\(host)]:\(port)")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = "::" }
        self.init(host: host, port: port, name: name ?? text)
    }

    public var description: String { name }
}

/// A listener after `start`: the port actually bound (useful with port 0).
public struct BoundListener: Sendable, Hashable {
    public let name: String
    public let host: String
    public let port: Int
}

/// The HTTP/1.1 + h2c server: listeners, an event-loop group, and one connection object per
/// accepted socket. Handlers get whole requests (body included) and may answer from any
/// thread. `start` binds; `shutdown` drains gracefully.
public final class HTTPServer: Sendable {
    private let configuration: HTTPServerConfiguration
    private let handler: any HTTPHandler
    private let logger: Logger
    /// The event loops the server's connections run on; pass it to `HTTPClient` so a relay's
    /// server and its outbound clients share loops.
    public let group: EventLoopGroup
    /// The budget for buffered request bodies shared by every connection
    /// (`configuration.maxBufferedBodyBytes`).
    public let bodyBudget: BodyBudget
    /// Answers the server gave itself, HTTP/2 streams refused and open (read by metrics).
    public let counters = ServerCounters()

    private struct State {
        var listeners: [Listener] = []
        var connections: [ObjectIdentifier: Connection] = [:]
        var shuttingDown = false
        var stopped = false
        var completions: [@Sendable () -> Void] = []
    }
    private let state = Mutex(State())

    /// A server with its own event-loop group (`configuration.loops` loops).
    public convenience init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), handler: any HTTPHandler, logger: Logger) {
        self.init(configuration: configuration, handler: handler, logger: logger,
                  group: EventLoopGroup(loopCount: configuration.loops))
    }

    /// A server on an existing group (shared with clients or other servers);
    /// `configuration.loops` is not used.
    public init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), handler: any HTTPHandler, logger: Logger,
                group: EventLoopGroup) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        self.group = group
        self.bodyBudget = BodyBudget(limit: configuration.maxBufferedBodyBytes, stallTimeout: configuration.stalledBodyTimeout)
    }

    /// Binds and starts accepting on every address. Throws `ListenError` naming the address
    /// that failed (then nothing is left listening).
    public func start(listeners addresses: [ListenAddress]) throws {
        var opened: [Listener] = []
        do {
            for address in addresses {
                let (fd, port) = try Socket.listen(host: address.host, port: address.port, backlog: configuration.backlog)
                let loop = group.nextLoop()
                opened.append(Listener(fd: fd, bound: BoundListener(name: address.name, host: address.host, port: port),
                                       allowH2CUpgrade: address.allowH2CUpgrade, tls: address.tls,
                                       queue: DispatchQueue(label: "tracerelay.accept.\(port)", target: loop.queue),
                                       server: self, config: configuration, logger: logger))
            }
        } catch {
            for l in opened { Glibc.close(l.fd) }
            throw error
        }
        state.withLock { $0.listeners += opened }
        for l in opened {
            l.start()
            logger.info("listening", metadata: ["http.listener": "\(l.bound.name)", "http.port": "\(l.bound.port)"])
        }
    }

    /// Every listener with the port it bound, in `start` order.
    public var boundListeners: [BoundListener] { state.withLock { $0.listeners.map(\.bound) } }

    /// The bound ports, in `start` order.
    public var boundPorts: [Int] { boundListeners.map(\.port) }

    /// The open connections (tests inspect their buffers).
    var openConnections: [Connection] { state.withLock { Array($0.connections.values) } }

    /// Number of open connections.
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    /// Stops accepting, lets requests in flight finish (HTTP/1.1 answers them with
    /// `Connection: close`, HTTP/2 sends GOAWAY), closes idle connections at once and
    /// force-closes whatever is left after `grace`. `completion` runs once everything is closed.
    public func shutdown(grace: Duration, completion: @escaping @Sendable () -> Void = {}) {
        let (listeners, connections, first) = state.withLock { s in
            let first = !s.shuttingDown
            s.shuttingDown = true
            s.completions.append(completion)
            let l = s.listeners
            s.listeners = []
            return (l, Array(s.connections.values), first)
        }
        guard first else { return checkStopped() }
        logger.info("shutting down", metadata: ["http.connections": "\(connections.count)"])
        for l in listeners { l.stop() }
        for c in connections { c.queue.async { c.beginShutdown() } }
        let (sec, atto) = grace.components
        let nanos = max(0, Int(sec) * 1_000_000_000 + Int(atto / 1_000_000_000))
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanos)) { [self] in
            let left = state.withLock { Array($0.connections.values) }
            if !left.isEmpty {
                logger.info("grace period over, closing connections", metadata: ["http.connections": "\(left.count)"])
            }
            for c in left { c.queue.async { c.close() } }
        }
        checkStopped()
    }

    /// Blocking variant of `shutdown` for tests and command-line tools.
    public func shutdownAndWait(grace: Duration) {
        let done = DispatchSemaphore(value: 0)
        shutdown(grace: grace) { done.signal() }
        done.wait()
    }

    private func checkStopped() {
        let completions: [@Sendable () -> Void] = state.withLock { s in
            guard s.shuttingDown, s.connections.isEmpty else { return [] }
            s.stopped = true
            let c = s.completions
            s.completions = []
            return c
        }
        for c in completions { c() }
    }

    // MARK: called by listeners and connections

    func adopt(fd: Int32, remote: String, listener: String, allowH2CUpgrade: Bool = true, tls: TLSContext? = nil) {
        Socket.configureAccepted(fd)
        let (loop, queue) = group.makeConnectionQueue(label: "tracerelay.conn",
                                                          dedicated: configuration.dedicatedConnectionQueues
                                                              && configuration.eventMode == .dispatchSources)
        let connection = Connection(fd: fd, remoteAddress: remote, listener: listener, loop: loop, queue: queue,
                                    config: configuration, handler: handler, server: self, bodyBudget: bodyBudget,
                                    allowH2CUpgrade: allowH2CUpgrade, tls: tls)
        let accepted = state.withLock { s -> Bool? in
            if s.shuttingDown { return false }
            // Past the limit the newcomer is closed at once: the connections already open keep
            // their descriptors and their share of the loops.
            if s.connections.count >= configuration.maxConnections { return nil }
            s.connections[ObjectIdentifier(connection)] = connection
            return true
        }
        guard accepted == true else {
            if accepted == nil {
                counters.connectionRefused()
                let n = counters.refusedConnections
                if n & (n - 1) == 0 {  // the 1st, 2nd, 4th, 8th … refusal: a flood logs a few lines
                    logger.warning("connection limit reached; closing new connections", metadata: [
                        "http.max_connections": "\(configuration.maxConnections)", "http.refused_total": "\(counters.refusedConnections)"])
                }
            }
            Glibc.close(fd)
            return
        }
        queue.async { connection.start() }
    }

    func connectionClosed(_ connection: Connection) {
        state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
        checkStopped()
    }
}

/// One listening socket and its accept source. Its state is confined to `queue` (asserted in
/// debug builds).
final class Listener: @unchecked Sendable {
    let fd: Int32
    let bound: BoundListener
    let allowH2CUpgrade: Bool
    let tls: ListenerTLS?
    private let queue: DispatchQueue
    private weak var server: HTTPServer?
    private let config: HTTPServerConfiguration
    private let logger: Logger
    private var source: DispatchSourceRead?
    private var backingOff = false
    private var stopped = false

    init(fd: Int32, bound: BoundListener, allowH2CUpgrade: Bool, tls: ListenerTLS?, queue: DispatchQueue,
         server: HTTPServer, config: HTTPServerConfiguration, logger: Logger) {
        self.tls = tls
        self.fd = fd
        self.bound = bound
        self.allowH2CUpgrade = allowH2CUpgrade
        self.queue = queue
        self.server = server
        self.config = config
        self.logger = logger
    }

    func start() {
        queue.async { [self] in
            assertOnQueue(queue)
            let s = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            s.setEventHandler { [unowned self] in self.acceptReady() }
            s.setCancelHandler { [self] in Glibc.close(self.fd) }
            source = s
            s.activate()
        }
    }

    func stop() {
        queue.async { [self] in
            assertOnQueue(queue)
            guard !stopped else { return }
            stopped = true
            if backingOff { source?.resume(); backingOff = false }
            source?.cancel()
        }
    }

    /// Accepts until EAGAIN, at most `acceptBudget` per event.
    private func acceptReady() {
        assertOnQueue(queue)
        guard !stopped, let server else { return }
        for _ in 0..<config.acceptBudget {
            let result: Socket.AcceptResult
            do {
                result = try Socket.accept(fd)
            } catch {
                logger.warning("accept failed", metadata: ["http.listener": "\(bound.name)", "error": "\(error)"])
                return
            }
            switch result {
            case .accepted(let cfd, let remote):
                server.adopt(fd: cfd, remote: remote, listener: bound.name, allowH2CUpgrade: allowH2CUpgrade,
                             tls: tls?.current)
            case .wouldBlock:
                return
            case .skipped:
                continue
            case .exhausted:
                // Out of descriptors: the pending connection stays in the backlog. Pause instead of
                // spinning on a listener that stays readable.
                logger.warning("out of file descriptors; pausing accept", metadata: [
                    "http.listener": "\(bound.name)", "http.backoff_s": "\(config.acceptBackoff)"])
                source?.suspend()
                backingOff = true
                queue.asyncAfter(deadline: .now() + .milliseconds(Int(config.acceptBackoff * 1000))) { [self] in
                    guard backingOff, !stopped else { return }
                    backingOff = false
                    source?.resume()
                }
                return
            }
        }
    }
}
