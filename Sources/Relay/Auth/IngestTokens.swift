import Routing
import Synchronization

/// A listener's `auth:` section: clients must present one of the tokens of `tokensFile`
/// (`Authorization: Bearer <token>`, or `DD-Api-Key: <token>` on the Datadog endpoints).
/// Off when absent. The file is read when the relay starts and again on every reload.
public struct ListenerAuthSettings: Hashable, Sendable {
    /// The tokens file (see `TokenFile`); relative paths are relative to the working directory.
    public var tokensFile: String

    public init(tokensFile: String) { self.tokensFile = tokensFile }

    /// Reads a listener's `auth:` mapping; nil (with errors recorded) when it is unusable.
    static func read(_ m: ConfigMapping) -> ListenerAuthSettings? {
        let file = m.required("tokensFile", "the file listing the tokens this listener accepts")?.nonEmptyString()
        m.finish()
        return file.map(ListenerAuthSettings.init)
    }
}

/// One entry of a tokens file, as written: the token (or only its digest), a name for logs,
/// and what the token may send for.
public struct TokenRule: Hashable, Sendable {
    /// Names the token in logs, `check` and error messages (the token itself never appears).
    public var name: String
    /// SHA-256 of the token (`token:` is hashed as the file is read; `tokenSha256:` is taken as is).
    var digest: TokenDigest
    /// The Kuma zone the token speaks for (its region comes from `zoneRegions`) …
    public var zone: String?
    /// … or a region directly. With either, spans of any other region are refused.
    public var region: String?
    /// Request tags the token's requests carry (after the listener's own tags, which win).
    public var tags: [TagPair]
}

/// A listener's tokens with their regions resolved: which token is valid and what it may send.
public struct IngestTokens: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var rule: TokenRule
        /// The region the token's spans are pinned to (its zone's, or its own); nil = not pinned.
        public var region: String?
    }
    public private(set) var entries: [Entry] = []
    /// Where the tokens came from (for logs and `check`).
    public var path: String
    private var byDigest: [TokenDigest: Int] = [:]

    /// The entry whose token is `token`, if any. The presented token is hashed and looked up by
    /// its digest: the time taken does not depend on how much of a valid token it shares.
    public func lookup(_ token: String) -> Entry? { lookup(TokenDigest(hashing: token)) }

    func lookup(_ digest: TokenDigest) -> Entry? { byDigest[digest].map { entries[$0] } }

    /// Resolves each rule's zone or region against the routing configuration.
    /// - Throws: a message naming the entry (`tokens[2].zone: …`) for a zone missing from
    ///   `zoneRegions`, a region the configuration does not know, or a token listed twice.
    init(rules: [TokenRule], path: String, regions: [String], zoneRegions: [String: String]) throws(TokenFileError) {
        self.path = path
        var problems: [String] = []
        for (i, r) in rules.enumerated() {
            let region: String?
            switch pinnedRegion(zone: r.zone, region: r.region, label: "tokens[\(i)]", regions: regions, zoneRegions: zoneRegions) {
            case .success(let pinned): region = pinned
            case .failure(let e): problems.append(e.message); continue
            }
            if let j = byDigest[r.digest] {
                problems.append("tokens[\(i)] (\(r.name)): the same token as tokens[\(j)] (\(rules[j].name)); each client needs its own")
                continue
            }
            if let j = rules[..<i].firstIndex(where: { $0.name == r.name }) {
                problems.append("tokens[\(i)].name: '\(r.name)' already names tokens[\(j)]; names tell tokens apart in logs")
                continue
            }
            byDigest[r.digest] = i
            entries.append(Entry(rule: r, region: region))
        }
        if !problems.isEmpty { throw TokenFileError(path: path, problems: problems) }
    }
}

/// The tokens a listener accepts right now. A reload replaces them whole; requests already
/// past the check keep what they were admitted with.
public final class ListenerTokens: Sendable {
    private let tokens: Mutex<IngestTokens>

    public init(_ tokens: IngestTokens) { self.tokens = Mutex(tokens) }

    public var current: IngestTokens { tokens.withLock { $0 } }

    /// Accepts `new` from the next request on.
    public func replace(_ new: IngestTokens) { tokens.withLock { $0 = new } }

    /// The entry of `token`, hashed before the lock is taken (every loop shares this lock).
    public func lookup(_ token: String) -> IngestTokens.Entry? {
        let digest = TokenDigest(hashing: token)
        return tokens.withLock { $0.lookup(digest) }
    }
}

extension RelayService.Settings {
    /// A listener's tokens from its `auth:` section, read from the file and resolved against the
    /// configuration's regions; nil without `auth:`.
    /// - Throws: `RelayStartError` naming the field (`listeners[0].auth.tokensFile: …`), the
    ///   file and every problem in it.
    static func listenerTokens(_ auth: ListenerAuthSettings?, field: String, table: RoutingTable,
                               zoneRegions: [String: String]) throws(RelayStartError) -> ListenerTokens? {
        guard let auth else { return nil }
        do {
            let rules = try TokenFile.load(path: auth.tokensFile)
            return ListenerTokens(try IngestTokens(rules: rules, path: auth.tokensFile, regions: table.regionNames, zoneRegions: zoneRegions))
        } catch {
            throw RelayStartError(message: "\(field): \(error)")
        }
    }
}
