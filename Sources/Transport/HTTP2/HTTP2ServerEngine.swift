import Basics
import Dispatch
import TLS
private import CNghttp2

// The engine in three files: this one (stream table, the connection-facing ProtocolEngine
// side, progress and rate limits), +Requests (assembling requests from what the session's
// callbacks deliver) and +Answers (the handler's answers and refusals going out). The nghttp2
// session is NGHTTP2Session; the callbacks go from C to Swift in NGHTTP2Callbacks.swift.

/// The HTTP/2 (h2c) server side of one connection, on libnghttp2.
///
/// Sans-IO: the connection feeds every byte it reads to `receive` and sends what `drainOutput`
/// hands out. Each stream's request body is collected into one contiguous buffer that grows
/// with the data (never from a declared `content-length`) and counts against the connection's
/// `maxBufferedBodyBytes` and the server-wide `BodyBudget` until it is handed over; on
/// END_STREAM the request goes to the handler, whose answer (from any thread) hops back to the
/// connection's queue and is submitted on its stream. Streams the peer resets before the answer
/// drop the answer. Bad bytes end in GOAWAY and `.closeAfterFlush`, never in a trap.
///
/// Hostile peers: a header block past the limits gets 431; at twice the limits (or any trailer
/// block past them) the connection ends from inside the header callback (GOAWAY
/// `ENHANCE_YOUR_CALM`: a reset stream's block would still be decoded by nghttp2, uncounted);
/// the header bytes (each field weighing at
/// least 32) a connection makes us decode per second are bounded (GOAWAY
/// `ENHANCE_YOUR_CALM`); a body arriving slower than `minBodyRate` gets 408, and a connection
/// with nothing going on but PINGs is closed after `idleTimeout`. These clocks are checked
/// whenever the peer sends something; a silent peer is the connection's idle timer's job.
///
/// Confined to its connection's queue (`context.queue`): every entry point asserts it in debug
/// builds. The initializer without `upgrade` may run anywhere (no one else holds the engine yet).
package final class HTTP2ServerEngine: ProtocolEngine, NGHTTP2SessionOwner {
    /// Where a stream stands.
    enum Phase {
        /// Headers or body still arriving.
        case receiving
        /// Handed to the handler, waiting for `respond`.
        case awaitingAnswer
        /// Response submitted (or the request was refused with 413/431); nothing left to do.
        case answered
    }

    /// State of one request stream, kept until nghttp2 closes the stream.
    final class Stream {
        let id: Int32
        var phase: Phase = .receiving
        var method = ""
        var path = ""
        var authority = ""
        var headers: [(name: String, value: String)] = []
        /// Header fields and bytes (as counted for MAX_HEADER_LIST_SIZE) of the header block
        /// being received (request headers, then trailers).
        var blockFields = 0
        var blockBytes = 0
        var headersTooLarge = false
        /// The request header block is complete.
        var headersDone = false
        var declaredLength: Int?
        /// Body buffer capacity reserved from the connection's and the server's budgets.
        var reserved = 0
        /// Body bytes received since `rateWindowStart` (for `minBodyRate`).
        var rateWindowBytes = 0
        var rateWindowStart: UInt64 = 0
        /// An interim 100 went out: refusing now takes a final answer, not REFUSED_STREAM.
        var continueSent = false
        /// `expect: 100-continue`: the peer waits for a 100 before sending the body.
        var expectsContinue = false
        var body: [UInt8] = []
        /// The peer sent END_STREAM.
        var remoteClosed = false
        /// The answer sent before the request was complete (413/431): reset the stream once
        /// the answer is out, so the peer stops sending the body.
        var resetAfterAnswer = false
        var response: [UInt8] = []
        var responseOffset = 0
        /// The `receive` call that last brought body bytes (0: none yet).
        var lastDataReceive = 0
        /// Registered with the body budget once the body spans more than one read, so a full
        /// budget can time it out when it stalls (`BodyBudget.abortOldestStalled`).
        var holder: BodyBudget.Holder?

        init(id: Int32) { self.id = id }
    }

    let session: NGHTTP2Session
    let handler: any HTTPHandler
    let configuration: HTTP2Configuration
    weak var context: (any ConnectionContext)?
    /// The connection's queue: answers hop here; every entry point must be called on it.
    let queue: DispatchQueue
    let remoteAddress: String
    let listener: String
    let peer: TLSPeerIdentity?

    var streams: [Int32: Stream] = [:]
    /// Streams whose request completed during the current `mem_recv`; dispatched after it
    /// returns, so handlers never run inside an nghttp2 callback.
    var completed: [Int32] = []
    var awaitingAnswers = 0
    /// Body buffer capacity reserved for streams still arriving, across the connection.
    package internal(set) var bufferedBodyBytes = 0
    /// The server-wide budget for buffered bodies (shared with every other connection).
    let bodyBudget: BodyBudget
    /// The server's counters (taken from the context at init, like the budget).
    let counters: ServerCounters

    /// The monotonic clock (nanoseconds); tests replace it.
    package var clock: @Sendable () -> UInt64 = { Clock.monotonicNanos() }
    /// `clock()` read once per `receive`, used by the callbacks that run inside it.
    var now: UInt64 = 0
    /// `receive` calls so far (tells a body that spans reads from one that arrived whole).
    var receives = 0
    /// Last time a stream started, received body bytes or sent response bytes.
    package internal(set) var lastProgressNanos: UInt64 = 0
    /// Last time the engine asked the connection to pause reading; a body cannot progress
    /// then, so its rate window starts over.
    private var lastPausedNanos: UInt64 = 0
    private var nextRateCheck: UInt64 = 0
    /// Header callbacks nghttp2 made (tests count them to prove the work stops early).
    package internal(set) var headerCallbacks = 0
    /// Header bytes decoded in the current one-second window.
    var headerWindowStart: UInt64 = 0
    var headerWindowBytes = 0

    /// Output buffer capacity kept for reuse once everything is sent; more is freed.
    private static let retainedOutputCapacity = 64 << 10

    private var peerHasClosed = false
    private var shuttingDown = false
    /// nghttp2 reported a fatal error; GOAWAY is (being) sent, nothing more is read.
    private var failed = false

    /// The reference the handler's `respond` closures carry to other threads.
    lazy var ref = EngineRef(self)

    /// Everything both public initializers share: the session is created, our SETTINGS and
    /// connection WINDOW_UPDATE are queued (not yet pulled into the output buffer).
    private init(_ context: any ConnectionContext, _ handler: any HTTPHandler, _ configuration: HTTP2Configuration) {
        let c = configuration.clamped
        self.handler = handler
        self.configuration = c
        self.context = context
        self.queue = context.queue
        self.remoteAddress = context.remoteAddress
        self.listener = context.listener
        self.peer = context.peerIdentity
        self.bodyBudget = context.bodyBudget
        self.counters = context.counters
        let settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(c.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(c.initialStreamWindow)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: UInt32(c.maxFrameSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(c.maxHeaderListBytes)),
        ]
        session = NGHTTP2Session(.server, queue: context.queue, callbacks: .server, settings: settings,
                                 connectionWindow: c.connectionWindow, maxPendingOutputBytes: c.maxPendingOutputBytes,
                                 retainedOutputCapacity: Self.retainedOutputCapacity)
        now = clock()
        lastProgressNanos = now
        headerWindowStart = now
        session.attach(self)
    }

    /// A server session for prior-knowledge h2c: the connection feeds every byte from the
    /// start, including the 24-byte client preface. The server preface (SETTINGS, connection
    /// WINDOW_UPDATE) is pending output as soon as this returns.
    package convenience init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration) {
        self.init(context, handler, configuration)
        flushOutput()
    }

    /// A server session taking over from HTTP/1.1 after `Upgrade: h2c` (the 101 is already
    /// queued by the HTTP/1.1 engine). `upgrade.request` becomes stream 1 and goes to the
    /// handler at once; `upgrade.remainingBytes` (client preface and frames) is processed
    /// before this returns, so check `hasPendingOutput` and `disposition` afterwards.
    /// Throws `HTTP2Error` if the `HTTP2-Settings` payload is malformed. Call it on
    /// `context.queue`: stream 1's answer comes back on that queue while this still runs.
    package convenience init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration,
                             upgrade: H2CUpgrade) throws {
        self.init(context, handler, configuration)
        session.assertConfined()
        let isHead = upgrade.request.method == "HEAD"
        let rv = upgrade.settingsPayload.withUnsafeBufferPointer {
            nghttp2_session_upgrade2(session.raw, $0.baseAddress, $0.count, isHead ? 1 : 0, nil)
        }
        guard rv == 0 else {
            throw HTTP2Error(code: .badUpgradeSettings,
                             message: "HTTP2-Settings of the h2c upgrade request is not a valid SETTINGS payload (\(upgrade.settingsPayload.count) bytes): \(nghttp2ErrorText(rv))")
        }
        let stream = Stream(id: 1)
        stream.remoteClosed = true
        stream.method = upgrade.request.method
        streams[1] = stream
        dispatch(stream, request: upgrade.request)
        if !upgrade.remainingBytes.isEmpty {
            _ = upgrade.remainingBytes.withUnsafeBytes { receive($0) }
        } else {
            flushOutput()
        }
    }

    deinit {
        // Streams still open when the connection goes: give their reservations back. The
        // session is freed after this, with the stored properties (see NGHTTP2Session).
        counters.streamsClosed(streams.count)
        var held = 0
        for stream in streams.values {
            held += stream.reserved
            if let h = stream.holder { bodyBudget.unregister(h) }
        }
        bodyBudget.release(held)
    }

    // MARK: ProtocolEngine

    package func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        session.assertConfined()
        guard !failed, !session.aborted, bytes.count > 0 else { return disposition }
        now = clock()
        receives &+= 1
        if let error = session.receive(bytes) {
            fail(error)
        }
        dispatchCompleted()
        checkProgress()
        flushOutput()
        return disposition
    }

    /// Nanoseconds from `t` to `now` (0 if `t` was read later than `now`).
    func since(_ t: UInt64) -> UInt64 { now > t ? now - t : 0 }

    /// Slow bodies and PING-only connections, checked after each read (what the peer just
    /// sent has been counted). The stream scan runs at most four times per rate window.
    private func checkProgress() {
        guard !failed, !session.aborted else { return }
        let window = UInt64(configuration.bodyRateWindow * 1e9)
        if configuration.minBodyRate > 0, now >= nextRateCheck, !streams.isEmpty {
            nextRateCheck = now + window / 4
            let required = Int(Double(configuration.minBodyRate) * configuration.bodyRateWindow)
            for stream in streams.values
            where stream.phase == .receiving && stream.headersDone && !stream.remoteClosed
                && since(stream.rateWindowStart) >= window {
                if stream.rateWindowBytes < required && lastPausedNanos < stream.rateWindowStart {
                    refuse(stream, .error(408, code: "body_too_slow",
                                          message: "request body arrived slower than \(configuration.minBodyRate) bytes/s over \(configuration.bodyRateWindow) s"))
                } else {
                    stream.rateWindowStart = now
                    stream.rateWindowBytes = 0
                }
            }
        }
        if !shuttingDown, since(lastProgressNanos) > UInt64(configuration.idleTimeout * 1e9),
           awaitingAnswers == 0, streams.values.allSatisfy({ $0.phase == .answered }) {
            // Only PING/SETTINGS/WINDOW_UPDATE for a whole idle timeout: say goodbye.
            shuttingDown = true
            session.terminate(NGHTTP2_NO_ERROR.rawValue)
        }
    }

    package func drainOutput(into out: inout [UInt8], limit: Int) {
        session.assertConfined()
        session.drainOutput(into: &out, limit: limit)
        flushOutput()
    }

    package var hasPendingOutput: Bool {
        session.assertConfined()
        return session.pendingOutputBytes > 0
    }

    /// Buffer capacity the engine holds (output and stream bodies), for tests of what a
    /// connection keeps once its streams are done.
    package var retainedCapacity: Int {
        session.assertConfined()
        var n = session.outputCapacity
        for stream in streams.values { n += stream.body.capacity + stream.response.capacity }
        return n
    }

    package var disposition: EngineDisposition {
        session.assertConfined()
        if session.aborted { return .closeNow }
        let wantRead = session.wantsRead
        let wantWrite = session.wantsWrite
        // Both off: GOAWAY went out (or came in) and no stream is active.
        if failed || (!wantRead && !wantWrite) { return .closeAfterFlush }
        if peerHasClosed { return awaitingAnswers == 0 && !wantWrite ? .closeAfterFlush : .pauseReading }
        if session.pendingOutputBytes > configuration.maxPendingOutputBytes
            || awaitingAnswers >= configuration.maxConcurrentStreams {
            lastPausedNanos = clock()
            return .pauseReading
        }
        return .open
    }

    /// Requests read completely and not yet fully answered (waiting for the handler, or the
    /// answer still being sent). Streams whose request is still arriving do not count, so a
    /// peer that opens a stream and then goes quiet lets the connection's idle timer fire.
    package var inFlightRequests: Int {
        session.assertConfined()
        var n = 0
        for stream in streams.values where stream.phase != .receiving { n += 1 }
        return n
    }

    package func peerClosed() -> EngineDisposition {
        session.assertConfined()
        peerHasClosed = true
        return disposition
    }

    package func beginShutdown() -> EngineDisposition {
        session.assertConfined()
        if !shuttingDown && !failed && !session.aborted {
            shuttingDown = true
            // Streams up to the last one we processed still finish; newer ones are refused.
            session.shutdownGracefully()
            flushOutput()
        }
        return disposition
    }

    package func timeout(_ kind: TimeoutKind) -> EngineDisposition {
        session.assertConfined()
        // A handler that has not answered yet is not the peer's fault; keep waiting for it.
        guard awaitingAnswers == 0, !failed, !session.aborted else { return disposition }
        // Idle, or a peer that stalls mid-request: say goodbye and drop its half-sent streams.
        session.terminate(NGHTTP2_NO_ERROR.rawValue)
        flushOutput()
        return disposition
    }

    // MARK: Output and failure

    /// Pulls frames from nghttp2 into the output buffer until it has none or enough is queued.
    func flushOutput() {
        session.flushOutput()
    }

    private func fail(_ code: Int32) {
        failed = true
        session.terminate(afterReceiveError: code)
    }
}

extension NGHTTP2Session.Callbacks {
    /// The server's table: each entry forwards to HTTP2ServerEngine (see NGHTTP2Callbacks.swift).
    static var server: Self {
        Self(beginHeaders: { NGHTTP2Forward.beginHeaders(HTTP2ServerEngine.self, $1, $2) },
             header: { NGHTTP2Forward.header(HTTP2ServerEngine.self, $0, $1, $2, $3, $4, $5, $7) },
             dataChunk: { NGHTTP2Forward.data(HTTP2ServerEngine.self, $2, $3, $4, $5) },
             frameRecv: { NGHTTP2Forward.frameReceived(HTTP2ServerEngine.self, $1, $2) },
             frameSend: { NGHTTP2Forward.frameSent(HTTP2ServerEngine.self, $1, $2) },
             frameNotSend: nil,
             streamClose: { NGHTTP2Forward.streamClosed(HTTP2ServerEngine.self, $1, $2, $3) },
             readBody: { NGHTTP2Forward.readBody(HTTP2ServerEngine.self, $1, $2, $3, $4, $6) })
    }
}

/// Why an HTTP/2 engine could not start.
public struct HTTP2Error: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case badUpgradeSettings }
    public var code: Code
    public var message: String
    public var description: String { message }
}
