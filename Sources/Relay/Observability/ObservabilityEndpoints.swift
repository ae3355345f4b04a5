import Basics
import Routing
import Spans
import Transport

/// The operator's endpoints on the admin listener: `GET /metrics` (Prometheus text format),
/// `GET /api/status` (JSON for the page), `GET /api/routes?tag=k=v&…` (what `explain` answers)
/// and `GET /` (the status page, self-contained HTML).
public struct ObservabilityEndpoints: Sendable {
    public let source: RelayStatusSource
    public let metrics: RelayMetrics
    /// The admin listener's name (listeners are listed as `admin` or `ingest`).
    public let adminName: String

    public init(source: RelayStatusSource, metrics: RelayMetrics, adminName: String = "admin") {
        self.source = source
        self.metrics = metrics
        self.adminName = adminName
    }

    public func register(into router: inout EndpointRouter) {
        let source = self.source, metrics = self.metrics, adminName = self.adminName
        router.register("GET", "/metrics") { _, respond in
            respond(HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                                 body: metrics.exposition(source.current())))
        }
        router.register("GET", "/api/status") { _, respond in
            let json = StatusJSON.render(source.current(), history: source.history.series(), table: source.table(), adminName: adminName)
            respond(.json(200, json, headers: [("Cache-Control", "no-store")]))
        }
        router.register("GET", "/api/routes") { req, respond in
            guard let table = source.table() else {
                return respond(.error(404, code: "no_routing", message: "this relay runs without a routing configuration (no --config)"))
            }
            let q: RouteQuery
            do throws(RouteQueryError) { q = try RouteQuery(query: req.query) } catch {
                return respond(.error(400, code: "bad_query", message: error.message))
            }
            var traceID: TraceID? = nil
            if let hex = q.traceID {
                guard let id = TraceID(hex: hex) else {
                    return respond(.error(400, code: "bad_query", message: "trace_id expects 1 to 32 hex digits, got '\(hex)'"))
                }
                traceID = id
            }
            let e = table.explain(tags: q.tags, requestTags: q.requestTags, traceID: traceID, debug: q.debug, samplingPriority: q.samplingPriority)
            respond(.json(200, explanationJSON(e)))
        }
        router.register("GET", "/") { _, respond in
            respond(HTTPResponse(status: 200, headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                                 body: StatusPage.html))
        }
    }
}
