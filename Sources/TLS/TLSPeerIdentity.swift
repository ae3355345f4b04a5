internal import COpenSSL

/// Who the peer's certificate says it is: its subject alternative names (URIs such as Kuma's
/// SPIFFE form `spiffe://<mesh>/<zone>/<service>`, DNS names) and its subject common name.
/// Identity-pinned residency maps these to the zones a peer may speak for.
public struct TLSPeerIdentity: Sendable, Hashable {
    /// URI SANs, in certificate order.
    public var uris: [String]
    /// DNS SANs, in certificate order.
    public var dnsNames: [String]
    /// The subject's common name, if any (legacy; SANs are what matters).
    public var commonName: String?
    /// The certificate was verified against our trusted CAs. `false` only for a client with
    /// `insecureSkipVerify`: such an identity is a claim, never a proof.
    public var verified: Bool

    public init(uris: [String] = [], dnsNames: [String] = [], commonName: String? = nil, verified: Bool) {
        self.uris = uris
        self.dnsNames = dnsNames
        self.commonName = commonName
        self.verified = verified
    }

    /// Reads the identity of an `X509 *` (borrowed: not freed here).
    init(certificate: OpaquePointer, verified: Bool) {
        self.init(verified: verified)
        if let sans = tr_x509_sans(certificate) {
            defer { tr_sans_free(sans) }
            for i in 0..<tr_sans_count(sans) {
                var data: UnsafePointer<UInt8>?
                var len: Int32 = 0
                let kind = tr_sans_entry(sans, i, &data, &len)
                guard let data, len >= 0 else { continue }
                let text = String(decoding: UnsafeBufferPointer(start: data, count: Int(len)), as: UTF8.self)
                switch kind {
                case TR_SAN_DNS: dnsNames.append(text)
                case TR_SAN_URI: uris.append(text)
                default: break
                }
            }
        }
        var cn: UnsafePointer<UInt8>?
        let n = tr_x509_common_name(certificate, &cn)
        if n >= 0, let cn {
            commonName = String(decoding: UnsafeBufferPointer(start: cn, count: Int(n)), as: UTF8.self)
        }
    }
}
