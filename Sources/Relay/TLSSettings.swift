import Routing
import TLS
import Transport

/// A listener's `tls:` section: serve HTTPS (and HTTP/2 over TLS by ALPN) with these files.
/// Paths are relative to the working directory. Files are read when the relay starts and
/// again on every reload (SIGHUP), without dropping open connections.
public struct ListenerTLSSettings: Hashable, Sendable {
    /// PEM certificate chain (leaf first).
    public var certificate: String
    /// PEM private key of the leaf certificate.
    public var privateKey: String
    /// PEM CA bundle that client certificates are verified against; asks clients for one.
    public var clientCA: String?
    /// Refuse clients without a certificate (needs `clientCA`). Default: true when `clientCA` is set.
    public var requireClientCertificate: Bool
    /// `1.2` (default) or `1.3`.
    public var minimumVersion: TLSConfiguration.Version = .tls12

    public init(certificate: String, privateKey: String, clientCA: String? = nil, requireClientCertificate: Bool? = nil) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.clientCA = clientCA
        self.requireClientCertificate = requireClientCertificate ?? (clientCA != nil)
    }

    public var configuration: TLSConfiguration {
        var c = TLSConfiguration.server(certificateChain: certificate, privateKey: privateKey, clientCA: clientCA,
                                        requireClientCertificate: requireClientCertificate)
        c.minimumVersion = minimumVersion
        return c
    }

    /// Reads a listener's `tls:` mapping; nil (with errors recorded) when it is unusable.
    static func read(_ t: ConfigMapping) -> ListenerTLSSettings? {
        let cert = t.required("certificate", "PEM certificate chain file")?.nonEmptyString()
        let key = t.required("privateKey", "PEM private key file")?.nonEmptyString()
        let ca = t["clientCA"]?.nonEmptyString()
        let require = t["requireClientCertificate"]?.bool()
        if require == true && ca == nil {
            t["requireClientCertificate"]?.error(.invalidValue, "requireClientCertificate needs clientCA (the CA that client certificates are verified against)")
        }
        var version = TLSConfiguration.Version.tls12
        if let v = t["minimumVersion"], let text = v.string() {
            switch text {
            case "1.2", "TLSv1.2": version = .tls12
            case "1.3", "TLSv1.3": version = .tls13
            default: v.error(.invalidValue, "expected minimumVersion 1.2 or 1.3, got '\(text)'")
            }
        }
        t.finish()
        guard let cert, let key else { return nil }
        var s = ListenerTLSSettings(certificate: cert, privateKey: key, clientCA: ca, requireClientCertificate: require)
        s.minimumVersion = version
        return s
    }
}

/// One `peers` rule of the Relay document: a client certificate identity pattern and the
/// zone or region such a client may send spans for (identity-pinned residency).
public struct PeerRule: Hashable, Sendable, CustomStringConvertible {
    /// Matched against the certificate's URI SANs (SPIFFE: `spiffe://default/zone-eu-1/*`),
    /// then its DNS SANs; `*` matches any run of characters.
    public var match: String
    /// The Kuma zone the peer speaks for (its region comes from `zoneRegions`) …
    public var zone: String?
    /// … or the region directly.
    public var region: String?

    public init(match: String, zone: String? = nil, region: String? = nil) {
        self.match = match
        self.zone = zone
        self.region = region
    }

    public var description: String {
        "\(match) → " + (zone.map { "zone \($0)" } ?? "region \(region ?? "?")")
    }

    /// Whether `text` matches the pattern (`*` = any run of characters, everything else literal).
    static func glob(_ pattern: Substring.UTF8View, _ text: Substring.UTF8View) -> Bool {
        var p = pattern.startIndex, t = text.startIndex
        var star: String.Index?, mark = text.startIndex
        while t != text.endIndex {
            if p != pattern.endIndex && pattern[p] == UInt8(ascii: "*") {
                star = p; p = pattern.index(after: p); mark = t
            } else if p != pattern.endIndex && pattern[p] == text[t] {
                p = pattern.index(after: p); t = text.index(after: t)
            } else if let s = star {
                p = pattern.index(after: s); mark = text.index(after: mark); t = mark
            } else {
                return false
            }
        }
        while p != pattern.endIndex && pattern[p] == UInt8(ascii: "*") { p = pattern.index(after: p) }
        return p == pattern.endIndex
    }

    func matches(_ name: String) -> Bool { Self.glob(match[...].utf8, name[...].utf8) }
}

/// The `peers` rules with their regions resolved: which region a verified client may speak for.
public struct PeerIdentityMap: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var rule: PeerRule
        /// The rule's region (its zone's region from `zoneRegions`, or its own).
        public var region: String
    }
    public var entries: [Entry] = []
    public init(entries: [Entry] = []) { self.entries = entries }

    /// The first rule that matches one of the identity's URI SANs, else one of its DNS SANs.
    /// An unverified identity matches nothing.
    public func lookup(_ identity: TLSPeerIdentity) -> Entry? {
        guard identity.verified else { return nil }
        for e in entries where identity.uris.contains(where: e.rule.matches) { return e }
        for e in entries where identity.dnsNames.contains(where: e.rule.matches) { return e }
        return nil
    }

    /// Resolves the rules' regions against the routing configuration.
    /// - Throws: `RelayStartError` for a zone missing from `zoneRegions` or an unknown region.
    init(rules: [PeerRule], routing: RoutingTable, zoneRegions: [String: String]) throws(RelayStartError) {
        for (i, r) in rules.enumerated() {
            let region: String
            switch pinnedRegion(zone: r.zone, region: r.region ?? "", label: "peers[\(i)]",
                                regions: routing.regionNames, zoneRegions: zoneRegions) {
            case .success(let pinned): region = pinned ?? ""
            case .failure(let e): throw RelayStartError(message: e.message)
            }
            entries.append(Entry(rule: r, region: region))
        }
    }
}

extension RelayDocument {
    /// Reads `peers:` (a list of `{match, zone}` or `{match, region}`).
    static func readPeers(_ list: [ConfigNode]) -> [PeerRule] {
        var rules: [PeerRule] = []
        for item in list {
            guard let m = item.map() else { continue }
            let match = m.required("match", "certificate identity pattern, e.g. spiffe://default/zone-eu-1/*")?.nonEmptyString()
            let zone = m["zone"]?.nonEmptyString()
            let region = m["region"]?.nonEmptyString()
            if zone != nil && region != nil {
                m["region"]?.error(.invalidValue, "give zone or region, not both (a zone's region comes from zoneRegions)")
            } else if zone == nil && region == nil && m.has("match") {
                item.error(.invalidValue, "a peers rule needs the zone (or region) the identity may send spans for")
            }
            m.finish()
            if let match, zone != nil || region != nil { rules.append(PeerRule(match: match, zone: zone, region: zone == nil ? region : nil)) }
        }
        return rules
    }
}
