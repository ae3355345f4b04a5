/// Several endpoints behind one backend (issue 13, scale-out): a static list (`conf.urls`) or a
/// resolver (`conf.resolver`), and how spans are spread over them (`conf.routingKey`).
///
/// ```yaml
/// conf:
///   urls: [http://a:9411, http://b:9411]                       # static, or
///   resolver: {dns: {hostname: central-headless.ns.svc, port: 9411, interval: 10s}}
///   # resolver: {file: /etc/tracerelay/endpoints.txt}        (re-read on change)
///   routingKey: traceID                                       # or service, none
/// ```
/// With `traceID` (the default when a backend has several endpoints or a resolver) every span of
/// a trace goes to the same endpoint by consistent hashing, and the relay keeps one queue per
/// endpoint; `service` keys by the span's local service name; `none` spreads batches round-robin.
public struct EndpointsOptions: Hashable, Sendable {
    /// Where the endpoint set comes from when it is not a static list.
    public enum Resolver: Hashable, Sendable {
        /// A headless Service's A/AAAA records, looked up every `intervalMillis` (default 10 s).
        case dns(hostname: String, port: Int, intervalMillis: Int)
        /// One `host:port` or URL per line (`#` comments), re-read when it changes (checked
        /// every `intervalMillis`, default 1 s).
        case file(path: String, intervalMillis: Int)
    }

    /// What keeps spans together on one endpoint.
    public enum RoutingKey: String, Hashable, Sendable, CaseIterable {
        /// The 128-bit trace id: every span of a trace lands on the same endpoint.
        case traceID
        /// The span's local service name.
        case service
        /// No affinity: batches go round-robin (what a static `urls` list did before scale-out).
        case none
    }

    /// nil: the endpoints are `BackendConfig.urls` (or the single `url`).
    public var resolver: Resolver?
    /// nil: `traceID` (see `BackendConfig.routingKey`).
    public var routingKey: RoutingKey?

    public static let defaultDNSIntervalMillis = 10_000
    public static let defaultFileIntervalMillis = 1_000

    public init(resolver: Resolver? = nil, routingKey: RoutingKey? = nil) {
        self.resolver = resolver
        self.routingKey = routingKey
    }
}

extension BackendConfig {
    /// The routing key in effect: `conf.routingKey`, else `traceID`.
    public var routingKey: EndpointsOptions.RoutingKey { endpoints.routingKey ?? .traceID }

    /// Whether the relay keeps one queue per endpoint of this backend: it has a resolver, or
    /// several static URLs spread by a routing key other than `none` (with `none`, a static list
    /// keeps today's single queue sending round-robin).
    public var isSharded: Bool {
        guard [.zipkin, .datadog, .tracerelay].contains(kind) else { return false }
        if endpoints.resolver != nil { return true }
        return urls.count > 1 && routingKey != .none
    }

    /// A copy of this backend that sends to one endpoint only (a shard's sender).
    public func single(endpoint url: String) -> BackendConfig {
        var b = self
        b.url = url
        b.urls = [url]
        b.address = nil
        b.port = nil
        // A DNS resolver's endpoints are IP addresses: over TLS the certificate is verified
        // against (and SNI names) the name that was resolved, e.g. a headless Service's.
        if case .dns(let hostname, _, _) = endpoints.resolver, b.tls != nil, b.tls?.serverName == nil {
            b.tls?.serverName = hostname
        }
        b.endpoints = EndpointsOptions(routingKey: EndpointsOptions.RoutingKey.none)
        return b
    }
}

/// `host:port` or an http(s) URL as an endpoint URL; nil when it is neither.
public func endpointURL(_ text: String) -> String? {
    let t = text.trimmingCharacters(in: " \t\r")
    if t.hasPrefix("http://") || t.hasPrefix("https://") {
        return t.count > (t.hasPrefix("https") ? 8 : 7) ? t : nil
    }
    guard isHostPort(t), !t.contains("/") else { return nil }
    return "http://" + t
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

extension DocumentParser {
    /// Whether `conf` lists its endpoints some other way than a single `url`/`address`, which
    /// is then optional.
    func hasEndpointList(_ conf: ConfigMapping) -> Bool { conf.has("urls") || conf.has("resolver") }

    /// Reads `conf.urls`, `conf.resolver` and `conf.routingKey` of a zipkin, datadog or
    /// tracerelay backend (the hook in `parseMeshBackend`).
    func parseEndpoints(_ conf: ConfigMapping, into backend: inout BackendConfig) {
        guard [.zipkin, .datadog, .tracerelay].contains(backend.kind) else { return }
        if let list = conf["urls"] {
            for item in list.list() ?? [] {
                guard let u = item.nonEmptyString() else { continue }
                if u.hasPrefix("http://") || u.hasPrefix("https://") { backend.urls.append(u) }
                else { item.error(.invalidValue, "expected an http:// or https:// URL, got '\(u)'") }
            }
        }
        if let u = backend.url, !backend.urls.isEmpty, !backend.urls.contains(u) { backend.urls.insert(u, at: 0) }
        if backend.kind == .tracerelay, let u = backend.url, backend.urls.isEmpty { backend.urls = [u] }
        if backend.url == nil, let first = backend.urls.first { backend.url = first }
        if let r = conf["resolver"] {
            backend.endpoints.resolver = parseResolver(r)
            if backend.endpoints.resolver != nil, conf.has("url") || conf.has("urls") || conf.has("address") {
                r.error(.conflict, "a backend takes its endpoints from 'resolver' or from 'url'/'urls'/'address', not both")
            }
        }
        if let v = conf["routingKey"], let s = v.string() {
            if let k = EndpointsOptions.RoutingKey(rawValue: s) { backend.endpoints.routingKey = k }
            else { v.error(.invalidValue, "expected routingKey traceID, service or none, got '\(s)'") }
        }
        if backend.kind != .tracerelay, backend.urls.count > 1 || backend.endpoints.resolver != nil {
            // Several Zipkin/Datadog endpoints: `address`/`port` (Datadog) are for a single agent.
            if conf.has("address") && backend.endpoints.resolver == nil {
                conf["address"]?.error(.conflict, "give the Datadog agents either as 'address'/'port' or as 'urls', not both")
            }
        }
    }

    /// `{dns: {hostname, port, interval}}` or `{file: PATH, interval}`.
    private func parseResolver(_ node: ConfigNode) -> EndpointsOptions.Resolver? {
        guard let m = node.map() else { return nil }
        defer { m.finish() }
        let kinds = ["dns", "file"].filter { m.has($0) }
        guard kinds.count == 1 else {
            node.error(kinds.isEmpty ? .missingField : .conflict,
                       "expected exactly one resolver, 'dns: {hostname, port, interval}' or 'file: PATH', got \(kinds.isEmpty ? "none" : kinds.joined(separator: " and "))")
            m.ignore("dns", "file", "interval")
            return nil
        }
        if kinds[0] == "file" {
            let interval = m["interval"].flatMap { positiveMillis($0) } ?? EndpointsOptions.defaultFileIntervalMillis
            guard let path = m["file"]?.nonEmptyString() else { return nil }
            return .file(path: path, intervalMillis: interval)
        }
        if let v = m["interval"] { v.error(.invalidValue, "the DNS resolver's interval belongs inside 'dns:' (dns: {hostname, port, interval})") }
        guard let d = m["dns"]?.map() else { return nil }
        defer { d.finish() }
        let host = d.required("hostname", "the headless Service's DNS name")?.nonEmptyString()
        let port = d.required("port", "the endpoints' port")?.int(in: 1...65535)
        let interval = d["interval"].flatMap { positiveMillis($0) } ?? EndpointsOptions.defaultDNSIntervalMillis
        if let host, host.contains("/") || host.contains(":") {
            d["hostname"]?.error(.invalidValue, "expected a DNS name without scheme or port (the port is 'port'), got '\(host)'")
            return nil
        }
        guard let host, let port else { return nil }
        return .dns(hostname: host, port: port, intervalMillis: interval)
    }

    private func positiveMillis(_ v: ConfigNode) -> Int? {
        guard let ms = v.durationMillis() else { return nil }
        if ms < 100 { v.error(.invalidValue, "expected an interval of at least 100ms, got \(ms)ms"); return nil }
        return ms
    }
}
