import Basics
import Transport

/// Ingest authentication (docs/ingest-auth.md): on a listener with `auth:`, every span-carrying
/// request presents a token — `Authorization: Bearer <token>` anywhere, or Datadog's
/// `DD-Api-Key: <token>` on the Datadog endpoints. A token pinned to a zone or region pins the
/// request's spans the way a client certificate's `peers` rule does (`BatchMetadata.pinnedRegion`,
/// refused by the router as reason `identity`).
extension IngestEndpoints {
    /// The token entry a request authenticated with; nil on a listener without `auth:`.
    /// Refuses a missing, malformed or unknown token with 401 (`unauthorized`, and the
    /// `WWW-Authenticate` challenge of RFC 6750), and a token whose region disagrees with the
    /// client certificate's `peers` rule with 403 (`forbidden`). Messages never hold the token.
    func authenticate(_ req: HTTPRequest, datadog: Bool) -> Result<IngestTokens.Entry?, Refusal> {
        guard !configuration.tokens.isEmpty, let store = configuration.tokens[req.listener] else { return .success(nil) }
        let presented: String
        if let header = req.headers["authorization"] {
            guard let token = Self.bearerToken(header) else {
                return .failure(Self.unauthorized("the Authorization header is not a bearer token; \(Self.how(datadog))", challenge: nil))
            }
            presented = token
        } else if datadog, let key = req.headers["dd-api-key"]?.trimmingOWS(), !key.isEmpty {
            presented = String(key)
        } else {
            return .failure(Self.unauthorized("this listener requires a token: \(Self.how(datadog))", challenge: nil))
        }
        guard let entry = store.lookup(presented) else {
            return .failure(Self.unauthorized("the token is not valid for this listener (unknown, or revoked by a reload)", challenge: "invalid_token"))
        }
        if let pinned = entry.region, let peer = peerEntry(req), peer.region != pinned {
            return .failure(Refusal(status: 403, code: "forbidden", message: "the client certificate (\(peer.rule.match)) speaks for region "
                                    + "\(peer.region) and the token '\(entry.rule.name)' for region \(pinned); a request may carry one region only"))
        }
        return .success(entry)
    }

    /// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive); nil for
    /// another scheme or an empty token.
    static func bearerToken(_ header: String) -> String? {
        let value = header.trimmingOWS()
        var i = value.utf8.startIndex
        for c in "bearer ".utf8 {
            // ASCII letters compare case-insensitively (| 0x20 lower-cases them); the space exactly.
            guard i != value.utf8.endIndex, value.utf8[i] == c || (c != UInt8(ascii: " ") && value.utf8[i] | 0x20 == c) else { return nil }
            i = value.utf8.index(after: i)
        }
        let token = value[i...].trimmingOWS()
        return token.isEmpty ? nil : String(token)
    }

    private static func how(_ datadog: Bool) -> String {
        "send `Authorization: Bearer <token>`" + (datadog ? " or `DD-Api-Key: <token>`" : "")
    }

    /// A 401 with the bearer challenge (`error="invalid_token"` only when a token was presented).
    static func unauthorized(_ message: String, challenge error: String?) -> Refusal {
        var r = Refusal(status: 401, code: "unauthorized", message: message)
        r.headers = [("WWW-Authenticate", "Bearer realm=\"tracerelay\"" + (error.map { ", error=\"\($0)\"" } ?? ""))]
        return r
    }
}
