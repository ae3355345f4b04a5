import Basics
import Dispatch
import TLS

/// HTTPS and HTTP/2 over TLS on one port: a `ProtocolEngine` that puts a sans-IO `TLSEngine`
/// between the connection and an HTTP engine. The connection reads ciphertext into `receive`
/// and sends what `drainOutput` gives; the HTTP engine is chosen once the handshake is done —
/// HTTP/2 when ALPN picked `h2`, HTTP/1.1 otherwise (no ALPN, `http/1.1`) — and sees plaintext
/// only. It stays exactly the engine a plain connection runs (its context is this engine, which
/// forwards to the connection and adds the peer's certificate identity).
///
/// Timeouts: until the handshake is done the connection's header-read timeout applies (the
/// handshake counts as reading the head), so a peer that opens a socket and sends nothing, or
/// stops mid-handshake, is closed after `headerReadTimeout`. A plain HTTP request sent to the
/// TLS port is answered in plain text with a 400 that says so, as nginx does.
///
/// Confined to the connection's queue, like the engines it wraps.
final class TLSProtocolEngine: ProtocolEngine, ConnectionContext {
    private weak var connection: (any ConnectionContext)?
    let queue: DispatchQueue
    let remoteAddress: String
    let listener: String
    let bodyBudget: BodyBudget
    let counters: ServerCounters
    private let handler: any HTTPHandler
    private let configuration: HTTPServerConfiguration
    private let tls: TLSEngine
    private var inner: (any ProtocolEngine)?
    /// The verified client certificate's identity (mTLS), for `HTTPRequest.peer`.
    private(set) var peerIdentity: TLSPeerIdentity?
    /// Plain bytes to send before any ciphertext (the 400 for plain HTTP).
    private var plainOutput: [UInt8] = []
    private var failed = false
    private var closeNotifySent = false
    /// The inner engine's output before encryption; reused.
    private var clear: [UInt8] = []

    /// Largest plaintext chunk encrypted at once (a multiple of the 16 KiB record size).
    private static let chunk = 64 << 10

    init(context: any ConnectionContext, tls tlsContext: TLSContext, handler: any HTTPHandler,
         configuration: HTTPServerConfiguration) throws(TLSError) {
        connection = context
        queue = context.queue
        remoteAddress = context.remoteAddress
        listener = context.listener
        bodyBudget = context.bodyBudget
        counters = context.counters
        self.handler = handler
        self.configuration = configuration
        tls = try TLSEngine(server: tlsContext)
    }

    // MARK: ConnectionContext (for the inner engine)

    func outputAvailable() { connection?.outputAvailable() }

    // MARK: ProtocolEngine

    func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        assertOnQueue(queue)
        guard !failed else { return .closeNow }
        // Plaintext is decrypted into a scratch buffer and handed to the HTTP engine from
        // there (no copy in between); every byte goes to it, as on a plain connection, unless
        // it asks to close at once.
        var d = EngineDisposition.open
        let events = withUnsafeTemporaryAllocation(byteCount: Self.chunk, alignment: 16) { scratch in
            tls.feed(bytes, into: scratch) { part in
                // The handshake completes within this feed: its event is handled below, but
                // the first application bytes may already be here.
                if inner == nil, let h = tls.handshake { startHTTP(h) }
                guard let inner else { return true }
                d = inner.receive(part)
                return d != .closeNow
            }
        }
        if let r = handle(events) { return r }
        guard let inner else { return .open }
        if d == .open && tls.closeNotifyReceived { d = inner.peerClosed() }
        return d
    }

    /// The handshake is done: the peer's identity, and the HTTP engine ALPN chose.
    private func startHTTP(_ h: TLSHandshake) {
        guard inner == nil else { return }
        peerIdentity = h.peer.flatMap { $0.verified ? $0 : nil }
        counters.tlsHandshake(resumed: h.resumed)
        inner = h.alpn == "h2"
            ? HTTP2ServerEngine(context: self, handler: handler, configuration: configuration.resolvedHTTP2)
            : HTTP1Engine(context: self, handler: handler, configuration: configuration, allowUpgrade: false)
    }

    /// Acts on the TLS events; returns a disposition when they decide it.
    private func handle(_ events: [TLSEvent]) -> EngineDisposition? {
        for event in events {
            switch event {
            case .handshakeCompleted(let h):
                startHTTP(h)
            case .closeNotifyReceived:
                break // handled after the plaintext before it was delivered
            case .failed(let error):
                failed = true
                counters.tlsFailure(error.code)
                if error.code == .handshakeFailed && error.message.contains("plain HTTP") {
                    counters.answered(400)
                    plainOutput = Array(Self.plainHTTPAnswer.utf8)
                }
                // The alert (if any) is in the TLS output; send it, then close.
                return inner == nil && plainOutput.isEmpty && !tls.hasPendingCiphertext ? .closeNow : .closeAfterFlush
            }
        }
        return nil
    }

    private static let plainHTTPAnswer: String = {
        let body = #"{"error":"tls_required","message":"this port speaks TLS: use https:// (a plain HTTP request came)"}"#
        return "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }()

    func drainOutput(into out: inout [UInt8], limit: Int) {
        assertOnQueue(queue)
        if !plainOutput.isEmpty {
            out.append(contentsOf: plainOutput)
            plainOutput = []
            return
        }
        if !failed, let inner {
            // Encrypt what the HTTP engine has, up to the limit.
            while tls.pendingCiphertextCount < limit && inner.hasPendingOutput {
                clear.removeAll(keepingCapacity: true)
                inner.drainOutput(into: &clear, limit: Self.chunk)
                if clear.isEmpty { break }
                do { try tls.write(clear) } catch { failed = true; break }
            }
            if clear.capacity > Self.chunk * 2 { clear = [] }
            // The HTTP engine is done and wants to close: close_notify goes after its last bytes.
            if !closeNotifySent && !inner.hasPendingOutput && inner.disposition == .closeAfterFlush {
                closeNotifySent = true
                tls.close()
            }
        }
        tls.drainCiphertext(into: &out, limit: limit)
    }

    var hasPendingOutput: Bool {
        !plainOutput.isEmpty || tls.hasPendingCiphertext || (!failed && inner?.hasPendingOutput == true)
            || (!failed && !closeNotifySent && inner?.disposition == .closeAfterFlush)
    }

    var disposition: EngineDisposition {
        if failed { return hasPendingOutput ? .closeAfterFlush : .closeNow }
        return inner?.disposition ?? .open
    }

    var inFlightRequests: Int { inner?.inFlightRequests ?? 0 }

    func peerClosed() -> EngineDisposition {
        assertOnQueue(queue)
        let events = tls.peerClosed()
        if let d = handle(events) { return d }
        guard let inner, !failed else { return .closeNow }
        return inner.peerClosed()
    }

    func beginShutdown() -> EngineDisposition {
        guard let inner, !failed else { return .closeNow }
        return inner.beginShutdown()
    }

    func timeout(_ kind: TimeoutKind) -> EngineDisposition {
        guard let inner, !failed else {
            // The handshake took longer than the header-read timeout.
            if kind == .headerRead { counters.tlsFailure(.unexpectedEOF, timedOut: true) }
            return .closeNow
        }
        return inner.timeout(kind)
    }

    var wantsNewTurn: Bool { !failed && inner?.wantsNewTurn == true }
    func beginTurn() -> EngineDisposition { failed ? disposition : (inner?.beginTurn() ?? .open) }
    func outputBacklogChanged(_ backlogged: Bool) -> EngineDisposition {
        failed ? disposition : (inner?.outputBacklogChanged(backlogged) ?? .open)
    }
    /// Until the handshake is done the peer is "sending its head".
    var readPhase: ReadPhase? { inner == nil ? .head : inner?.readPhase }
    func bodyTooSlow() -> EngineDisposition { failed ? disposition : (inner?.bodyTooSlow() ?? .closeNow) }
    var retainedBufferBytes: Int {
        clear.capacity + tls.pendingCiphertextCount + (inner?.retainedBufferBytes ?? 0)
    }
}
