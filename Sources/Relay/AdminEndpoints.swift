import Basics
import Buffering
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

/// Health, status, metrics and debug endpoints (the admin listener's).
public struct AdminEndpoints: Sendable {
    public let readiness: Readiness
    public let ingestStats: IngestStats
    public let routingStats: RoutingStats
    /// When set, `GET /debug/captured` lists the kept batches with every span field.
    public let capture: CapturingConsumer?

    /// Every sending backend: name, exporter counters, queue gauges (read on each `/status`).
    public let backends: @Sendable () -> [(String, BackendStats.Snapshot, QueueStats)]

    /// The shared limits and how full they are (`limits` in `/status`): name → figures.
    public let limits: @Sendable () -> [(String, [(String, Int)])]

    /// `/metrics`, `/api/status`, `/api/routes` and the status page at `/`; nil: not served.
    public let observability: ObservabilityEndpoints?

    public init(readiness: Readiness, ingestStats: IngestStats, routingStats: RoutingStats = RoutingStats(), capture: CapturingConsumer? = nil,
                backends: @escaping @Sendable () -> [(String, BackendStats.Snapshot, QueueStats)] = { [] },
                limits: @escaping @Sendable () -> [(String, [(String, Int)])] = { [] },
                observability: ObservabilityEndpoints? = nil) {
        self.readiness = readiness
        self.ingestStats = ingestStats
        self.routingStats = routingStats
        self.capture = capture
        self.backends = backends
        self.limits = limits
        self.observability = observability
    }

    /// `"name":{"sent_spans":…,"queue":{…}}` for each sending backend.
    static func backendsJSON(_ list: [(String, BackendStats.Snapshot, QueueStats)]) -> String {
        let items = list.sorted { $0.0 < $1.0 }.map { name, s, q in
            let dropped = q.droppedSpans.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { "\(jsonQuoted($0.key.rawValue)):\($0.value)" }.joined(separator: ",")
            return "\(jsonQuoted(name)):{\"sent_spans\":\(s.sentSpans),\"sent_requests\":\(s.sentRequests),\"sent_bytes\":\(s.sentBytes),"
                + "\"failed_requests\":\(s.failedRequests),\"retried_spans\":\(s.retriedSpans),\"dropped_spans\":\(s.droppedSpans),"
                + "\"up\":\(s.up),\"last_error\":\(s.lastError.map(jsonQuoted) ?? "null"),\"last_latency_seconds\":\(s.lastLatencySeconds),"
                + "\"queue\":{\"records\":\(q.records),\"in_flight\":\(q.inFlight),\"memory_bytes\":\(q.memoryBytes),\"disk_bytes\":\(q.diskBytes),"
                + "\"segments\":\(q.segments),\"rejected_records\":\(q.rejectedRecords),\"oldest_age_seconds\":\(q.oldestAgeSeconds),"
                + "\"dropped_spans\":{\(dropped)}}}"
        }
        return "{" + items.joined(separator: ",") + "}"
    }

    public func register(into router: inout EndpointRouter) {
        router.register("GET", "/health/live") { _, respond in respond(.json(200, "{\"status\":\"live\"}")) }
        let readiness = self.readiness
        router.register("GET", "/health/ready") { _, respond in
            let r = readiness.current
            respond(.json(r.ready ? 200 : 503, "{\"status\":\(jsonQuoted(r.ready ? "ready" : "not_ready")),\"reason\":\(jsonQuoted(r.reason))}"))
        }
        let stats = ingestStats, routing = routingStats, backends = self.backends, limits = self.limits
        router.register("GET", "/status") { _, respond in
            let formats = stats.snapshot.sorted { $0.key < $1.key }.map { k, v in
                "\(jsonQuoted(k)):{\"requests\":\(v.requests),\"spans\":\(v.spans),\"bytes\":\(v.bytes),\"rejected_requests\":\(v.rejectedRequests),"
                    + "\"dropped_spans\":\(v.droppedSpans),\"too_many_spans\":\(v.tooManySpans),\"overloaded\":\(v.overloaded)}"
            }
            let r = routing.snapshot
            func object(_ d: [String: Int]) -> String {
                "{" + d.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\($0.value)" }.joined(separator: ",") + "}"
            }
            respond(.json(200, "{\"ingest\":{\(formats.joined(separator: ","))},\"routing\":{\"routed\":\(object(r.routed)),"
                + "\"sampled_out\":\(object(r.sampledOut)),\"refused\":\(object(r.refused))},\"backends\":\(Self.backendsJSON(backends())),"
                + "\"limits\":{\(limits().map { name, figures in "\(jsonQuoted(name)):{" + figures.map { "\(jsonQuoted($0.0)):\($0.1)" }.joined(separator: ",") + "}" }.joined(separator: ","))}}"))
        }
        observability?.register(into: &router)
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
