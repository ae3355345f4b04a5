import Dispatch
import Logging
import Routing
import Transport
#if canImport(Glibc)
import Glibc
#endif

/// `POST /api/reload` on the admin listener: 200 with what changed
/// (`{"ok":true,"generation":…,"backends":{"added":[…],"removed":[…],"changed":[…],…}}`),
/// 400 `{"error":"invalid_config","message":…}` when the file does not validate (the running
/// configuration stays), 409 when reload is unavailable, 500 when applying failed.
struct ReloadEndpoints: Sendable {
    /// nil: the relay runs without routing (tests of ingest alone); answers 409.
    let controller: ReloadController?

    func register(into router: inout EndpointRouter) {
        let controller = self.controller
        router.register("POST", "/api/reload") { _, respond in
            guard let controller else {
                return respond(.error(409, code: "reload_unavailable", message: "this relay runs without a routing configuration"))
            }
            controller.reload(trigger: "api") { result in
                switch result {
                case .success(let record):
                    respond(.json(200, record.json))
                case .failure(let e):
                    let status = e.code == "invalid_config" ? 400 : e.code == "reload_unavailable" ? 409 : 500
                    respond(.error(status, code: e.code, message: e.message))
                }
            }
        }
    }
}

extension RelayService {
    /// Re-reads the configuration source (`settings.reload.source`), validates it like `check`
    /// and swaps the routing table; `completion` runs on the reload queue.
    public func reload(trigger: String = "api", completion: @escaping @Sendable (Result<ReloadRecord, ReloadError>) -> Void = { _ in }) {
        guard let reloader else {
            return completion(.failure(ReloadError(code: "reload_unavailable", message: "this relay runs without a routing configuration")))
        }
        reloader.reload(trigger: trigger, completion: completion)
    }

    /// The last reload's time, outcome, message and generation (nil: none since start).
    public var lastReload: ReloadRecord? { reloader?.lastReload }

    /// The routing generation running: 1 at start, +1 per successful reload.
    public var routingGeneration: Int { reloader?.generation ?? 0 }

    /// The routing table running now (changes with each successful reload).
    public var currentTable: RoutingTable? { routingConsumer?.table }
}
