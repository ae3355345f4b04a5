// The HTTP/1.1 request framing state machine, sans-IO: bytes in, request heads, complete
// requests and error answers out through `HTTP1RequestParserDelegate`. The head itself is
// parsed by `parseRequestHead` (HTTP1RequestHead.swift); byte helpers are in HTTPSyntax.swift.
import Basics

/// What the parser reports to the engine that owns it. Calls happen inside `parse` /
/// `parseBuffered`, on the owner's queue.
protocol HTTP1RequestParserDelegate: AnyObject {
    /// A new request may begin (the next bytes are a request head). Returning false holds the
    /// bytes back (pipelining, output or fairness limits) until the owner calls `parseBuffered`.
    func parserMayStartRequest() -> Bool
    /// A head whose body follows was parsed; the owner decides about `100 Continue`.
    func parserBodyStarted(_ head: HTTP1RequestHead)
    /// A request is complete. The parser is ready for the next head; the owner may `stop()` it
    /// or `beginUpgrade()`.
    func parserRequest(_ head: HTTP1RequestHead, body: [UInt8])
    /// The input cannot be served (malformed, over a limit, body budget spent): answer it and
    /// close. The parser has stopped.
    func parserFailed(_ error: HTTP1RequestError)
}

/// Request framing of one HTTP/1.1 connection (RFC 9112 §6–7): heads, `Content-Length` and
/// chunked bodies with trailers, empty lines between requests, and the bytes that follow an
/// `Upgrade: h2c` request. Bodies grow as bytes arrive, reserved in the server's `BodyBudget`.
/// Input it cannot use yet (a partial head or chunk line, or requests the owner holds back)
/// is kept in `inBuf`. Used only on the owner's queue.
final class HTTP1RequestParser {
    /// First reservation for a body (or a chunked body's first chunk): a declared length is
    /// trusted for allocation only up to this much (1 MiB, so a typical trace batch gets one
    /// exact allocation — at 64 KiB a 440 KB body took three reallocations and copies, which
    /// cost a third of ingest throughput in Benchmarks/pipeline.sh); past it the buffer grows by
    /// doubling as bytes arrive. Every reservation counts against the server's BodyBudget.
    static let initialBodyReservation = 1 << 20

    private enum State {
        case head
        case body(remaining: Int)
        /// A chunked body: `chunks` has the framing state.
        case chunked
        /// The h2c upgrade request was read; later bytes belong to HTTP/2.
        case upgrading
        /// No more requests are read (error, `Connection: close`, shutdown, EOF).
        case stopped
    }

    /// Where the parser is, for the owner's timeouts and shutdown.
    enum Progress: Equatable {
        /// Between requests, or part of a head buffered (`partial`).
        case head(partial: Bool)
        /// Reading a body (trailers included).
        case body
        /// Upgrading or stopped: reads nothing more.
        case done
    }

    unowned(unsafe) var delegate: (any HTTP1RequestParserDelegate)!
    private let config: HTTPServerConfiguration
    private let allowUpgrade: Bool
    /// Server-wide budget for buffered bodies; `bodyReserved` bytes of it are ours.
    private let budget: BodyBudget

    private var state: State = .head
    private var chunks = ChunkedDecoder(bareLF: false, maxTrailerBytes: 0)
    /// Unparsed input kept between calls.
    private var inBuf: [UInt8] = []
    /// Bytes of the partial head in `inBuf` already scanned for its end.
    private var headScanned = 0
    /// Offset of the request line's LF within the partial head, once seen.
    private var requestLineEnd: Int?
    private var current: HTTP1RequestHead?
    private var body: [UInt8] = []
    /// Bytes of `budget` reserved for `body` (≈ its capacity).
    private var bodyReserved = 0
    /// The most `body` may grow to: the declared Content-Length, or `maxBodyBytes` (chunked).
    private var bodyLimit = 0
    private var bodyChunked = false
    /// Inside `parse`/`parseBuffered` (input is being scanned).
    private(set) var isProcessing = false
    /// Bytes after the h2c upgrade request.
    private(set) var upgradeBytes: [UInt8] = []
    /// The owner deferred `100 Continue` for the current body; cleared when body bytes arrive
    /// (the client did not wait).
    var waitingForContinue = false
    /// Set by the owner: runs (on any thread) when the body budget aborts this parser's
    /// stalled body (see `BodyBudget.register`).
    var onStalledBodyAborted: (@Sendable (BodyBudget.Holder) -> Void)?
    /// The current body's registration with the budget: made once a body spans more than one
    /// read (a body that arrives whole never registers), dropped with the body.
    private(set) var holder: BodyBudget.Holder?

    init(config: HTTPServerConfiguration, budget: BodyBudget, allowUpgrade: Bool) {
        self.config = config
        self.budget = budget
        self.allowUpgrade = allowUpgrade
    }

    deinit {
        budget.release(bodyReserved)
        if let holder { budget.unregister(holder) }
    }

    // MARK: state for the owner

    var progress: Progress {
        switch state {
        case .head: .head(partial: !inBuf.isEmpty)
        case .body, .chunked: .body
        case .upgrading, .stopped: .done
        }
    }

    /// Body bytes are being read (not yet the trailers).
    var isReadingBody: Bool {
        switch state {
        case .body: true
        case .chunked: chunks.inChunks
        default: false
        }
    }

    var isUpgrading: Bool { if case .upgrading = state { true } else { false } }
    var isStopped: Bool { if case .stopped = state { true } else { false } }
    var hasBufferedInput: Bool { !inBuf.isEmpty }
    var bodyIsEmpty: Bool { body.isEmpty }
    /// Buffer capacity held (input and body), for tests of buffer reuse.
    var retainedBufferBytes: Int { inBuf.capacity + body.capacity }

    // MARK: control by the owner

    /// Reads no more requests; drops a half-read request and its body.
    func stop() {
        if !isProcessing { inBuf = [] } // else dropped after the scan
        current = nil
        body = []
        releaseBody()
        waitingForContinue = false
        state = .stopped
    }

    /// The request just completed asked for h2c: later bytes are kept for HTTP/2.
    func beginUpgrade() { state = .upgrading }

    /// After the upgrade: the bytes that followed the request. Once; the parser stops.
    func takeUpgradeBytes() -> [UInt8] {
        let b = upgradeBytes
        upgradeBytes = []
        state = .stopped
        return b
    }

    // MARK: input

    /// Parses `bytes` (nothing buffered before them), keeping what cannot be used yet.
    func parse(_ bytes: UnsafeRawBufferPointer) {
        arrived()
        defer { holdIfMidBody() }
        isProcessing = true
        let used = process(bytes)
        isProcessing = false
        if used < bytes.count, isParsing {
            inBuf.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[used...]))
        }
    }

    /// Keeps `bytes` for later (the owner holds parsing back, or input is buffered already).
    func buffer(_ bytes: UnsafeRawBufferPointer) {
        arrived()
        switch state {
        case .stopped: return
        case .upgrading: upgradeBytes.append(contentsOf: bytes)
        default: inBuf.append(contentsOf: bytes)
        }
    }

    /// Parses the buffered input.
    func parseBuffered() {
        guard !isProcessing, !inBuf.isEmpty else { return }
        defer { holdIfMidBody() }
        isProcessing = true
        let used = inBuf.withUnsafeBytes { process($0) }
        isProcessing = false
        if isParsing {
            if used >= inBuf.count { clearRetainingLittle(&inBuf) } else if used > 0 { inBuf.removeFirst(used) }
        } else {
            inBuf = []
        }
    }

    private var isParsing: Bool {
        switch state {
        case .stopped, .upgrading: false
        default: true
        }
    }

    /// Parses as much of `p` as possible; returns the bytes consumed. Bytes not consumed are a
    /// partial element (head, chunk line) or requests held back by the owner.
    private func process(_ p: UnsafeRawBufferPointer) -> Int {
        var i = 0
        let n = p.count
        while i < n {
            switch state {
            case .stopped:
                return n
            case .upgrading:
                upgradeBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i...]))
                return n
            case .head:
                if headScanned == 0 && requestLineEnd == nil {
                    if !delegate.parserMayStartRequest() { return i }
                    // RFC 9112 §2.2: ignore empty lines before a request line.
                    while i < n && p[i] == 0x0D {
                        if i + 1 >= n { return i }
                        guard p[i + 1] == 0x0A else { break }
                        i += 2
                    }
                    if i >= n { return i }
                }
                guard let end = scanHead(p, from: i) else {
                    if case .stopped = state { return n }
                    return i
                }
                let start = i
                i = end
                headScanned = 0
                requestLineEnd = nil
                switch parseRequestHead(p, start, end, config: config, allowUpgrade: allowUpgrade) {
                case .success(let head): headReceived(head)
                case .failure(let e): fail(e)
                }
            case .body(let remaining):
                waitingForContinue = false
                let take = min(remaining, n - i)
                guard reserveBody(take) else { return n }
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i..<(i + take)]))
                i += take
                if take == remaining { requestComplete() } else { state = .body(remaining: remaining - take) }
            case .chunked:
                if chunks.inChunks { waitingForContinue = false }
                switch chunks.step(p, &i) {
                case .needMore:
                    return i
                case .chunkStart(let size):
                    if size > config.maxBodyBytes - body.count {
                        fail(HTTP1RequestError(413, "body_too_large", "the chunked request body exceeds \(config.maxBodyBytes) bytes"))
                        return n
                    }
                    // The chunk size is declared, not received: reserve only what can be used soon.
                    guard reserveBody(min(size, Self.initialBodyReservation)) else { return n }
                case .data(let range):
                    guard reserveBody(range.count) else { return n }
                    body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[range]))
                case .trailer(let ls, let le):
                    // Trailer fields are read and dropped: nothing downstream uses them.
                    if p[ls] == 0x20 || p[ls] == 0x09 || findByte(p, 0x3A, ls, le) == nil {
                        fail(HTTP1RequestError(400, "bad_trailer", "malformed trailer field"))
                        return n
                    }
                case .end:
                    requestComplete()
                case .failure(let problem):
                    fail(error(problem))
                    return n
                }
            }
        }
        return i
    }

    /// Looks for the end of the head starting at `start` (scan resumes where it stopped).
    /// Returns the offset just past the blank line, or nil (need more, or failed).
    private func scanHead(_ p: UnsafeRawBufferPointer, from start: Int) -> Int? {
        let n = p.count
        var j = start + headScanned
        while true {
            // Line feeds are looked for only within the limits, so the answer is the same however
            // the bytes arrive (an over-long head is 414/431 even if a bare LF follows later).
            let bound = requestLineEnd == nil ? start + config.maxRequestLineBytes + 2 : start + config.maxHeaderBytes
            let end = min(n, bound)
            guard j < end, let lf = findByte(p, 0x0A, j, end) else {
                if n >= bound {
                    fail(requestLineEnd == nil
                         ? HTTP1RequestError(414, "uri_too_long", "the request line exceeds \(config.maxRequestLineBytes) bytes")
                         : HTTP1RequestError(431, "headers_too_large", "the request head exceeds \(config.maxHeaderBytes) bytes"))
                    return nil
                }
                headScanned = n - start
                return nil
            }
            if lf == start || p[lf - 1] != 0x0D {
                fail(HTTP1RequestError(400, "bad_request", "bare LF in the request head (lines must end with CRLF)"))
                return nil
            }
            if requestLineEnd == nil {
                requestLineEnd = lf - start
                if lf - 1 - start > config.maxRequestLineBytes {
                    fail(HTTP1RequestError(414, "uri_too_long", "the request line exceeds \(config.maxRequestLineBytes) bytes"))
                    return nil
                }
            } else if lf - start >= 3 && p[lf - 2] == 0x0A {
                let end = lf + 1
                if end - start > config.maxHeaderBytes {
                    fail(HTTP1RequestError(431, "headers_too_large", "the request head exceeds \(config.maxHeaderBytes) bytes"))
                    return nil
                }
                return end
            }
            j = lf + 1
        }
    }

    /// A head arrived: set up body reading, or the request is complete.
    private func headReceived(_ head: HTTP1RequestHead) {
        current = head
        body = []
        releaseBody()
        bodyChunked = head.chunked
        bodyLimit = head.chunked ? config.maxBodyBytes : head.contentLength
        if head.chunked {
            chunks = ChunkedDecoder(bareLF: false, maxTrailerBytes: config.maxHeaderBytes)
            state = .chunked
        } else if head.contentLength > 0 {
            // A new body: refused at once (503) when the server's body budget is spent.
            guard reserveBody(min(head.contentLength, Self.initialBodyReservation)) else { return }
            state = .body(remaining: head.contentLength)
        } else {
            requestComplete()
            return
        }
        delegate.parserBodyStarted(head)
    }

    private func requestComplete() {
        guard let head = current else { return }
        current = nil
        waitingForContinue = false
        let requestBody = body
        body = []
        releaseBody() // the handler owns the body now
        state = .head
        delegate.parserRequest(head, body: requestBody)
    }

    private func error(_ problem: ChunkedDecoder.Problem) -> HTTP1RequestError {
        switch problem {
        case .sizeLineTooLong: HTTP1RequestError(400, "bad_chunk", "chunk-size line longer than 4096 bytes")
        case .sizeLine(.tooLarge): HTTP1RequestError(413, "body_too_large", ChunkLineProblem.tooLarge.message)
        case .sizeLine(let e): HTTP1RequestError(400, "bad_chunk", e.message)
        case .dataNotFollowedByCRLF: HTTP1RequestError(400, "bad_chunk", "chunk data is not followed by CRLF")
        case .trailersTooLarge:
            HTTP1RequestError(431, "trailers_too_large", "the chunked trailer section exceeds \(config.maxHeaderBytes) bytes")
        case .trailerLineWithoutCRLF: HTTP1RequestError(400, "bad_trailer", "trailer line does not end with CRLF")
        }
    }

    private func fail(_ error: HTTP1RequestError) {
        stop()
        delegate.parserFailed(error)
    }

    // MARK: body memory

    /// Makes room in `body` for `extra` more bytes, growing by doubling (never past
    /// `bodyLimit`), and reserves the growth in the server's body budget. Over budget: fails
    /// with 503 and returns false. The common case (room already reserved) touches nothing.
    @inline(__always)
    private func reserveBody(_ extra: Int) -> Bool {
        let need = body.count + extra
        if need <= bodyReserved { return true }
        return growBody(need)
    }

    private func growBody(_ need: Int) -> Bool {
        let doubled = bodyReserved == 0 ? (bodyChunked ? 0 : Self.initialBodyReservation) : bodyReserved * 2
        let target = max(need, min(doubled, bodyLimit))
        guard budget.tryReserve(target - bodyReserved) else {
            fail(HTTP1RequestError(503, "body_budget_exhausted",
                                   "the server is buffering too many request bodies (\(budget.limit) bytes); retry shortly",
                                   headers: [("Retry-After", "1")]))
            return false
        }
        bodyReserved = target
        body.reserveCapacity(target)
        return true
    }

    /// Bytes arrived: progress for the body in flight, if it is registered.
    @inline(__always)
    private func arrived() {
        if let holder { holder.progressed(now: Clock.monotonicNanos()) }
    }

    private func holdIfMidBody() {
        guard holder == nil, progress == .body, let abort = onStalledBodyAborted else { return }
        holder = budget.register(now: Clock.monotonicNanos(), abort: abort)
    }

    private func releaseBody() {
        if let h = holder {
            budget.unregister(h)
            holder = nil
        }
        guard bodyReserved > 0 else { return }
        budget.release(bodyReserved)
        bodyReserved = 0
    }
}

/// Empties `buffer`, keeping its capacity unless that is large (see `HTTP1Engine.retainedBufferLimit`).
@inline(__always)
func clearRetainingLittle(_ buffer: inout [UInt8]) {
    if buffer.capacity > HTTP1Engine.retainedBufferLimit {
        buffer = []
    } else {
        buffer.removeAll(keepingCapacity: true)
    }
}
