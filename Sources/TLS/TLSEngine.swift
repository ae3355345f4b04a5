#if canImport(Glibc)
import Glibc
#endif
import Basics
internal import COpenSSL
internal import CTLSBIO

/// One TLS connection as a sans-IO state machine: ciphertext from the socket goes in through
/// `feed`, plaintext comes out (with events: handshake done, close_notify, failure); plaintext
/// to send goes in through `write`, ciphertext for the socket comes out of `drainCiphertext`.
/// The engine never touches a socket, a clock or a queue, so it is tested without sockets and
/// any loop can drive it.
///
/// After every `feed`, `write` and `close`, send what `drainCiphertext` returns: a feed can
/// produce handshake messages, session tickets, key-update answers or an alert.
///
/// Thread confinement: one engine per connection, used only on that connection's queue. It is
/// deliberately not `Sendable`. OpenSSL's error queue is per thread; every call here clears it
/// first, so connections sharing a loop thread never see each other's errors.
///
/// Ownership: `ssl` (`SSL *`) is owned and freed in `deinit`; it owns its two BIOs (CTLSBIO:
/// `rbio` reads ciphertext straight from the buffer a feed lends it, `wbio` queues ciphertext
/// out), which are only borrowed here. The engine keeps its `TLSContext` (the `SSL_CTX`) alive.
public final class TLSEngine {
    public enum State: Sendable, Equatable {
        /// Before the handshake finished; `write` queues plaintext until it has.
        case handshaking
        /// Application data flows both ways.
        case established
        /// `close()` was called (close_notify queued); reading still works, writing does not.
        case closed
        /// Unusable; the error was reported once as a `.failed` event.
        case failed(TLSError)
    }

    public let context: TLSContext
    public var role: TLSConfiguration.Role { context.configuration.role }
    public private(set) var state: State = .handshaking
    /// When the engine was made (`Clock.monotonicNanos`): the connection enforces its handshake
    /// timeout from here (`handshakeTimedOut`).
    public let handshakeStartedAt: UInt64
    /// The handshake's outcome once `state` left `.handshaking` successfully.
    public private(set) var handshake: TLSHandshake?
    /// The peer sent close_notify. An EOF without it (after the handshake) may be a truncation;
    /// only a client reading a body delimited by EOF needs to care.
    public private(set) var closeNotifyReceived = false

    /// The `SSL *`.
    let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    /// Client: the name the server's certificate must carry (also sent as SNI unless an IP).
    let serverName: String?
    /// Plaintext written before the handshake finished.
    private var queuedPlaintext: [UInt8] = []

    /// Largest TLS record payload: one `SSL_read` never returns more.
    private static let readChunk = 16 * 1024

    /// A server engine: waits for the client's hello.
    public convenience init(server context: TLSContext) throws(TLSError) {
        try self.init(context: context, role: .server, serverName: nil, session: nil)
    }

    /// A client engine: its ClientHello is ready in `drainCiphertext()` at once. `serverName`
    /// (a DNS name or an IP address) is verified against the server's certificate and sent as
    /// SNI; it may be nil only with `insecureSkipVerify`. `session` resumes an earlier one.
    public convenience init(client context: TLSContext, serverName: String?, resuming session: TLSSession? = nil) throws(TLSError) {
        try self.init(context: context, role: .client, serverName: serverName, session: session)
    }

    private init(context: TLSContext, role: TLSConfiguration.Role, serverName: String?, session: TLSSession?) throws(TLSError) {
        guard context.configuration.role == role else {
            throw TLSError(.configuration, "a \(role) engine needs a \(role) context, got a \(context.configuration.role) one")
        }
        OpenSSLErrors.clear()
        guard let ssl = SSL_new(context.ctx) else {
            throw TLSError(.configuration, "cannot create a TLS connection: \(OpenSSLErrors.takeMessage(or: "out of memory"))")
        }
        guard let r = tr_inbio_new(), let w = tr_outbio_new() else {
            SSL_free(ssl) // frees nothing else: the BIOs are not attached yet (one may leak on OOM)
            throw TLSError(.configuration, "cannot create the TLS connection's BIOs")
        }
        SSL_set_bio(ssl, r, w) // the SSL owns both from here
        self.context = context
        self.ssl = ssl
        self.rbio = r
        self.wbio = w
        self.serverName = serverName
        self.handshakeStartedAt = Clock.monotonicNanos()
        switch role {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            try setUpClient(session: session)
            var events: [TLSEvent] = []
            advanceHandshake(&events) // writes the ClientHello
            if case .failed(let e) = state { throw e }
        }
    }

    deinit {
        // OpenSSL marks the session of a connection freed without a shutdown as not resumable
        // (it may have been cut by an attacker). A connection that merely ended without
        // close_notify (idle timeout, peer gone) is fine to resume; a failed one is not.
        if state == .established { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN) }
        SSL_free(ssl)
    }

    private func setUpClient(session: TLSSession?) throws(TLSError) {
        let verify = !context.configuration.insecureSkipVerify
        if let name = serverName {
            if Self.isIPAddress(name) {
                // No SNI for IP literals (RFC 6066); the certificate must carry the IP address.
                if verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1 {
                    throw TLSError(.configuration, "cannot verify the IP address \(name)")
                }
            } else {
                guard tr_ssl_set_sni(ssl, name) == 1 else {
                    throw TLSError(.configuration, "invalid server name \"\(name)\" for SNI")
                }
                if verify {
                    SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                    guard SSL_set1_host(ssl, name) == 1 else {
                        throw TLSError(.configuration, "cannot verify the host name \"\(name)\"")
                    }
                }
            }
        } else if verify {
            throw TLSError(.configuration, "a TLS client needs the server's name to verify its certificate (or insecureSkipVerify)")
        }
        if let session, SSL_set_session(ssl, session.session) != 1 {
            OpenSSLErrors.clear() // a session that does not fit just means a full handshake
        }
    }

    // MARK: reading

    /// Ciphertext read from the socket: appends the plaintext it carries to `plaintext` and
    /// returns what happened. A record may arrive in any number of pieces. After a `.failed`
    /// event the engine ignores further input.
    @discardableResult
    public func feed(_ ciphertext: UnsafeRawBufferPointer, plaintext: inout [UInt8]) -> [TLSEvent] {
        var events: [TLSEvent] = []
        if case .failed = state { return events }
        lend(ciphertext, &events) { events in
            if state == .handshaking { advanceHandshake(&events) }
            if handshake != nil && (state == .established || state == .closed) {
                readPlaintext(into: &plaintext, &events)
            }
        }
        return events
    }

    /// `feed` without an intermediate copy of the plaintext: it is decrypted into `buffer`, and
    /// each time the buffer is full (and at the end) its filled part goes to `deliver`, which
    /// may stop further deliveries by returning false: what is not decrypted yet stays in the
    /// engine and comes with the next `feed` (which may carry no new bytes). The events are as
    /// `feed`'s.
    @discardableResult
    public func feed(_ ciphertext: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer,
                     deliver: (UnsafeRawBufferPointer) -> Bool) -> [TLSEvent] {
        var events: [TLSEvent] = []
        if case .failed = state { return events }
        lend(ciphertext, &events) { events in
            if state == .handshaking { advanceHandshake(&events) }
            guard handshake != nil, state == .established || state == .closed, !closeNotifyReceived,
                  buffer.count > 0 else { return }
            decrypt(into: buffer, deliver: deliver, &events)
        }
        return events
    }

    /// Runs `body` while `rbio` reads from `ciphertext` (no copy); what OpenSSL left unread is
    /// then copied into the BIO for the next feed. OpenSSL's error queue is cleared once here:
    /// successful calls add nothing to it, and every read loop stops at the first failure.
    private func lend(_ ciphertext: UnsafeRawBufferPointer, _ events: inout [TLSEvent], _ body: (inout [TLSEvent]) -> Void) {
        tr_inbio_lend(rbio, ciphertext.baseAddress, ciphertext.count)
        OpenSSLErrors.clear()
        body(&events)
        let rest = tr_inbio_pending(rbio) // what the end of the loan must keep
        guard tr_inbio_end_loan(rbio) == 0 else { return }
        if case .failed = state { return }
        fail(TLSError(.configuration, "out of memory keeping \(rest) bytes of TLS input"), &events)
    }

    /// Decrypts into `buffer` (not empty), handing each full buffer (and the last part) to
    /// `deliver` until it returns false or OpenSSL wants more input. The error queue was
    /// cleared by `lend`.
    private func decrypt(into buffer: UnsafeMutableRawBufferPointer, deliver: (UnsafeRawBufferPointer) -> Bool,
                         _ events: inout [TLSEvent]) {
        let start = buffer.baseAddress!
        var filled = 0
        reading: while true {
            let n = SSL_read(ssl, start + filled, Int32(min(buffer.count - filled, Int(Int32.max))))
            if n > 0 {
                filled += Int(n)
                if filled == buffer.count {
                    let ok = deliver(UnsafeRawBufferPointer(start: start, count: filled))
                    filled = 0
                    if !ok { break reading }
                }
                continue
            }
            let err = SSL_get_error(ssl, n)
            switch err {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                break reading
            case SSL_ERROR_ZERO_RETURN:
                closeNotifyReceived = true
                events.append(.closeNotifyReceived)
                break reading
            default:
                fail(failure(err, handshaking: false), &events)
                break reading
            }
        }
        if filled > 0 { _ = deliver(UnsafeRawBufferPointer(start: start, count: filled)) }
    }

    /// `feed` for byte arrays: returns the plaintext and the events.
    public func feed(_ ciphertext: [UInt8]) -> (plaintext: [UInt8], events: [TLSEvent]) {
        var plaintext: [UInt8] = []
        let events = ciphertext.withUnsafeBytes { feed($0, plaintext: &plaintext) }
        return (plaintext, events)
    }

    /// The socket reached EOF. During the handshake that is a failure (the peer vanished);
    /// afterwards it is the end of the stream (see `closeNotifyReceived`).
    public func peerClosed() -> [TLSEvent] {
        guard state == .handshaking else { return [] }
        var events: [TLSEvent] = []
        fail(TLSError(.unexpectedEOF, "the peer closed the connection during the TLS handshake"), &events)
        return events
    }

    /// Whether the handshake is still running `seconds` after it started. The connection asks
    /// on its timer and closes the socket when true.
    public func handshakeTimedOut(after seconds: Double, now: UInt64 = Clock.monotonicNanos()) -> Bool {
        state == .handshaking && now &- handshakeStartedAt > UInt64(max(0, seconds) * 1e9)
    }

    private func advanceHandshake(_ events: inout [TLSEvent]) {
        OpenSSLErrors.clear()
        let r = SSL_do_handshake(ssl)
        guard r == 1 else {
            let err = SSL_get_error(ssl, r)
            if err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE { return }
            return fail(failure(err, handshaking: true), &events)
        }
        state = .established
        let info = describeHandshake()
        handshake = info
        events.append(.handshakeCompleted(info))
        guard !queuedPlaintext.isEmpty else { return }
        let queued = queuedPlaintext
        queuedPlaintext = []
        if let e = queued.withUnsafeBytes({ encrypt($0) }) { events.append(.failed(e)) }
    }

    /// Decrypts everything available onto the end of `plaintext` (one record at a time through a
    /// stack buffer).
    private func readPlaintext(into plaintext: inout [UInt8], _ events: inout [TLSEvent]) {
        guard !closeNotifyReceived else { return }
        withUnsafeTemporaryAllocation(byteCount: Self.readChunk, alignment: 1) { buffer in
            decrypt(into: buffer, deliver: { plaintext.append(contentsOf: $0); return true }, &events)
        }
    }

    private func fail(_ error: TLSError, _ events: inout [TLSEvent]) {
        state = .failed(error)
        queuedPlaintext = []
        events.append(.failed(error))
    }

    // MARK: writing

    /// Plaintext to send. Before the handshake finished it is queued (and encrypted when it
    /// does); afterwards it is encrypted at once into `drainCiphertext`'s bytes.
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        switch state {
        case .handshaking:
            queuedPlaintext.append(contentsOf: plaintext)
        case .established:
            if let e = encrypt(plaintext) { throw e }
        case .closed:
            throw TLSError(.closed, "the TLS connection was closed; nothing more can be written")
        case .failed(let e):
            throw e
        }
    }

    public func write(_ plaintext: [UInt8]) throws(TLSError) {
        if let e = plaintext.withUnsafeBytes({ bytes -> TLSError? in
            do throws(TLSError) { try write(bytes) } catch { return error }
            return nil
        }) { throw e }
    }

    /// Encrypts everything (a memory BIO takes any amount); on failure the engine is failed.
    private func encrypt(_ bytes: UnsafeRawBufferPointer) -> TLSError? {
        var rest = bytes
        while let base = rest.baseAddress, !rest.isEmpty {
            OpenSSLErrors.clear()
            let n = SSL_write(ssl, base, Int32(min(rest.count, 1 << 30)))
            guard n > 0 else {
                let e = failure(SSL_get_error(ssl, n), handshaking: false)
                state = .failed(e)
                return e
            }
            rest = UnsafeRawBufferPointer(rebasing: rest[Int(n)...])
        }
        return nil
    }

    /// Bytes waiting to go to the socket.
    public var pendingCiphertextCount: Int {
        var data: UnsafePointer<UInt8>?
        return tr_outbio_peek(wbio, &data)
    }
    public var hasPendingCiphertext: Bool { pendingCiphertextCount > 0 }

    /// Moves up to `limit` bytes of ciphertext to the end of `out` (one copy); returns how many.
    @discardableResult
    public func drainCiphertext(into out: inout [UInt8], limit: Int = .max) -> Int {
        var data: UnsafePointer<UInt8>?
        let n = min(tr_outbio_peek(wbio, &data), limit)
        guard n > 0, let data else { return 0 }
        out.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
        tr_outbio_consume(wbio, n)
        return n
    }

    /// All pending ciphertext.
    public func drainCiphertext() -> [UInt8] {
        var out: [UInt8] = []
        drainCiphertext(into: &out)
        return out
    }

    /// Queues close_notify (after the handshake); then nothing more can be written. Reading
    /// goes on, so the peer's own close_notify is still seen.
    public func close() {
        switch state {
        case .established:
            OpenSSLErrors.clear()
            _ = SSL_shutdown(ssl)
            OpenSSLErrors.clear()
            state = .closed
        case .handshaking:
            queuedPlaintext = []
            state = .closed
        case .closed, .failed:
            break
        }
    }

    static func isIPAddress(_ s: String) -> Bool {
        var storage = in6_addr()
        return inet_pton(AF_INET, s, &storage) == 1 || inet_pton(AF_INET6, s, &storage) == 1
    }
}
