import Routing
internal import Yams
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tokens file that cannot be used: every problem found, each naming its entry and field.
public struct TokenFileError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var problems: [String]
    public var description: String {
        problems.count == 1 ? "\(path): \(problems[0])" : "\(path):\n    " + problems.joined(separator: "\n    ")
    }
}

/// Reads a tokens file:
///
/// ```yaml
/// tokens:
///   - token: "s3cr3t-eu"            # or tokenSha256: <64 hex digits>, so the file need not hold the secret
///     name: collector-eu-1          # for logs and `check`; never the token itself
///     zone: zone-eu-1               # optional: pins the token to this zone's region (zoneRegions) …
///     # region: eu-west-1           # … or to a region
///     tags: {kuma.io/mesh: default} # optional request tags its requests carry
/// ```
///
/// Unlike the main configuration, an unknown field is an error here: a misspelt `zone` would
/// otherwise let a token send for every region.
enum TokenFile {
    static let fields: Set<String> = ["token", "tokenSha256", "name", "zone", "region", "tags"]

    /// Reads and parses `path`.
    static func load(path: String) throws(TokenFileError) -> [TokenRule] {
        guard access(path, R_OK) == 0 else {
            throw TokenFileError(path: path, problems: ["cannot read the tokens file: \(String(cString: strerror(errno)))"])
        }
        let text: String
        do { text = try RelayConfig.readText(path) } catch {
            throw TokenFileError(path: path, problems: [error.issues.first?.message ?? "cannot read the tokens file"])
        }
        return try parse(text, path: path)
    }

    static func parse(_ text: String, path: String) throws(TokenFileError) -> [TokenRule] {
        var problems: [String] = []
        func fail(_ at: String, _ node: Node?, _ message: String) {
            let line = node?.mark.map { " (line \($0.line))" } ?? ""
            problems.append("\(at)\(line): \(message)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw TokenFileError(path: path, problems: ["not valid YAML: \(error)"])
        }
        guard case .mapping(let top)? = root else {
            throw TokenFileError(path: path, problems: ["expected a mapping with a `tokens:` list"])
        }
        var list: [Node]?
        for (k, v) in top {
            guard k.string == "tokens" else { fail(k.string ?? "?", k, "unknown field; a tokens file has only `tokens:`"); continue }
            if case .sequence(let s) = v { list = Array(s) } else if isNull(v) { list = [] } else { fail("tokens", v, "expected a list of tokens") }
        }
        if list == nil, problems.isEmpty { problems.append("no `tokens:` list (write `tokens: []` to accept no token at all)") }
        var rules: [TokenRule] = []
        for (i, item) in (list ?? []).enumerated() {
            let at = "tokens[\(i)]"
            guard case .mapping(let m) = item else { fail(at, item, "expected a mapping with `token` (or `tokenSha256`) and `name`"); continue }
            var fields: [String: Node] = [:]
            for (k, v) in m {
                guard let key = k.string, Self.fields.contains(key) else {
                    fail("\(at).\(k.string ?? "?")", k, "unknown field (known: \(Self.fields.sorted().joined(separator: ", ")))")
                    continue
                }
                if !isNull(v) { fields[key] = v }
            }
            func text(_ key: String) -> String? {
                guard let v = fields[key] else { return nil }
                guard case .scalar(let s) = v, !s.string.isEmpty else { fail("\(at).\(key)", v, "expected a non-empty string"); return nil }
                return s.string
            }
            let name = text("name") ?? at
            let zone = text("zone"), region = text("region")
            var digest: TokenDigest?
            switch (text("token"), text("tokenSha256")) {
            case (let t?, nil):
                if t.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) { digest = TokenDigest(hashing: t) }
                else { fail("\(at).token", fields["token"], "a token is printable ASCII without spaces (it travels in an HTTP header)") }
            case (nil, let h?):
                digest = TokenDigest(hex: h)
                if digest == nil { fail("\(at).tokenSha256", fields["tokenSha256"], "expected 64 hexadecimal digits (the SHA-256 of the token, e.g. from sha256sum)") }
            case (_?, _?): fail(at, item, "give token or tokenSha256, not both")
            case (nil, nil): if fields["token"] == nil && fields["tokenSha256"] == nil { fail(at, item, "missing `token` (or `tokenSha256`)") }
            }
            if zone != nil && region != nil { fail("\(at).region", fields["region"], "give zone or region, not both (a zone's region comes from zoneRegions)") }
            var tags: [TagPair] = []
            if let t = fields["tags"] {
                if case .mapping(let tm) = t {
                    for (k, v) in tm {
                        guard let key = k.string, !key.isEmpty, case .scalar(let value) = v else {
                            fail("\(at).tags", k, "expected a mapping of tag names to strings"); continue
                        }
                        if (zone != nil || region != nil) && (IngestEndpoints.zoneKeys.contains(key) || key == "region") {
                            fail("\(at).tags.\(key)", k, "the token's zone or region is set by `zone:`/`region:`; do not repeat it as a tag")
                        }
                        tags.append(TagPair(key, value.string))
                    }
                } else {
                    fail("\(at).tags", t, "expected a mapping of tag names to strings")
                }
            }
            if let digest { rules.append(TokenRule(name: name, digest: digest, zone: zone, region: zone == nil ? region : nil, tags: tags)) }
        }
        if !problems.isEmpty { throw TokenFileError(path: path, problems: problems) }
        return rules
    }

    private static func isNull(_ n: Node) -> Bool {
        if case .scalar(let s) = n, s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) { return true }
        return false
    }
}
