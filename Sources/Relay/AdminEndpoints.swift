import Spans
import Synchronization
import Transport

/// Whether the relay should be sent traffic. Starts not ready; the service marks it ready
/// once every listener is bound and not ready again when shutdown begins.
public final class Readiness: Sendable {
    private let state = Mutex<(ready: Bool, reason: String)>((false, "starting"))
    public init() {}
    public func set(ready: Bool, reason: String) { state.withLock { $0 = (ready, reason) } }
    public var current: (ready: Bool, reason: String) { state.withLock { $0 } }
}

/// Health, status and debug endpoints.
public struct AdminEndpoints: Sendable {
    public let readiness: Readiness
    public let ingestStats: IngestStats
    /// When set, `GET /debug/captured` lists the kept batches with every span field.
    public let capture: CapturingConsumer?

    public init(readiness: Readiness, ingestStats: IngestStats, capture: CapturingConsumer? = nil) {
        self.readiness = readiness
        self.ingestStats = ingestStats
        self.capture = capture
    }

    public func register(into router: inout EndpointRouter) {
        router.register("GET", "/health/live") { _, respond in respond(.json(200, "{\"status\":\"live\"}")) }
        let readiness = self.readiness
        router.register("GET", "/health/ready") { _, respond in
            let r = readiness.current
            respond(.json(r.ready ? 200 : 503, "{\"status\":\(jsonQuoted(r.ready ? "ready" : "not_ready")),\"reason\":\(jsonQuoted(r.reason))}"))
        }
        let stats = ingestStats
        router.register("GET", "/status") { _, respond in
            let formats = stats.snapshot.sorted { $0.key < $1.key }.map { k, v in
                "\(jsonQuoted(k)):{\"requests\":\(v.requests),\"spans\":\(v.spans),\"bytes\":\(v.bytes),\"rejected_requests\":\(v.rejectedRequests)}"
            }
            respond(.json(200, "{\"ingest\":{\(formats.joined(separator: ","))}}"))
        }
        if let capture {
            router.register("GET", "/debug/captured") { _, respond in
                let batches = capture.batches.map { b in
                    "{\"format\":\(jsonQuoted(b.metadata.format.rawValue)),\"listener\":\(jsonQuoted(b.metadata.listener)),"
                        + "\"declaredTraceCount\":\(b.metadata.declaredTraceCount.map(String.init) ?? "null"),"
                        + "\"requestTags\":{\(b.metadata.requestTags.map { "\(jsonQuoted($0.key)):\(jsonQuoted($0.value))" }.joined(separator: ","))},"
                        + "\"spans\":\(SpanDebugJSON.render(b))}"
                }
                respond(.json(200, "{\"batches\":[\(batches.joined(separator: ","))],\"batchCount\":\(capture.batchCount),\"spanCount\":\(capture.spanCount)}"))
            }
            router.register("DELETE", "/debug/captured") { _, respond in
                capture.clear()
                respond(HTTPResponse(status: 204))
            }
        }
    }
}
