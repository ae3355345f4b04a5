// Over 500 lines: one connection's whole life (connect, TLS, HTTP engine, read, write,
// timeouts, close) stays in one file so its phase transitions can be read in one place.
import Basics
import Dispatch
import TLS
#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// A request waiting in the pool or in flight on a connection.
struct PendingRequest: Sendable {
    var request: ClientRequest
    var completion: @Sendable (Result<ClientResponse, ClientError>) -> Void
    /// Already retried once after a stale keep-alive connection; never again.
    var retried = false
}

/// The pool a `ClientConnection` works for. Called on the connection's loop queue; the owner
/// must never call back into the connection synchronously (it hops with `queue.async`).
protocol ClientConnectionOwner: AnyObject, Sendable {
    /// Up to `capacity` requests for `connection` (retried ones first when it is `fresh`, i.e.
    /// has carried no request yet); `retire`: take no more work, close once idle.
    func pull(_ connection: ClientConnection, capacity: Int, fresh: Bool) -> (requests: [PendingRequest], retire: Bool)
    /// The connect failed or timed out; the connection is gone.
    func connectFailed(_ connection: ClientConnection, _ error: ClientError)
    /// An established connection closed (its in-flight requests were completed or handed to `retry`).
    func connectionClosed(_ connection: ClientConnection)
    /// Send `request` again: on a connection that never carried a request (`anyConnection`
    /// false: the old one went stale), or on any connection (it was certainly not sent).
    func retry(_ request: PendingRequest, anyConnection: Bool)
    var isShutDown: Bool { get }
    /// TLS: the session to resume with `address` (the last one a connection there left).
    func tlsSession(for address: ResolvedAddress) -> TLSSession?
    /// TLS: a connection to `address` can be resumed with `session` next time.
    func keepTLSSession(_ session: TLSSession, for address: ResolvedAddress)
    /// TLS: a handshake finished (counted; the ALPN choice tells the pool how the server speaks).
    func tlsHandshakeCompleted(_ connection: ClientConnection, _ handshake: TLSHandshake)
}

/// One outbound TCP connection driving one `ClientEngine`, on an event loop's queue.
///
/// Readiness: the fd is registered once in its loop's `EpollPoller` (edge-triggered input,
/// output and peer half-close), the same way `.epollPerLoop` server connections are, and the
/// poller's tick timer checks the client timeouts. Chosen over per-connection Dispatch sources
/// because the relay's clients share loops with its server: one Dispatch wake-up serves every
/// ready socket of a loop, there is no source life cycle (suspend/resume balance, close only
/// in the cancel handler) to get wrong, and closing is `EPOLL_CTL_DEL` + `close(fd)` at once.
/// Edge triggering means reading that stops before `EAGAIN` (budget) schedules its own next
/// read, and EPOLLOUT only matters after a `send` hit `EAGAIN` (`wantWrite`).
///
/// Life: `start` (socket, `TCP_NODELAY`, non-blocking `connect`; `EINPROGRESS` → wait for
/// EPOLLOUT, then `SO_ERROR`) → `connectTimeout` → open: pull requests from the owner while
/// the engine has capacity, write, read until `EAGAIN` within `readBudget` → close on EOF,
/// reset, protocol error, `responseTimeout` (counted from the first byte written while a
/// request is in flight, restarted by each completed response) or `idleTimeout`. A connection
/// that carried a response already and then ends before any byte of the next response
/// (a stale keep-alive connection the server closed just before our write) hands the request
/// back to the owner for one retry on a fresh connection.
///
/// TLS (`https`): after the TCP connect a `TLSEngine` sits between the socket and the HTTP
/// engine (docs/tls.md, "Driving an engine"): socket bytes are fed to it and its plaintext goes
/// to the HTTP engine; the HTTP engine's output is written to it and its ciphertext is what
/// `out` sends — drained after every feed, write and close. The HTTP engine is made only when
/// the handshake is done, from the ALPN choice (`h2` → HTTP/2 when configured, else HTTP/1.1).
/// The handshake counts as part of connecting: it must finish within `connectTimeout`, and a
/// failure is reported as a failed connect (`.tlsFailed`), so the pool skips the address and
/// the waiting requests fail with the reason instead of waiting.
///
/// Everything runs on `queue` (the loop's queue); entry points assert it in debug builds.
final class ClientConnection: PollTarget, @unchecked Sendable {
    private(set) var fd: Int32 = -1
    let loop: EventLoop
    let queue: DispatchQueue
    let address: ResolvedAddress
    private let config: HTTPClientConfiguration
    private let authority: String
    private weak var owner: (any ClientConnectionOwner)?
    /// TLS: the context (nil: cleartext) and the name the certificate must carry (also SNI).
    private let tlsContext: TLSContext?
    private let serverName: String
    private var tls: TLSEngine?
    /// A `TLSEngine.write` failed while the engine's output was encrypted.
    private var tlsWriteError: TLSError?
    private var tlsSessionKept = false

    private var engine: (any ClientEngine)?
    /// Typed view of `engine` while it speaks HTTP/1.1 (early-response detection).
    private var h1: HTTP1ClientEngine?

    private enum Phase { case new, connecting, handshaking, open, closing, closed }
    private var phase = Phase.new
    private var poller: EpollPoller?
    private var pollToken: UInt64 = 0
    private var wantWrite = false
    private var readScheduled = false
    private var peerHangup = false

    private var out = ByteQueue(retainedCapacity: Int.max)
    private var sendError: SystemCallError?

    private var connectDeadline: UInt64 = 0
    private var lastActivity: UInt64 = 0
    /// When the oldest unanswered request's first byte went out (0: not running).
    private var responseClock: UInt64 = 0
    private var closingSince: UInt64 = 0

    private var needsPull = false
    private var lastCapacity = 0
    private var retiring = false
    private var everUsed = false
    private var earlyResponse = false
    /// Responses completed on this connection (> 0: it is a kept-alive, reused connection).
    private(set) var completed = 0
    private var bytesReceived: UInt64 = 0
    /// Completions produced during engine calls, delivered by `deliver` at the end of the entry
    /// point: by then the connection has pulled again, so a caller that sends its next request
    /// from the completion finds this connection idle in the pool instead of opening another.
    private var ready: [(PendingRequest, Result<ClientResponse, ClientError>)] = []

    /// Bytes moved from the engine per `drainOutput`. Large, so a whole request (up to a few
    /// MiB of spans) is handed over by swapping buffers rather than copied in pieces.
    static let drainLimit = 32 << 20
    /// Over TLS the engine's output is encrypted this much at a time, so a large request does
    /// not sit in memory twice (plaintext and ciphertext) at once.
    static let tlsChunk = 1 << 20

    /// `tls`: speak TLS to the server named `serverName` (nil: cleartext).
    init(address: ResolvedAddress, authority: String, loop: EventLoop, config: HTTPClientConfiguration,
         tls: TLSContext? = nil, serverName: String = "", owner: any ClientConnectionOwner) {
        self.address = address
        self.authority = authority
        self.loop = loop
        self.queue = loop.queue
        self.config = config
        self.tlsContext = tls
        self.serverName = serverName
        self.owner = owner
    }

    static func tickInterval(_ c: HTTPClientConfiguration) -> DispatchTimeInterval {
        let shortest = min(c.connectTimeout, c.responseTimeout, c.idleTimeout)
        let seconds = min(1.0, max(0.01, shortest / 4))
        return .milliseconds(Int(seconds * 1000))
    }

    /// The one place that creates engines. `http2`: the configured protocol, or over TLS what
    /// the server chose by ALPN.
    private func makeEngine(http2: Bool) -> any ClientEngine {
        if http2 {
            h1 = nil
            return HTTP2ClientEngine(configuration: config, queue: queue, scheme: tlsContext == nil ? "http" : "https")
        }
        let e = HTTP1ClientEngine(configuration: config)
        h1 = e
        return e
    }

    // MARK: entry points (owner hops here with queue.async)

    /// Opens the socket and starts the non-blocking connect.
    func start() {
        assertOnQueue(queue)
        defer { deliver() }
        guard phase == .new else { return }
        let s = socket(address.family, Int32(SOCK_STREAM.rawValue) | tr_sock_nonblock() | tr_sock_cloexec(), 0)
        guard s >= 0 else { return connectFailed("socket: \(errnoText(errno))") }
        fd = s
        phase = .connecting
        _ = try? Socket.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        connectDeadline = Clock.monotonicNanos() + nanos(config.connectTimeout)
        var storage = sockaddr_storage()
        let length = min(address.sockaddr.count, MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutableBytes(of: &storage) { dst in
            address.sockaddr.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        }
        let rc = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(length)) }
        }
        let err = rc == 0 ? 0 : errno
        // EINTR on a non-blocking connect: the attempt continues asynchronously, like EINPROGRESS.
        if err != 0 && err != EINPROGRESS && err != EINTR { return connectFailed(errnoText(err)) }
        do {
            let p = try loop.poller()
            pollToken = try p.add(self, tick: Self.tickInterval(config))
            poller = p
        } catch {
            return connectFailed("cannot register with the event loop: \(error)")
        }
        if rc == 0 { connected() }
        // else: EPOLLOUT (connected) or EPOLLERR/HUP (failed) comes from the poller.
    }

    /// The owner has requests waiting: pull some if there is capacity.
    func wake() {
        assertOnQueue(queue)
        defer { deliver() }
        needsPull = true
        process()
    }

    /// The address left the backend's DNS answer: take no more requests, close once idle.
    func retire() {
        assertOnQueue(queue)
        defer { deliver() }
        retiring = true
        process()
    }

    /// The client shuts down: fail what is in flight with `.shutdown`, close.
    func shutdown() {
        assertOnQueue(queue)
        defer { deliver() }
        switch phase {
        case .closed: return
        case .new, .connecting, .handshaking: abandon()
        case .open, .closing: close(ClientError(.shutdown, "the client was shut down", requestMaybeSent: true))
        }
    }

    // MARK: PollTarget

    func pollEvent(readable r: Bool, writable w: Bool, hangup h: Bool) {
        assertOnQueue(queue)
        defer { deliver() }
        switch phase {
        case .new, .closed:
            return
        case .connecting:
            finishConnect(writable: w || r, hangup: h)
        case .handshaking:
            if w && wantWrite { process() }
            if (r || h) && phase == .handshaking { readable() }
        case .open, .closing:
            if h { peerHangup = true }
            if w && wantWrite { process() }
            if r && phase != .closed { readable() }
        }
    }

    func tick() {
        assertOnQueue(queue)
        defer { deliver() }
        let now = Clock.monotonicNanos()
        switch phase {
        case .new, .closed:
            return
        case .connecting:
            if now >= connectDeadline { connectFailed("did not connect within \(config.connectTimeout) s") }
        case .handshaking:
            if let tls, tls.handshakeTimedOut(after: config.connectTimeout, now: now) {
                handshakeFailed("did not finish within \(config.connectTimeout) s")
            }
        case .open, .closing:
            guard let engine else { return }
            if engine.inFlight > 0 {
                if responseClock == 0 {
                    responseClock = now
                } else if now - responseClock > nanos(config.responseTimeout) {
                    close(ClientError(.timeout, "no response from \(address.text) within \(config.responseTimeout) s",
                                      requestMaybeSent: true))
                }
            } else if phase == .closing {
                // Final output the server does not take: give up after a short linger.
                if now - closingSince > nanos(min(2, config.responseTimeout)) {
                    close(ClientError(.connectionClosed, "closing \(address.text)", requestMaybeSent: true))
                }
            } else if now - lastActivity > nanos(config.idleTimeout) {
                close(ClientError(.connectionClosed, "idle connection to \(address.text) closed", requestMaybeSent: true))
            }
        }
    }

    // MARK: connecting

    private func finishConnect(writable: Bool, hangup: Bool) {
        let err = Socket.pendingError(fd)
        if err != 0 { return connectFailed(errnoText(err)) }
        if writable { return connected() }
        if hangup { connectFailed("the connection was closed while connecting") }
    }

    private func connected() {
        lastActivity = Clock.monotonicNanos()
        guard let tlsContext else {
            startEngine(http2: config.protocolVersion == .h2c)
            return process()
        }
        phase = .handshaking
        do {
            tls = try TLSEngine(client: tlsContext, serverName: serverName, resuming: owner?.tlsSession(for: address))
        } catch {
            return handshakeFailed(error.message)
        }
        process() // sends the ClientHello
    }

    private func startEngine(http2: Bool) {
        phase = .open
        lastActivity = Clock.monotonicNanos()
        engine = makeEngine(http2: http2)
        needsPull = true
    }

    private func connectFailed(_ reason: String) {
        connectFailed(ClientError(.connectFailed, "connect to \(address.text): \(reason)"))
    }

    private func connectFailed(_ error: ClientError) {
        guard phase == .new || phase == .connecting || phase == .handshaking else { return }
        releaseSocket()
        tls = nil
        owner?.connectFailed(self, error)
    }

    /// The TLS handshake failed: what the engine still holds (often an alert telling the server
    /// why) goes out best effort, then the connect counts as failed.
    private func handshakeFailed(_ reason: String) {
        sendFinalCiphertext()
        connectFailed(ClientError(.tlsFailed, "TLS handshake with \(serverName) (\(address.text)): \(reason)"))
    }

    /// One non-blocking send of what the TLS engine holds (an alert, close_notify), when
    /// nothing else is queued before it; the socket is about to close, so a full buffer just
    /// means the peer does not hear it.
    private func sendFinalCiphertext() {
        guard let tls, fd >= 0, out.isEmpty, sendError == nil else { return }
        let bytes = tls.drainCiphertext()
        guard !bytes.isEmpty else { return }
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
    }

    private func tlsEstablished(_ h: TLSHandshake) {
        owner?.tlsHandshakeCompleted(self, h)
        startEngine(http2: config.protocolVersion == .h2c && h.alpn == "h2")
    }

    /// Hands the TLS session to the owner for the next connection (once per connection, after
    /// the first response: TLS 1.3 tickets arrive after the handshake, before any response).
    private func keepTLSSession() {
        guard !tlsSessionKept, let tls, tls.handshake != nil, let session = tls.resumableSession() else { return }
        tlsSessionKept = true
        owner?.keepTLSSession(session, for: address)
    }

    /// Closes without telling the owner (it dropped this connection already).
    private func abandon() {
        releaseSocket()
        engine = nil
        h1 = nil
        tls = nil
    }

    private func releaseSocket() {
        phase = .closed
        if let poller {
            poller.remove(token: pollToken, fd: fd)
            self.poller = nil
        }
        if fd >= 0 { Glibc.close(fd) }
        out = ByteQueue(retainedCapacity: Int.max)
    }

    // MARK: the engine

    /// Runs after every event: pull requests while there is capacity, write, act on the
    /// engine's state.
    private func process() {
        if phase == .handshaking {
            flush()
            if let e = sendError { handshakeFailed("sending: \(e)") }
            return
        }
        guard phase == .open || phase == .closing, let engine else { return }
        if earlyResponse {
            return close(ClientError(.connectionClosed, "closed after an early response", requestMaybeSent: true))
        }
        if phase == .open && !retiring && sendError == nil && engine.state == .open {
            let capacity = engine.capacity
            if capacity > 0 && (needsPull || capacity > lastCapacity) {
                needsPull = false
                if let owner {
                    let pulled = owner.pull(self, capacity: capacity, fresh: !everUsed)
                    if pulled.retire { retiring = true }
                    for p in pulled.requests { send(p, on: engine) }
                } else {
                    retiring = true
                }
            }
            lastCapacity = engine.capacity
        }
        flush()
        if let e = tlsWriteError {
            return close(ClientError(.tlsFailed, "TLS with \(address.text): \(e.message)", requestMaybeSent: true))
        }
        if let e = sendError {
            // The server went away while we wrote; what it answered before is still readable.
            _ = readInput(stopOnState: false)
            return close(ClientError(.connectionClosed, "sending to \(address.text): \(e)", requestMaybeSent: true))
        }
        guard phase == .open || phase == .closing else { return }
        switch engine.state {
        case .closeNow:
            close(ClientError(.connectionClosed, "connection to \(address.text) closed after a protocol error", requestMaybeSent: true))
        case .closeAfterFlush:
            if !hasUnsentOutput {
                close(ClientError(.connectionClosed, "connection to \(address.text) closed by the server", requestMaybeSent: true))
            } else if phase == .open {
                phase = .closing
                closingSince = Clock.monotonicNanos()
            }
        case .open:
            if retiring && engine.inFlight == 0 && !hasUnsentOutput {
                close(ClientError(.connectionClosed, "retired connection to \(address.text) closed"))
            }
        }
    }

    private func send(_ p: PendingRequest, on engine: any ClientEngine) {
        let reused = completed > 0
        let mark = bytesReceived
        everUsed = true
        engine.enqueue(p.request, authority: authority) { [self] result in
            self.finished(p, reused: reused, mark: mark, result)
        }
    }

    /// A request's completion from the engine (on `queue`, inside an engine call).
    private func finished(_ p: PendingRequest, reused: Bool, mark: UInt64, _ result: Result<ClientResponse, ClientError>) {
        responseClock = 0
        switch result {
        case .success:
            completed += 1
            lastActivity = Clock.monotonicNanos()
            keepTLSSession()
            // HTTP/1.1 answered while part of its request was still unsent: the stream state is
            // unknown (the engine dropped its own unsent part; this is ours).
            if h1 != nil && !out.isEmpty {
                earlyResponse = true
                out = ByteQueue(retainedCapacity: Int.max)
            }
            ready.append((p, result))
        case .failure(let e):
            let stale = e.code == .connectionClosed && ((reused && bytesReceived == mark) || !e.requestMaybeSent)
            if stale && !p.retried, let owner, !owner.isShutDown {
                var again = p
                again.retried = true
                owner.retry(again, anyConnection: !e.requestMaybeSent)
            } else {
                ready.append((p, result))
            }
        }
    }

    /// Runs the completions collected during this entry point (see `ready`).
    private func deliver() {
        while !ready.isEmpty {
            let batch = ready
            ready = []
            for (p, r) in batch { p.completion(r) }
        }
    }

    // MARK: reading

    private func readable() {
        guard phase == .handshaking || phase == .open || phase == .closing else { return }
        let drained = readInput(stopOnState: true)
        process()
        if !drained && (phase == .handshaking || phase == .open || phase == .closing) { scheduleRead() }
    }

    /// Reads until `EAGAIN` within the budget, feeding the engine. EOF or an error closes the
    /// connection. Returns whether nothing more is waiting (no read needs scheduling).
    private func readInput(stopOnState: Bool) -> Bool {
        guard phase == .handshaking || phase == .open || phase == .closing else { return true }
        let buffer = loop.readBuffer
        var budget = config.readBudget
        while budget > 0 {
            let r: IOResult<Int>
            do {
                r = try syscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
            } catch {
                close(ClientError(.connectionClosed, "reading from \(address.text): \(error)", requestMaybeSent: true))
                return true
            }
            switch r {
            case .wouldBlock:
                return true
            case .done(0):
                if phase == .handshaking {
                    handshakeFailed("the server closed the connection during the handshake")
                } else {
                    close(ClientError(.connectionClosed, "\(address.text) closed the connection", requestMaybeSent: true))
                }
                return true
            case .done(let n):
                budget -= n
                bytesReceived &+= UInt64(n)
                lastActivity = Clock.monotonicNanos()
                let state = receive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if phase == .closed { return true }
                if stopOnState && state != .open { return true }
                // Edge-triggered: a short read emptied the socket; later bytes raise a new edge.
                if n < buffer.count && !peerHangup { return true }
            }
        }
        return false
    }

    /// Bytes from the socket: to the HTTP engine, through the TLS engine when there is one.
    private func receive(_ bytes: UnsafeRawBufferPointer) -> ClientEngineState {
        guard let tls else { return engine?.receive(bytes) ?? .closeNow }
        var plaintext: [UInt8] = []
        var failure: TLSError?
        var closeNotify = false
        for event in tls.feed(bytes, plaintext: &plaintext) {
            switch event {
            case .handshakeCompleted(let h): tlsEstablished(h)
            case .closeNotifyReceived: closeNotify = true
            case .failed(let e): failure = e
            }
        }
        var state = engine?.state ?? .open
        if let engine, !plaintext.isEmpty { state = plaintext.withUnsafeBytes { engine.receive($0) } }
        if let failure {
            if phase == .handshaking { handshakeFailed(failure.message) } else {
                sendFinalCiphertext()
                close(ClientError(.tlsFailed, "TLS with \(address.text): \(failure.message)", requestMaybeSent: true))
            }
            return .closeNow
        }
        if closeNotify {
            // The server sends nothing more (like EOF, but a clean end of the TLS stream).
            close(ClientError(.connectionClosed, "\(address.text) closed the connection", requestMaybeSent: true))
            return .closeNow
        }
        return state
    }

    /// Runs `readable` in a later block (edge-triggered: no new edge for bytes already waiting).
    private func scheduleRead() {
        guard !readScheduled else { return }
        readScheduled = true
        queue.async { [self] in
            readScheduled = false
            readable()
            deliver()
        }
    }

    // MARK: writing

    private var hasUnsentOutput: Bool {
        !out.isEmpty || (engine?.hasPendingOutput ?? false) || (tls?.hasPendingCiphertext ?? false)
    }

    /// Writes pending output until done or the socket is full (then EPOLLOUT calls `process`).
    /// Over TLS the engine's output is encrypted on the way (`tlsChunk` at a time).
    private func flush() {
        guard sendError == nil, phase == .handshaking || phase == .open || phase == .closing else { return }
        let engine = self.engine, tls = self.tls
        guard engine != nil || tls != nil else { return }
        var tlsError: TLSError?
        defer { if let tlsError { tlsWriteError = tlsError } }
        do {
            let allSent = try out.send(to: fd, refill: { dest in
                guard let tls else {
                    engine?.drainOutput(into: &dest, limit: Self.drainLimit)
                    return
                }
                if let engine, tlsError == nil, tls.state == .established {
                    var plaintext: [UInt8] = []
                    engine.drainOutput(into: &plaintext, limit: Self.tlsChunk)
                    if !plaintext.isEmpty {
                        do throws(TLSError) { try tls.write(plaintext) } catch { tlsError = error }
                    }
                }
                tls.drainCiphertext(into: &dest, limit: Self.drainLimit)
            }, sent: { _ in
                lastActivity = Clock.monotonicNanos()
                if responseClock == 0, let engine, engine.inFlight > 0 { responseClock = lastActivity }
            })
            wantWrite = !allSent
        } catch {
            sendError = error
            out = ByteQueue(retainedCapacity: Int.max)
        }
    }

    // MARK: closing

    /// Deregisters and closes the fd at once (no Dispatch source watches it), ends the engine
    /// (failing or retrying what is in flight), then tells the owner.
    private func close(_ error: ClientError) {
        guard phase == .open || phase == .closing else { return }
        if let tls, case .established = tls.state {
            keepTLSSession()
            tls.close()
            sendFinalCiphertext() // close_notify
        }
        releaseSocket()
        tls = nil
        let e = engine
        engine = nil
        h1 = nil
        e?.connectionEnded(error)
        owner?.connectionClosed(self)
    }
}

private func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

private func errnoText(_ e: Int32) -> String {
    "\(strerror(e).map { String(cString: $0) } ?? "error") (errno \(e))"
}
