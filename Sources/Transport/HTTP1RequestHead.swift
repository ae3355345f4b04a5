// The request head of HTTP/1.1 (RFC 9112 §3, §5; RFC 9110 §5): one pure function from bytes to a
// head or an error answer. The framing state machine around it is HTTP1RequestParser.
import Basics

/// A parsed request head: what the request needs, its body framing, and what the connection
/// must do after it.
struct HTTP1RequestHead {
    var method: String
    var path: String
    var query: String
    var version: HTTPVersion
    var headers: HTTPHeaders
    /// `Connection: close`, or HTTP/1.0 without `keep-alive`.
    var closeAfter: Bool
    var isHead: Bool
    /// `Expect: 100-continue` on a request with a body.
    var expectContinue: Bool
    /// A valid `Upgrade: h2c` request's decoded `HTTP2-Settings` (nil: serve as HTTP/1.1).
    var h2cSettings: [UInt8]?
    /// The body's framing: `Content-Length` (0: no body) or chunked.
    var contentLength: Int
    var chunked: Bool
}

/// Why a request cannot be served: the status and JSON error to answer before closing.
struct HTTP1RequestError: Error {
    var status: Int
    var code: String
    var message: String
    var headers: [(name: String, value: String)] = []

    init(_ status: Int, _ code: String, _ message: String, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }
}

/// Parses the complete head `p[start..<end]` (request line through the blank line).
/// `allowUpgrade`: whether `Upgrade: h2c` may be honoured at all.
func parseRequestHead(_ p: UnsafeRawBufferPointer, _ start: Int, _ end: Int, config: HTTPServerConfiguration,
                      allowUpgrade: Bool) -> Result<HTTP1RequestHead, HTTP1RequestError> {
    func fail(_ status: Int, _ code: String, _ message: String) -> Result<HTTP1RequestHead, HTTP1RequestError> {
        .failure(HTTP1RequestError(status, code, message))
    }

    let lineEnd = findByte(p, 0x0A, start, p.count)! - 1 // at CR
    // Request line: method SP target SP version.
    guard let sp1 = findByte(p, 0x20, start, lineEnd), let sp2 = findByte(p, 0x20, sp1 + 1, lineEnd),
          sp1 > start, sp2 > sp1 + 1, findByte(p, 0x20, sp2 + 1, lineEnd) == nil else {
        return fail(400, "bad_request", "malformed request line (expected METHOD SP TARGET SP HTTP-VERSION)")
    }
    for k in start..<sp1 where !isTokenChar(p[k]) {
        return fail(400, "bad_request", "invalid character in the method")
    }
    for k in (sp1 + 1)..<sp2 where p[k] <= 0x20 || p[k] == 0x7F {
        return fail(400, "bad_request", "invalid character in the request target")
    }
    let version: HTTPVersion
    let vlen = lineEnd - (sp2 + 1)
    if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/1.1") {
        version = .http1_1
    } else if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/1.0") {
        version = .http1_0
    } else if vlen == 8 && bytesEqual(p, sp2 + 1, "HTTP/") && isDigit(p[sp2 + 6]) && p[sp2 + 7] == 0x2E && isDigit(p[sp2 + 8]) {
        return fail(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served over this framing (h2c needs the prior-knowledge preface or Upgrade)")
    } else {
        return fail(400, "bad_request", "malformed HTTP version in the request line")
    }
    let method = string(p, start, sp1)
    var target = string(p, sp1 + 1, sp2)
    if !target.hasPrefix("/") {
        // absolute-form (RFC 9112 §3.2.2): keep only the path and query.
        let u = Array(target.utf8)
        let schemeEnd = (0..<max(0, u.count - 2)).first { (j: Int) -> Bool in
            u[j] == 0x3A && u[j + 1] == 0x2F && u[j + 2] == 0x2F
        }
        if let k = schemeEnd {
            let afterAuthority = Substring(String(decoding: u[(k + 3)...], as: UTF8.self))
            target = afterAuthority.firstIndex(where: { $0 == "/" || $0 == "?" }).map { String(afterAuthority[$0...]) } ?? "/"
            if target.hasPrefix("?") { target = "/" + target }
        } else if !(target == "*" && method == "OPTIONS") && method != "CONNECT" {
            return fail(400, "bad_request", "the request target must start with '/'")
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
        let lf = findByte(p, 0x0A, ls, p.count)!
        let le = lf - 1
        let vs: Int, ve: Int, colon: Int
        switch parseFieldLine(p, ls, le) {
        case .success(let f): (colon, vs, ve) = (f.colon, f.valueStart, f.valueEnd)
        case .failure(.folded): return fail(400, "bad_request", "obsolete header line folding is not accepted")
        case .failure(.noName): return fail(400, "bad_request", "header line without a field name and ':'")
        case .failure(.badName(let c)):
            return fail(400, "bad_request", "invalid character in header name '\(string(p, ls, c))'")
        case .failure(.badValue(let c)):
            return fail(400, "bad_request", "invalid character in the value of header '\(string(p, ls, c))'")
        }
        count += 1
        if count > config.maxHeaderCount {
            return fail(431, "too_many_headers", "more than \(config.maxHeaderCount) header fields")
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
                return fail(400, "bad_request", "invalid character in the Host header")
            }
        case 6 where lowerEqual(p, ls, "expect"):
            expect = value
        case 7 where lowerEqual(p, ls, "upgrade"):
            if tokens(value).contains("h2c") { upgradeH2C = true }
        case 10 where lowerEqual(p, ls, "connection"):
            connectionTokens += tokens(value)
        case 14 where lowerEqual(p, ls, "content-length"):
            contentLengthSeen = true
            switch mergeContentLength(value, into: &contentLength) {
            case .none: break
            case .notANumber: return fail(400, "bad_content_length", "Content-Length '\(value)' is not a number")
            case .conflicting: return fail(400, "bad_content_length", "conflicting Content-Length values")
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
        return fail(400, "bad_request", hostCount == 0 ? "HTTP/1.1 request without a Host header" : "more than one Host header")
    }
    var chunked = false
    if transferEncodingSeen {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request means the framing is
        // unreliable (a 1.0 intermediary may have passed it on): refuse and close.
        if version == .http1_0 {
            return fail(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request")
        }
        if contentLengthSeen {
            return fail(400, "bad_request", "both Content-Length and Transfer-Encoding are present")
        }
        if transferCodings.isEmpty {
            return fail(501, "unsupported_transfer_encoding", "empty Transfer-Encoding")
        }
        if let unknown = transferCodings.first(where: { $0 != "chunked" }) {
            return fail(501, "unsupported_transfer_encoding", "transfer coding '\(unknown)' is not supported (only chunked)")
        }
        if transferCodings.count > 1 {
            return fail(400, "bad_request", "chunked is applied more than once")
        }
        chunked = true
    }
    let length = contentLength ?? 0
    if length > config.maxBodyBytes {
        return fail(413, "body_too_large", "the request body (\(length) bytes) exceeds \(config.maxBodyBytes) bytes")
    }
    var expectContinue = false
    if let e = expect, version == .http1_1 {
        if e.lowercased() == "100-continue" {
            expectContinue = chunked || length > 0
        } else {
            return fail(417, "expectation_failed", "unsupported expectation '\(e)'")
        }
    }
    var closeAfter = connectionTokens.contains("close")
    if version == .http1_0 && !connectionTokens.contains("keep-alive") { closeAfter = true }
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
    return .success(HTTP1RequestHead(method: method, path: path, query: query, version: version, headers: headers,
                                     closeAfter: closeAfter, isHead: method == "HEAD", expectContinue: expectContinue,
                                     h2cSettings: h2cSettings, contentLength: length, chunked: chunked))
}

// MARK: byte helpers

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
