import Dispatch
private import CNghttp2

// The nghttp2 session is NGHTTP2Session (shared with the server engine); its callbacks go from
// C to Swift in HTTP2/NGHTTP2Callbacks.swift and arrive in the "Session callbacks" below.

/// The h2c client side of one outbound connection (prior knowledge), on libnghttp2.
///
/// Sans-IO: the connection sends what `drainOutput` hands out (starting with the client preface,
/// SETTINGS and a connection WINDOW_UPDATE) and feeds every byte it reads to `receive`. Each
/// request becomes one stream; its body is read by nghttp2 from the request's own byte array
/// through a data provider, so nghttp2 sends no more than the server's windows allow and
/// carries on by itself when WINDOW_UPDATE arrives. Each response is assembled in one buffer
/// (at most `maxResponseBytes`) and handed to its completion, exactly once per request.
///
/// Completions never run inside an nghttp2 callback: they are collected and called when the
/// public method that caused them returns, so a completion may enqueue the next request.
///
/// One instance owns one `nghttp2_session` and is confined to its connection's queue: every
/// entry point asserts it in debug builds.
package final class HTTP2ClientEngine: ClientEngine, NGHTTP2SessionOwner {
    package typealias Completion = @Sendable (Result<ClientResponse, ClientError>) -> Void

    /// One request stream, kept until nghttp2 closes the stream (the body may still be going
    /// out after the response is complete) or until GOAWAY says the server will not read it.
    private final class Stream {
        let id: Int32
        /// Nil once the request has completed.
        var completion: Completion?
        let isHead: Bool
        let body: [UInt8]
        var bodyOffset = 0
        /// nghttp2 serialized the HEADERS frame (into the session's output).
        var headersSent = false
        /// Output offset (in `NGHTTP2Session.produced` terms) just past the HEADERS frame: once the connection
        /// has taken that much, the server may have seen the request.
        var headersEnd: Int?
        /// The final (non-1xx) status, once its header block has started.
        var status: Int?
        /// The final response's header block is complete; later HEADERS are trailers.
        var headersComplete = false
        var headers: [(name: String, value: String)] = []
        var headerBytes = 0
        var response: [UInt8] = []
        /// RST_STREAM from the server, with its error code.
        var peerReset: UInt32?
        /// RST_STREAM nghttp2 sent on its own (the response broke a protocol rule).
        var localReset: UInt32?

        init(id: Int32, body: [UInt8], isHead: Bool, completion: @escaping Completion) {
            self.id = id
            self.body = body
            self.isHead = isHead
            self.completion = completion
        }
    }

    /// Unsent output above which nghttp2 is not asked for more frames until some is drained.
    private static let maxPendingOutputBytes = 1 << 20
    /// Largest response header block (names + values + 32 per field, as HTTP/2 counts).
    private static let maxResponseHeaderBytes = 256 << 10

    private let session: NGHTTP2Session
    private let configuration: HTTPClientConfiguration

    private var streams: [Int32: Stream] = [:]
    /// Requests whose completion has not run (`inFlight`).
    private var pendingRequests = 0
    /// Completions ready to run once nghttp2 has returned.
    private var finished: [(Completion, Result<ClientResponse, ClientError>)] = []

    /// Streams whose HEADERS went out in the `mem_send` call being processed.
    private var headersJustSent: [Stream] = []

    /// The server sent GOAWAY: no new streams; the ones it accepted still finish.
    private var goawayReceived = false
    /// Stream IDs are used up: finish what is in flight, then close.
    private var streamIDsExhausted = false
    /// A fatal error: in-flight requests are failed, GOAWAY is (being) sent.
    private var failed = false
    /// `connectionEnded` was called: the engine is finished.
    private var ended = false
    private let scheme: String

    /// A client session whose preface (magic, SETTINGS with the configured stream window and
    /// push disabled, connection WINDOW_UPDATE) is pending output as soon as this returns.
    /// `queue` is the connection's: every later call must come from it. The initializer itself
    /// may run anywhere (no one else holds the engine yet). `scheme` is every request's
    /// `:scheme` (`https` over TLS).
    package init(configuration: HTTPClientConfiguration, queue: DispatchQueue, scheme: String = "http") {
        self.scheme = scheme
        var c = configuration
        c.maxConcurrentStreams = min(max(c.maxConcurrentStreams, 1), Int(Int32.max))
        c.maxResponseBytes = max(c.maxResponseBytes, 0)
        c.http2StreamWindow = min(max(c.http2StreamWindow, 1), Int(Int32.max))
        c.http2ConnectionWindow = min(max(c.http2ConnectionWindow, 65_535), Int(Int32.max))
        self.configuration = c
        let settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: UInt32(c.http2StreamWindow)),
        ]
        session = NGHTTP2Session(.client, queue: queue, callbacks: .client, settings: settings,
                                 connectionWindow: c.http2ConnectionWindow, maxPendingOutputBytes: Self.maxPendingOutputBytes)
        session.attach(self)
        flushOutput()
    }

    deinit {
        // The connection should have called `connectionEnded`; keep "exactly once" regardless.
        // The session is freed after this, with the stored properties (see NGHTTP2Session).
        failAll(ClientError(.connectionClosed, "the HTTP/2 connection was released with the request in flight",
                            requestMaybeSent: true))
        runCompletions()
    }

    // MARK: ClientEngine

    package func enqueue(_ request: ClientRequest, authority: String, completion: @escaping Completion) {
        session.assertConfined()
        defer { runCompletions() }
        if ended || failed || session.aborted || goawayReceived || streamIDsExhausted {
            finished.append((completion, .failure(ClientError(
                .connectionClosed, "the HTTP/2 connection takes no new requests (\(closedReason))", requestMaybeSent: false))))
            return
        }
        let isHead = request.method == "HEAD"
        var fields = NGHTTP2HeaderList()
        fields.append(":method", request.method)
        fields.append(":scheme", scheme)
        fields.append(":authority", authority)
        fields.append(":path", request.path.isEmpty ? "/" : request.path)
        for (name, value) in request.headers {
            let lower = name.lowercased()
            switch lower {
            // Connection-specific fields are forbidden in HTTP/2 (the peer would reset the
            // stream); host is `:authority`; content-length is ours.
            case "host", "content-length", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                continue
            case "te" where value.lowercased() != "trailers":
                continue
            default:
                if lower.hasPrefix(":") { continue }
                fields.append(lower, value)
            }
        }
        if !request.body.isEmpty || !(request.method == "GET" || isHead) {
            fields.append("content-length", String(request.body.count))
        }
        // With a body, the read callback finds it by stream id (see `readBody`).
        let id = session.submitRequest(&fields, hasBody: !request.body.isEmpty)
        guard id > 0 else {
            if id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue {
                streamIDsExhausted = true
                finished.append((completion, .failure(ClientError(
                    .connectionClosed, "the HTTP/2 connection has used all its stream ids", requestMaybeSent: false))))
            } else {
                finished.append((completion, .failure(ClientError(
                    .protocolError, "the request could not be submitted: \(nghttp2ErrorText(id))", requestMaybeSent: false))))
            }
            return
        }
        streams[id] = Stream(id: id, body: request.body, isHead: isHead, completion: completion)
        pendingRequests += 1
        flushOutput()
    }

    package func receive(_ bytes: UnsafeRawBufferPointer) -> ClientEngineState {
        session.assertConfined()
        guard !ended, !failed, !session.aborted, bytes.count > 0 else { return state }
        if let error = session.receive(bytes) {
            fail(error)
        }
        flushOutput()
        runCompletions()
        return state
    }

    package func drainOutput(into out: inout [UInt8], limit: Int) {
        session.assertConfined()
        defer { runCompletions() }
        session.drainOutput(into: &out, limit: limit)
        flushOutput()
    }

    package var hasPendingOutput: Bool {
        session.assertConfined()
        return !ended && session.pendingOutputBytes > 0
    }

    /// Streams left under min(server's SETTINGS_MAX_CONCURRENT_STREAMS, our
    /// `maxConcurrentStreams`). Streams count until nghttp2 closes them, not only until their
    /// response completed, so nghttp2 never has to queue a request behind the server's limit.
    /// Before the server's SETTINGS arrive nghttp2 assumes 100; a lower server limit then shows
    /// up as REFUSED_STREAM, which fails the request as not sent (safe to retry).
    package var capacity: Int {
        session.assertConfined()
        guard !ended, !failed, !session.aborted, !goawayReceived, !streamIDsExhausted,
              nghttp2_session_check_request_allowed(session.raw) != 0 else { return 0 }
        let remote = Int(nghttp2_session_get_remote_settings(session.raw, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
        let next = Int(nghttp2_session_get_next_stream_id(session.raw))
        let idsLeft = next > Int(Int32.max) ? 0 : (Int(Int32.max) - next) / 2 + 1
        return max(0, min(min(remote, configuration.maxConcurrentStreams) - streams.count, idsLeft))
    }

    package var inFlight: Int {
        session.assertConfined()
        return pendingRequests
    }

    package var state: ClientEngineState {
        session.assertConfined()
        if ended || session.aborted { return .closeNow }
        if failed { return .closeAfterFlush }
        if (goawayReceived || streamIDsExhausted) && pendingRequests == 0 { return .closeAfterFlush }
        // Both off: GOAWAY went both ways and no stream is active.
        if !session.wantsRead && !session.wantsWrite { return .closeAfterFlush }
        return .open
    }

    package func connectionEnded(_ error: ClientError) {
        session.assertConfined()
        guard !ended else { return }
        ended = true
        failAll(error)
        session.discardOutput()
        runCompletions()
    }

    // MARK: Internals

    private var closedReason: String {
        if ended { return "the connection ended" }
        if failed || session.aborted { return "it failed" }
        if goawayReceived { return "the server sent GOAWAY" }
        return "its stream ids are used up"
    }

    /// Pulls frames from nghttp2 into the output buffer until it has none or enough is queued.
    private func flushOutput() {
        guard !ended else { return }
        let error = session.flushOutput { produced in
            // nghttp2 reports a frame as sent inside the call that returns its last bytes.
            for stream in headersJustSent { stream.headersEnd = produced }
            headersJustSent.removeAll(keepingCapacity: true)
        }
        if let error {
            failAll(ClientError(.protocolError, "nghttp2 could not produce output: \(nghttp2ErrorText(error))",
                                requestMaybeSent: true))
        }
    }

    /// A fatal error from `mem_recv`: every request in flight fails, GOAWAY goes out.
    private func fail(_ code: Int32) {
        failed = true
        failAll(ClientError(.protocolError, "the server broke the HTTP/2 protocol: \(nghttp2ErrorText(code))", requestMaybeSent: true))
        session.terminate(afterReceiveError: code)
    }

    /// Fails every request not completed yet; one whose HEADERS the connection never took is
    /// marked unsent (safe to retry).
    private func failAll(_ error: ClientError) {
        for id in streams.keys.sorted() {
            guard let stream = streams[id] else { continue }
            var e = error
            if !mayHaveReachedServer(stream) { e.requestMaybeSent = false }
            complete(stream, .failure(e))
        }
    }

    private func mayHaveReachedServer(_ stream: Stream) -> Bool {
        guard let end = stream.headersEnd else { return false }
        return session.drained >= end
    }

    /// Completes a request once; later calls for the same stream do nothing.
    private func complete(_ stream: Stream, _ result: Result<ClientResponse, ClientError>) {
        guard let completion = stream.completion else { return }
        stream.completion = nil
        stream.response = []
        stream.headers = []
        pendingRequests -= 1
        assert(pendingRequests >= 0)
        finished.append((completion, result))
    }

    private func runCompletions() {
        while !finished.isEmpty {
            let batch = finished
            finished = []
            for (completion, result) in batch { completion(result) }
        }
    }

    /// Fails the request and resets its stream (the response is over a limit).
    private func refuse(_ stream: Stream, _ message: String) {
        complete(stream, .failure(ClientError(.protocolError, message, requestMaybeSent: true)))
        session.resetStream(stream.id, errorCode: NGHTTP2_CANCEL.rawValue)
    }

    // MARK: Session callbacks (NGHTTP2SessionOwner), inside mem_recv / mem_send

    func header(_ frame: NGHTTP2Frame, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>)
        -> NGHTTP2HeaderVerdict {
        let streamID = frame.streamID
        guard let stream = streams[streamID], stream.completion != nil else { return .accept }
        // Trailers (a HEADERS block after the final response's) are ignored.
        if stream.headersComplete { return .accept }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > Self.maxResponseHeaderBytes {
            refuse(stream, "the response header block on stream \(streamID) exceeds \(Self.maxResponseHeaderBytes) bytes")
            return .accept
        }
        if name.first == UInt8(ascii: ":") {
            if String(decoding: name, as: UTF8.self) == ":status" {
                stream.status = Int(String(decoding: value, as: UTF8.self))
            }
            return .accept
        }
        stream.headers.append((name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
        return .accept
    }

    func frameReceived(_ frame: NGHTTP2Frame) {
        switch frame.type {
        case nghttp2FrameHeaders:
            headersReceived(streamID: frame.streamID, endStream: frame.endsStream)
        case nghttp2FrameData:
            if frame.endsStream, let stream = streams[frame.streamID] { endOfStream(stream) }
        case nghttp2FrameRSTStream:
            streams[frame.streamID]?.peerReset = frame.resetErrorCode
        case nghttp2FrameGoaway:
            goaway(lastStreamID: frame.goawayLastStreamID, errorCode: frame.goawayErrorCode)
        default:
            break
        }
    }

    private func headersReceived(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID], stream.completion != nil else { return }
        if let status = stream.status, !stream.headersComplete {
            if (100..<200).contains(status) {
                // An interim answer (100 Continue): the final one follows.
                stream.status = nil
                stream.headers = []
                stream.headerBytes = 0
            } else {
                stream.headersComplete = true
                if !stream.isHead, let declared = stream.headers.first(where: { $0.name == "content-length" }).flatMap({ Int($0.value) }) {
                    guard declared <= configuration.maxResponseBytes else {
                        refuse(stream, "the response on stream \(streamID) declares \(declared) bytes, over the limit of \(configuration.maxResponseBytes)")
                        return
                    }
                    stream.response.reserveCapacity(declared)
                }
            }
        }
        if endStream { endOfStream(stream) }
    }

    func data(streamID: Int32, _ chunk: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], stream.completion != nil else { return }
        if stream.response.count + chunk.count > configuration.maxResponseBytes {
            refuse(stream, "the response body on stream \(streamID) exceeds the limit of \(configuration.maxResponseBytes) bytes")
            return
        }
        stream.response.append(contentsOf: chunk)
    }

    /// END_STREAM from the server: the response is complete.
    private func endOfStream(_ stream: Stream) {
        guard stream.completion != nil else { return }
        guard let status = stream.status, stream.headersComplete else {
            complete(stream, .failure(ClientError(.protocolError, "stream \(stream.id) ended without a final response",
                                                  requestMaybeSent: true)))
            return
        }
        let response = ClientResponse(status: status, headers: HTTPHeaders(stream.headers), body: stream.response)
        complete(stream, .success(response))
        // The server answered before taking the whole body: stop sending it.
        if nghttp2_session_get_stream_local_close(session.raw, stream.id) == 0 {
            session.resetStream(stream.id, errorCode: NGHTTP2_CANCEL.rawValue)
        }
    }

    private func goaway(lastStreamID: Int32, errorCode: UInt32) {
        goawayReceived = true
        // Streams above last_stream_id were not and will not be processed: safe to retry.
        // nghttp2 closes (or never opens) them right after this callback.
        for id in streams.keys.sorted() where id > lastStreamID {
            guard let stream = streams.removeValue(forKey: id) else { continue }
            complete(stream, .failure(ClientError(
                .connectionClosed, "the server sent GOAWAY (\(http2ErrorCodeText(errorCode))) before processing stream \(id)",
                requestMaybeSent: false)))
        }
    }

    func frameSent(_ frame: NGHTTP2Frame) {
        switch frame.type {
        case nghttp2FrameGoaway:
            // nghttp2 sent GOAWAY with an error: it found a connection error in what the server
            // sent (it does so inside `mem_recv` without failing it). Nothing more will be read.
            let errorCode = frame.goawayErrorCode
            guard errorCode != NGHTTP2_NO_ERROR.rawValue, !failed else { return }
            failed = true
            failAll(ClientError(.protocolError, "the server broke the HTTP/2 protocol; the connection ends with GOAWAY (\(http2ErrorCodeText(errorCode)))",
                                requestMaybeSent: true))
        case nghttp2FrameHeaders:
            guard let stream = streams[frame.streamID], !stream.headersSent else { return }
            stream.headersSent = true
            headersJustSent.append(stream)
        case nghttp2FrameRSTStream:
            guard let stream = streams[frame.streamID], stream.localReset == nil else { return }
            stream.localReset = frame.resetErrorCode
        default:
            break
        }
    }

    func frameNotSent(_ frame: NGHTTP2Frame, libError: Int32) {
        // Only a request's HEADERS matter: the stream was never opened.
        let streamID = frame.streamID
        guard frame.type == nghttp2FrameHeaders, let stream = streams[streamID], !stream.headersSent else { return }
        streams[streamID] = nil
        complete(stream, .failure(ClientError(.connectionClosed, "the request was not sent: \(nghttp2ErrorText(libError))",
                                              requestMaybeSent: false)))
    }

    func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        guard stream.completion != nil else { return }
        let refused = NGHTTP2_REFUSED_STREAM.rawValue
        if let code = stream.peerReset {
            // REFUSED_STREAM promises the request was not processed (RFC 9113 §8.7).
            complete(stream, .failure(ClientError(
                .connectionClosed, "the server reset stream \(streamID) (\(http2ErrorCodeText(code)))",
                requestMaybeSent: code != refused)))
        } else if let code = stream.localReset, code != NGHTTP2_NO_ERROR.rawValue {
            complete(stream, .failure(ClientError(
                .protocolError, "the response on stream \(streamID) broke HTTP/2 rules (reset with \(http2ErrorCodeText(code)))",
                requestMaybeSent: true)))
        } else {
            complete(stream, .failure(ClientError(
                .connectionClosed, "stream \(streamID) closed before its response was complete (\(http2ErrorCodeText(errorCode)))",
                requestMaybeSent: mayHaveReachedServer(stream))))
        }
    }

    /// The data provider of a request body (called inside `mem_send`).
    func readBody(streamID: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int,
                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        return stream.body.withUnsafeBufferPointer {
            nghttp2CopyBody($0, offset: &stream.bodyOffset, into: buf, length: length, flags: flags)
        }
    }
}

extension NGHTTP2Session.Callbacks {
    /// The client's table: each entry forwards to HTTP2ClientEngine (see NGHTTP2Callbacks.swift).
    static var client: Self {
        Self(beginHeaders: nil,
             header: { NGHTTP2Forward.header(HTTP2ClientEngine.self, $0, $1, $2, $3, $4, $5, $7) },
             dataChunk: { NGHTTP2Forward.data(HTTP2ClientEngine.self, $2, $3, $4, $5) },
             frameRecv: { NGHTTP2Forward.frameReceived(HTTP2ClientEngine.self, $1, $2) },
             frameSend: { NGHTTP2Forward.frameSent(HTTP2ClientEngine.self, $1, $2) },
             frameNotSend: { NGHTTP2Forward.frameNotSent(HTTP2ClientEngine.self, $1, $2, $3) },
             streamClose: { NGHTTP2Forward.streamClosed(HTTP2ClientEngine.self, $1, $2, $3) },
             readBody: { NGHTTP2Forward.readBody(HTTP2ClientEngine.self, $1, $2, $3, $4, $6) })
    }
}
