import Dispatch
import TLS

/// Which part of a request the engine waits for; the connection picks its timeout from it.
package enum ReadPhase: Equatable, Sendable {
    /// No request in progress and nothing in flight: the idle timeout applies.
    case idle
    /// Part of a request head arrived: the header-read timeout applies.
    case head
    /// A body is being read: the body-read timeout applies.
    case body
    /// Waiting on handlers or output; no read timeout.
    case busy
}

/// Sans-IO HTTP/1.1 server engine: request heads, `Content-Length` and chunked bodies,
/// keep-alive, pipelining (responses leave in request order even when handlers answer out of
/// order from other threads), `Expect: 100-continue`, HTTP/1.0, HEAD and `Upgrade: h2c`.
///
/// It glues three pieces: `HTTP1RequestParser` (framing, bytes → requests), the handler, and
/// `HTTP1ResponseQueue` + `HTTP1ResponseSerializer` (answers in order → bytes), and applies the
/// flow-control limits between them (pipelined requests, unsent output, requests per turn).
///
/// Protocol errors are answered with a JSON `HTTPResponse.error` and `Connection: close`,
/// after the responses of earlier requests. Used only on `context.queue` (asserted in debug
/// builds at the entry points).
package final class HTTP1Engine: ProtocolEngine, HTTP1RequestParserDelegate, @unchecked Sendable {
    private weak var context: (any ConnectionContext)?
    private let handler: any HTTPHandler
    private let config: HTTPServerConfiguration
    private let queue: DispatchQueue
    private let token: QueueToken
    private let remoteAddress: String
    private let listener: String
    private let peer: TLSPeerIdentity?
    private let parser: HTTP1RequestParser

    /// See `HTTP1RequestParser.initialBodyReservation`.
    static let initialBodyReservation = HTTP1RequestParser.initialBodyReservation
    /// Buffers (input, output) keep at most this much capacity once drained, so a connection
    /// that once carried a large request does not hold the memory while idle.
    static let retainedBufferLimit = 256 * 1024

    // MARK: flow control

    private var parsePaused = false
    /// Requests started in this turn of the loop, and whether parsing stopped at
    /// `maxRequestsPerTurn` (then only `beginTurn` resumes it, never output draining).
    private var turnRequests = 0
    private var yielded = false
    /// The peer is not taking our output (`outputBacklogChanged`).
    private var peerBacklogged = false

    // MARK: output

    private var responses = HTTP1ResponseQueue()
    private var out = ByteQueue(retainedCapacity: HTTP1Engine.retainedBufferLimit)
    /// A `Connection: close` response was serialized, or the peer left: no more requests.
    private var closing = false
    private var shuttingDown = false
    private var upgradeReady = false
    private var upgradeRequest: HTTPRequest?
    private var upgradeSettings: [UInt8] = []

    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTPServerConfiguration,
                 allowUpgrade: Bool = true) {
        self.context = context
        self.handler = handler
        self.config = configuration
        self.queue = context.queue
        self.token = QueueToken.of(context.queue)
        self.remoteAddress = context.remoteAddress
        self.listener = context.listener
        self.peer = context.peerIdentity
        self.parser = HTTP1RequestParser(config: configuration, budget: context.bodyBudget,
                                         allowUpgrade: allowUpgrade && configuration.allowH2CUpgrade && configuration.enableH2C)
        parser.delegate = self
        let queue = self.queue
        parser.onStalledBodyAborted = { [weak self] holder in
            guard let engine = self else { return }
            queue.async { engine.stalledBodyAborted(holder) }
        }
    }

    // MARK: ProtocolEngine

    package func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        assertOnQueue(queue)
        guard bytes.count > 0, !parser.isStopped else { return disposition }
        if parser.isUpgrading {
            parser.buffer(bytes)
        } else if !parser.hasBufferedInput && !parsePaused {
            parser.parse(bytes)
        } else {
            parser.buffer(bytes)
            if !parsePaused { parser.parseBuffered() }
        }
        return disposition
    }

    package func drainOutput(into dest: inout [UInt8], limit: Int) {
        assertOnQueue(queue)
        guard !out.isEmpty else { return }
        out.drain(into: &dest, limit: limit)
        resumeParsingIfPossible()
    }

    package var hasPendingOutput: Bool { !out.isEmpty }

    package var disposition: EngineDisposition {
        if upgradeReady && responses.isEmpty { return .upgradeToHTTP2 }
        if closing && responses.isEmpty { return .closeAfterFlush }
        if closing || parsePaused || overLimits { return .pauseReading }
        return parser.progress == .done ? .pauseReading : .open
    }

    package var inFlightRequests: Int { responses.count }

    package func peerClosed() -> EngineDisposition {
        assertOnQueue(queue)
        // A half-received request can never be answered meaningfully; drop it.
        parser.stop()
        closing = true
        return disposition
    }

    package func beginShutdown() -> EngineDisposition {
        assertOnQueue(queue)
        shuttingDown = true
        switch parser.progress {
        case .head(let partial) where !partial || parsePaused:
            // Nothing being read: the last parsed request (if any) closes the connection.
            parser.stop()
            parsePaused = false
            if !responses.closeAfterLast() { closing = true }
        case .head, .body:
            break // the request being read gets `Connection: close` when it is dispatched
        case .done:
            if responses.isEmpty && !upgradeReady { closing = true }
        }
        return disposition
    }

    package func timeout(_ kind: TimeoutKind) -> EngineDisposition {
        assertOnQueue(queue)
        switch kind {
        case .idle:
            parser.stop()
            closing = true
        case .headerRead:
            queueError(HTTP1RequestError(408, "request_timeout", "the request head did not arrive within \(config.headerReadTimeout) s"))
        case .bodyRead:
            queueError(HTTP1RequestError(408, "request_timeout", "the request body stalled for more than \(config.bodyReadTimeout) s"))
        }
        return disposition
    }

    package var wantsNewTurn: Bool { yielded }

    package func beginTurn() -> EngineDisposition {
        assertOnQueue(queue)
        turnRequests = 0
        if yielded {
            yielded = false
            resumeParsingIfPossible()
        }
        return disposition
    }

    // MARK: extras for the connection

    /// The connection measured the body arriving slower than `minBodyRate` over
    /// `bodyRateWindow`: 408 and close.
    package func bodyTooSlow() -> EngineDisposition {
        assertOnQueue(queue)
        guard parser.isReadingBody else { return disposition }
        queueError(HTTP1RequestError(408, "request_timeout",
                                     "the request body arrived slower than \(config.minBodyRate) bytes/s over \(config.bodyRateWindow) s"))
        return disposition
    }

    /// The body budget chose this connection's body as the oldest stalled one: 408 and close.
    private func stalledBodyAborted(_ holder: BodyBudget.Holder) {
        assertOnQueue(queue)
        guard parser.holder === holder else { return } // that body completed or ended meanwhile
        queueError(HTTP1RequestError(408, "request_timeout",
                                     "the request body made no progress for \(config.stalledBodyTimeout) s while the server's body budget was full"))
    }

    /// Buffer capacity the engine holds (input, body, output), for tests of buffer reuse.
    package var retainedBufferBytes: Int { parser.retainedBufferBytes + out.capacity }

    package func outputBacklogChanged(_ backlogged: Bool) -> EngineDisposition {
        assertOnQueue(queue)
        peerBacklogged = backlogged
        if !backlogged { resumeParsingIfPossible() }
        return disposition
    }

    /// What the connection's timer should watch.
    package var readPhase: ReadPhase? {
        if parsePaused { return .busy }
        switch parser.progress {
        case .head(let partial):
            if partial { return .head }
            return responses.isEmpty ? .idle : .busy
        case .body:
            // A client waiting for our deferred `100 Continue` is not stalling its body.
            return parser.waitingForContinue ? .busy : .body
        case .done:
            return .busy
        }
    }

    /// After `.upgradeToHTTP2`: the upgrade request and the bytes that followed it. Once.
    package func takeUpgrade() -> H2CUpgrade? {
        assertOnQueue(queue)
        guard upgradeReady, let request = upgradeRequest else { return nil }
        let u = H2CUpgrade(request: request, settingsPayload: upgradeSettings, remainingBytes: parser.takeUpgradeBytes())
        upgradeRequest = nil
        upgradeReady = false
        return u
    }

    // MARK: flow control

    private var overLimits: Bool {
        responses.count >= config.maxPipelinedRequests || out.count > config.maxOutputBufferBytes
            || peerBacklogged
    }

    private func resumeParsingIfPossible() {
        guard parsePaused, !yielded, !overLimits, !parser.isProcessing else { return }
        parsePaused = false
        parser.parseBuffered()
    }

    // MARK: HTTP1RequestParserDelegate

    func parserMayStartRequest() -> Bool {
        if overLimits { parsePaused = true; return false }
        if turnRequests >= config.maxRequestsPerTurn { parsePaused = true; yielded = true; return false }
        return true
    }

    func parserBodyStarted(_ head: HTTP1RequestHead) {
        guard head.expectContinue else { return }
        if responses.isEmpty {
            out.append(HTTP1ResponseSerializer.continueResponse)
            if !parser.isProcessing { context?.outputAvailable() }
        } else {
            parser.waitingForContinue = true
        }
    }

    /// A request is complete: hand it to the handler (or start the h2c upgrade).
    func parserRequest(_ head: HTTP1RequestHead, body: [UInt8]) {
        let request = HTTPRequest(method: head.method, path: head.path, query: head.query, version: head.version,
                                  headers: head.headers, body: body, remoteAddress: remoteAddress, listener: listener, peer: peer)
        if let settings = head.h2cSettings, !shuttingDown {
            upgradeRequest = request
            upgradeSettings = settings
            parser.beginUpgrade() // bytes after the request are kept for HTTP/2
            let response = HTTPResponse(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "h2c")])
            responses.append(.init(response: response, isHead: false, closeAfter: false, version: .http1_1, kind: .upgrade))
            emitReady()
            return
        }
        let closeAfter = head.closeAfter || shuttingDown
        let seq = responses.append(.init(response: nil, isHead: head.isHead, closeAfter: closeAfter, version: head.version, kind: .normal))
        turnRequests += 1
        if closeAfter { parser.stop() }
        let token = self.token
        let queue = self.queue
        handler.handle(request) { [weak self] response in
            guard let self else { return }
            if token.isCurrent {
                self.complete(seq, response)
            } else {
                queue.async { self.complete(seq, response) }
            }
        }
    }

    func parserFailed(_ error: HTTP1RequestError) {
        parsePaused = false
        context?.counters.answered(error.status)
        responses.append(.init(response: .error(error.status, code: error.code, message: error.message, headers: error.headers),
                               isHead: false, closeAfter: true, version: .http1_1, kind: .normal))
        emitReady()
    }

    // MARK: output

    /// A handler answered request `seq`.
    private func complete(_ seq: UInt64, _ response: HTTPResponse) {
        assertOnQueue(queue)
        if responses.complete(seq, response) { emitReady() }
    }

    /// Serializes every response that is next in order.
    private func emitReady() {
        var produced = false
        while let (entry, response) = responses.popReady() {
            produced = true
            switch entry.kind {
            case .upgrade:
                out.append(HTTP1ResponseSerializer.switchingToH2C)
                upgradeReady = true
            case .normal:
                HTTP1ResponseSerializer.append(response, isHead: entry.isHead, close: entry.closeAfter, version: entry.version, to: &out)
                if entry.closeAfter {
                    closing = true
                    parser.stop()
                    responses.removeAll()
                }
            }
        }
        if parser.waitingForContinue && responses.isEmpty && parser.bodyIsEmpty && parser.isReadingBody {
            parser.waitingForContinue = false
            out.append(HTTP1ResponseSerializer.continueResponse)
            produced = true
        }
        if produced {
            if !parser.isProcessing { context?.outputAvailable() }
            resumeParsingIfPossible()
        }
    }

    /// Queues an error response (after earlier responses); then the connection closes.
    private func queueError(_ error: HTTP1RequestError) {
        parser.stop()
        parserFailed(error)
    }
}
