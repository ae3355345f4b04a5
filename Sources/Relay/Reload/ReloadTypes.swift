import Basics
import Routing

/// Where a reload reads the configuration: the file the relay was started with (nil: the
/// embedded default) and the command line's overrides, applied again on every read.
public struct ConfigSource: Sendable {
    public var path: String?
    public var overrides: RelayOverrides
    public init(path: String?, overrides: RelayOverrides) {
        self.path = path
        self.overrides = overrides
    }

    /// Reads and validates the configuration the way `check` does — every document parsed
    /// (`RelayFile.load`), then the routing table compiled (`RoutingTable.init`) — with the
    /// overrides applied.
    public func load() throws(ConfigError) -> (RelayFile, RoutingTable) {
        let file = try (path.map { p throws(ConfigError) in try RelayFile.load(path: p) } ?? RelayFile.embeddedDefault).applying(overrides)
        return (file, try RoutingTable(file.routing))
    }
}

/// How reloads behave.
public struct ReloadSettings: Sendable {
    /// What `POST /api/reload` and SIGHUP read; nil: reload is off (answers 409).
    public var source: ConfigSource?
    /// How long a backend removed by a reload keeps sending what it holds (even while its
    /// target is down) before it stops; what is left stays in its spill directory. Default 5 min.
    public var drainLimit: Duration = .seconds(300)
    public init() {}
}

/// What a successful reload changed, by backend name.
public struct ReloadSummary: Sendable, Equatable {
    /// New backends (sending ones got a queue and an exporter, started).
    public var added: [String] = []
    /// Gone backends; sending ones drain what they hold to their old target, then stop.
    public var removed: [String] = []
    /// Same name and kind, other settings; `senderReplaced` lists those whose URL or export
    /// settings changed (new requests go to the new target, queued spans too).
    public var changed: [String] = []
    public var senderReplaced: [String] = []
    /// Same name, another kind: handled as removed + added.
    public var kindChanged: [String] = []
    public var unchanged: [String] = []
    /// Settings that differ in the file but apply only after a restart (listeners, admin, spill).
    public var restartNeeded: [String] = []
    /// The new table's warnings (as `check` prints them).
    public var warnings: [String] = []
    /// Listeners whose TLS certificate and key were read again (new connections use them).
    public var certificatesReloaded: [String] = []
    /// Listeners whose ingest tokens file was read again (it applies from the next request).
    public var tokensReloaded: [String] = []

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && changed.isEmpty && kindChanged.isEmpty }

    /// One line for logs and the answer's `message`.
    public var text: String {
        func part(_ label: String, _ names: [String]) -> String? { names.isEmpty ? nil : "\(label) \(names.joined(separator: ","))" }
        let parts = [part("added", added), part("removed", removed), part("changed", changed), part("kind changed", kindChanged)].compactMap { $0 }
        var s = parts.isEmpty ? "no backend changed" : "backends " + parts.joined(separator: "; ")
        if !certificatesReloaded.isEmpty { s += "; TLS certificates reloaded for \(certificatesReloaded.joined(separator: ","))" }
        if !tokensReloaded.isEmpty { s += "; ingest tokens reloaded for \(tokensReloaded.joined(separator: ","))" }
        if !restartNeeded.isEmpty { s += "; " + restartNeeded.joined(separator: "; ") }
        return s
    }
}

/// The outcome of the last reload, for the status page and `POST /api/reload`.
public struct ReloadRecord: Sendable, Equatable {
    /// Wall-clock time, Unix seconds.
    public var time: Double
    public var ok: Bool
    /// The summary, or why the configuration was refused.
    public var message: String
    /// The routing generation running after this reload (unchanged when refused).
    public var generation: Int
    /// What changed (nil when refused).
    public var summary: ReloadSummary?
    /// What triggered it: `signal` (SIGHUP) or `api`.
    public var trigger: String

    /// `{"time":…,"ok":…,"message":…,"generation":…,"trigger":…,"backends":{…},"restart_needed":[…],"warnings":[…]}`.
    public var json: String {
        var out = "{\"time\":\(time),\"ok\":\(ok),\"message\":\(jsonQuoted(message)),\"generation\":\(generation),\"trigger\":\(jsonQuoted(trigger))"
        if let s = summary {
            func list(_ l: [String]) -> String { "[" + l.map(jsonQuoted).joined(separator: ",") + "]" }
            out += ",\"backends\":{\"added\":\(list(s.added)),\"removed\":\(list(s.removed)),\"changed\":\(list(s.changed)),"
                + "\"sender_replaced\":\(list(s.senderReplaced)),\"kind_changed\":\(list(s.kindChanged)),\"unchanged\":\(list(s.unchanged))},"
                + "\"restart_needed\":\(list(s.restartNeeded)),\"warnings\":\(list(s.warnings)),"
                + "\"certificates_reloaded\":\(list(s.certificatesReloaded)),\"tokens_reloaded\":\(list(s.tokensReloaded))"
        }
        return out + "}"
    }
}

/// A reload refused: `code` is `invalid_config` (the file does not validate; the reason is in
/// `message`), `reload_unavailable` (no source, or shutting down) or `apply_failed`.
public struct ReloadError: Error, CustomStringConvertible, Sendable {
    public var code: String
    public var message: String
    public var description: String { message }
}
