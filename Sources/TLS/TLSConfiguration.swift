/// What a `TLSContext` is built from: the role, the certificate and key files, whom to trust
/// and which application protocols to offer. Paths name PEM files; they are read once, when
/// the context is built (reloading certificates means building a new context).
public struct TLSConfiguration: Sendable, Equatable {
    public enum Role: Sendable, Equatable { case server, client }

    /// The lowest protocol version accepted. TLS 1.3 is always preferred when both sides have it.
    public enum Version: Sendable, Equatable { case tls12, tls13 }

    public var role: Role
    /// Our certificate chain (leaf first, then intermediates). Required for a server; a client
    /// presents it when the server asks (mTLS).
    public var certificateChain: String?
    /// The private key of the chain's leaf certificate.
    public var privateKey: String?
    /// Server: the CAs client certificates are verified against; setting it makes the server
    /// ask for client certificates. Client: the CAs the server's certificate is verified
    /// against, instead of the system roots.
    public var caFile: String?
    /// Server: refuse clients without a certificate (needs `caFile`). Default `false`: a
    /// certificate is asked for (when `caFile` is set) and verified if sent, but optional.
    public var requireClientCertificate: Bool
    /// Client: accept any server certificate and name. For tests and throwaway setups only;
    /// the connection is then open to an active attacker.
    public var insecureSkipVerify: Bool
    /// ALPN protocols in order of preference. A server picks the first of its own list the
    /// client offers (none in common: no ALPN, the handshake goes on); a client offers them.
    public var alpn: [String]
    /// Default `.tls12`.
    public var minimumVersion: Version

    /// The protocols tracerelay speaks over TLS, best first.
    public static let httpProtocols = ["h2", "http/1.1"]

    public static func server(certificateChain: String, privateKey: String, clientCA: String? = nil,
                              requireClientCertificate: Bool = false,
                              alpn: [String] = httpProtocols) -> TLSConfiguration {
        TLSConfiguration(role: .server, certificateChain: certificateChain, privateKey: privateKey,
                         caFile: clientCA, requireClientCertificate: requireClientCertificate,
                         insecureSkipVerify: false, alpn: alpn, minimumVersion: .tls12)
    }

    /// A client: system CA roots unless `caFile` is given; a certificate for mTLS if given.
    public static func client(caFile: String? = nil, insecureSkipVerify: Bool = false,
                              certificateChain: String? = nil, privateKey: String? = nil,
                              alpn: [String] = httpProtocols) -> TLSConfiguration {
        TLSConfiguration(role: .client, certificateChain: certificateChain, privateKey: privateKey,
                         caFile: caFile, requireClientCertificate: false,
                         insecureSkipVerify: insecureSkipVerify, alpn: alpn, minimumVersion: .tls12)
    }

    /// Checks what can be checked without reading files.
    func validate() throws(TLSError) {
        if (certificateChain == nil) != (privateKey == nil) {
            throw TLSError(.configuration, "certificateChain and privateKey go together: give both or neither")
        }
        switch role {
        case .server:
            if certificateChain == nil {
                throw TLSError(.configuration, "a TLS server needs a certificate chain and a private key")
            }
            if requireClientCertificate && caFile == nil {
                throw TLSError(.configuration, "requireClientCertificate needs clientCA, the CAs that verify client certificates")
            }
            if insecureSkipVerify {
                throw TLSError(.configuration, "insecureSkipVerify applies to clients only")
            }
        case .client:
            if requireClientCertificate {
                throw TLSError(.configuration, "requireClientCertificate applies to servers only")
            }
        }
        for p in alpn where p.utf8.isEmpty || p.utf8.count > 255 {
            throw TLSError(.configuration, "ALPN protocol name \"\(p)\" must be 1 to 255 bytes long")
        }
        if alpnWireFormat.count > 0xFFFF {
            throw TLSError(.configuration, "the ALPN list is longer than 65535 bytes")
        }
    }

    /// The ALPN list as TLS carries it: each name behind its one-byte length.
    var alpnWireFormat: [UInt8] {
        alpn.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
    }
}
