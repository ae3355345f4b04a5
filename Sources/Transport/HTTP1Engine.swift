// Over 500 lines: request parsing, the ordered response queue and serialization still share this
// file; issue 9 splits them (pure parser, response queue, serializer). Byte helpers: HTTPSyntax.swift.
import Dispatch
import DequeModule
#if canImport(Glibc)
import Glibc
#endif

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
/// Protocol errors are answered with a JSON `HTTPResponse.error` and `Connection: close`,
/// after the responses of earlier requests. Used only on `context.queue`.
package final class HTTP1Engine: ProtocolEngine, @unchecked Sendable {
    private weak var context: (any ConnectionContext)?
    private let handler: any HTTPHandler
    private let config: HTTPServerConfiguration
    private let queue: DispatchQueue
    private let token: QueueToken
    private let remoteAddress: String
    private let listener: String
    /// Server-wide budget for buffered bodies; `bodyReserved` bytes of it are ours.
    private let budget: BodyBudget
    /// `Upgrade: h2c` is honoured (server and listener allow it, h2c is enabled).
    private let allowUpgrade: Bool

    /// First reservation for a body (or a chunked body's first chunk): a declared length is
    /// trusted for allocation only up to this much (1 MiB, so a typical trace batch gets one
    /// exact allocation — at 64 KiB a 440 KB body took three reallocations and copies, which
    /// cost a third of ingest throughput in Benchmarks/pipeline.sh); past it the buffer grows by
    /// doubling as bytes arrive. Every reservation counts against the server's BodyBudget.
    static let initialBodyReservation = 1 << 20
    /// Buffers (input, output) keep at most this much capacity once drained, so a connection
    /// that once carried a large request does not hold the memory while idle.
    static let retainedBufferLimit = 256 * 1024

    // MARK: input state

    private enum State {
        case head
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytes: Int)
        /// The h2c upgrade request was read; later bytes belong to HTTP/2.
        case upgrading
        /// No more requests are read (error, `Connection: close`, shutdown, EOF).
        case stopped
    }

    private struct Head {
        var method: String
        var path: String
        var query: String
        var version: HTTPVersion
        var headers: HTTPHeaders
        var closeAfter: Bool
        var isHead: Bool
        var expectContinue: Bool
        var h2cSettings: [UInt8]?
    }

    private var state: State = .head
    /// Unparsed input kept between reads: a partial head or chunk line, or requests held back
    /// by the pipelining / output limits.
    private var inBuf: [UInt8] = []
    /// Bytes of the partial head in `inBuf` already scanned for its end.
    private var headScanned = 0
    /// Offset of the request line's LF within the partial head, once seen.
    private var requestLineEnd: Int?
    private var current: Head?
    private var body: [UInt8] = []
    /// Bytes of `budget` reserved for `body` (≈ its capacity).
    private var bodyReserved = 0
    /// The most `body` may grow to: the declared Content-Length, or `maxBodyBytes` (chunked).
    private var bodyLimit = 0
    private var bodyChunked = false
    private var parsePaused = false
    /// Requests started in this turn of the loop, and whether parsing stopped at
    /// `maxRequestsPerTurn` (then only `beginTurn` resumes it, never output draining).
    private var turnRequests = 0
    private var yielded = false
    private var isProcessing = false
    private var continueDeferred = false

    // MARK: output state

    private enum Kind { case normal, upgrade }

    private struct Pending {
        var response: HTTPResponse?
        var isHead: Bool
        var closeAfter: Bool
        var version: HTTPVersion
        var kind: Kind
    }

    /// Requests dispatched (or errors queued) whose responses are not yet serialized, in order.
    private var pending = Deque<Pending>()
    /// Sequence number of `pending.first`.
    private var firstSeq: UInt64 = 0
    private var out: [UInt8] = []
    private var outStart = 0
    /// A `Connection: close` response was serialized, or the peer left: no more requests.
    private var closing = false
    private var fatal = false
    private var shuttingDown = false
    private var upgradeReady = false
    private var upgradeRemaining: [UInt8] = []
    private var upgradeRequest: HTTPRequest?

    package init(context: any ConnectionContext, handler: any HTTPHandler, configuration: HTTPServerConfiguration,
                 allowUpgrade: Bool = true) {
        self.context = context
        self.budget = context.bodyBudget
        self.allowUpgrade = allowUpgrade && configuration.allowH2CUpgrade && configuration.enableH2C
        self.handler = handler
        self.config = configuration
        self.queue = context.queue
        self.token = QueueToken.of(context.queue)
        self.remoteAddress = context.remoteAddress
        self.listener = context.listener
    }

    deinit { budget.release(bodyReserved) }

    // MARK: ProtocolEngine

    package func receive(_ bytes: UnsafeRawBufferPointer) -> EngineDisposition {
        guard bytes.count > 0 else { return disposition }
        switch state {
        case .stopped:
            return disposition
        case .upgrading:
            upgradeRemaining.append(contentsOf: bytes)
            return disposition
        default:
            break
        }
        if inBuf.isEmpty && !parsePaused {
            isProcessing = true
            let used = process(bytes)
            isProcessing = false
            if used < bytes.count, isParsingState {
                inBuf.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[used...]))
            }
        } else {
            inBuf.append(contentsOf: bytes)
            if !parsePaused { processBuffered() }
        }
        return disposition
    }

    package func drainOutput(into dest: inout [UInt8], limit: Int) {
        let available = out.count - outStart
        guard available > 0 else { return }
        if dest.isEmpty && outStart == 0 && available <= limit {
            swap(&dest, &out)
            clearRetainingLittle(&out)
        } else {
            let n = min(available, limit)
            dest.append(contentsOf: out[outStart..<(outStart + n)])
            outStart += n
            if outStart == out.count {
                clearRetainingLittle(&out)
                outStart = 0
            }
        }
        resumeParsingIfPossible()
    }

    package var hasPendingOutput: Bool { out.count > outStart }

    package var disposition: EngineDisposition {
        if fatal { return .closeNow }
        if upgradeReady && pending.isEmpty { return .upgradeToHTTP2 }
        if closing && pending.isEmpty { return .closeAfterFlush }
        if closing || parsePaused || overLimits { return .pauseReading }
        switch state {
        case .stopped, .upgrading: return .pauseReading
        default: return .open
        }
    }

    package var inFlightRequests: Int { pending.count }

    package func peerClosed() -> EngineDisposition {
        // A half-received request can never be answered meaningfully; drop it.
        current = nil
        body = []
        releaseBody()
        inBuf = []
        state = .stopped
        closing = true
        return disposition
    }

    package func beginShutdown() -> EngineDisposition {
        shuttingDown = true
        switch state {
        case .head where inBuf.isEmpty || parsePaused:
            // Nothing being read: the last parsed request (if any) closes the connection.
            inBuf = []
            parsePaused = false
            state = .stopped
            if let last = pending.indices.last {
                pending[last].closeAfter = true
            } else {
                closing = true
            }
        case .head, .body, .chunkSize, .chunkData, .chunkDataEnd, .trailers:
            break // the request being read gets `Connection: close` when it is dispatched
        case .upgrading, .stopped:
            if pending.isEmpty && !upgradeReady { closing = true }
        }
        return disposition
    }

    package func timeout(_ kind: TimeoutKind) -> EngineDisposition {
        switch kind {
        case .idle:
            inBuf = []
            state = .stopped
            closing = true
        case .headerRead:
            queueError(408, "request_timeout", "the request head did not arrive within \(config.headerReadTimeout) s")
        case .bodyRead:
            queueError(408, "request_timeout", "the request body stalled for more than \(config.bodyReadTimeout) s")
        }
        return disposition
    }

    // MARK: extras for the connection

    /// The connection measured the body arriving slower than `minBodyRate` over
    /// `bodyRateWindow`: 408 and close.
    package func bodyTooSlow() -> EngineDisposition {
        guard isReadingBody else { return disposition }
        queueError(408, "request_timeout",
                   "the request body arrived slower than \(config.minBodyRate) bytes/s over \(config.bodyRateWindow) s")
        return disposition
    }

    /// Buffer capacity the engine holds (input, body, output), for tests of buffer reuse.
    package var retainedBufferBytes: Int { inBuf.capacity + body.capacity + out.capacity }

    /// What the connection's timer should watch.
    package var readPhase: ReadPhase {
        if parsePaused { return .busy }
        switch state {
        case .head:
            if !inBuf.isEmpty { return .head }
            return pending.isEmpty ? .idle : .busy
        case .body, .chunkSize, .chunkData, .chunkDataEnd, .trailers:
            // A client waiting for our deferred `100 Continue` is not stalling its body.
            return continueDeferred ? .busy : .body
        case .upgrading, .stopped:
            return .busy
        }
    }

    /// After `.upgradeToHTTP2`: the upgrade request and the bytes that followed it. Once.
    package func takeUpgrade() -> H2CUpgrade? {
        guard upgradeReady, let request = upgradeRequest else { return nil }
        let u = H2CUpgrade(request: request, settingsPayload: upgradeSettings, remainingBytes: upgradeRemaining)
        upgradeRequest = nil
        upgradeRemaining = []
        upgradeReady = false
        state = .stopped
        return u
    }

    private var upgradeSettings: [UInt8] = []

    // MARK: parsing

    private var isParsingState: Bool {
        switch state {
        case .stopped, .upgrading: false
        default: true
        }
    }

    private var isReadingBody: Bool {
        switch state {
        case .body, .chunkSize, .chunkData, .chunkDataEnd: true
        default: false
        }
    }

    private var overLimits: Bool {
        pending.count >= config.maxPipelinedRequests || (out.count - outStart) > config.maxOutputBufferBytes
    }

    private func processBuffered() {
        guard !isProcessing, !inBuf.isEmpty else { return }
        isProcessing = true
        let used = inBuf.withUnsafeBytes { process($0) }
        isProcessing = false
        if isParsingState {
            if used >= inBuf.count { clearRetainingLittle(&inBuf) } else if used > 0 { inBuf.removeFirst(used) }
        } else {
            inBuf = []
        }
    }

    package var wantsNewTurn: Bool { yielded }

    package func beginTurn() -> EngineDisposition {
        turnRequests = 0
        if yielded {
            yielded = false
            resumeParsingIfPossible()
        }
        return disposition
    }

    private func resumeParsingIfPossible() {
        guard parsePaused, !yielded, !overLimits, !isProcessing else { return }
        parsePaused = false
        processBuffered()
    }

    /// Parses as much of `p` as possible; returns the bytes consumed. Bytes not consumed are a
    /// partial element (head, chunk line) or requests held back by limits.
    private func process(_ p: UnsafeRawBufferPointer) -> Int {
        var i = 0
        let n = p.count
        while i < n {
            switch state {
            case .stopped:
                return n
            case .upgrading:
                upgradeRemaining.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i...]))
                return n
            case .head:
                if headScanned == 0 && requestLineEnd == nil {
                    if overLimits { parsePaused = true; return i }
                    if turnRequests >= config.maxRequestsPerTurn { parsePaused = true; yielded = true; return i }
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
                headReceived(p, start, end)
            case .body(let remaining):
                continueDeferred = false
                let take = min(remaining, n - i)
                guard reserveBody(take) else { return n }
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i..<(i + take)]))
                i += take
                if take == remaining { requestComplete() } else { state = .body(remaining: remaining - take) }
            case .chunkSize:
                continueDeferred = false
                guard let lf = findLF(p, from: i) else {
                    if n - i > 4096 { queueError(400, "bad_chunk", "chunk-size line longer than 4096 bytes") }
                    return i
                }
                guard let size = parseChunkSize(p, i, lf) else { return n }
                i = lf + 1
                if size == 0 {
                    state = .trailers(bytes: 0)
                } else if size > config.maxBodyBytes - body.count {
                    queueError(413, "body_too_large", "the chunked request body exceeds \(config.maxBodyBytes) bytes")
                    return n
                } else {
                    // The chunk size is declared, not received: reserve only what can be used soon.
                    guard reserveBody(min(size, Self.initialBodyReservation)) else { return n }
                    state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                guard reserveBody(take) else { return n }
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i..<(i + take)]))
                i += take
                state = take == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - take)
            case .chunkDataEnd:
                if n - i < 2 { return i }
                guard p[i] == 0x0D && p[i + 1] == 0x0A else {
                    queueError(400, "bad_chunk", "chunk data is not followed by CRLF")
                    return n
                }
                i += 2
                state = .chunkSize
            case .trailers(let seen):
                guard let lf = findLF(p, from: i) else {
                    if seen + (n - i) > config.maxHeaderBytes {
                        queueError(431, "trailers_too_large", "the chunked trailer section exceeds \(config.maxHeaderBytes) bytes")
                        return n
                    }
                    return i
                }
                guard lf > i, p[lf - 1] == 0x0D else {
                    queueError(400, "bad_trailer", "trailer line does not end with CRLF")
                    return n
                }
                let lineLength = lf + 1 - i
                if seen + lineLength > config.maxHeaderBytes {
                    queueError(431, "trailers_too_large", "the chunked trailer section exceeds \(config.maxHeaderBytes) bytes")
                    return n
                }
                let empty = lineLength == 2
                i = lf + 1
                if empty {
                    requestComplete()
                } else {
                    // Trailer fields are read and dropped: nothing downstream uses them.
                    if p[i - lineLength] == 0x20 || p[i - lineLength] == 0x09 || findByte(p, 0x3A, i - lineLength, lf) == nil {
                        queueError(400, "bad_trailer", "malformed trailer field")
                        return n
                    }
                    state = .trailers(bytes: seen + lineLength)
                }
            }
        }
        return i
    }

    /// Looks for the end of the head starting at `start` (scan resumes where it stopped).
    /// Returns the offset just past the blank line, or nil (need more, or an error was queued).
    private func scanHead(_ p: UnsafeRawBufferPointer, from start: Int) -> Int? {
        let n = p.count
        var j = start + headScanned
        while j < n {
            guard let lf = findLF(p, from: j) else { j = n; break }
            if lf == start || p[lf - 1] != 0x0D {
                queueError(400, "bad_request", "bare LF in the request head (lines must end with CRLF)")
                return nil
            }
            if requestLineEnd == nil {
                requestLineEnd = lf - start
                if lf - 1 - start > config.maxRequestLineBytes {
                    queueError(414, "uri_too_long", "the request line exceeds \(config.maxRequestLineBytes) bytes")
                    return nil
                }
            } else if lf - start >= 3 && p[lf - 2] == 0x0A {
                let end = lf + 1
                if end - start > config.maxHeaderBytes {
                    queueError(431, "headers_too_large", "the request head exceeds \(config.maxHeaderBytes) bytes")
                    return nil
                }
                return end
            }
            j = lf + 1
        }
        headScanned = n - start
        if requestLineEnd == nil && headScanned > config.maxRequestLineBytes + 2 {
            queueError(414, "uri_too_long", "the request line exceeds \(config.maxRequestLineBytes) bytes")
        } else if headScanned > config.maxHeaderBytes {
            queueError(431, "headers_too_large", "the request head exceeds \(config.maxHeaderBytes) bytes")
        }
        return nil
    }

    /// Parses a complete head `p[start..<end]` and sets up body reading or dispatches.
    private func headReceived(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        let lineEnd = findLF(p, from: start)! - 1 // at CR
        // Request line: method SP target SP version.
        guard let sp1 = findByte(p, 0x20, start, lineEnd), let sp2 = findByte(p, 0x20, sp1 + 1, lineEnd),
              sp1 > start, sp2 > sp1 + 1, findByte(p, 0x20, sp2 + 1, lineEnd) == nil else {
            return queueError(400, "bad_request", "malformed request line (expected METHOD SP TARGET SP HTTP-VERSION)")
        }
        for k in start..<sp1 where !isTokenChar(p[k]) {
            return queueError(400, "bad_request", "invalid character in the method")
        }
        for k in (sp1 + 1)..<sp2 where p[k] <= 0x20 || p[k] == 0x7F {
            return queueError(400, "bad_request", "invalid character in the request target")
        }
        let version: HTTPVersion
        let vlen = lineEnd - (sp2 + 1)
        if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/1.1") {
            version = .http1_1
        } else if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/1.0") {
            version = .http1_0
        } else if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/") && isDigit(p[sp2 + 6]) && p[sp2 + 7] == 0x2E && isDigit(p[sp2 + 8]) {
            return queueError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served over this framing (h2c needs the prior-knowledge preface or Upgrade)")
        } else {
            return queueError(400, "bad_request", "malformed HTTP version in the request line")
        }
        let method = string(p, start, sp1)
        var target = string(p, sp1 + 1, sp2)
        if !target.hasPrefix("/") {
            // absolute-form (RFC 9112 §3.2.2): keep only the path and query.
            let u = Array(target.utf8)
            if let k = (0..<max(0, u.count - 2)).first(where: { u[$0] == 0x3A && u[$0 + 1] == 0x2F && u[$0 + 2] == 0x2F }) {
                let afterAuthority = Substring(String(decoding: u[(k + 3)...], as: UTF8.self))
                target = afterAuthority.firstIndex(where: { $0 == "/" || $0 == "?" }).map { String(afterAuthority[$0...]) } ?? "/"
                if target.hasPrefix("?") { target = "/" + target }
            } else if !(target == "*" && method == "OPTIONS") && method != "CONNECT" {
                return queueError(400, "bad_request", "the request target must start with '/'")
            }
        }
        let path: String
        let query: String
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            query = String(target[target.index(after: q)...])
        } else {
            path = target
            query = ""
        }

        // Header fields.
        // Field lines with the same name are combined into one list value (RFC 9110 §5.3), so
        // handlers see `gzip, gzip` whether it came on one line or two.
        var fields: [(name: String, value: String)] = []
        var count = 0
        var contentLength: Int?
        var contentLengthSeen = false
        var transferEncodingSeen = false
        var transferCodings: [String] = []
        var connectionTokens: [String] = []
        var expect: String?
        var hostCount = 0
        var upgradeH2C = false
        var settingsValues: [String] = []
        var ls = lineEnd + 2
        let headEnd = end - 2 // the final CRLF
        while ls < headEnd {
            let lf = findLF(p, from: ls)!
            let le = lf - 1
            if p[ls] == 0x20 || p[ls] == 0x09 {
                return queueError(400, "bad_request", "obsolete header line folding is not accepted")
            }
            guard let colon = findByte(p, 0x3A, ls, le), colon > ls else {
                return queueError(400, "bad_request", "header line without a field name and ':'")
            }
            for k in ls..<colon where !isTokenChar(p[k]) {
                return queueError(400, "bad_request", "invalid character in header name '\(string(p, ls, colon))'")
            }
            var vs = colon + 1
            var ve = le
            while vs < ve && (p[vs] == 0x20 || p[vs] == 0x09) { vs += 1 }
            while ve > vs && (p[ve - 1] == 0x20 || p[ve - 1] == 0x09) { ve -= 1 }
            for k in vs..<ve {
                let b = p[k]
                if (b < 0x20 && b != 0x09) || b == 0x7F {
                    return queueError(400, "bad_request", "invalid character in the value of header '\(string(p, ls, colon))'")
                }
            }
            count += 1
            if count > config.maxHeaderCount {
                return queueError(431, "too_many_headers", "more than \(config.maxHeaderCount) header fields")
            }
            let name = string(p, ls, colon)
            let value = string(p, vs, ve)
            if let k = fields.firstIndex(where: { HTTPHeaders.sameName($0.name, name) }) {
                fields[k].value += (colon - ls == 6 && lowerEqual(p, ls, "cookie") ? "; " : ", ") + value
            } else {
                fields.append((name, value))
            }
            switch colon - ls {
            case 4 where lowerEqual(p, ls, "host"):
                hostCount += 1
                for k in vs..<ve where !isHostChar(p[k]) {
                    return queueError(400, "bad_request", "invalid character in the Host header")
                }
            case 6 where lowerEqual(p, ls, "expect"):
                expect = value
            case 7 where lowerEqual(p, ls, "upgrade"):
                if tokens(value).contains("h2c") { upgradeH2C = true }
            case 10 where lowerEqual(p, ls, "connection"):
                connectionTokens += tokens(value)
            case 14 where lowerEqual(p, ls, "content-length"):
                contentLengthSeen = true
                for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let t = trimOWS(part)
                    guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                        return queueError(400, "bad_content_length", "Content-Length '\(value)' is not a number")
                    }
                    let v = t.utf8.count > 18 ? Int.max : Int(t)!
                    if let cl = contentLength, cl != v {
                        return queueError(400, "bad_content_length", "conflicting Content-Length values")
                    }
                    contentLength = v
                }
            case 14 where lowerEqual(p, ls, "http2-settings"):
                settingsValues.append(value)
            case 17 where lowerEqual(p, ls, "transfer-encoding"):
                transferEncodingSeen = true
                transferCodings += tokens(value)
            default:
                break
            }
            ls = lf + 1
        }

        let headers = HTTPHeaders(fields)
        if hostCount > 1 || (version == .http1_1 && hostCount == 0) {
            return queueError(400, "bad_request", hostCount == 0 ? "HTTP/1.1 request without a Host header" : "more than one Host header")
        }
        var chunked = false
        if transferEncodingSeen {
            // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means the framing is
            // unreliable (a 1.0 intermediary may have passed it on): refuse and close.
            if version == .http1_0 {
                return queueError(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request")
            }
            if contentLengthSeen {
                return queueError(400, "bad_request", "both Content-Length and Transfer-Encoding are present")
            }
            if transferCodings.isEmpty {
                return queueError(501, "unsupported_transfer_encoding", "empty Transfer-Encoding")
            }
            if let unknown = transferCodings.first(where: { $0 != "chunked" }) {
                return queueError(501, "unsupported_transfer_encoding", "transfer coding '\(unknown)' is not supported (only chunked)")
            }
            if transferCodings.count > 1 {
                return queueError(400, "bad_request", "chunked is applied more than once")
            }
            chunked = true
        }
        let length = contentLength ?? 0
        if length > config.maxBodyBytes {
            return queueError(413, "body_too_large", "the request body (\(length) bytes) exceeds \(config.maxBodyBytes) bytes")
        }
        var expectContinue = false
        if let e = expect, version == .http1_1 {
            if e.lowercased() == "100-continue" {
                expectContinue = chunked || length > 0
            } else {
                return queueError(417, "expectation_failed", "unsupported expectation '\(e)'")
            }
        }
        var closeAfter = connectionTokens.contains("close")
        if version == .http1_0 && !connectionTokens.contains("keep-alive") { closeAfter = true }
        if shuttingDown { closeAfter = true }
        // h2c upgrade (RFC 9113 §3.2, RFC 9110 §7.8): only when every condition holds, decided
        // before answering 101; otherwise the request is served as HTTP/1.1. A 101 followed by
        // a refused HTTP/2 session would lose the request, and an upgrade the client's proxy did
        // not ask for (no `Connection: Upgrade, HTTP2-Settings`) lets later streams bypass it.
        var h2cSettings: [UInt8]?
        if upgradeH2C, allowUpgrade, version == .http1_1, !closeAfter, settingsValues.count == 1,
           connectionTokens.contains("upgrade"), connectionTokens.contains("http2-settings"),
           !settingsValues[0].isEmpty, let decoded = base64URLDecode(settingsValues[0]), isSaneSettingsPayload(decoded) {
            h2cSettings = decoded
        }

        current = Head(method: method, path: path, query: query, version: version, headers: headers,
                       closeAfter: closeAfter, isHead: method == "HEAD", expectContinue: expectContinue,
                       h2cSettings: h2cSettings)
        body = []
        releaseBody()
        bodyChunked = chunked
        bodyLimit = chunked ? config.maxBodyBytes : length
        if chunked {
            state = .chunkSize
        } else if length > 0 {
            // A new body: refused at once (503) when the server's body budget is spent.
            guard reserveBody(min(length, Self.initialBodyReservation)) else { return }
            state = .body(remaining: length)
        } else {
            requestComplete()
            return
        }
        if expectContinue {
            if pending.isEmpty { appendContinue() } else { continueDeferred = true }
        }
    }

    private func appendContinue() {
        out.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
        if !isProcessing { context?.outputAvailable() }
    }

    /// The current request is complete: hand it to the handler (or start the h2c upgrade).
    private func requestComplete() {
        guard let head = current else { return }
        current = nil
        continueDeferred = false
        let requestBody = body
        body = []
        releaseBody() // the handler owns the body now
        let request = HTTPRequest(method: head.method, path: head.path, query: head.query, version: head.version,
                                  headers: head.headers, body: requestBody, remoteAddress: remoteAddress, listener: listener)
        if let settings = head.h2cSettings, !shuttingDown {
            upgradeRequest = request
            upgradeSettings = settings
            state = .upgrading
            // Bytes after the request are stashed by `process` (state `.upgrading`).
            let response = HTTPResponse(status: 101, headers: [("Connection", "Upgrade"), ("Upgrade", "h2c")])
            pending.append(Pending(response: response, isHead: false, closeAfter: false, version: .http1_1, kind: .upgrade))
            emitReady()
            return
        }
        let seq = firstSeq &+ UInt64(pending.count)
        let closeAfter = head.closeAfter || shuttingDown
        pending.append(Pending(response: nil, isHead: head.isHead, closeAfter: closeAfter, version: head.version, kind: .normal))
        turnRequests += 1
        state = closeAfter ? .stopped : .head
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

    /// A handler answered request `seq`.
    private func complete(_ seq: UInt64, _ response: HTTPResponse) {
        let index = Int(truncatingIfNeeded: seq &- firstSeq)
        guard seq >= firstSeq, index < pending.count, pending[index].response == nil else { return }
        pending[index].response = response
        if index == 0 {
            emitReady()
        }
    }

    /// Serializes every response that is next in order.
    private func emitReady() {
        var produced = false
        while let first = pending.first, let response = first.response {
            pending.removeFirst()
            firstSeq &+= 1
            produced = true
            switch first.kind {
            case .upgrade:
                out.append(contentsOf: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".utf8)
                upgradeReady = true
            case .normal:
                serialize(response, isHead: first.isHead, close: first.closeAfter, version: first.version)
                if first.closeAfter {
                    closing = true
                    state = .stopped
                    pending.removeAll()
                }
            }
        }
        if continueDeferred && pending.isEmpty && body.isEmpty && isReadingBody {
            continueDeferred = false
            out.append(contentsOf: "HTTP/1.1 100 Continue\r\n\r\n".utf8)
            produced = true
        }
        if produced {
            if !isProcessing { context?.outputAvailable() }
            resumeParsingIfPossible()
        }
    }

    private func serialize(_ r: HTTPResponse, isHead: Bool, close: Bool, version: HTTPVersion) {
        out.reserveCapacity(out.count + 160 + r.body.count)
        out.append(contentsOf: "HTTP/1.1 \(r.status) \(reasonPhrase(r.status))\r\n".utf8)
        for (name, value) in r.headers {
            let lower = name.lowercased()
            if lower == "content-length" || lower == "connection" || lower == "date" || lower == "transfer-encoding" { continue }
            out.append(contentsOf: name.utf8)
            out.append(0x3A); out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D); out.append(0x0A)
        }
        let bodyAllowed = !(r.status < 200 || r.status == 204 || r.status == 304)
        if bodyAllowed {
            out.append(contentsOf: "Content-Length: \(r.body.count)\r\n".utf8)
        }
        out.append(contentsOf: HTTPDate.headerLine())
        if close {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if version == .http1_0 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(0x0D); out.append(0x0A)
        if bodyAllowed && !isHead { out.append(contentsOf: r.body) }
    }

    /// Queues an error response (after earlier responses), then the connection closes.
    private func queueError(_ status: Int, _ code: String, _ message: String,
                            headers: [(name: String, value: String)] = []) {
        if !isProcessing { inBuf = [] } // else processBuffered drops it after the scan
        current = nil
        body = []
        releaseBody()
        state = .stopped
        parsePaused = false
        pending.append(Pending(response: .error(status, code: code, message: message, headers: headers), isHead: false,
                               closeAfter: true, version: .http1_1, kind: .normal))
        emitReady()
    }

    /// Makes room in `body` for `extra` more bytes, growing by doubling (never past
    /// `bodyLimit`), and reserves the growth in the server's body budget. Over budget: queues
    /// 503 and returns false. The common case (room already reserved) touches nothing.
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
            queueError(503, "body_budget_exhausted",
                       "the server is buffering too many request bodies (\(budget.limit) bytes); retry shortly",
                       headers: [("Retry-After", "1")])
            return false
        }
        bodyReserved = target
        body.reserveCapacity(target)
        return true
    }

    private func releaseBody() {
        guard bodyReserved > 0 else { return }
        budget.release(bodyReserved)
        bodyReserved = 0
    }

    private func parseChunkSize(_ p: UnsafeRawBufferPointer, _ start: Int, _ lf: Int) -> Int? {
        guard lf > start, p[lf - 1] == 0x0D else {
            queueError(400, "bad_chunk", "chunk-size line does not end with CRLF")
            return nil
        }
        var k = start
        var size = 0
        var digits = 0
        while k < lf - 1, let d = hexValue(p[k]) {
            if digits >= 15 {
                queueError(413, "body_too_large", "chunk size too large")
                return nil
            }
            size = size << 4 | d
            digits += 1
            k += 1
        }
        guard digits > 0 else {
            queueError(400, "bad_chunk", "chunk size is not a hex number")
            return nil
        }
        // Optional whitespace, then chunk extensions (";name=value"), which we ignore.
        while k < lf - 1 && (p[k] == 0x20 || p[k] == 0x09) { k += 1 }
        if k < lf - 1 && p[k] != 0x3B {
            queueError(400, "bad_chunk", "unexpected character after the chunk size")
            return nil
        }
        return size
    }
}

// MARK: byte helpers

/// Empties `buffer`, keeping its capacity unless that is large (see `retainedBufferLimit`).
@inline(__always)
func clearRetainingLittle(_ buffer: inout [UInt8]) {
    if buffer.capacity > HTTP1Engine.retainedBufferLimit {
        buffer = []
    } else {
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Characters allowed in a Host value (RFC 9110 §7.2: uri-host [":" port]): no whitespace,
/// controls, or delimiters that end an authority.
private func isHostChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x00...0x20, 0x7F...0xFF: false
    case 0x22, 0x23, 0x2F, 0x3C, 0x3E, 0x3F, 0x40, 0x5C, 0x5E, 0x60, 0x7B, 0x7C, 0x7D: false // " # / < > ? @ \ ^ ` { | }
    default: true
    }
}

/// A SETTINGS payload an HTTP/2 session would accept (RFC 9113 §6.5.2): whole 6-byte
/// entries, a sane count, and known settings within their ranges (unknown ones are ignored).
func isSaneSettingsPayload(_ p: [UInt8]) -> Bool {
    guard p.count % 6 == 0, p.count <= 6 * 32 else { return false }
    var k = 0
    while k < p.count {
        let id = UInt16(p[k]) << 8 | UInt16(p[k + 1])
        let v = UInt32(p[k + 2]) << 24 | UInt32(p[k + 3]) << 16 | UInt32(p[k + 4]) << 8 | UInt32(p[k + 5])
        switch id {
        case 0x2, 0x8: if v > 1 { return false }                       // ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL
        case 0x4: if v > 0x7FFF_FFFF { return false }                  // INITIAL_WINDOW_SIZE
        case 0x5: if v < 16_384 || v > 16_777_215 { return false }     // MAX_FRAME_SIZE
        default: break
        }
        k += 6
    }
    return true
}

@inline(__always)
private func findLF(_ p: UnsafeRawBufferPointer, from: Int) -> Int? {
    findByte(p, 0x0A, from, p.count)
}

/// ASCII case-insensitive compare with a lower-case literal.
private func lowerEqual(_ p: UnsafeRawBufferPointer, _ at: Int, _ s: StaticString) -> Bool {
    let n = s.utf8CodeUnitCount
    guard at + n <= p.count else { return false }
    let sp = s.utf8Start
    for k in 0..<n {
        var b = p[at + k]
        if b >= 0x41 && b <= 0x5A { b |= 0x20 }
        if b != sp[k] { return false }
    }
    return true
}


/// base64url (RFC 4648 §5), padding optional; also accepts the standard alphabet.
func base64URLDecode(_ s: String) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count * 3 / 4)
    var acc: UInt32 = 0
    var bits = 0
    for c in s.utf8 {
        let v: UInt32
        switch c {
        case 0x41...0x5A: v = UInt32(c - 0x41)
        case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
        case 0x30...0x39: v = UInt32(c - 0x30 + 52)
        case 0x2D, 0x2B: v = 62
        case 0x5F, 0x2F: v = 63
        case 0x3D: continue
        default: return nil
        }
        acc = acc << 6 | v
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
        }
    }
    return out
}
