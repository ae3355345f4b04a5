import Routing
import TLS
import Transport

/// What the command line may override in the Relay document (flags win over the file).
public struct RelayOverrides: Sendable {
    /// `--listen` (repeatable): replaces the configured ingest listeners.
    public var listen: [String] = []
    /// `--admin`: replaces `admin.address`.
    public var admin: String?
    /// `--spill-dir`: replaces `spill.directory`.
    public var spillDirectory: String?
    /// `--region`: replaces the relay's own `region`.
    public var region: String?
    /// `--tls-cert`/`--tls-key`/`--tls-client-ca`: HTTPS on every `--listen` address.
    public var tls: ListenerTLSSettings?
    public init() {}
}

extension RelayFile {
    /// The configuration with the command line's overrides that routing depends on (the region).
    public func applying(_ o: RelayOverrides) -> RelayFile {
        var c = self
        if let r = o.region { c.routing.region = r }
        return c
    }
}

extension RelayService.Settings {
    /// A listener's TLS context from its settings.
    /// - Throws: `RelayStartError` naming the listener and the file that is missing or wrong.
    static func listenerTLS(_ settings: ListenerTLSSettings?, listener: String) throws(RelayStartError) -> ListenerTLS? {
        guard let settings else { return nil }
        do {
            return try ListenerTLS(settings.configuration)
        } catch {
            throw RelayStartError(message: "\(listener): TLS: \(error.message)")
        }
    }

    /// The service's settings from a loaded configuration and the command line: listeners
    /// (with their static tags), the admin listener, spill settings, trusted upstream tags.
    /// - Throws: `RelayStartError` naming the address that does not parse.
    public init(file: RelayFile, table: RoutingTable, overrides o: RelayOverrides) throws(RelayStartError) {
        self.init()
        let config = file.relay
        routing = table
        spill = config.spill
        if let d = o.spillDirectory { spill.directory = d }
        if o.listen.isEmpty {
            listeners = []
            for (i, l) in config.listeners.enumerated() {
                guard l.name != ListenerRouter.adminName else {
                    throw RelayStartError(message: "listener name '\(l.name)' is reserved for the admin listener; rename it")
                }
                do { listeners.append(try ListenAddress(parsing: l.address, name: l.name)) } catch {
                    throw RelayStartError(message: "listener \(l.name) (\(l.address)): \(error)")
                }
                if !l.tags.isEmpty { ingest.listenerTags[l.name] = l.tags.map { ($0.key, $0.value) } }
                try listeners[listeners.count - 1].tls = Self.listenerTLS(l.tls, listener: "listener \(l.name)")
                if l.tls?.clientCA != nil && !config.peers.isEmpty { ingest.identityListeners.insert(l.name) }
                ingest.tokens[l.name] = try Self.listenerTokens(l.auth, field: "listeners[\(i)].auth.tokensFile", table: table,
                                                                zoneRegions: file.routing.zoneRegions)
            }
            if config.trustUpstreamTags { ingest.trustedListeners = Set(config.listeners.map(\.name)) }
        } else {
            listeners = []
            for (i, text) in o.listen.enumerated() {
                // Named like the configured listener at the same position, so its tags and trust apply.
                let name = i < config.listeners.count ? config.listeners[i].name : "listener\(i)"
                do { listeners.append(try ListenAddress(parsing: text, name: name)) } catch {
                    throw RelayStartError(message: "--listen \(text): \(error)")
                }
                if i < config.listeners.count, !config.listeners[i].tags.isEmpty {
                    ingest.listenerTags[name] = config.listeners[i].tags.map { ($0.key, $0.value) }
                }
                if config.trustUpstreamTags { ingest.trustedListeners.insert(name) }
                let tls = o.tls ?? (i < config.listeners.count ? config.listeners[i].tls : nil)
                try listeners[listeners.count - 1].tls = Self.listenerTLS(tls, listener: "--listen \(text)")
                if tls?.clientCA != nil && !config.peers.isEmpty { ingest.identityListeners.insert(name) }
                ingest.tokens[name] = try Self.listenerTokens(i < config.listeners.count ? config.listeners[i].auth : nil,
                                                              field: "listeners[\(i)].auth.tokensFile", table: table, zoneRegions: file.routing.zoneRegions)
            }
        }
        listenerTLS = Dictionary(uniqueKeysWithValues: listeners.compactMap { l in l.tls.map { (l.name, $0) } })
        if !config.peers.isEmpty {
            ingest.peers = try PeerIdentityMap(rules: config.peers, routing: table, zoneRegions: file.routing.zoneRegions)
        }
        let adminText = o.admin ?? config.adminAddress
        do { admin = try ListenAddress(parsing: adminText, name: ListenerRouter.adminName) } catch {
            throw RelayStartError(message: "admin address \(adminText): \(error)")
        }
    }
}
