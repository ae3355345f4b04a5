// Over 500 lines: the nghttp2 session wrapper, its C callbacks and the engine share this file;
// issue 9 splits them. Constants and error texts shared with the client: NGHTTP2Support.swift.
import Dispatch
private import CNghttp2

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
/// block past them) its stream is reset from inside the header callback, so nghttp2 decodes
/// the rest of the block without handing it to us; the header bytes (each field weighing at
/// least 32) a connection makes us decode per second are bounded (GOAWAY
/// `ENHANCE_YOUR_CALM`); a body arriving slower than `minBodyRate` gets 408, and a connection
/// with nothing going on but PINGs is closed after `idleTimeout`. These clocks are checked
/// whenever the peer sends something; a silent peer is the connection's idle timer's job.
///
/// One instance owns one `nghttp2_session` and is used only on its connection's queue.
package final class HTTP2ServerEngine: ProtocolEngine {
    /// Where a stream stands.
    fileprivate enum Phase {
        /// Headers or body still arriving.
        case receiving
        /// Handed to the handler, waiting for `respond`.
        case awaitingAnswer
        /// Response submitted (or the request was refused with 413/431); nothing left to do.
        case answered
    }

    /// State of one request stream, kept until nghttp2 closes the stream.
    fileprivate final class Stream {
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

        init(id: Int32) { self.id = id }
    }

    private var session: OpaquePointer!
    private let handler: any HTTPHandler
    private let configuration: HTTP2Configuration
    private weak var context: (any ConnectionContext)?
    private let queue: DispatchQueue
    private let remoteAddress: String
    private let listener: String

    fileprivate var streams: [Int32: Stream] = [:]
    /// Streams whose request completed during the current `mem_recv`; dispatched after it
    /// returns, so handlers never run inside an nghttp2 callback.
    fileprivate var completed: [Int32] = []
    private var awaitingAnswers = 0
    /// Body buffer capacity reserved for streams still arriving, across the connection.
    package fileprivate(set) var bufferedBodyBytes = 0
    /// The server-wide budget for buffered bodies (shared with every other connection).
    private let bodyBudget: BodyBudget

    /// The monotonic clock (nanoseconds); tests replace it.
    package var clock: @Sendable () -> UInt64 = { monotonicNanos() }
    /// `clock()` read once per `receive`, used by the callbacks that run inside it.
    private var now: UInt64 = 0
    /// Last time a stream started, received body bytes or sent response bytes.
    package private(set) var lastProgressNanos: UInt64 = 0
    /// Last time the engine asked the connection to pause reading; a body cannot progress
    /// then, so its rate window starts over.
    private var lastPausedNanos: UInt64 = 0
    private var nextRateCheck: UInt64 = 0
    /// Header callbacks nghttp2 made (tests count them to prove the work stops early).
    package private(set) var headerCallbacks = 0
    /// Header bytes decoded in the current one-second window.
    private var headerWindowStart: UInt64 = 0
    private var headerWindowBytes = 0

    private var pending: [UInt8] = []
    private var pendingStart = 0
    /// Output buffer capacity kept for reuse once everything is sent; more is freed.
    private static let retainedOutputCapacity = 64 << 10
    /// First body buffer of a stream (or its declared length if smaller); it then doubles.
    /// 1 MiB so a typical trace batch is one exact allocation (see HTTP1Engine); reservations
    /// count against the server's BodyBudget, which bounds what many streams can hold.
    private static let initialBodyCapacity = 1 << 20

    private var peerHasClosed = false
    private var shuttingDown = false
    /// nghttp2 reported a fatal error; GOAWAY is (being) sent, nothing more is read.
    private var failed = false
    /// Not even GOAWAY could be queued.
    private var abortNow = false

    /// The reference the handler's `respond` closures carry to other threads.
    private lazy var ref = EngineRef(self)

    /// A server session for prior-knowledge h2c: the connection feeds every byte from the
    /// start, including the 24-byte client preface. The server preface (SETTINGS, connection
    /// WINDOW_UPDATE) is pending output as soon as this returns.
    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration) {
        self.handler = handler
        self.configuration = configuration.clamped
        self.context = context
        self.queue = context.queue
        self.remoteAddress = context.remoteAddress
        self.listener = context.listener
        self.bodyBudget = context.bodyBudget
        startClocks()
        startSession()
        flushOutput()
    }

    /// A server session taking over from HTTP/1.1 after `Upgrade: h2c` (the 101 is already
    /// queued by the HTTP/1.1 engine). `upgrade.request` becomes stream 1 and goes to the
    /// handler at once; `upgrade.remainingBytes` (client preface and frames) is processed
    /// before this returns, so check `hasPendingOutput` and `disposition` afterwards.
    /// Throws `HTTP2Error` if the `HTTP2-Settings` payload is malformed. Call it on
    /// `context.queue`: stream 1's answer comes back on that queue while this still runs.
    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTP2Configuration,
                 upgrade: H2CUpgrade) throws {
        self.handler = handler
        self.configuration = configuration.clamped
        self.context = context
        self.queue = context.queue
        self.remoteAddress = context.remoteAddress
        self.listener = context.listener
        self.bodyBudget = context.bodyBudget
        startClocks()
        startSession()
        let isHead = upgrade.request.method == "HEAD"
        let rv = upgrade.settingsPayload.withUnsafeBufferPointer {
            nghttp2_session_upgrade2(session, $0.baseAddress, $0.count, isHead ? 1 : 0, nil)
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
        nghttp2_session_del(session)
        // Streams still open when the connection goes: give their reservations back.
        var held = 0
        for stream in streams.values { held += stream.reserved }
        bodyBudget.release(held)
    }

    private func startClocks() {
        now = clock()
        lastProgressNanos = now
        headerWindowStart = now
    }

    private func startSession() {
        var callbacks: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0, "nghttp2: out of memory")
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSend)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        var s: OpaquePointer?
        precondition(nghttp2_session_server_new(&s, callbacks, userData) == 0 && s != nil, "nghttp2: out of memory")
        session = s

        let c = configuration
        var settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(c.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(c.initialStreamWindow)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: UInt32(c.maxFrameSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(c.maxHeaderListBytes)),
        ]
        let rv = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        precondition(rv == 0, "nghttp2_submit_settings: \(nghttp2ErrorText(rv))")
        // HTTP/2 starts the connection window at 64 KiB whatever SETTINGS say; raise it now.
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(c.connectionWindow))
    }

    // MARK: ProtocolEngine

    package func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        guard !failed, !abortNow, let base = bytes.baseAddress, bytes.count > 0 else { return disposition }
        now = clock()
        let rv = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rv < 0 {
            fail(Int32(truncatingIfNeeded: rv))
        }
        dispatchCompleted()
        checkProgress()
        flushOutput()
        return disposition
    }

    /// Nanoseconds from `t` to `now` (0 if `t` was read later than `now`).
    private func since(_ t: UInt64) -> UInt64 { now > t ? now - t : 0 }

    /// Slow bodies and PING-only connections, checked after each read (what the peer just
    /// sent has been counted). The stream scan runs at most four times per rate window.
    private func checkProgress() {
        guard !failed, !abortNow else { return }
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
            if nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue) != 0 { abortNow = true }
        }
    }

    package func drainOutput(into out: inout [UInt8], limit: Int) {
        if out.isEmpty, pendingStart == 0, !pending.isEmpty, pending.count <= limit {
            // The usual case: hand the whole buffer over without copying; the two buffers
            // trade places and keep their capacity.
            swap(&out, &pending)
            flushOutput()
            return
        }
        let n = min(limit, pending.count - pendingStart)
        if n > 0 {
            out.append(contentsOf: pending[pendingStart..<(pendingStart + n)])
            pendingStart += n
        }
        if pendingStart == pending.count {
            // A backlog of a peer that read slowly must not stay allocated once sent.
            if pending.capacity > Self.retainedOutputCapacity { pending = [] } else { pending.removeAll(keepingCapacity: true) }
            pendingStart = 0
        } else if pendingStart >= 1 << 16, pendingStart * 2 >= pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
        flushOutput()
    }

    package var hasPendingOutput: Bool { pending.count > pendingStart }

    /// Buffer capacity the engine holds (output and stream bodies), for tests of what a
    /// connection keeps once its streams are done.
    package var retainedCapacity: Int {
        var n = pending.capacity
        for stream in streams.values { n += stream.body.capacity + stream.response.capacity }
        return n
    }

    package var disposition: EngineDisposition {
        if abortNow { return .closeNow }
        let wantRead = nghttp2_session_want_read(session) != 0
        let wantWrite = nghttp2_session_want_write(session) != 0
        // Both off: GOAWAY went out (or came in) and no stream is active.
        if failed || (!wantRead && !wantWrite) { return .closeAfterFlush }
        if peerHasClosed { return awaitingAnswers == 0 && !wantWrite ? .closeAfterFlush : .pauseReading }
        if pending.count - pendingStart > configuration.maxPendingOutputBytes
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
        var n = 0
        for stream in streams.values where stream.phase != .receiving { n += 1 }
        return n
    }

    package func peerClosed() -> EngineDisposition {
        peerHasClosed = true
        return disposition
    }

    package func beginShutdown() -> EngineDisposition {
        if !shuttingDown && !failed && !abortNow {
            shuttingDown = true
            // Streams up to the last one we processed still finish; newer ones are refused.
            let last = nghttp2_session_get_last_proc_stream_id(session)
            let rv = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
            if rv != 0 { abortNow = true }
            flushOutput()
        }
        return disposition
    }

    package func timeout(_ kind: TimeoutKind) -> EngineDisposition {
        // A handler that has not answered yet is not the peer's fault; keep waiting for it.
        guard awaitingAnswers == 0, !failed, !abortNow else { return disposition }
        // Idle, or a peer that stalls mid-request: say goodbye and drop its half-sent streams.
        if nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue) != 0 { abortNow = true }
        flushOutput()
        return disposition
    }

    // MARK: Output

    /// Pulls frames from nghttp2 into `pending` until it has none or enough is queued.
    private func flushOutput() {
        guard !abortNow else { return }
        while pending.count - pendingStart < configuration.maxPendingOutputBytes {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                abortNow = true
                return
            }
            guard n > 0, let data else { return }
            pending.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
        }
    }

    private func fail(_ code: Int32) {
        failed = true
        let reason = code == NGHTTP2_ERR_NOMEM.rawValue || code == NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            ? NGHTTP2_INTERNAL_ERROR.rawValue : NGHTTP2_PROTOCOL_ERROR.rawValue
        if nghttp2_session_terminate_session(session, reason) != 0 { abortNow = true }
    }

    // MARK: Requests and answers

    private func dispatchCompleted() {
        guard !completed.isEmpty else { return }
        let ids = completed
        completed.removeAll(keepingCapacity: true)
        for id in ids {
            guard let stream = streams[id], stream.phase == .receiving else { continue }
            var body: [UInt8] = []
            swap(&body, &stream.body)
            // The handler owns the body now; it leaves the receive budgets.
            releaseReservation(stream)
            let target = stream.path
            var path = target
            var query = ""
            if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
                path = String(target[..<q])
                query = String(target[target.utf8.index(after: q)...])
            }
            var headers = stream.headers
            stream.headers = []
            if !stream.authority.isEmpty, !headers.contains(where: { $0.name == "host" }) {
                headers.insert((name: "host", value: stream.authority), at: 0)
            }
            let request = HTTPRequest(method: stream.method, path: path, query: query, version: .http2,
                                      headers: HTTPHeaders(headers), body: body,
                                      remoteAddress: remoteAddress, listener: listener)
            dispatch(stream, request: request)
        }
    }

    private func dispatch(_ stream: Stream, request: HTTPRequest) {
        stream.phase = .awaitingAnswer
        awaitingAnswers += 1
        let ref = self.ref
        let queue = self.queue
        let id = stream.id
        handler.handle(request) { response in
            queue.async { ref.engine?.answer(streamID: id, response) }
        }
    }

    /// The handler's answer, back on the connection's queue.
    private func answer(streamID: Int32, _ response: HTTPResponse) {
        // Reset by the peer meanwhile, or a second answer: nothing to send.
        guard let stream = streams[streamID], stream.phase == .awaitingAnswer else { return }
        awaitingAnswers -= 1
        assert(awaitingAnswers >= 0)
        submit(response, on: stream)
        flushOutput()
        context?.outputAvailable()
    }

    /// Answers before the request is complete (body or header block over the limit).
    fileprivate func refuse(_ stream: Stream, _ response: HTTPResponse) {
        releaseReservation(stream)
        stream.body = []
        stream.headers = []
        stream.resetAfterAnswer = !stream.remoteClosed
        submit(response, on: stream)
    }

    /// The server-wide body budget is spent: refuse with REFUSED_STREAM (the peer may retry
    /// it elsewhere or later), or with 503 when a 100 already answered the headers.
    private func refuseForBudget(_ stream: Stream) {
        if stream.continueSent {
            refuse(stream, .error(503, code: "server_busy",
                                  message: "the server holds too many unfinished request bodies; retry",
                                  headers: [("Retry-After", "1")]))
            return
        }
        releaseReservation(stream)
        stream.body = []
        stream.headers = []
        stream.phase = .answered
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_REFUSED_STREAM.rawValue)
    }

    private func releaseReservation(_ stream: Stream) {
        guard stream.reserved > 0 else { return }
        bufferedBodyBytes -= stream.reserved
        bodyBudget.release(stream.reserved)
        stream.reserved = 0
    }

    private func submit(_ response: HTTPResponse, on stream: Stream) {
        stream.phase = .answered
        let status = response.status
        let bodyAllowed = !(status == 204 || status == 304 || (100..<200).contains(status))
        let sendBody = bodyAllowed && stream.method != "HEAD" && !response.body.isEmpty

        // Field names and values laid out in one buffer; nghttp2 copies them during submit.
        var fields: [(String, String)] = [(":status", String(status))]
        for (name, value) in response.headers {
            let lower = name.lowercased()
            switch lower {
            case "content-length", "date", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                continue
            default:
                if lower.hasPrefix(":") { continue }
                fields.append((lower, value))
            }
        }
        if bodyAllowed { fields.append(("content-length", String(response.body.count))) }

        var storage: [UInt8] = []
        var offsets: [(name: Int, nameLen: Int, value: Int, valueLen: Int)] = []
        for (name, value) in fields {
            let n = storage.count
            storage.append(contentsOf: name.utf8)
            let v = storage.count
            storage.append(contentsOf: value.utf8)
            offsets.append((n, v - n, v, storage.count - v))
        }
        // The shared per-second "Date: …\r\n" line of the HTTP/1.1 side, without name and CRLF.
        let dateLine = HTTPDate.headerLine()
        if dateLine.count > 8 {
            let n = storage.count
            storage.append(contentsOf: "date".utf8)
            let v = storage.count
            storage.append(contentsOf: dateLine[6..<(dateLine.count - 2)])
            offsets.append((n, 4, v, storage.count - v))
        }

        if sendBody {
            stream.response = response.body
            stream.responseOffset = 0
        }
        let rv: Int32 = storage.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            var nva = offsets.map {
                nghttp2_nv(name: base + $0.name, value: base + $0.value, namelen: $0.nameLen, valuelen: $0.valueLen,
                           flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            if sendBody {
                var provider = nghttp2_data_provider()
                provider.read_callback = readResponseBody
                return nghttp2_submit_response(session, stream.id, &nva, nva.count, &provider)
            }
            return nghttp2_submit_response(session, stream.id, &nva, nva.count, nil)
        }
        if rv != 0 {
            // The stream cannot take a response (closed meanwhile): reset it rather than hang.
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_INTERNAL_ERROR.rawValue)
        }
    }

    // MARK: Callback bodies (called from the C callbacks below, inside mem_recv / mem_send)

    /// A header block starts: request headers (a new stream) or trailers.
    fileprivate func beginHeaders(streamID: Int32, request: Bool) {
        if let stream = streams[streamID] {
            stream.blockFields = 0
            stream.blockBytes = 0
            return
        }
        guard request else { return }
        streams[streamID] = Stream(id: streamID)
        lastProgressNanos = now
    }

    fileprivate enum HeaderVerdict { case accept, resetStream, goaway }

    /// Every header field nghttp2 decodes comes through here, trailers included. Over a
    /// limit the stream is reset (nghttp2 then skips the rest of the block); over the
    /// per-connection rate the connection ends.
    fileprivate func header(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>,
                            trailer: Bool) -> HeaderVerdict {
        headerCallbacks += 1
        let size = name.count + value.count + 32
        if since(headerWindowStart) >= 1_000_000_000 {
            headerWindowStart = now
            headerWindowBytes = 0
        }
        headerWindowBytes += size
        if headerWindowBytes > configuration.maxHeaderBytesPerSecond {
            return .goaway
        }
        guard let stream = streams[streamID] else { return .accept }
        stream.blockFields += 1
        stream.blockBytes += size
        let overLimit = stream.blockBytes > configuration.maxHeaderListBytes || stream.blockFields > configuration.maxHeaderFields
        if overLimit {
            // A block a little over the limits still gets its 431 (answered when it ends; the
            // fields are no longer looked at). At twice the limits the peer is not mistaken but
            // hostile: reset the stream now. The 431 cannot come first: nghttp2 marks the stream
            // closing as soon as we return and drops HEADERS queued for it.
            if trailer || stream.blockBytes > 2 * configuration.maxHeaderListBytes
                || stream.blockFields > 2 * configuration.maxHeaderFields {
                if stream.phase == .receiving {
                    releaseReservation(stream)
                    stream.body = []
                    stream.headers = []
                    stream.phase = .answered
                }
                return .resetStream
            }
            stream.headersTooLarge = true
            stream.headers = []
            return .accept
        }
        guard !trailer, stream.phase == .receiving, !stream.headersTooLarge else { return .accept }
        let n = String(decoding: name, as: UTF8.self)
        let v = String(decoding: value, as: UTF8.self)
        if name.first == UInt8(ascii: ":") {
            switch n {
            case ":method": stream.method = v
            case ":path": stream.path = v
            case ":authority": stream.authority = v
            default: break
            }
            return .accept
        }
        if n == "expect", v.lowercased() == "100-continue" { stream.expectsContinue = true }
        if n == "content-length", let length = Int(v), length >= 0 {
            // Refused once the header block is complete if over the limit. Only a hint for
            // buffer growth: memory follows the data that actually arrives.
            stream.declaredLength = length
        }
        stream.headers.append((name: n, value: v))
        return .accept
    }

    fileprivate func headersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID], stream.phase == .receiving else { return }
        if endStream { stream.remoteClosed = true }
        stream.headersDone = true
        stream.rateWindowStart = now
        if stream.headersTooLarge {
            refuse(stream, .error(431, code: "headers_too_large",
                                  message: "request header block exceeds \(configuration.maxHeaderListBytes) bytes"))
            return
        }
        if let length = stream.declaredLength, length > configuration.maxBodyBytes {
            refuse(stream, .error(413, code: "body_too_large",
                                  message: "content-length \(length) exceeds the limit of \(configuration.maxBodyBytes) bytes"))
            return
        }
        if endStream {
            completed.append(streamID)
            return
        }
        if bodyBudget.used >= bodyBudget.limit {
            // Nothing left for a body: refuse before the peer sends one.
            refuseForBudget(stream)
        } else if stream.expectsContinue {
            stream.continueSent = true
            sendContinue(streamID)
        }
    }

    /// An interim `100` HEADERS frame, so a peer that sent `expect: 100-continue` goes on.
    private func sendContinue(_ streamID: Int32) {
        var name = Array(":status".utf8)
        var value = Array("100".utf8)
        name.withUnsafeMutableBufferPointer { n in
            value.withUnsafeMutableBufferPointer { v in
                var nv = nghttp2_nv(name: n.baseAddress, value: v.baseAddress, namelen: n.count, valuelen: v.count,
                                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                _ = nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, nil, &nv, 1, nil)
            }
        }
    }

    fileprivate func data(streamID: Int32, _ chunk: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], stream.phase == .receiving else { return }
        lastProgressNanos = now
        stream.rateWindowBytes += chunk.count
        let needed = stream.body.count + chunk.count
        if needed > configuration.maxBodyBytes {
            refuse(stream, .error(413, code: "body_too_large",
                                  message: "request body exceeds \(configuration.maxBodyBytes) bytes"))
            return
        }
        if needed > stream.reserved, !grow(stream, toHold: needed) { return }
        stream.body.append(contentsOf: chunk)
    }

    /// Grows a stream's body buffer (and its reservations) to hold `needed` bytes: doubling
    /// from a small start, capped by the declared length when the data still fits it. Refuses
    /// the stream and returns false when a budget says no.
    private func grow(_ stream: Stream, toHold needed: Int) -> Bool {
        var target = max(needed, stream.reserved * 2, Self.initialBodyCapacity)
        if let declared = stream.declaredLength, declared >= needed { target = min(target, declared) }
        target = min(target, max(needed, configuration.maxBodyBytes))
        // Over-reserving must not be what refuses a stream: fall back to the exact size.
        if bufferedBodyBytes + target - stream.reserved > configuration.maxBufferedBodyBytes { target = needed }
        if bufferedBodyBytes + target - stream.reserved > configuration.maxBufferedBodyBytes {
            refuse(stream, .error(503, code: "connection_busy",
                                  message: "this connection already holds \(bufferedBodyBytes) bytes of unfinished request bodies; retry",
                                  headers: [("Retry-After", "1")]))
            return false
        }
        if !bodyBudget.tryReserve(target - stream.reserved) {
            target = needed
            guard bodyBudget.tryReserve(target - stream.reserved) else {
                refuseForBudget(stream)
                return false
            }
        }
        bufferedBodyBytes += target - stream.reserved
        stream.reserved = target
        stream.body.reserveCapacity(target)
        return true
    }

    fileprivate func endOfStream(streamID: Int32) {
        guard let stream = streams[streamID] else { return }
        stream.remoteClosed = true
        if stream.phase == .receiving { completed.append(streamID) }
    }

    fileprivate func sentEndOfStream(streamID: Int32) {
        guard let stream = streams[streamID], stream.resetAfterAnswer else { return }
        stream.resetAfterAnswer = false
        if !stream.remoteClosed {
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
        }
    }

    fileprivate func streamClosed(streamID: Int32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        releaseReservation(stream)
        if stream.phase == .awaitingAnswer { awaitingAnswers -= 1 }
        assert(awaitingAnswers >= 0 && bufferedBodyBytes >= 0)
        // A dictionary keeps its storage after removals; after a burst, let it go.
        if streams.isEmpty, streams.capacity > 64 { streams = [:] }
    }

    fileprivate func readBody(streamID: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int,
                              flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n = min(length, stream.response.count - stream.responseOffset)
        if n > 0 {
            lastProgressNanos = clock()
            stream.response.withUnsafeBufferPointer {
                buf.update(from: $0.baseAddress! + stream.responseOffset, count: n)
            }
            stream.responseOffset += n
        }
        if stream.responseOffset == stream.response.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            stream.response = []
            stream.responseOffset = 0
        }
        return n
    }
}

/// Why an HTTP/2 engine could not start.
public struct HTTP2Error: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable { case badUpgradeSettings }
    public var code: Code
    public var message: String
    public var description: String { message }
}

/// Carries the engine to the thread a handler answers on. It is only dereferenced after
/// hopping to the engine's queue (see `dispatch`), which is what makes the unchecked
/// Sendable sound; the reference is weak so a late answer after the connection closed is
/// simply dropped.
private final class EngineRef: @unchecked Sendable {
    weak var engine: HTTP2ServerEngine?
    init(_ engine: HTTP2ServerEngine) { self.engine = engine }
}

// MARK: C callbacks: recover the engine from user_data and forward.

private func engine(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerEngine? {
    guard let userData else { return nil }
    return Unmanaged<HTTP2ServerEngine>.fromOpaque(userData).takeUnretainedValue()
}


private func onBeginHeaders(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                            _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    if frame.pointee.hd.type == nghttp2FrameHeaders {
        engine.beginHeaders(streamID: frame.pointee.hd.stream_id, request: frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST)
    }
    return 0
}

private func onHeader(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                      _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
                      _ value: UnsafePointer<UInt8>?, _ valueLength: Int,
                      _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    guard frame.pointee.hd.type == nghttp2FrameHeaders else { return 0 }
    // Trailers (a second HEADERS) are counted against the limits, otherwise ignored.
    let verdict = engine.header(streamID: frame.pointee.hd.stream_id,
                                name: UnsafeBufferPointer(start: name, count: name == nil ? 0 : nameLength),
                                value: UnsafeBufferPointer(start: value, count: value == nil ? 0 : valueLength),
                                trailer: frame.pointee.headers.cat != NGHTTP2_HCAT_REQUEST)
    switch verdict {
    case .accept:
        return 0
    case .resetStream:
        // nghttp2 sends RST_STREAM and decodes the rest of the block without calling us.
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
    case .goaway:
        _ = nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        return nghttp2CallbackFailure
    }
}

private func onDataChunk(_ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32,
                         _ data: UnsafePointer<UInt8>?, _ length: Int,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData) else { return nghttp2CallbackFailure }
    if let data, length > 0 {
        engine.data(streamID: streamID, UnsafeBufferPointer(start: data, count: length))
    }
    return 0
}

private func onFrameRecv(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    let hd = frame.pointee.hd
    let endStream = hd.flags & nghttp2FlagEndStream != 0
    switch hd.type {
    case nghttp2FrameHeaders:
        if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
            engine.headersComplete(streamID: hd.stream_id, endStream: endStream)
        } else if endStream {
            engine.endOfStream(streamID: hd.stream_id)  // trailers end the request
        }
    case nghttp2FrameData:
        if endStream { engine.endOfStream(streamID: hd.stream_id) }
    default:
        break
    }
    return 0
}

private func onFrameSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    let hd = frame.pointee.hd
    if (hd.type == nghttp2FrameHeaders || hd.type == nghttp2FrameData) && hd.flags & nghttp2FlagEndStream != 0 {
        engine.sentEndOfStream(streamID: hd.stream_id)
    }
    return 0
}

private func onStreamClose(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32,
                           _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData) else { return nghttp2CallbackFailure }
    engine.streamClosed(streamID: streamID)
    return 0
}

private func readResponseBody(_ session: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?,
                              _ length: Int, _ dataFlags: UnsafeMutablePointer<UInt32>?,
                              _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                              _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let engine = engine(userData), let buf, let dataFlags else { return Int(nghttp2CallbackFailure) }
    return engine.readBody(streamID: streamID, into: buf, length: length, flags: dataFlags)
}
