import Buffering
import Routing

/// One ingest listener of the relay (the Relay document's `listeners`).
public struct ListenerSettings: Hashable, Sendable {
    public var name: String
    /// `host:port`; port 0 lets the OS choose.
    public var address: String
    /// Request-level tags added to every span received here (they win over span tags).
    public var tags: [TagPair]
    /// HTTPS (and HTTP/2 over TLS) instead of plain HTTP/h2c; nil = plain.
    public var tls: ListenerTLSSettings?
    /// Tokens its clients must present (Auth/, docs/ingest-auth.md); nil = none asked (the default).
    public var auth: ListenerAuthSettings?
    public init(name: String, address: String, tags: [TagPair] = [], tls: ListenerTLSSettings? = nil, auth: ListenerAuthSettings? = nil) {
        self.name = name
        self.address = address
        self.tags = tags
        self.tls = tls
        self.auth = auth
    }
}

/// The spill section: how every sending backend's queue keeps what it has not delivered.
/// The durability and when-full kinds are Buffering's own (`DurabilityMode`, `WhenFull`).
public struct SpillSettings: Hashable, Sendable {
    /// Relative paths are relative to the working directory. Default `tracerelay-spill`.
    public var directory: String = "tracerelay-spill"
    /// Memory budget per backend queue before spilling; default 64 MiB.
    public var memoryBytes: Int = 64 << 20
    /// Disk budget per backend; default 1 GiB.
    public var maxDiskBytes: Int = 1 << 30
    /// Disk budget for all backends together; nil = no total cap beyond the per-backend ones.
    public var maxTotalDiskBytes: Int? = nil
    /// Queued data older than this is dropped (and counted); nil = kept until delivered.
    public var maxAgeSeconds: Int? = nil
    /// Default `spill`.
    public var durability: DurabilityMode = .spill
    /// Per-backend overrides of `durability`, by backend name.
    public var backendDurability: [String: DurabilityMode] = [:]
    /// Default `reject` (429 with Retry-After).
    public var whenFull: WhenFull = .reject

    public init() {}

    public func durability(for backend: String) -> DurabilityMode { backendDurability[backend] ?? durability }
}

/// The Relay document's settings that are not routing: listeners (with TLS), admin address,
/// spill, whether upstream relays' `X-Tracerelay-Tags` are trusted, and which client
/// certificate identities speak for which zone (`peers`).
public struct RelayDocument: Hashable, Sendable {
    public static let defaultListenerAddress = "127.0.0.1:9411"
    public static let defaultAdminAddress = "127.0.0.1:9901"

    /// When the file names none: one listener at 127.0.0.1:9411 named `default`.
    public var listeners: [ListenerSettings] = [ListenerSettings(name: "default", address: defaultListenerAddress)]
    /// Admin (health, status, debug) address; default 127.0.0.1:9901.
    public var adminAddress: String = defaultAdminAddress
    public var spill = SpillSettings()
    /// Accept `X-Tracerelay-Tags` from clients (only from upstream relays you trust); default false.
    public var trustUpstreamTags = false
    /// Client certificate identities and the zone or region each may send spans for
    /// (identity-pinned residency; see `ListenerTLSSettings.clientCA`).
    public var peers: [PeerRule] = []

    public init() {}

    /// Reads the keys of a Relay document (Universal form, or a Kubernetes `spec`).
    mutating func read(_ m: ConfigMapping) {
        if let list = m["listeners"]?.list() {
            listeners = []
            for (i, item) in list.enumerated() {
                guard let l = item.map() else { continue }
                let address = l.required("address", "host:port to listen on")?.nonEmptyString()
                if let address, !isHostPort(address) { l["address"]?.error(.invalidValue, "expected host:port (e.g. 0.0.0.0:9411), got '\(address)'") }
                let name = l["name"]?.nonEmptyString() ?? "listener-\(i)"
                let tags = l["tags"]?.stringPairs() ?? []
                let tls = l["tls"]?.map().flatMap { ListenerTLSSettings.read($0) }
                let auth = l["auth"]?.map().flatMap { ListenerAuthSettings.read($0) }
                if let address { listeners.append(ListenerSettings(name: name, address: address, tags: tags, tls: tls, auth: auth)) }
                l.finish()
            }
        }
        if let a = m["admin"]?.map() {
            if let addr = a["address"]?.nonEmptyString() {
                if isHostPort(addr) { adminAddress = addr } else { a["address"]?.error(.invalidValue, "expected host:port, got '\(addr)'") }
            }
            a.finish()
        }
        if let v = m["adminAddress"], let addr = v.nonEmptyString() {
            if isHostPort(addr) { adminAddress = addr } else { v.error(.invalidValue, "expected host:port, got '\(addr)'") }
        }
        trustUpstreamTags = m["trustUpstreamTags"]?.bool() ?? false
        if let list = m["peers"]?.list() { peers = Self.readPeers(list) }
        if let s = m["spill"]?.map() {
            if let d = s["directory"]?.nonEmptyString() { spill.directory = d }
            if let v = s["memoryBytes"]?.byteSize() { spill.memoryBytes = v }
            if let v = s["maxDiskBytes"]?.byteSize() { spill.maxDiskBytes = v }
            if let v = s["maxTotalDiskBytes"]?.byteSize() { spill.maxTotalDiskBytes = v }
            if let v = s["maxAge"]?.durationSeconds() { spill.maxAgeSeconds = v }
            if let v = s["whenFull"], let t = v.string() {
                if let w = WhenFull(rawValue: t) { spill.whenFull = w }
                else { v.error(.invalidValue, "expected whenFull reject or dropOldest, got '\(t)'") }
            }
            if let dv = s["durability"] {
                if dv.isScalar {
                    if let d = Self.durability(dv) { spill.durability = d }
                } else if let dm = dv.map() {
                    if let v = dm["default"], let d = Self.durability(v) { spill.durability = d }
                    if let bm = dm["backends"]?.map() {
                        for (name, v) in bm.pairs { bm.used.insert(name); if let d = Self.durability(v) { spill.backendDurability[name] = d } }
                        bm.finish()
                    }
                    dm.finish()
                }
            }
            s.finish()
        }
    }

    private static func durability(_ v: ConfigNode) -> DurabilityMode? {
        guard let t = v.string() else { return nil }
        if let d = DurabilityMode(rawValue: t) { return d }
        v.error(.invalidValue, "expected durability memory, spill or wal, got '\(t)'")
        return nil
    }
}

/// A whole configuration file: its routing part (Kuma resources, regions, backends) and the
/// Relay document's own settings, read in one pass with one list of errors and warnings.
public struct RelayFile: Hashable, Sendable {
    public var routing: RelayConfig
    public var relay: RelayDocument

    public static func load(path: String) throws(ConfigError) -> RelayFile {
        try parse(yaml: RelayConfig.readText(path))
    }

    public static func parse(yaml: String) throws(ConfigError) -> RelayFile {
        var doc = RelayDocument()
        let routing = try RelayConfig.parse(yaml: yaml) { m in doc.read(m) }
        return RelayFile(routing: routing, relay: doc)
    }

    /// Works out of the box: Zipkin on 127.0.0.1:9411, Datadog on 127.0.0.1:8126 (each listener
    /// serves every ingest endpoint), admin on 127.0.0.1:9901, and a `log` backend named `default`.
    public static var embeddedDefault: RelayFile {
        // The text is parsed like any file so the default and the docs cannot drift apart.
        try! parse(yaml: RelayConfig.embeddedDefaultYAML)
    }
}
