import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Sans-IO HTTP/1.1 client engine: one request at a time on one connection (no pipelining,
/// so `capacity` is 1 while idle and reusable, else 0).
///
/// Requests are serialized whole (request line, `Host` from the authority, `Content-Length`,
/// the caller's headers minus the ones the engine owns). Responses are read with their
/// framing (RFC 9112 §6.3): nothing after HEAD / 1xx / 204 / 304, `Transfer-Encoding: chunked`
/// (extensions ignored; trailer fields are appended to the response headers), `Content-Length`,
/// or — neither present — everything until the server closes (the response then completes in
/// `connectionEnded`). Interim 1xx responses (100 Continue, 103 Early Hints…) are skipped;
/// `Expect` is never sent.
///
/// The connection closes after a response when the server said `Connection: close`, spoke
/// HTTP/1.0 without `keep-alive`, delimited the body by EOF, or answered before the request
/// was completely handed out (an early response: how much of the request body the server
/// read is unknown, so the rest is dropped rather than sent into a stream of unknown state).
/// Anything that is not valid HTTP, a head over `maxResponseHeaderBytes` /
/// `maxResponseHeaderCount` or a body over `maxResponseBytes` fails the request with
/// `.protocolError` and the state becomes `.closeNow`.
///
/// Used only on its connection's queue; completions run there, each exactly once.
package final class HTTP1ClientEngine: ClientEngine {
    private let config: HTTPClientConfiguration

    private struct InFlight {
        let completion: @Sendable (Result<ClientResponse, ClientError>) -> Void
        let isHead: Bool
        /// Some of the request's bytes were handed to the connection.
        var drainedAny = false
    }

    private enum Parse {
        case head
        case body(remaining: Int)
        /// A chunked body: `chunks` has the framing state.
        case chunked
        /// No length: the body runs until the server closes.
        case untilEOF
    }

    private var current: InFlight?
    private var parse: Parse = .head
    private var chunks = ChunkedDecoder(bareLF: true, maxTrailerBytes: 0)
    /// Unconsumed input: a partial head, chunk-size line, chunk end or trailer line.
    private var inBuf: [UInt8] = []
    /// Bytes of the partial head in `inBuf` already scanned for its end.
    private var headScanned = 0

    private var status = 0
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []
    /// The response being read ends the connection (`Connection: close`, HTTP/1.0, EOF-delimited).
    private var responseCloses = false

    private var out = ByteQueue(retainedCapacity: 0)

    /// No further request on this connection.
    private var closing = false
    /// A protocol error: close at once.
    private var failed = false
    private var ended = false

    package init(configuration: HTTPClientConfiguration) {
        self.config = configuration
    }

    // MARK: ClientEngine

    package func enqueue(_ request: ClientRequest, authority: String,
                         completion: @escaping @Sendable (Result<ClientResponse, ClientError>) -> Void) {
        guard capacity > 0 else {
            completion(.failure(ClientError(.connectionClosed, "the connection takes no more requests")))
            return
        }
        if let problem = Self.validate(request) {
            completion(.failure(ClientError(.protocolError, problem)))
            return
        }
        current = InFlight(completion: completion, isHead: request.method == "HEAD")
        resetResponse()
        serialize(request, authority: authority)
    }

    package func receive(_ bytes: UnsafeRawBufferPointer) -> ClientEngineState {
        guard bytes.count > 0, !failed, !ended else { return state }
        if inBuf.isEmpty {
            let used = process(bytes)
            if used < bytes.count { keep(UnsafeRawBufferPointer(rebasing: bytes[used...])) }
        } else {
            // Parse from a buffer taken out of `inBuf`, so nothing borrows it meanwhile.
            var buffer: [UInt8] = []
            swap(&buffer, &inBuf)
            buffer.append(contentsOf: bytes)
            let used = buffer.withUnsafeBytes { process($0) }
            if used < buffer.count {
                buffer.withUnsafeBytes { keep(UnsafeRawBufferPointer(rebasing: $0[used...])) }
            }
        }
        return state
    }

    /// Input `process` left: a partial element of the response in progress, or bytes nobody
    /// asked for. Stray CR/LF after a response is tolerated; anything else (a second response,
    /// a 408 on an idle connection) makes the connection unusable.
    private func keep(_ rest: UnsafeRawBufferPointer) {
        if failed { return }
        if current != nil {
            inBuf.append(contentsOf: rest)
        } else if !rest.allSatisfy({ $0 == 0x0D || $0 == 0x0A }) {
            failed = true
        }
    }

    package func drainOutput(into dest: inout [UInt8], limit: Int) {
        guard !out.isEmpty, limit > 0 else { return }
        current?.drainedAny = true
        out.drain(into: &dest, limit: limit)
    }

    package var hasPendingOutput: Bool { !out.isEmpty }

    package var capacity: Int { current == nil && !closing && !failed && !ended ? 1 : 0 }

    package var inFlight: Int { current == nil ? 0 : 1 }

    package var state: ClientEngineState {
        if failed || ended { return .closeNow }
        if closing && current == nil { return .closeAfterFlush }
        return .open
    }

    package func connectionEnded(_ error: ClientError) {
        guard !ended else { return }
        ended = true
        out.clear()
        guard let c = current else { return }
        if case .untilEOF = parse {
            // The close is the end of this body (RFC 9112 §6.3, item 8).
            return complete()
        }
        current = nil
        var e = error
        e.requestMaybeSent = c.drainedAny
        if e.code == .connectionClosed && status != 0 {
            e.message += " (after \(status) response head, \(body.count) body bytes)"
        }
        c.completion(.failure(e))
    }

    // MARK: serializing

    /// Why a request cannot be sent as-is (CR/LF injection, bad tokens), or nil.
    private static func validate(_ r: ClientRequest) -> String? {
        if r.method.isEmpty || !r.method.utf8.allSatisfy(isTokenChar) { return "invalid request method '\(r.method)'" }
        if r.path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) { return "the request path contains spaces or control characters" }
        for (name, value) in r.headers {
            if name.isEmpty || !name.utf8.allSatisfy(isTokenChar) { return "invalid request header name '\(name)'" }
            if value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
                return "the value of request header '\(name)' contains control characters"
            }
        }
        return nil
    }

    private func serialize(_ r: ClientRequest, authority: String) {
        out.reserveCapacity(out.count + 128 + r.path.utf8.count + r.body.count + r.headers.count * 32)
        out.append(contentsOf: r.method.utf8)
        out.append(0x20)
        if r.path.isEmpty { out.append(0x2F) } else { out.append(contentsOf: r.path.utf8) }
        out.append(" HTTP/1.1\r\nHost: ")
        out.append(contentsOf: authority.utf8)
        out.append(contentsOf: "\r\n".utf8)
        for (name, value) in r.headers {
            if HTTPHeaders.sameName(name, "host") || HTTPHeaders.sameName(name, "content-length")
                || HTTPHeaders.sameName(name, "connection") || HTTPHeaders.sameName(name, "transfer-encoding")
                || HTTPHeaders.sameName(name, "expect") { continue }
            out.append(contentsOf: name.utf8)
            out.append(0x3A); out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D); out.append(0x0A)
        }
        // RFC 9110 §8.6: a body, or a method that defines one, gets a length (also when 0).
        if !r.body.isEmpty || r.method == "POST" || r.method == "PUT" || r.method == "PATCH" {
            out.append(contentsOf: "Content-Length: \(r.body.count)\r\n".utf8)
        }
        out.append(0x0D); out.append(0x0A)
        out.append(contentsOf: r.body)
    }

    // MARK: parsing

    private func resetResponse() {
        parse = .head
        headScanned = 0
        status = 0
        headers = HTTPHeaders()
        body = []
        responseCloses = false
    }

    private func fail(_ message: String) {
        failed = true
        out.clear()
        guard let c = current else { return }
        current = nil
        c.completion(.failure(ClientError(.protocolError, message, requestMaybeSent: true)))
    }

    /// Parses as much of `p` as possible while a request is in flight; returns the bytes used.
    private func process(_ p: UnsafeRawBufferPointer) -> Int {
        var i = 0
        let n = p.count
        while i < n, current != nil, !failed {
            switch parse {
            case .head:
                guard let end = scanHead(p, from: i) else { return failed ? n : i }
                let start = i
                i = end
                headScanned = 0
                headReceived(p, start, end)
            case .body(let remaining):
                let take = min(remaining, n - i)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i..<(i + take)]))
                i += take
                if take == remaining { complete() } else { parse = .body(remaining: remaining - take) }
            case .untilEOF:
                let take = n - i
                if body.count + take > config.maxResponseBytes {
                    fail("the response body exceeds \(config.maxResponseBytes) bytes")
                    return n
                }
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[i..<n]))
                i = n
            case .chunked:
                switch chunks.step(p, &i) {
                case .needMore:
                    return i
                case .chunkStart(let size):
                    if size > config.maxResponseBytes - body.count {
                        fail("the chunked response body exceeds \(config.maxResponseBytes) bytes")
                        return n
                    }
                    if body.capacity < body.count + size { body.reserveCapacity(max(body.count + size, body.capacity * 2)) }
                case .data(let range):
                    body.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[range]))
                case .trailer(let ls, let le):
                    guard let field = headerField(p, ls, le) else {
                        fail("malformed trailer field")
                        return n
                    }
                    headers.add(name: field.name, value: field.value)
                case .end:
                    complete()
                case .failure(let problem):
                    fail(message(problem))
                    return n
                }
            }
        }
        return i
    }

    /// Looks for the blank line ending the head (CRLF or bare LF line ends are accepted).
    /// Returns the offset just past it, or nil (more bytes needed, or failed).
    private func scanHead(_ p: UnsafeRawBufferPointer, from start: Int) -> Int? {
        let n = p.count
        // Fail fast on something that is not an HTTP/1 response at all (checked again until the
        // whole prefix has arrived: a first read may end inside it).
        let prefix: StaticString = "HTTP/1."
        if headScanned < prefix.utf8CodeUnitCount {
            for k in 0..<min(n - start, prefix.utf8CodeUnitCount) where p[start + k] != prefix.utf8Start[k] {
                let line = string(p, start, min(n, start + 40))
                fail("malformed status line '\(line)' (expected HTTP/1.x)")
                return nil
            }
        }
        var j = start + headScanned
        while j < n {
            guard let lf = findByte(p, 0x0A, j, n) else { break }
            if lf + 1 < n && p[lf + 1] == 0x0A {
                return checkHeadSize(lf + 2 - start) ? lf + 2 : nil
            }
            if lf + 2 < n && p[lf + 1] == 0x0D && p[lf + 2] == 0x0A {
                return checkHeadSize(lf + 3 - start) ? lf + 3 : nil
            }
            if lf + 2 >= n { break } // the blank line may be arriving
            j = lf + 1
        }
        // Re-scan the last two bytes next time: an LF there may start the blank line.
        headScanned = max(0, n - start - 2)
        _ = checkHeadSize(n - start)
        return nil
    }

    private func checkHeadSize(_ size: Int) -> Bool {
        if size > config.maxResponseHeaderBytes {
            fail("the response head exceeds \(config.maxResponseHeaderBytes) bytes")
            return false
        }
        return true
    }

    /// Parses a complete head `p[start..<end]`: status line, fields, then the body framing.
    private func headReceived(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        let lf = findByte(p, 0x0A, start, end)!
        let le = lf > start && p[lf - 1] == 0x0D ? lf - 1 : lf
        // "HTTP/1.x SP 3DIGIT [SP reason]"
        guard le - start >= 12, bytesEqual(p, start, "HTTP/1."), isDigit(p[start + 7]), p[start + 8] == 0x20,
              isDigit(p[start + 9]), isDigit(p[start + 10]), isDigit(p[start + 11]),
              le - start == 12 || p[start + 12] == 0x20 else {
            let line = string(p, start, min(le, start + 80))
            return fail("malformed status line '\(line)' (expected HTTP/1.x, a space and a 3-digit status)")
        }
        let minor = p[start + 7] - 0x30
        let code = Int(p[start + 9] - 0x30) * 100 + Int(p[start + 10] - 0x30) * 10 + Int(p[start + 11] - 0x30)
        guard code >= 100 else { return fail("invalid status code \(code)") }

        var fields = HTTPHeaders()
        var count = 0
        var contentLength: Int?
        var transferCodings: [String] = []
        var teSeen = false
        var connectionTokens: [String] = []
        var ls = lf + 1
        while ls < end {
            let lineLF = findByte(p, 0x0A, ls, end)!
            let lineEnd = lineLF > ls && p[lineLF - 1] == 0x0D ? lineLF - 1 : lineLF
            if lineEnd == ls { break } // the blank line
            guard let field = headerField(p, ls, lineEnd) else {
                return fail("malformed response header line '\(string(p, ls, min(lineEnd, ls + 80)))'")
            }
            count += 1
            if count > config.maxResponseHeaderCount {
                return fail("more than \(config.maxResponseHeaderCount) response header fields")
            }
            switch field.name.utf8.count {
            case 10 where HTTPHeaders.sameName(field.name, "connection"):
                connectionTokens += tokens(field.value)
            case 14 where HTTPHeaders.sameName(field.name, "content-length"):
                switch mergeContentLength(field.value, into: &contentLength) {
                case .none: break
                case .notANumber: return fail("response Content-Length '\(field.value)' is not a number")
                case .conflicting: return fail("conflicting response Content-Length values")
                }
            case 17 where HTTPHeaders.sameName(field.name, "transfer-encoding"):
                teSeen = true
                transferCodings += tokens(field.value)
            default:
                break
            }
            fields.add(name: field.name, value: field.value)
            ls = lineLF + 1
        }

        if code < 200 {
            // Interim response: skip it, the final one follows. 101 was never asked for.
            if code == 101 { return fail("unexpected 101 Switching Protocols (no upgrade was requested)") }
            resetResponse()
            return
        }
        status = code
        headers = fields
        let keepAlive = minor >= 1 ? !connectionTokens.contains("close") : connectionTokens.contains("keep-alive")
        responseCloses = !keepAlive
        guard let c = current else { return }
        if c.isHead || code == 204 || code == 304 {
            return complete()
        }
        if teSeen {
            guard transferCodings == ["chunked"] else {
                return fail("unsupported response transfer coding '\(transferCodings.joined(separator: ", "))' (only chunked)")
            }
            // Content-Length next to chunked is ignored; the mix smells of smuggling: do not reuse.
            if contentLength != nil { responseCloses = true }
            chunks = ChunkedDecoder(bareLF: true, maxTrailerBytes: config.maxResponseHeaderBytes)
            parse = .chunked
            return
        }
        if let length = contentLength {
            if length > config.maxResponseBytes {
                return fail("the response body (\(length) bytes) exceeds \(config.maxResponseBytes) bytes")
            }
            if length == 0 { return complete() }
            body.reserveCapacity(min(length, 1 << 20))
            parse = .body(remaining: length)
            return
        }
        responseCloses = true
        parse = .untilEOF
    }

    /// The response is complete: hand it over and get ready for the next request.
    private func complete() {
        guard let c = current else { return }
        current = nil
        let response = ClientResponse(status: status, headers: headers, body: body)
        if responseCloses { closing = true }
        if !out.isEmpty {
            // Answered before the whole request was handed out: the server's view of the
            // stream is unknown, so the rest is dropped and the connection closes.
            out.clear()
            closing = true
        }
        resetResponse()
        c.completion(.success(response))
    }

    private func message(_ problem: ChunkedDecoder.Problem) -> String {
        switch problem {
        case .sizeLineTooLong: "chunk-size line longer than 4096 bytes"
        case .sizeLine(let e): e.message
        case .dataNotFollowedByCRLF: "chunk data is not followed by CRLF"
        case .trailersTooLarge: "the chunked trailer section exceeds \(config.maxResponseHeaderBytes) bytes"
        case .trailerLineWithoutCRLF: "trailer line does not end with CRLF"
        }
    }
}

// MARK: byte helpers

private func headerField(_ p: UnsafeRawBufferPointer, _ ls: Int, _ le: Int) -> (name: String, value: String)? {
    guard case .success(let f) = parseFieldLine(p, ls, le) else { return nil }
    return (string(p, ls, f.colon), string(p, f.valueStart, f.valueEnd))
}
