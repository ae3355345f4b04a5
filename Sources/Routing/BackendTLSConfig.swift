#if canImport(Glibc)
import Glibc
#endif

/// TLS to a backend (`conf.tls` of a zipkin, datadog or tracerelay backend; issue 14):
///
/// ```yaml
/// conf:
///   url: https://zipkin.example.com/api/v2/spans
///   tls:
///     caFile: /etc/tracerelay/backend-ca.pem     # default: the system CA roots
///     certificate: /etc/tracerelay/client.pem    # mTLS: our certificate chain …
///     privateKey: /etc/tracerelay/client.key     # … and its key (both or neither)
///     serverName: zipkin.internal                # verified and sent as SNI (default: the URL's host)
///     insecureSkipVerify: false                  # true: any certificate (warned loudly)
/// ```
///
/// An `https://` URL speaks TLS without a `tls:` map too (system roots, the URL's host
/// verified). `tls:` next to an `http://` URL is an error; a Datadog backend given as
/// `address`/`port` speaks TLS when it has `tls:`. Plain values: the files are only checked
/// for being readable here; the Relay module builds the TLS context from them.
public struct BackendTLSConfig: Hashable, Sendable {
    /// PEM file of the CAs the backend's certificate is verified against; nil: the system roots.
    public var caFile: String?
    /// Our certificate chain (PEM), presented when the backend asks (mTLS).
    public var certificate: String?
    /// The private key of `certificate` (PEM).
    public var privateKey: String?
    /// The name the backend's certificate must carry, also sent as SNI; nil: the URL's host.
    public var serverName: String?
    /// Accept any certificate and name. Tests and throwaway setups only: the spans are then
    /// open to anyone on the path. `tracerelay check` and the start log warn about it.
    public var insecureSkipVerify: Bool = false

    public init(caFile: String? = nil, certificate: String? = nil, privateKey: String? = nil,
                serverName: String? = nil, insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.certificate = certificate
        self.privateKey = privateKey
        self.serverName = serverName
        self.insecureSkipVerify = insecureSkipVerify
    }
}

extension DocumentParser {
    /// Reads `conf.tls` of `backend` (whose URLs are already parsed); nil when absent.
    func parseBackendTLS(_ conf: ConfigMapping, _ backend: BackendConfig) -> BackendTLSConfig? {
        guard let (node, m) = httpBackendSection(conf, "tls", backend) else { return nil }
        defer { m.finish() }
        var tls = BackendTLSConfig()
        tls.caFile = readableFile(m, "caFile", "the CA file")
        tls.certificate = readableFile(m, "certificate", "the client certificate")
        tls.privateKey = readableFile(m, "privateKey", "the client private key")
        tls.serverName = m["serverName"]?.nonEmptyString()
        tls.insecureSkipVerify = m["insecureSkipVerify"]?.bool() ?? false
        if m.has("certificate") != m.has("privateKey") {
            node.error(.missingField, "certificate and privateKey go together (mTLS): give both or neither")
        }
        for url in Set([backend.url].compactMap { $0 } + backend.urls).sorted()
        where !url.lowercased().hasPrefix("https://") {
            node.error(.invalidValue, "tls is set but '\(url)' is not an https:// URL: use https:// or remove tls")
        }
        if tls.insecureSkipVerify, let v = m["insecureSkipVerify"] {
            sink.add(.warning, .invalidValue, v.path, v.line,
                     "INSECURE: backend '\(backend.name)' accepts any TLS certificate and name (insecureSkipVerify: true); "
                     + "anyone on the path can read and change its spans — use caFile instead")
        }
        return tls
    }

    /// The mapping `conf[key]` of a backend that sends over HTTP (zipkin, datadog, tracerelay);
    /// nil when absent, not a mapping, or (an error) on another kind. The caller finishes it.
    func httpBackendSection(_ conf: ConfigMapping, _ key: String, _ backend: BackendConfig) -> (ConfigNode, ConfigMapping)? {
        guard let node = conf[key], let m = node.map() else { return nil }
        guard [.zipkin, .datadog, .tracerelay].contains(backend.kind) else {
            node.error(.invalidValue, "\(key) applies to zipkin, datadog and tracerelay backends, not \(backend.kind.rawValue)")
            m.finish()
            return nil
        }
        return (node, m)
    }

    /// A path that must name a readable file, or an error at the field's path.
    private func readableFile(_ m: ConfigMapping, _ key: String, _ what: String) -> String? {
        guard let v = m[key], let path = v.nonEmptyString() else { return nil }
        if access(path, R_OK) != 0 {
            v.error(.invalidValue, "cannot read \(what) '\(path)': \(String(cString: strerror(errno)))")
        }
        return path
    }
}
