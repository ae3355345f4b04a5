import Basics
import Buffering
import Codecs
import Dispatch
import Logging
import Routing
import Synchronization
import TLS
import Transport

/// Sends payloads to a Zipkin collector, a Datadog agent or another tracerelay over HTTP/1.1
/// or h2c, optionally compressed, through one `HTTPClient` per URL (several URLs — tracerelay
/// backends — are used round-robin). 2xx is success; 408, 429, 5xx and transport errors are
/// retryable (`Retry-After` passed on); 401 and 403 say our credentials are wrong (`unauthorized`,
/// retried too); other answers are permanent. With `conf.auth` every request carries the token.
///
/// `https` URLs (and a Datadog `address`/`port` with `conf.tls`) speak TLS: one `TLSContext`
/// per sender, built here from `conf.tls` (system roots by default; ALPN offers `h2` only when
/// the backend is configured for HTTP/2) and shared by its clients. A reload that changes the
/// backend's TLS settings builds a new sender, hence a new context.
final class HTTPSender: PayloadSender, @unchecked Sendable {
    struct Target: Sendable {
        var client: HTTPClient
        var endpoint: ClientEndpoint
    }
    let kind: BackendConfig.Kind
    let compression: ExportOptions.Compression
    private let targets: [Target]
    private let next = Atomic<Int>(0)
    /// The `conf.auth` header every request carries (shared with the backend's other senders;
    /// a reload may change it).
    private let credential: BackendCredential
    /// Latest `rate_by_service` answer of a Datadog backend (nil until it answers).
    let rates: DatadogRates?
    /// Compression contexts are not thread-safe: one per sender, used under a lock (compressing
    /// a 1 MiB batch takes ~2 ms, and a backend sends a few hundred batches a second at most).
    private let compressors: Mutex<(gzip: GzipCompressor?, zstd: ZstdCompressor?)>

    var target: String { targets.map(\.endpoint.description).joined(separator: ",") }

    /// - Throws: a message naming the bad URL or address.
    /// - Parameter credential: the backend's shared token header; nil: one of its own, from `backend.auth`.
    init(backend: BackendConfig, group: EventLoopGroup, logger: Logger, credential: BackendCredential? = nil) throws(ClientError) {
        kind = backend.kind
        self.credential = credential ?? BackendCredential(backend)
        var endpoints: [ClientEndpoint] = []
        switch backend.kind {
        case .datadog:
            if let url = backend.url {
                var e = try ClientEndpoint(url: url)
                e.path = "/v0.4/traces"
                endpoints = [e]
            } else {
                endpoints = [ClientEndpoint(host: backend.address ?? "127.0.0.1", port: backend.port ?? 8126, path: "/v0.4/traces")]
            }
        case .tracerelay:
            for u in backend.urls.isEmpty ? [backend.url].compactMap({ $0 }) : backend.urls {
                var e = try ClientEndpoint(url: u)
                if e.path == "/" { e.path = "/api/v2/spans" }
                endpoints.append(e)
            }
        default:
            guard let url = backend.url else { throw ClientError(.protocolError, "backend \(backend.name) has no url") }
            var e = try ClientEndpoint(url: url)
            if e.path == "/" { e.path = "/api/v2/spans" }
            endpoints = [e]
        }
        guard !endpoints.isEmpty else { throw ClientError(.protocolError, "backend \(backend.name) has no url") }
        let o = backend.export
        var config = HTTPClientConfiguration()
        config.protocolVersion = (o.protocolVersion ?? (backend.kind == .tracerelay ? .h2c : .http1)) == .h2c ? .h2c : .http1
        config.poolSize = o.poolSize ?? o.concurrency
        config.connectTimeout = o.connectTimeoutSeconds
        config.responseTimeout = o.timeoutSeconds
        var clientLogger = logger
        clientLogger[metadataKey: "backend"] = .string(backend.name)
        // `conf.tls` means TLS to every endpoint: a Datadog address/port, and endpoints a
        // resolver names as host:port (the parser refuses it next to an http:// URL).
        if backend.tls != nil { for i in endpoints.indices { endpoints[i].tls = true } }
        if endpoints.contains(where: \.tls) {
            config.tls = try Self.tlsContext(backend, offering: config.protocolVersion.alpnOffer, logger: clientLogger)
            config.tlsServerName = backend.tls?.serverName
        }
        targets = endpoints.map { Target(client: HTTPClient(endpoint: $0, configuration: config, group: group, logger: clientLogger), endpoint: $0) }
        let loopback = endpoints.allSatisfy(\.isLoopback)
        compression = o.compression ?? (backend.kind == .tracerelay ? .zstd : (loopback ? .none : .gzip))
        rates = backend.kind == .datadog ? DatadogRates() : nil
        compressors = Mutex((compression == .gzip ? GzipCompressor() : nil, compression == .zstd ? ZstdCompressor(level: 1) : nil))
    }

    /// The backend's TLS client context from `conf.tls` (none: the system roots).
    static func tlsContext(_ backend: BackendConfig, offering alpn: [String], logger: Logger) throws(ClientError) -> TLSContext {
        let t = backend.tls ?? BackendTLSConfig()
        let context: TLSContext
        do {
            context = try TLSContext(.client(caFile: t.caFile, insecureSkipVerify: t.insecureSkipVerify,
                                             certificateChain: t.certificate, privateKey: t.privateKey, alpn: alpn))
        } catch {
            throw ClientError(.tlsFailed, "conf.tls: \(error.message)")
        }
        if t.insecureSkipVerify {
            logger.warning("INSECURE: TLS to this backend accepts any certificate and name (insecureSkipVerify: true); anyone on the path can read and change its spans")
        }
        return context
    }

    func send(_ payload: Payload, completion: @escaping @Sendable (SendOutcome) -> Void) {
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max
        let t = targets[i % targets.count]
        var path = t.endpoint.path
        if kind == .tracerelay {
            // The next relay takes each family on its own endpoint.
            path = payload.format == .datadogV04 ? "/v0.4/traces" : (path == "/" ? "/api/v2/spans" : path)
        }
        var headers: [(name: String, value: String)] = [("Content-Type", payload.format.contentType),
                                                        ("User-Agent", "tracerelay/\(relayVersion)")]
        if payload.format == .datadogV04 { headers.append(("X-Datadog-Trace-Count", String(payload.traceCount))) }
        headers += payload.headers
        if let auth = credential.header { headers.append(auth) }
        var body = payload.body
        switch compression {
        case .none: break
        case .gzip:
            body = compressors.withLock { $0.gzip!.compress(body) }
            headers.append(("Content-Encoding", "gzip"))
        case .zstd:
            if let z = try? compressors.withLock({ try $0.zstd!.compress(body) }) {
                body = z
                headers.append(("Content-Encoding", "zstd"))
            }
        }
        // Datadog tracers PUT their traces; Zipkin collectors take POST.
        let request = ClientRequest(method: payload.format == .datadogV04 ? "PUT" : "POST",
                                    path: path, headers: headers, body: body)
        let rates = self.rates
        t.client.send(request) { result in
            switch result {
            case .success(let r):
                completion(Self.classify(r, rates: rates))
            case .failure(let e):
                completion(.retryable(e.description, retryAfter: nil))
            }
        }
    }

    static func classify(_ r: ClientResponse, rates: DatadogRates?) -> SendOutcome {
        switch r.status {
        case 200..<300:
            rates?.update(from: r.body)
            return .delivered
        case 408, 429, 500..<600:
            let retry = r.headers["retry-after"].flatMap { Double($0.trimmingOWS()) }
            return .retryable("HTTP \(r.status)\(snippet(r.body))", retryAfter: retry)
        case 401, 403:
            return .unauthorized(status: r.status, "HTTP \(r.status)\(snippet(r.body))")
        default:
            return .permanent("HTTP \(r.status)\(snippet(r.body))")
        }
    }

    /// The start of a backend's answer, for logs and `/status`.
    static func snippet(_ body: [UInt8]) -> String {
        if body.isEmpty { return "" }
        let text = String(decoding: body.prefix(200), as: UTF8.self).filter { $0 != "\n" && $0 != "\r" }
        return ": " + text + (body.count > 200 ? "…" : "")
    }

    /// Sends a tracer's request on as it is (Datadog `/v0.6/stats`), best effort: the tracer
    /// was already answered; failures are logged by the caller.
    func forward(_ req: HTTPRequest, completion: @escaping @Sendable (SendOutcome) -> Void) {
        let t = targets[0]
        var headers: [(name: String, value: String)] = []
        for f in req.headers where ["content-type", "content-encoding"].contains(f.name.lowercased())
            || f.name.lowercased().hasPrefix("datadog-") {
            headers.append(f)
        }
        if let auth = credential.header { headers.append(auth) }
        t.client.send(ClientRequest(method: req.method, path: req.path, headers: headers, body: req.body)) { r in
            switch r {
            case .success(let resp): completion(Self.classify(resp, rates: nil))
            case .failure(let e): completion(.retryable(e.description, retryAfter: nil))
            }
        }
    }

    func shutdown() { for t in targets { t.client.shutdown() } }
}

/// The latest `rate_by_service` a Datadog backend answered, relayed to our own Datadog clients
/// whose spans route there, so tracers keep adaptive sampling through the relay.
public final class DatadogRates: Sendable {
    private let latest = Mutex<String?>(nil)
    public init() {}

    /// The agent answers `{"rate_by_service":{"service:web,env:prod":0.5,…}}`; kept as it is.
    func update(from body: [UInt8]) {
        guard body.count < 1 << 20, let first = body.first(where: { $0 != 0x20 }), first == UInt8(ascii: "{") else { return }
        let text = String(decoding: body, as: UTF8.self)
        guard text.contains("\"rate_by_service\"") else { return }
        latest.withLock { $0 = text }
    }

    /// The whole JSON answer to send a tracer, or nil before the backend answered one.
    public var answer: String? { latest.withLock { $0 } }
}
