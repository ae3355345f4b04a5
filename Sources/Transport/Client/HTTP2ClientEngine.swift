// Over 500 lines: one nghttp2 client session — its engine state and the file-private C callbacks
// that must recover this type from user_data (the server's callbacks have the same shape for
// their own type). Shared constants and error texts: HTTP2/NGHTTP2Support.swift.
private import CNghttp2

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
/// One instance owns one `nghttp2_session` and is used only on its connection's queue.
package final class HTTP2ClientEngine: ClientEngine {
    package typealias Completion = @Sendable (Result<ClientResponse, ClientError>) -> Void

    /// One request stream, kept until nghttp2 closes the stream (the body may still be going
    /// out after the response is complete) or until GOAWAY says the server will not read it.
    fileprivate final class Stream {
        let id: Int32
        /// Nil once the request has completed.
        var completion: Completion?
        let isHead: Bool
        let body: [UInt8]
        var bodyOffset = 0
        /// nghttp2 serialized the HEADERS frame (into `pending`).
        var headersSent = false
        /// Output offset (in `produced` terms) just past the HEADERS frame: once the connection
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

    private var session: OpaquePointer!
    private let configuration: HTTPClientConfiguration

    fileprivate var streams: [Int32: Stream] = [:]
    /// Requests whose completion has not run (`inFlight`).
    private var pendingRequests = 0
    /// Completions ready to run once nghttp2 has returned.
    private var finished: [(Completion, Result<ClientResponse, ClientError>)] = []

    private var pending: [UInt8] = []
    private var pendingStart = 0
    /// Bytes nghttp2 has produced / the connection has taken, since the start.
    private var produced = 0
    private var drained = 0
    /// Streams whose HEADERS went out in the `mem_send` call being processed.
    fileprivate var headersJustSent: [Stream] = []

    /// The server sent GOAWAY: no new streams; the ones it accepted still finish.
    private var goawayReceived = false
    /// Stream IDs are used up: finish what is in flight, then close.
    private var streamIDsExhausted = false
    /// A fatal error: in-flight requests are failed, GOAWAY is (being) sent.
    private var failed = false
    /// Not even GOAWAY could be produced.
    private var abortNow = false
    /// `connectionEnded` was called: the engine is finished.
    private var ended = false

    /// A client session whose preface (magic, SETTINGS with the configured stream window and
    /// push disabled, connection WINDOW_UPDATE) is pending output as soon as this returns.
    package init(configuration: HTTPClientConfiguration) {
        var c = configuration
        c.maxConcurrentStreams = min(max(c.maxConcurrentStreams, 1), Int(Int32.max))
        c.maxResponseBytes = max(c.maxResponseBytes, 0)
        c.http2StreamWindow = min(max(c.http2StreamWindow, 1), Int(Int32.max))
        c.http2ConnectionWindow = min(max(c.http2ConnectionWindow, 65_535), Int(Int32.max))
        self.configuration = c
        startSession()
        flushOutput()
    }

    deinit {
        // The connection should have called `connectionEnded`; keep "exactly once" regardless.
        failAll(ClientError(.connectionClosed, "the HTTP/2 connection was released with the request in flight",
                            requestMaybeSent: true))
        nghttp2_session_del(session)
        runCompletions()
    }

    private func startSession() {
        var callbacks: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&callbacks) == 0, "nghttp2: out of memory")
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSend)
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, onFrameNotSend)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        var s: OpaquePointer?
        precondition(nghttp2_session_client_new(&s, callbacks, userData) == 0 && s != nil, "nghttp2: out of memory")
        session = s

        var settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                   value: UInt32(configuration.http2StreamWindow)),
        ]
        let rv = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        precondition(rv == 0, "nghttp2_submit_settings: \(nghttp2ErrorText(rv))")
        // HTTP/2 starts the connection window at 64 KiB whatever SETTINGS say; raise it now.
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                  Int32(configuration.http2ConnectionWindow))
    }

    // MARK: ClientEngine

    package func enqueue(_ request: ClientRequest, authority: String, completion: @escaping Completion) {
        defer { runCompletions() }
        if ended || failed || abortNow || goawayReceived || streamIDsExhausted {
            finished.append((completion, .failure(ClientError(
                .connectionClosed, "the HTTP/2 connection takes no new requests (\(closedReason))", requestMaybeSent: false))))
            return
        }
        let isHead = request.method == "HEAD"
        var fields: [(String, String)] = [
            (":method", request.method), (":scheme", "http"), (":authority", authority),
            (":path", request.path.isEmpty ? "/" : request.path),
        ]
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
                fields.append((lower, value))
            }
        }
        if !request.body.isEmpty || !(request.method == "GET" || isHead) {
            fields.append(("content-length", String(request.body.count)))
        }

        // Names and values laid out in one buffer; nghttp2 copies them during submit.
        var storage: [UInt8] = []
        var offsets: [(name: Int, nameLen: Int, value: Int, valueLen: Int)] = []
        for (name, value) in fields {
            let n = storage.count
            storage.append(contentsOf: name.utf8)
            let v = storage.count
            storage.append(contentsOf: value.utf8)
            offsets.append((n, v - n, v, storage.count - v))
        }
        let hasBody = !request.body.isEmpty
        let id: Int32 = storage.withUnsafeMutableBufferPointer { buf in
            let base = buf.baseAddress!
            var nva = offsets.map {
                nghttp2_nv(name: base + $0.name, value: base + $0.value, namelen: $0.nameLen, valuelen: $0.valueLen,
                           flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            if hasBody {
                // The read callback finds the body by stream id (see `readBody`).
                var provider = nghttp2_data_provider()
                provider.read_callback = readRequestBody
                return nghttp2_submit_request(session, nil, &nva, nva.count, &provider, nil)
            }
            return nghttp2_submit_request(session, nil, &nva, nva.count, nil, nil)
        }
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
        guard !ended, !failed, !abortNow, let base = bytes.baseAddress, bytes.count > 0 else { return state }
        let rv = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if rv < 0 {
            fail(Int32(truncatingIfNeeded: rv))
        }
        flushOutput()
        runCompletions()
        return state
    }

    package func drainOutput(into out: inout [UInt8], limit: Int) {
        defer { runCompletions() }
        if out.isEmpty, pendingStart == 0, !pending.isEmpty, pending.count <= limit {
            // The usual case: the two buffers trade places and keep their capacity.
            drained += pending.count
            swap(&out, &pending)
            flushOutput()
            return
        }
        let n = min(limit, pending.count - pendingStart)
        if n > 0 {
            out.append(contentsOf: pending[pendingStart..<(pendingStart + n)])
            pendingStart += n
            drained += n
        }
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        } else if pendingStart >= 1 << 16, pendingStart * 2 >= pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
        flushOutput()
    }

    package var hasPendingOutput: Bool { !ended && pending.count > pendingStart }

    /// Streams left under min(server's SETTINGS_MAX_CONCURRENT_STREAMS, our
    /// `maxConcurrentStreams`). Streams count until nghttp2 closes them, not only until their
    /// response completed, so nghttp2 never has to queue a request behind the server's limit.
    /// Before the server's SETTINGS arrive nghttp2 assumes 100; a lower server limit then shows
    /// up as REFUSED_STREAM, which fails the request as not sent (safe to retry).
    package var capacity: Int {
        guard !ended, !failed, !abortNow, !goawayReceived, !streamIDsExhausted,
              nghttp2_session_check_request_allowed(session) != 0 else { return 0 }
        let remote = Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
        let next = Int(nghttp2_session_get_next_stream_id(session))
        let idsLeft = next > Int(Int32.max) ? 0 : (Int(Int32.max) - next) / 2 + 1
        return max(0, min(min(remote, configuration.maxConcurrentStreams) - streams.count, idsLeft))
    }

    package var inFlight: Int { pendingRequests }

    package var state: ClientEngineState {
        if ended || abortNow { return .closeNow }
        if failed { return .closeAfterFlush }
        if (goawayReceived || streamIDsExhausted) && pendingRequests == 0 { return .closeAfterFlush }
        // Both off: GOAWAY went both ways and no stream is active.
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 { return .closeAfterFlush }
        return .open
    }

    package func connectionEnded(_ error: ClientError) {
        guard !ended else { return }
        ended = true
        failAll(error)
        pending = []
        pendingStart = 0
        runCompletions()
    }

    // MARK: Internals

    private var closedReason: String {
        if ended { return "the connection ended" }
        if failed || abortNow { return "it failed" }
        if goawayReceived { return "the server sent GOAWAY" }
        return "its stream ids are used up"
    }

    /// Pulls frames from nghttp2 into `pending` until it has none or enough is queued.
    private func flushOutput() {
        guard !abortNow, !ended else { return }
        while pending.count - pendingStart < Self.maxPendingOutputBytes {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                abortNow = true
                failAll(ClientError(.protocolError, "nghttp2 could not produce output: \(nghttp2ErrorText(Int32(truncatingIfNeeded: n)))",
                                    requestMaybeSent: true))
                return
            }
            guard n > 0, let data else { return }
            pending.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
            produced += n
            // nghttp2 reports a frame as sent inside the call that returns its last bytes.
            for stream in headersJustSent { stream.headersEnd = produced }
            headersJustSent.removeAll(keepingCapacity: true)
        }
    }

    /// A fatal error from `mem_recv`: every request in flight fails, GOAWAY goes out.
    private func fail(_ code: Int32) {
        failed = true
        failAll(ClientError(.protocolError, "the server broke the HTTP/2 protocol: \(nghttp2ErrorText(code))", requestMaybeSent: true))
        let reason = code == NGHTTP2_ERR_NOMEM.rawValue || code == NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            ? NGHTTP2_INTERNAL_ERROR.rawValue : NGHTTP2_PROTOCOL_ERROR.rawValue
        if nghttp2_session_terminate_session(session, reason) != 0 { abortNow = true }
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

    fileprivate func mayHaveReachedServer(_ stream: Stream) -> Bool {
        guard let end = stream.headersEnd else { return false }
        return drained >= end
    }

    /// Completes a request once; later calls for the same stream do nothing.
    fileprivate func complete(_ stream: Stream, _ result: Result<ClientResponse, ClientError>) {
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
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_CANCEL.rawValue)
    }

    // MARK: Callback bodies (called from the C callbacks below, inside mem_recv / mem_send)

    fileprivate func header(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], stream.completion != nil else { return }
        // Trailers (a HEADERS block after the final response's) are ignored.
        if stream.headersComplete { return }
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > Self.maxResponseHeaderBytes {
            refuse(stream, "the response header block on stream \(streamID) exceeds \(Self.maxResponseHeaderBytes) bytes")
            return
        }
        if name.first == UInt8(ascii: ":") {
            if String(decoding: name, as: UTF8.self) == ":status" {
                stream.status = Int(String(decoding: value, as: UTF8.self))
            }
            return
        }
        stream.headers.append((name: String(decoding: name, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
    }

    fileprivate func headersReceived(streamID: Int32, endStream: Bool) {
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

    fileprivate func data(streamID: Int32, _ chunk: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID], stream.completion != nil else { return }
        if stream.response.count + chunk.count > configuration.maxResponseBytes {
            refuse(stream, "the response body on stream \(streamID) exceeds the limit of \(configuration.maxResponseBytes) bytes")
            return
        }
        stream.response.append(contentsOf: chunk)
    }

    fileprivate func dataReceived(streamID: Int32, endStream: Bool) {
        guard endStream, let stream = streams[streamID] else { return }
        endOfStream(stream)
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
        if nghttp2_session_get_stream_local_close(session, stream.id) == 0 {
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_CANCEL.rawValue)
        }
    }

    fileprivate func resetReceived(streamID: Int32, errorCode: UInt32) {
        streams[streamID]?.peerReset = errorCode
    }

    fileprivate func goaway(lastStreamID: Int32, errorCode: UInt32) {
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

    /// nghttp2 sent GOAWAY with an error: it found a connection error in what the server sent
    /// (it does so inside `mem_recv` without failing it). Nothing more will be read.
    fileprivate func sentGoaway(errorCode: UInt32) {
        guard errorCode != NGHTTP2_NO_ERROR.rawValue, !failed else { return }
        failed = true
        failAll(ClientError(.protocolError, "the server broke the HTTP/2 protocol; the connection ends with GOAWAY (\(http2ErrorCodeText(errorCode)))",
                            requestMaybeSent: true))
    }

    fileprivate func sent(streamID: Int32, type: UInt8, errorCode: UInt32) {
        guard let stream = streams[streamID] else { return }
        if type == nghttp2FrameHeaders, !stream.headersSent {
            stream.headersSent = true
            headersJustSent.append(stream)
        }
        if type == nghttp2FrameRSTStream, stream.localReset == nil { stream.localReset = errorCode }
    }

    fileprivate func notSent(streamID: Int32, type: UInt8, libError: Int32) {
        // Only a request's HEADERS matter: the stream was never opened.
        guard type == nghttp2FrameHeaders, let stream = streams[streamID], !stream.headersSent else { return }
        streams[streamID] = nil
        complete(stream, .failure(ClientError(.connectionClosed, "the request was not sent: \(nghttp2ErrorText(libError))",
                                              requestMaybeSent: false)))
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
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

    fileprivate func readBody(streamID: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int,
                              flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n = min(length, stream.body.count - stream.bodyOffset)
        if n > 0 {
            stream.body.withUnsafeBufferPointer {
                buf.update(from: $0.baseAddress! + stream.bodyOffset, count: n)
            }
            stream.bodyOffset += n
        }
        if stream.bodyOffset == stream.body.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return n
    }
}

// MARK: C callbacks: recover the engine from user_data and forward.

private func engine(_ userData: UnsafeMutableRawPointer?) -> HTTP2ClientEngine? {
    guard let userData else { return nil }
    return Unmanaged<HTTP2ClientEngine>.fromOpaque(userData).takeUnretainedValue()
}


private func onHeader(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                      _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
                      _ value: UnsafePointer<UInt8>?, _ valueLength: Int,
                      _ flags: UInt8, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    guard frame.pointee.hd.type == nghttp2FrameHeaders else { return 0 }
    engine.header(streamID: frame.pointee.hd.stream_id,
                  name: UnsafeBufferPointer(start: name, count: name == nil ? 0 : nameLength),
                  value: UnsafeBufferPointer(start: value, count: value == nil ? 0 : valueLength))
    return 0
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
        engine.headersReceived(streamID: hd.stream_id, endStream: endStream)
    case nghttp2FrameData:
        engine.dataReceived(streamID: hd.stream_id, endStream: endStream)
    case nghttp2FrameRSTStream:
        engine.resetReceived(streamID: hd.stream_id, errorCode: frame.pointee.rst_stream.error_code)
    case nghttp2FrameGoaway:
        engine.goaway(lastStreamID: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code)
    default:
        break
    }
    return 0
}

private func onFrameSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?,
                         _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    let hd = frame.pointee.hd
    if hd.type == nghttp2FrameGoaway {
        engine.sentGoaway(errorCode: frame.pointee.goaway.error_code)
    } else if hd.type == nghttp2FrameHeaders || hd.type == nghttp2FrameRSTStream {
        engine.sent(streamID: hd.stream_id, type: hd.type,
                    errorCode: hd.type == nghttp2FrameRSTStream ? frame.pointee.rst_stream.error_code : 0)
    }
    return 0
}

private func onFrameNotSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ libError: Int32,
                            _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData), let frame else { return nghttp2CallbackFailure }
    engine.notSent(streamID: frame.pointee.hd.stream_id, type: frame.pointee.hd.type, libError: libError)
    return 0
}

private func onStreamClose(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32,
                           _ userData: UnsafeMutableRawPointer?) -> Int32 {
    guard let engine = engine(userData) else { return nghttp2CallbackFailure }
    engine.streamClosed(streamID: streamID, errorCode: errorCode)
    return 0
}

private func readRequestBody(_ session: OpaquePointer?, _ streamID: Int32, _ buf: UnsafeMutablePointer<UInt8>?,
                             _ length: Int, _ dataFlags: UnsafeMutablePointer<UInt32>?,
                             _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                             _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let engine = engine(userData), let buf, let dataFlags else { return Int(nghttp2CallbackFailure) }
    return engine.readBody(streamID: streamID, into: buf, length: length, flags: dataFlags)
}
