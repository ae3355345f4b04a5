import Dispatch
private import CNghttp2

// Answers: a request goes to the handler, whose answer hops back to the connection's queue and
// is submitted on its stream; requests refused before they are complete (limits, budgets) are
// answered here too. Response bodies go out through nghttp2's data provider (`readBody`).

extension HTTP2ServerEngine {
    func dispatch(_ stream: Stream, request: HTTPRequest) {
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
        session.assertConfined()
        // Reset by the peer meanwhile, or a second answer: nothing to send.
        guard let stream = streams[streamID], stream.phase == .awaitingAnswer else { return }
        awaitingAnswers -= 1
        assert(awaitingAnswers >= 0)
        submit(response, on: stream)
        flushOutput()
        context?.outputAvailable()
    }

    /// Answers before the request is complete (body or header block over the limit).
    func refuse(_ stream: Stream, _ response: HTTPResponse) {
        counters.answered(response.status)
        releaseReservation(stream)
        stream.body = []
        stream.headers = []
        stream.resetAfterAnswer = !stream.remoteClosed
        submit(response, on: stream)
    }

    /// The server-wide body budget is spent: refuse with REFUSED_STREAM (the peer may retry
    /// it elsewhere or later), or with 503 when a 100 already answered the headers.
    func refuseForBudget(_ stream: Stream) {
        if stream.continueSent {
            refuse(stream, .error(503, code: "server_busy",
                                  message: "the server holds too many unfinished request bodies; retry",
                                  headers: [("Retry-After", "1")]))
            return
        }
        counters.refusedStream()
        releaseReservation(stream)
        stream.body = []
        stream.headers = []
        stream.phase = .answered
        session.resetStream(stream.id, errorCode: NGHTTP2_REFUSED_STREAM.rawValue)
    }

    private func submit(_ response: HTTPResponse, on stream: Stream) {
        stream.phase = .answered
        let status = response.status
        let bodyAllowed = !(status == 204 || status == 304 || (100..<200).contains(status))
        let sendBody = bodyAllowed && stream.method != "HEAD" && !response.body.isEmpty

        var headers = NGHTTP2HeaderList()
        headers.append(":status", String(status))
        for (name, value) in response.headers {
            let lower = name.lowercased()
            switch lower {
            case "content-length", "date", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                continue
            default:
                if lower.hasPrefix(":") { continue }
                headers.append(lower, value)
            }
        }
        if bodyAllowed { headers.append("content-length", String(response.body.count)) }
        // The shared per-second "Date: …\r\n" line of the HTTP/1.1 side, without name and CRLF.
        let dateLine = HTTPDate.headerLine()
        if dateLine.count > 8 {
            headers.append(name: "date".utf8, value: dateLine[6..<(dateLine.count - 2)])
        }

        if sendBody {
            stream.response = response.body
            stream.responseOffset = 0
        }
        if session.submitResponse(streamID: stream.id, &headers, hasBody: sendBody) != 0 {
            // The stream cannot take a response (closed meanwhile): reset it rather than hang.
            session.resetStream(stream.id, errorCode: NGHTTP2_INTERNAL_ERROR.rawValue)
        }
    }

    // MARK: Session callbacks (NGHTTP2SessionOwner), inside `mem_send`

    /// A response's END_STREAM went out: a stream answered before its request was complete
    /// is reset now, so the peer stops sending the body.
    func frameSent(_ frame: NGHTTP2Frame) {
        guard frame.type == nghttp2FrameHeaders || frame.type == nghttp2FrameData, frame.endsStream else { return }
        let streamID = frame.streamID
        guard let stream = streams[streamID], stream.resetAfterAnswer else { return }
        stream.resetAfterAnswer = false
        if !stream.remoteClosed {
            session.resetStream(streamID, errorCode: NGHTTP2_NO_ERROR.rawValue)
        }
    }

    /// The data provider of a response body (called inside `mem_send`).
    func readBody(streamID: Int32, into buf: UnsafeMutablePointer<UInt8>, length: Int,
                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let n = stream.response.withUnsafeBufferPointer {
            nghttp2CopyBody($0, offset: &stream.responseOffset, into: buf, length: length, flags: flags)
        }
        if n > 0 { lastProgressNanos = clock() }
        if stream.responseOffset == stream.response.count {
            stream.response = []
            stream.responseOffset = 0
        }
        return n
    }
}

/// Carries the engine to the thread a handler answers on. It is only dereferenced after
/// hopping to the engine's queue (see `dispatch`), which is what makes the unchecked
/// Sendable sound; the reference is weak so a late answer after the connection closed is
/// simply dropped.
final class EngineRef: @unchecked Sendable {
    weak var engine: HTTP2ServerEngine?
    init(_ engine: HTTP2ServerEngine) { self.engine = engine }
}
