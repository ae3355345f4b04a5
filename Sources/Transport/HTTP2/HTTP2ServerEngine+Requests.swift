import Basics
// Request assembly: what the C callbacks (HTTP2ServerCallbacks.swift) deliver inside `mem_recv`
// becomes stream state here — header blocks checked against the limits as they are decoded,
// bodies growing within the connection's and the server's budgets — and complete requests go
// to the handler once `mem_recv` has returned (`dispatchCompleted`).

extension HTTP2ServerEngine {
    /// First body buffer of a stream (or its declared length if smaller); it then doubles.
    /// 1 MiB so a typical trace batch is one exact allocation (see HTTP1Engine); reservations
    /// count against the server's BodyBudget, which bounds what many streams can hold.
    static let initialBodyCapacity = 1 << 20

    // MARK: Session callbacks (NGHTTP2SessionOwner), inside `mem_recv`

    /// A header block starts: request headers (a new stream) or trailers.
    func beginHeaders(_ frame: NGHTTP2Frame) {
        guard frame.type == nghttp2FrameHeaders else { return }
        let streamID = frame.streamID
        if let stream = streams[streamID] {
            stream.blockFields = 0
            stream.blockBytes = 0
            return
        }
        guard frame.isRequestHeaders else { return }
        streams[streamID] = Stream(id: streamID)
        counters.streamsOpened()
        lastProgressNanos = now
    }

    /// Every header field nghttp2 decodes comes through here, trailers included (counted
    /// against the limits, otherwise ignored). A block just over a limit gets 431 when it ends;
    /// past twice the limits, trailers past them, or over the per-connection rate, the
    /// connection ends.
    func header(_ frame: NGHTTP2Frame, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>)
        -> NGHTTP2HeaderVerdict {
        let streamID = frame.streamID
        let trailer = !frame.isRequestHeaders
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
            // hostile, and trailers over the limits cannot be answered (nghttp2 marks the stream
            // closing as soon as we return): the connection ends (GOAWAY ENHANCE_YOUR_CALM).
            // Resetting only the stream is not enough: nghttp2 must still decode the rest of the
            // block to keep its HPACK table, without calling back, so a block of 16,000
            // references to one 4 KB entry (20 KB on the wire, 64 MB decoded) would cost the
            // loop ~50 ms, uncounted.
            if trailer || stream.blockBytes > 2 * configuration.maxHeaderListBytes
                || stream.blockFields > 2 * configuration.maxHeaderFields {
                if stream.phase == .receiving {
                    releaseReservation(stream)
                    stream.body = []
                    stream.headers = []
                    stream.phase = .answered
                }
                return .goaway
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

    func frameReceived(_ frame: NGHTTP2Frame) {
        switch frame.type {
        case nghttp2FrameHeaders:
            if frame.isRequestHeaders {
                headersComplete(streamID: frame.streamID, endStream: frame.endsStream)
            } else if frame.endsStream {
                endOfStream(streamID: frame.streamID)  // trailers end the request
            }
        case nghttp2FrameData:
            if frame.endsStream { endOfStream(streamID: frame.streamID) }
        default:
            break
        }
    }

    private func headersComplete(streamID: Int32, endStream: Bool) {
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
            // Nothing left for a body: refuse before the peer sends one, and time out the
            // oldest stalled body (if one stalled long enough) so a retry finds room.
            bodyBudget.abortOldestStalled(now: Clock.monotonicNanos())
            refuseForBudget(stream)
        } else if stream.expectsContinue {
            stream.continueSent = true
            sendContinue(streamID)
        }
    }

    /// An interim `100` HEADERS frame, so a peer that sent `expect: 100-continue` goes on.
    private func sendContinue(_ streamID: Int32) {
        var headers = NGHTTP2HeaderList()
        headers.append(":status", "100")
        _ = session.submitHeaders(streamID: streamID, &headers)
    }

    func data(streamID: Int32, _ chunk: UnsafeBufferPointer<UInt8>) {
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
        if let h = stream.holder {
            h.progressed(now: Clock.monotonicNanos())
        } else if stream.lastDataReceive != 0 && stream.lastDataReceive != receives {
            registerStalledBodyAbort(stream)
        }
        stream.lastDataReceive = receives
    }

    /// The body spans reads: let a full body budget time it out if it stalls (408 + reset).
    private func registerStalledBodyAbort(_ stream: Stream) {
        let ref = self.ref, queue = self.queue, id = stream.id
        stream.holder = bodyBudget.register(now: Clock.monotonicNanos()) { holder in
            queue.async { ref.engine?.stalledBodyAborted(streamID: id, holder) }
        }
    }

    /// The body budget chose this stream's body as the oldest stalled one.
    private func stalledBodyAborted(streamID: Int32, _ holder: BodyBudget.Holder) {
        session.assertConfined()
        // Completed, refused or closed meanwhile: nothing to do.
        guard let stream = streams[streamID], stream.holder === holder, stream.phase == .receiving else { return }
        stream.holder = nil  // the budget unregistered it
        refuse(stream, .error(408, code: "request_timeout",
                              message: "the request body made no progress while the server's body budget was full"))
        flushOutput()
        context?.outputAvailable()
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

    private func endOfStream(streamID: Int32) {
        guard let stream = streams[streamID] else { return }
        stream.remoteClosed = true
        if stream.phase == .receiving { completed.append(streamID) }
    }

    func streamClosed(streamID: Int32, errorCode: UInt32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        counters.streamsClosed()
        releaseReservation(stream)
        if stream.phase == .awaitingAnswer { awaitingAnswers -= 1 }
        assert(awaitingAnswers >= 0 && bufferedBodyBytes >= 0)
        // A dictionary keeps its storage after removals; after a burst, let it go.
        if streams.isEmpty, streams.capacity > 64 { streams = [:] }
    }

    // MARK: Budgets and dispatch

    /// Gives a stream's body reservation back to the connection's and the server's budgets.
    func releaseReservation(_ stream: Stream) {
        if let h = stream.holder {
            bodyBudget.unregister(h)
            stream.holder = nil
        }
        guard stream.reserved > 0 else { return }
        bufferedBodyBytes -= stream.reserved
        bodyBudget.release(stream.reserved)
        stream.reserved = 0
    }

    /// Hands the requests completed during the last `mem_recv` to the handler.
    func dispatchCompleted() {
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
                                      remoteAddress: remoteAddress, listener: listener, peer: peer)
            dispatch(stream, request: request)
        }
    }
}
