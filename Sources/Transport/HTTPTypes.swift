import Basics
import TLS
import Dispatch

/// Request headers in arrival order. Names are compared case-insensitively; HTTP/2 names
/// arrive lower-case already.
public struct HTTPHeaders: Sendable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []

    public init(_ fields: [(name: String, value: String)] = []) { self.fields = fields }

    public mutating func add(name: String, value: String) { fields.append((name, value)) }

    /// The first value of `name` (case-insensitive).
    public subscript(_ name: String) -> String? {
        for f in fields where Self.sameName(f.name, name) { return f.value }
        return nil
    }

    /// Every value of `name` (case-insensitive), in order.
    public func values(_ name: String) -> [String] {
        fields.filter { Self.sameName($0.name, name) }.map(\.value)
    }

    /// ASCII case-insensitive comparison without allocating (header lookups run per request).
    public static func sameName(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        for (x, y) in zip(a.utf8, b.utf8) where x != y {
            let lx = x &- 65 < 26 ? x | 0x20 : x
            let ly = y &- 65 < 26 ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

public enum HTTPVersion: String, Sendable { case http1_0 = "HTTP/1.0", http1_1 = "HTTP/1.1", http2 = "HTTP/2" }

/// A whole request: head plus the complete body in one contiguous buffer, handed over
/// without a further copy.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query (`/api/v2/spans`).
    public var path: String
    /// The raw query string after `?`, "" if none.
    public var query: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// "ip:port" of the peer, for logs.
    public var remoteAddress: String
    /// Name of the listener that accepted the connection.
    public var listener: String
    /// The verified client certificate's identity when the request came over TLS with a
    /// client certificate (mTLS); nil otherwise.
    public var peer: TLSPeerIdentity?

    public init(method: String, path: String, query: String = "", version: HTTPVersion = .http1_1,
                headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], remoteAddress: String = "", listener: String = "",
                peer: TLSPeerIdentity? = nil) {
        self.peer = peer
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.listener = listener
    }
}

/// A response. `Content-Length`, `Date` and `Connection` are added by the server.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response; `json` must already be valid JSON.
    public static func json(_ status: Int, _ json: String, headers: [(name: String, value: String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: Array(json.utf8))
    }

    /// `{"error": code, "message": message}` — the shape every error reply of the relay has.
    public static func error(_ status: Int, code: String, message: String,
                             headers: [(name: String, value: String)] = []) -> HTTPResponse {
        json(status, "{\"error\":\(jsonQuoted(code)),\"message\":\(jsonQuoted(message))}", headers: headers)
    }
}


/// Answers a request exactly once via `respond`, which may be called later and from any
/// thread (after the body was queued elsewhere, say).
public protocol HTTPHandler: Sendable {
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
}

/// A handler from a closure.
public struct ClosureHandler: HTTPHandler {
    let body: @Sendable (HTTPRequest, @escaping @Sendable (HTTPResponse) -> Void) -> Void
    public init(_ body: @escaping @Sendable (HTTPRequest, @escaping @Sendable (HTTPResponse) -> Void) -> Void) { self.body = body }
    public func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) { body(request, respond) }
}

/// Method + path → handler. Built before the server starts and immutable afterwards, so
/// lookups need no lock. Unknown path → 404, known path with another method → 405, both
/// with a JSON reason.
public struct EndpointRouter: Sendable, HTTPHandler {
    private var routes: [String: [String: any HTTPHandler]] = [:]

    public init() {}

    /// Registers `handler` for `method` (upper-case) on the exact `path`. A later
    /// registration for the same method and path replaces the earlier one.
    public mutating func register(_ method: String, _ path: String, _ handler: any HTTPHandler) {
        routes[path, default: [:]][method.uppercased()] = handler
    }

    public mutating func register(_ method: String, _ path: String,
                                  _ body: @escaping @Sendable (HTTPRequest, @escaping @Sendable (HTTPResponse) -> Void) -> Void) {
        register(method, path, ClosureHandler(body))
    }

    /// Adds every route of `other` (its handler wins where both have one).
    public mutating func merge(_ other: EndpointRouter) {
        for (path, byMethod) in other.routes {
            for (method, h) in byMethod { routes[path, default: [:]][method] = h }
        }
    }

    public func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let byMethod = routes[request.path] else {
            respond(.error(404, code: "not_found", message: "no endpoint at \(request.path)"))
            return
        }
        let method = request.method == "HEAD" && byMethod["HEAD"] == nil ? "GET" : request.method
        guard let h = byMethod[method] else {
            let allowed = byMethod.keys.sorted().joined(separator: ", ")
            respond(.error(405, code: "method_not_allowed", message: "\(request.method) is not allowed on \(request.path); use \(allowed)",
                           headers: [("Allow", allowed)]))
            return
        }
        h.handle(request, respond: respond)
    }
}
