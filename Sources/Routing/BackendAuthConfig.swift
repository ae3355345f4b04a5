import Basics
#if canImport(Glibc)
import Glibc
#endif

/// A token a backend's requests carry (`conf.auth` of a zipkin, datadog or tracerelay backend,
/// or of a MeshTrace inline backend), so a relay can send to a token-protected relay
/// (docs/ingest-auth.md) or to a Datadog intake that wants an API key:
///
/// ```yaml
/// conf:
///   url: https://central.example.com:9411
///   auth:
///     tokenFile: /etc/tracerelay/central-token   # the first non-empty line is the token
///     header: X-Api-Key                          # optional; default below
/// ```
///
/// Default header: `Authorization: Bearer <token>` for zipkin and tracerelay backends,
/// `DD-Api-Key: <token>` for datadog backends. A `header:` named `Authorization` keeps the
/// `Bearer` scheme; any other header carries the token as it is. The file is read when the
/// configuration is read (start, `check`, every reload); the token is kept in a `BackendToken`,
/// which never prints itself.
public struct BackendAuthConfig: Hashable, Sendable {
    /// The file the token was read from (what `check`, logs and messages show).
    public var tokenFile: String
    /// The header's name; nil: `Authorization` (`DD-Api-Key` for datadog backends).
    public var header: String?
    public var token: BackendToken

    public init(tokenFile: String, header: String? = nil, token: BackendToken) {
        self.tokenFile = tokenFile
        self.header = header
        self.token = token
    }

    /// The header name in effect for a backend of `kind`.
    public func headerName(for kind: BackendConfig.Kind) -> String {
        header ?? (kind == .datadog ? "DD-Api-Key" : "Authorization")
    }

    /// The header field every request to the backend carries.
    package func field(for kind: BackendConfig.Kind) -> (name: String, value: String) {
        let name = headerName(for: kind)
        return (name, name.lowercased() == "authorization" ? "Bearer " + token.value : token.value)
    }

    /// Headers the exporter sets itself; `header:` may not name one of them.
    static let reservedHeaders: Set<String> = [
        "content-type", "content-encoding", "content-length", "transfer-encoding", "host", "connection", "te",
        "upgrade", "user-agent", "x-datadog-trace-count", "x-tracerelay-tags",
    ]
}

/// A secret read from a token file: compared and hashed like its text, but printed, dumped and
/// reflected as `<redacted>`, so a backend's settings can be logged or shown whole.
public struct BackendToken: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    package let value: String
    package init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(reflecting: "<redacted>") }

    /// The token of a token file: its first non-empty line, without surrounding blanks.
    /// - Returns: the token, or a message naming `path` (never the file's content).
    package static func read(_ path: String) -> Result<BackendToken, ConfigIssueMessage> {
        guard let text = readWholeFile(path) else {
            return .failure(ConfigIssueMessage("cannot read the token file '\(path)': \(String(cString: strerror(errno)))"))
        }
        let line = text.split(whereSeparator: \.isNewline).lazy.map { String($0.trimmingOWS()) }.first { !$0.isEmpty }
        guard let line else { return .failure(ConfigIssueMessage("the token file '\(path)' is empty: its first non-empty line is the token")) }
        guard line.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            return .failure(ConfigIssueMessage("the token in '\(path)' holds a space, a control or a non-ASCII character; "
                                               + "a token is printable ASCII without spaces (it travels in an HTTP header)"))
        }
        return .success(BackendToken(line))
    }
}

/// A problem's text, as a `Result` failure.
package struct ConfigIssueMessage: Error, Sendable {
    package var text: String
    package init(_ text: String) { self.text = text }
}

extension DocumentParser {
    /// Reads `conf.auth` of `backend` (whose URLs and `tls` are already parsed); nil when absent
    /// or unusable (errors recorded at the field's path). Warns when the token would travel in
    /// cleartext to a host other than loopback.
    func parseBackendAuth(_ conf: ConfigMapping, _ backend: BackendConfig) -> BackendAuthConfig? {
        guard let (node, m) = httpBackendSection(conf, "auth", backend) else { return nil }
        defer { m.finish() }
        var header: String?
        if let v = m["header"], let h = v.nonEmptyString() {
            if !h.utf8.allSatisfy(isTokenChar) {
                v.error(.invalidValue, "expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got '\(h)'")
            } else if BackendAuthConfig.reservedHeaders.contains(h.lowercased()) {
                v.error(.invalidValue, "the exporter sets '\(h)' itself; name another header for the token")
            } else {
                header = h
            }
        }
        guard let fileNode = m.required("tokenFile", "the file holding the token"), let path = fileNode.nonEmptyString() else { return nil }
        let token: BackendToken
        switch BackendToken.read(path) {
        case .success(let t): token = t
        case .failure(let e):
            fileNode.error(.invalidValue, e.text)
            return nil
        }
        let auth = BackendAuthConfig(tokenFile: path, header: header, token: token)
        let exposed = cleartextHosts(backend).filter { !isLoopbackHost($0) }
        if !exposed.isEmpty {
            sink.add(.warning, .invalidValue, node.path, node.line,
                     "backend '\(backend.name)' sends its token (\(auth.headerName(for: backend.kind)) from '\(path)') without TLS to "
                     + exposed.joined(separator: ", ") + ": anyone on the path can read it — use https:// (or tls:)")
        }
        return auth
    }

    /// The hosts a backend without TLS is reached at: http:// URLs, a Datadog address, a DNS
    /// resolver's name (a file resolver's entries are unknown until run time).
    private func cleartextHosts(_ b: BackendConfig) -> [String] {
        if b.tls != nil { return [] }
        var hosts = Set(([b.url].compactMap { $0 } + b.urls).filter { $0.lowercased().hasPrefix("http://") }.map(urlHost))
        if b.url == nil, let a = b.address { hosts.insert(a) }
        if case .dns(let name, _, _) = b.endpoints.resolver { hosts.insert(name) }
        return hosts.sorted()
    }
}

/// The host of an `http://host:port/path` URL (brackets of an IPv6 literal kept).
func urlHost(_ url: String) -> String {
    var rest = Substring(url)
    if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
    rest = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
    if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
    if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { return String(rest[...close]) }
    return String(rest.prefix { $0 != ":" })
}

/// `localhost`, 127.0.0.0/8 or ::1: a token sent there does not cross a network.
func isLoopbackHost(_ host: String) -> Bool {
    let h = host.lowercased()
    return h == "localhost" || h.hasSuffix(".localhost") || h.hasPrefix("127.") || h == "[::1]" || h == "::1"
}
