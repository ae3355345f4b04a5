import Dispatch
internal import CNghttp2

/// One `nghttp2_session` and the output it produces: the plumbing both HTTP/2 engines share.
/// `HTTP2ServerEngine` and `HTTP2ClientEngine` differ in their callbacks and settings; creating
/// the session, feeding it bytes, pulling frames into a buffer the connection drains, ending it
/// with GOAWAY and freeing it are done here, once.
///
/// ## Who owns what (the `Unmanaged` invariant)
/// - The engine (the *owner*) holds the only reference to its `NGHTTP2Session`, and the
///   session owns the `nghttp2_session *`: created in `init`, freed in `deinit`, nowhere else.
///   The wrapper never leaves its owner, so the C session lives exactly as long as the owner.
/// - nghttp2's `user_data` is the owner, passed *unretained* (`attach`). Retaining it would make
///   a cycle (owner → wrapper → C session → owner) that nothing breaks. `user_data` is set only
///   once the owner is fully initialized, and cleared before the C session is freed.
/// - libnghttp2 has no threads or timers: it calls back only from inside a call made on the
///   session (`mem_recv`, `mem_send` — which also runs data providers' read callbacks — and
///   `upgrade2`), and every such call is made by a method of the owner, whose caller holds a
///   strong reference for the duration. So while a callback runs, `user_data` points to a live
///   owner, and the callbacks recover it with `takeUnretainedValue()`: the pointer owns no
///   reference, so there is none to take over (`takeRetainedValue()` would over-release).
/// - The owner and this wrapper are confined to the connection's queue (`assertConfined()` at
///   the owner's entry points, checked in debug builds), so neither the callbacks nor this
///   type need a lock.
/// - Teardown: the owner's `deinit` does not call into the session; Swift releases the owner's
///   stored properties after its `deinit` body, which frees this wrapper, whose `deinit` first
///   clears `user_data`, then calls `nghttp2_session_del`. That frees streams, queued frames and
///   their data providers without calling any callback; if a future libnghttp2 did call one, it
///   would find `user_data == nil` and fail instead of touching a dead owner.
final class NGHTTP2Session {
    enum Role { case server, client }

    /// The C callbacks a session calls (nil: not registered). Each engine has its table
    /// (`.server`, `.client`): closure literals calling `NGHTTP2Forward` (NGHTTP2Callbacks.swift),
    /// which recovers the engine with `owner(_:as:)`.
    struct Callbacks {
        var beginHeaders: nghttp2_on_begin_headers_callback?
        var header: nghttp2_on_header_callback?
        var dataChunk: nghttp2_on_data_chunk_recv_callback?
        var frameRecv: nghttp2_on_frame_recv_callback?
        var frameSend: nghttp2_on_frame_send_callback?
        var frameNotSend: nghttp2_on_frame_not_send_callback?
        var streamClose: nghttp2_on_stream_close_callback?
        /// The read callback of the data provider `submit` attaches when a message has a body.
        var readBody: nghttp2_data_source_read_callback?
    }

    /// The `nghttp2_session *`, for the calls only one side makes (submitting requests, GOAWAY
    /// with a last stream id, upgrade). Never freed or stored elsewhere.
    let raw: OpaquePointer
    /// The connection's queue: everything here runs on it.
    let queue: DispatchQueue
    private let readBody: nghttp2_data_source_read_callback?

    /// Frames produced and not yet taken by the connection, from `outputStart`.
    private var output: [UInt8] = []
    private var outputStart = 0
    /// Unsent output above which nghttp2 is not asked for more frames until some is drained.
    private let maxPendingOutputBytes: Int
    /// Output buffer capacity kept for reuse once everything is sent; more is freed.
    private let retainedOutputCapacity: Int
    /// Bytes nghttp2 has produced / the connection has taken, since the start.
    private(set) var produced = 0
    private(set) var drained = 0
    /// nghttp2 could not produce output or queue GOAWAY: nothing more can be sent; close now.
    private(set) var aborted = false

    /// Creates the session (without `user_data` until `attach`) and queues our SETTINGS and a
    /// connection WINDOW_UPDATE raising the connection window to `connectionWindow`.
    init(_ role: Role, queue: DispatchQueue, callbacks: Callbacks, settings: [nghttp2_settings_entry],
         connectionWindow: Int, maxPendingOutputBytes: Int, retainedOutputCapacity: Int = .max) {
        self.queue = queue
        self.readBody = callbacks.readBody
        self.maxPendingOutputBytes = maxPendingOutputBytes
        self.retainedOutputCapacity = retainedOutputCapacity

        var cbs: OpaquePointer?
        precondition(nghttp2_session_callbacks_new(&cbs) == 0, "nghttp2: out of memory")
        defer { nghttp2_session_callbacks_del(cbs) }
        if let f = callbacks.beginHeaders { nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, f) }
        if let f = callbacks.header { nghttp2_session_callbacks_set_on_header_callback(cbs, f) }
        if let f = callbacks.dataChunk { nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, f) }
        if let f = callbacks.frameRecv { nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, f) }
        if let f = callbacks.frameSend { nghttp2_session_callbacks_set_on_frame_send_callback(cbs, f) }
        if let f = callbacks.frameNotSend { nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, f) }
        if let f = callbacks.streamClose { nghttp2_session_callbacks_set_on_stream_close_callback(cbs, f) }

        var s: OpaquePointer?
        let rv = switch role {
        case .server: nghttp2_session_server_new(&s, cbs, nil)
        case .client: nghttp2_session_client_new(&s, cbs, nil)
        }
        guard rv == 0, let s else { preconditionFailure("nghttp2: out of memory") }
        raw = s

        var entries = settings
        let submitted = nghttp2_submit_settings(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        precondition(submitted == 0, "nghttp2_submit_settings: \(nghttp2ErrorText(submitted))")
        // HTTP/2 starts the connection window at 64 KiB whatever SETTINGS say; raise it now.
        _ = nghttp2_session_set_local_window_size(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(connectionWindow))
    }

    /// Makes `owner` the `user_data` every callback receives. Call once, at the end of the
    /// owner's initializer (it must be fully initialized: the next session call may call back).
    func attach<Owner: AnyObject>(_ owner: Owner) {
        nghttp2_session_set_user_data(raw, Unmanaged.passUnretained(owner).toOpaque())
    }

    /// The owner a callback was given as `user_data` (nil once the session is being freed).
    /// Unretained: see the type's comment for why the owner is alive while a callback runs.
    @inline(__always)
    static func owner<Owner: AnyObject>(_ userData: UnsafeMutableRawPointer?, as: Owner.Type) -> Owner? {
        guard let userData else { return nil }
        return Unmanaged<Owner>.fromOpaque(userData).takeUnretainedValue()
    }

    deinit {
        nghttp2_session_set_user_data(raw, nil)
        nghttp2_session_del(raw)
    }

    /// Debug builds trap when called off the connection's queue; release builds pay nothing
    /// (`assertOnQueue`). The engines call it at every entry point.
    @inline(__always)
    func assertConfined() {
        assertOnQueue(queue)
    }

    // MARK: Input

    /// Feeds bytes read from the peer (callbacks run inside). Returns nghttp2's error when the
    /// bytes broke the protocol or a callback failed; the caller then ends the session
    /// (`terminate(afterReceiveError:)`). Inlined: it is on every read.
    @inline(__always)
    func receive(_ bytes: UnsafeRawBufferPointer) -> Int32? {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
        let rv = nghttp2_session_mem_recv(raw, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        return rv < 0 ? Int32(truncatingIfNeeded: rv) : nil
    }

    /// nghttp2 still expects frames / has frames to send. Both false: GOAWAY went out or came
    /// in and no stream is active.
    var wantsRead: Bool { nghttp2_session_want_read(raw) != 0 }
    var wantsWrite: Bool { nghttp2_session_want_write(raw) != 0 }

    // MARK: Output

    /// Pulls frames from nghttp2 into the output buffer until it has none or
    /// `maxPendingOutputBytes` are queued. `afterEachCall` sees `produced` after each
    /// `mem_send` (nghttp2 reports a frame as sent inside the call that returns its last
    /// bytes). Returns nghttp2's error if it could not produce output; the session is then
    /// `aborted`.
    @discardableResult
    func flushOutput(afterEachCall: (_ produced: Int) -> Void = { _ in }) -> Int32? {
        guard !aborted else { return nil }
        while output.count - outputStart < maxPendingOutputBytes {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(raw, &data)
            if n < 0 {
                aborted = true
                return Int32(truncatingIfNeeded: n)
            }
            guard n > 0, let data else { return nil }
            output.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
            produced += n
            afterEachCall(produced)
        }
        return nil
    }

    /// Moves up to `limit` bytes of output to the end of `out` (call `flushOutput` after).
    func drainOutput(into out: inout [UInt8], limit: Int) {
        if out.isEmpty, outputStart == 0, !output.isEmpty, output.count <= limit {
            // The usual case: the two buffers trade places and keep their capacity.
            drained += output.count
            swap(&out, &output)
            return
        }
        let n = min(limit, output.count - outputStart)
        if n > 0 {
            out.append(contentsOf: output[outputStart..<(outputStart + n)])
            outputStart += n
            drained += n
        }
        if outputStart == output.count {
            // A backlog of a peer that read slowly need not stay allocated once sent.
            if output.capacity > retainedOutputCapacity { output = [] } else { output.removeAll(keepingCapacity: true) }
            outputStart = 0
        } else if outputStart >= 1 << 16, outputStart * 2 >= output.count {
            output.removeFirst(outputStart)
            outputStart = 0
        }
    }

    var pendingOutputBytes: Int { output.count - outputStart }
    var outputCapacity: Int { output.capacity }

    /// Drops unsent output (the connection is gone).
    func discardOutput() {
        output = []
        outputStart = 0
    }

    // MARK: Submitting

    /// Queues a request (client) on a new stream; with `hasBody`, its DATA comes from the
    /// `readBody` callback. Returns the stream id, or a negative nghttp2 error.
    func submitRequest(_ headers: inout NGHTTP2HeaderList, hasBody: Bool) -> Int32 {
        withDataProvider(hasBody) { provider in
            headers.withNameValues { nghttp2_submit_request(raw, nil, $0, $1, provider, nil) }
        }
    }

    /// Queues the response on `streamID` (server), with DATA from `readBody` if `hasBody`.
    /// Returns 0 or a negative nghttp2 error.
    func submitResponse(streamID: Int32, _ headers: inout NGHTTP2HeaderList, hasBody: Bool) -> Int32 {
        withDataProvider(hasBody) { provider in
            headers.withNameValues { nghttp2_submit_response(raw, streamID, $0, $1, provider) }
        }
    }

    /// Queues a HEADERS frame that does not end the stream (an interim response).
    func submitHeaders(streamID: Int32, _ headers: inout NGHTTP2HeaderList) -> Int32 {
        headers.withNameValues {
            nghttp2_submit_headers(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, nil, $0, $1, nil)
        }
    }

    /// The read callback finds the body by stream id, so the provider carries no source.
    private func withDataProvider<R>(_ hasBody: Bool, _ body: (UnsafePointer<nghttp2_data_provider>?) -> R) -> R {
        guard hasBody else { return body(nil) }
        var provider = nghttp2_data_provider()
        provider.read_callback = readBody
        return withUnsafePointer(to: &provider) { body($0) }
    }

    func resetStream(_ streamID: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
    }

    // MARK: Ending

    /// Queues GOAWAY with `errorCode` after the last stream nghttp2 processed; once it is sent
    /// nghttp2 wants neither to read nor to write. If even that fails the session is `aborted`.
    func terminate(_ errorCode: UInt32) {
        if nghttp2_session_terminate_session(raw, errorCode) != 0 { aborted = true }
    }

    /// `receive` failed with `code`: GOAWAY with INTERNAL_ERROR when the failure was ours (out
    /// of memory, a callback), ENHANCE_YOUR_CALM for a flood of frames to acknowledge,
    /// PROTOCOL_ERROR for anything else the peer did.
    func terminate(afterReceiveError code: Int32) {
        switch code {
        case NGHTTP2_ERR_NOMEM.rawValue, NGHTTP2_ERR_CALLBACK_FAILURE.rawValue:
            terminate(NGHTTP2_INTERNAL_ERROR.rawValue)
        case NGHTTP2_ERR_FLOODED.rawValue: // PING/SETTINGS ACKs the peer does not read
            terminate(NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        default:
            terminate(NGHTTP2_PROTOCOL_ERROR.rawValue)
        }
    }

    /// Graceful GOAWAY (NO_ERROR): streams up to the last one processed still finish, newer
    /// ones are refused; the session stays open for them.
    func shutdownGracefully() {
        let last = nghttp2_session_get_last_proc_stream_id(raw)
        if nghttp2_submit_goaway(raw, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0) != 0 {
            aborted = true
        }
    }
}
