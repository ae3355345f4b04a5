import Routing
import Synchronization

/// The header a backend's requests carry for its `conf.auth` token (none without `auth:`).
/// Every sender of the backend — a reload's replacement, a sharded backend's endpoints — holds
/// the same object, so a reload that reads a new token changes the header of every request
/// sent from then on, without rebuilding a sender (and its connections).
final class BackendCredential: Sendable {
    private let field: Mutex<(name: String, value: String)?>

    init(_ b: BackendConfig) { field = Mutex(b.auth?.field(for: b.kind)) }

    /// The header to add to a request, read once per request.
    var header: (name: String, value: String)? { field.withLock { $0 } }

    /// Takes `b`'s token (or none); true when the header changed.
    func update(_ b: BackendConfig) -> Bool {
        let new = b.auth?.field(for: b.kind)
        return field.withLock { old in
            defer { old = new }
            return old?.name != new?.name || old?.value != new?.value
        }
    }
}

/// Each backend's `BackendCredential`, by kind and name: what the registry hands the senders it
/// builds, and what a reload updates.
final class BackendCredentials: Sendable {
    private let byBackend = Mutex<[String: BackendCredential]>([:])

    private static func key(_ b: BackendConfig) -> String { b.kind.rawValue + " " + b.name }

    /// The backend's credential; made from `b` when it has none yet (a reload's new token is
    /// taken by `update`, once nothing can fail any more).
    func credential(for b: BackendConfig) -> BackendCredential {
        byBackend.withLock { all in
            if let c = all[Self.key(b)] { return c }
            let c = BackendCredential(b)
            all[Self.key(b)] = c
            return c
        }
    }

    /// Takes `b`'s token; true when its header changed.
    func update(_ b: BackendConfig) -> Bool { credential(for: b).update(b) }
}
