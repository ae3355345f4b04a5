import Dispatch
import TLS

/// An outbound request. `path` includes the query. `Host`, `Content-Length` and `Connection`
/// are added by the client engine; `headers` carries the rest.
public struct ClientRequest: Sendable {
    public var method: String
    public var path: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String = "POST", path: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }
}

/// A whole response (body read completely; chunked bodies de-chunked).
public struct ClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Why a request got no response. Every case is retryable from the exporter's point of view
/// (the backend may be back later); `description` is a sentence for logs and `/status`.
public struct ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The host name did not resolve (or resolved to nothing).
        case resolveFailed = "resolve_failed"
        /// TCP connect failed (refused, unreachable) or did not finish within `connectTimeout`.
        case connectFailed = "connect_failed"
        /// No complete response within `responseTimeout`.
        case timeout
        /// The peer closed or reset the connection before the response was complete.
        case connectionClosed = "connection_closed"
        /// The peer sent something that is not valid HTTP (or a response over `maxResponseBytes`).
        case protocolError = "protocol_error"
        /// The client was shut down before the request completed.
        case shutdown
        /// The TLS handshake failed (certificate not accepted, no common protocol, the server
        /// refused our certificate …) or the TLS stream broke; the message says why.
        case tlsFailed = "tls_failed"
    }
    public var code: Code
    public var message: String
    /// Whether the request may have reached the server (for idempotency decisions; the
    /// exporters retry anyway: delivery is at-least-once).
    public var requestMaybeSent: Bool

    public init(_ code: Code, _ message: String, requestMaybeSent: Bool = false) {
        self.code = code
        self.message = message
        self.requestMaybeSent = requestMaybeSent
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Which HTTP version the client speaks to a backend.
public enum ClientProtocol: String, Sendable, Hashable, CaseIterable {
    /// HTTP/1.1 with a keep-alive connection pool (`poolSize` connections per address).
    case http1 = "http1"
    /// HTTP/2 over cleartext with prior knowledge: one connection per address, many streams.
    /// Over TLS (`https`): HTTP/2 when the server chooses `h2` by ALPN, else HTTP/1.1.
    case h2c = "h2c"

    /// The ALPN list a TLS client offers for this setting: `h2` and `http/1.1` for HTTP/2,
    /// only `http/1.1` otherwise (so a server that prefers h2 still answers HTTP/1.1).
    public var alpnOffer: [String] {
        self == .h2c ? ["h2", "http/1.1"] : ["http/1.1"]
    }
}

/// A backend address parsed from a URL: `http://host:port/path` or `https://…` (TLS). IPv6
/// literals in brackets. Default port 80, or 443 for https.
public struct ClientEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Path (and query) of the URL, "/" when absent.
    public var path: String
    /// `https`: the connection speaks TLS (the client's `tls` context, or the system roots).
    public var tls: Bool

    public init(host: String, port: Int, path: String = "/", tls: Bool = false) {
        self.host = host
        self.port = port
        self.path = path
        self.tls = tls
    }

    public var scheme: String { tls ? "https" : "http" }
    var defaultPort: Int { tls ? 443 : 80 }

    /// Parses an `http://` or `https://` URL; throws a message a person can act on.
    public init(url: String) throws(ClientError) {
        let parts = url.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw ClientError(.protocolError, "'\(url)' is not a URL: expected http(s)://HOST[:PORT]/PATH")
        }
        let tls: Bool
        switch parts[0].lowercased() {
        case "http": tls = false
        case "https": tls = true
        default: throw ClientError(.protocolError, "'\(url)': only http:// and https:// are supported")
        }
        let rest = parts[1]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<slash]
        let path = rest[slash...].isEmpty ? "/" : String(rest[slash...])
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var host: Substring
        var port = tls ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw ClientError(.protocolError, "'\(url)': unterminated IPv6 literal")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw ClientError(.protocolError, "'\(url)': bad port")
                }
                port = p
            } else if !after.isEmpty {
                throw ClientError(.protocolError, "'\(url)': unexpected text after the IPv6 address")
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                throw ClientError(.protocolError, "'\(url)': bad port")
            }
            port = p
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw ClientError(.protocolError, "'\(url)': no host") }
        self.init(host: String(host), port: port, path: path, tls: tls)
    }

    /// The value of the `Host` header / `:authority`.
    public var authority: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == defaultPort ? h : "\(h):\(port)"
    }

    public var description: String { "\(scheme)://\(authority)\(path)" }

    /// Whether the host is a loopback name or address (compression is off by default there).
    public var isLoopback: Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1"
    }
}

/// Limits and tuning of `HTTPClient`; every field has a documented default.
public struct HTTPClientConfiguration: Sendable {
    public var protocolVersion: ClientProtocol = .http1
    /// The TLS client context for `https` endpoints (trust, client certificate, ALPN — build
    /// it with `alpn: protocolVersion.alpnOffer`). nil: the system CA roots, no client
    /// certificate. Ignored for `http` endpoints. The TLS handshake must finish within
    /// `connectTimeout` too.
    public var tls: TLSContext?
    /// The name the server's certificate must carry, also sent as SNI (default: the
    /// endpoint's host; an IP address is checked against the certificate's IP SANs).
    public var tlsServerName: String?
    /// HTTP/1.1 keep-alive connections per resolved address (default 4). h2c uses one
    /// connection per address and up to `maxConcurrentStreams` streams on it.
    public var poolSize: Int = 4
    /// Seconds a non-blocking connect may take (default 5).
    public var connectTimeout: Double = 5
    /// Seconds from the request's first byte written to the response's last byte read (default 30).
    public var responseTimeout: Double = 30
    /// An idle pooled connection is closed after this many seconds (default 60).
    public var idleTimeout: Double = 60
    /// DNS names are resolved again this often, seconds, so a backend behind DNS can move (default 30).
    public var resolveInterval: Double = 30
    /// Largest response body accepted (default 16 MiB); larger → `.protocolError`.
    public var maxResponseBytes: Int = 16 << 20
    /// h2c: streams opened at once on one connection (default 100; the server's limit wins if lower).
    public var maxConcurrentStreams: Int = 100
    /// h2c: stream and connection receive windows (default 1 MiB / 16 MiB).
    public var http2StreamWindow: Int = 1 << 20
    public var http2ConnectionWindow: Int = 16 << 20
    /// Largest response head (status line + headers), and separately the largest chunked
    /// trailer section (default 64 KiB); larger → `.protocolError`.
    public var maxResponseHeaderBytes: Int = 64 << 10
    /// Most header fields in one response head (default 100); more → `.protocolError`.
    public var maxResponseHeaderCount: Int = 100
    /// After a connect to one address of the backend fails, that address is skipped for this
    /// many seconds while another address can be used (default 2).
    public var failedAddressDelay: Double = 2
    /// Bytes read from one connection per readiness event before yielding the loop (default 512 KiB).
    public var readBudget: Int = 512 << 10

    public init() {}
}
