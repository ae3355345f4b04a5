import Prometheus
import Synchronization

/// The relay's Prometheus registry (`GET /metrics`, text format by swift-prometheus).
///
/// Two kinds of figures: histograms recorded as they happen (ingest request latency per
/// listener, export latency per backend — one record per request or per batch), and everything
/// else read on scrape from the counters the relay keeps anyway (`IngestStats`, `RoutingStats`,
/// `BackendStats`, `QueueStats`, the response-code table of `HTTPInstruments`): counters are set
/// to the value read and gauges to the level read, under one lock, so a scrape is consistent and
/// the request path does no second counting.
public final class RelayMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// Scrapes are serialized: counters are reset and set from the snapshot within one scrape.
    private let scrape = Mutex(())
    public let http: HTTPInstruments
    /// The rings of backends with several endpoints (set by the backend registry; ScaleOut/).
    let shardFigures = Mutex<@Sendable () -> [ShardFigures]>({ [] })

    /// Buckets of the export latency histogram, seconds (send to answer of one batch): 1 ms … 60 s.
    static let exportBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    /// - Parameters:
    ///   - listeners: every listener name the server binds (ingest and admin).
    ///   - admin: the admin listener's name, not timed as ingest (nil: admin endpoints share the ingest listeners).
    public init(listeners: [String], admin: String?) {
        http = HTTPInstruments(listeners: listeners, untimed: admin.map { [$0] } ?? [], registry: registry)
    }

    /// The histogram a backend's exporter records each request's latency into.
    public func exportLatency(backend: String) -> ValueHistogram {
        registry.makeValueHistogram(name: "tracerelay_backend_export_duration_seconds", labels: [("backend", backend)],
                                       buckets: Self.exportBuckets,
                                       help: "Time from sending a batch to a backend to its success answer, by backend.")
    }

    /// The exposition of every figure as of `status`.
    public func exposition(_ status: RelayStatus) -> [UInt8] {
        scrape.withLock { _ in
            update(status)
            return registry.emitToBuffer()
        }
    }

    private func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Int) {
        let c = registry.makeCounter(name: name, labels: labels, help: help)
        c.reset()
        c.increment(by: Int64(value))
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
        registry.makeGauge(name: name, labels: labels, help: help).set(value)
    }

    /// Maps an answer's error code to the refusal reason of the metrics.
    static func refusalReason(_ code: String) -> String {
        switch code {
        case "bad_payload", "bad_content_encoding": "parse"
        case "body_too_large", "too_many_spans": "too_large"
        case "unsupported_media_type", "unsupported_content_encoding": "unsupported"
        default: code  // overloaded, queue_full, spill_failed, shutting_down, …
        }
    }

    private func update(_ s: RelayStatus) {
        gauge("tracerelay_build_info", "Always 1; the labels name the build.", [("version", s.version)], 1)
        gauge("tracerelay_start_time_seconds", "When the relay started, seconds since the Unix epoch.", [], s.startedAtUnixSeconds)
        gauge("tracerelay_uptime_seconds", "Seconds since the relay started.", [], s.uptimeSeconds)
        gauge("tracerelay_ready", "1 when the relay accepts traffic (every listener bound, not shutting down).", [], s.ready ? 1 : 0)
        gauge("tracerelay_http_open_connections", "Open client connections on every listener.", [], Double(s.openConnections))
        gauge("tracerelay_http_open_streams", "Open HTTP/2 streams on every connection.", [], Double(s.openStreams))
        counter("tracerelay_http_refused_streams_total", "HTTP/2 streams reset with REFUSED_STREAM before processing (body budget spent).", [], s.refusedStreams)
        counter("tracerelay_http_connections_refused_total", "Connections closed at accept because --max-connections were open.", [], s.refusedConnections)
        let handshakesHelp = "TLS handshakes completed on the ingest listeners, by whether a session was resumed."
        counter("tracerelay_tls_handshakes_total", handshakesHelp, [("resumed", "false")], s.tlsHandshakes.total - s.tlsHandshakes.resumed)
        counter("tracerelay_tls_handshakes_total", handshakesHelp, [("resumed", "true")], s.tlsHandshakes.resumed)
        for (reason, n) in s.tlsFailures {
            counter("tracerelay_tls_failures_total", "TLS connections that failed, by reason (certificate_missing, certificate_rejected, handshake_timeout, …).", [("reason", reason)], n)
        }
        for (code, n) in s.serverAnswers {
            counter("tracerelay_http_server_answers_total", "Answers the server gave itself, before the request reached the relay (framing errors, limits, budgets, timeouts), by status code.", [("code", String(code))], n)
        }

        // Spans of requests a queue refused: known per request, not per region or backend.
        var ingestRefused: [String: Int] = [:]
        for (key, v) in s.ingest {
            let l = [("listener", key.listener), ("format", key.format)]
            counter("tracerelay_ingest_requests_total", "Ingest requests answered, by listener and payload format.", l, v.requests)
            counter("tracerelay_ingest_spans_received_total", "Spans accepted (queued for their backends), by listener and payload format.", l, v.spans)
            counter("tracerelay_ingest_bytes_received_total", "Request body bytes of accepted requests as received (before content decoding), by listener and format.", l, v.bytes)
            counter("tracerelay_ingest_spans_dropped_total",
                    "Spans answered 200 to a Datadog tracer that did not ask for real statuses but dropped (queue full, overload).", l, v.droppedSpans)
            var byReason: [String: Int] = [:]
            for (code, n) in v.refused { byReason[Self.refusalReason(code), default: 0] += n }
            for (reason, n) in byReason {
                counter("tracerelay_ingest_requests_refused_total", "Ingest requests refused, by listener, format and reason.", l + [("reason", reason)], n)
            }
            for (code, n) in v.refusedSpans { ingestRefused[Self.refusalReason(code), default: 0] += n }
        }
        let refusedHelp = "Spans not accepted or not sent, by reason (residency, sampling, queue_full, …), region and backend."
        for (reason, n) in ingestRefused {
            counter("tracerelay_spans_refused_total", refusedHelp, [("reason", reason), ("region", ""), ("backend", "")], n)
        }
        for (key, n) in s.routing.refused {
            let parts = key.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else { continue }
            counter("tracerelay_spans_refused_total", refusedHelp, [("reason", parts[0]), ("region", parts[1]), ("backend", parts[2])], n)
        }
        for (backend, n) in s.routing.sampledOut {
            counter("tracerelay_spans_refused_total", refusedHelp, [("reason", "sampling"), ("region", ""), ("backend", backend)], n)
        }
        for (backend, n) in s.routing.routed {
            counter("tracerelay_spans_routed_total", "Spans routed to a backend (after sampling), by backend.", [("backend", backend)], n)
        }

        for b in s.backends {
            let l = [("backend", b.name)]
            counter("tracerelay_backend_spans_sent_total", "Spans the backend acknowledged, by backend.", l, b.stats.sentSpans)
            counter("tracerelay_backend_requests_sent_total", "Requests the backend acknowledged, by backend.", l, b.stats.sentRequests)
            counter("tracerelay_backend_bytes_sent_total", "Body bytes (before compression) of the requests the backend acknowledged, by backend.", l, b.stats.sentBytes)
            counter("tracerelay_backend_requests_failed_total", "Requests the backend did not take (retried or dropped), by backend.", l, b.stats.failedRequests)
            counter("tracerelay_backend_spans_retried_total", "Span deliveries retried after a retryable failure, by backend.", l, b.stats.retriedSpans)
            let dropHelp = "Spans dropped for good, by backend and reason (rejected: a permanent backend answer or an undecodable record; the others: the queue)."
            counter("tracerelay_backend_spans_dropped_total", dropHelp, l + [("reason", "rejected")], b.stats.droppedSpans)
            for (reason, n) in b.queue.droppedSpans {
                counter("tracerelay_backend_spans_dropped_total", dropHelp, l + [("reason", Self.snakeCase(reason.rawValue))], n)
            }
            gauge("tracerelay_backend_up", "1 while the backend answers, 0 once it is marked down (until a probe succeeds).", l, b.stats.up ? 1 : 0)
            gauge("tracerelay_backend_last_export_duration_seconds", "Latency of the last successful export request, by backend.", l, b.stats.lastLatencySeconds)
            for (tier, bytes, limit) in [("memory", b.queue.memoryBytes, s.queueMemoryLimitBytes), ("disk", b.queue.diskBytes, s.queueDiskLimitBytes)] {
                gauge("tracerelay_queue_bytes", "Bytes queued for a backend, by backend and tier (memory, disk spill).", l + [("tier", tier)], Double(bytes))
                gauge("tracerelay_queue_limit_bytes", "The queue's cap, by backend and tier (memory: spill threshold).", l + [("tier", tier)], Double(limit))
            }
            gauge("tracerelay_queue_records", "Records waiting or in flight in a backend's queue.", l, Double(b.queue.records))
            gauge("tracerelay_queue_spill_segments", "Spill segment files of a backend's queue.", l, Double(b.queue.segments))
            gauge("tracerelay_queue_oldest_record_age_seconds", "Age of the oldest record waiting in a backend's queue (0 when empty).", l, b.queue.oldestAgeSeconds)
            gauge("tracerelay_queue_oldest_spilled_age_seconds", "Age of the oldest spill segment of a backend that still holds unsent records (0 when none).", l, b.queue.oldestSpilledAgeSeconds)
            counter("tracerelay_queue_spans_enqueued_total", "Spans a backend's queue took.", l, b.queue.enqueuedSpans)
            counter("tracerelay_queue_records_rejected_total", "Records a backend's queue refused (full).", l, b.queue.rejectedRecords)
            counter("tracerelay_queue_corrupt_frames_total", "Spill frames that failed verification on replay.", l, b.queue.corruptFrames)
            counter("tracerelay_queue_write_errors_total", "Spill writes that failed.", l, b.queue.writeErrors)
        }

        for f in shardFigures.withLock({ $0 })() {
            let l = [("backend", f.backend)]
            gauge("tracerelay_backend_endpoints", "Endpoints in the consistent-hash ring of a backend with several endpoints.", l, Double(f.endpoints.count))
            counter("tracerelay_backend_ring_changes_total", "Changes of a backend's endpoint set (resolver answers that differed).", l, f.ringChanges)
            counter("tracerelay_backend_spans_rerouted_total",
                    "Spans moved from the queue of an endpoint that left (or of the backend's holding queue) to the endpoints of the new ring.", l, f.reroutedSpans)
        }

        for r in http.responses() {
            counter("tracerelay_http_responses_total", "HTTP responses by listener and status code.", [("listener", r.listener), ("code", r.code)], r.count)
        }
        for (name, figures) in s.limits {
            for (figure, value) in figures {
                let metric = "tracerelay_\(name)_\(figure)"
                if figure.hasSuffix("_bytes") {
                    gauge(metric, "The \(name.replacingOccurrences(of: "_", with: " ")): \(figure.replacingOccurrences(of: "_", with: " ")).", [], Double(value))
                } else {
                    counter(metric + "_total", "The \(name.replacingOccurrences(of: "_", with: " ")): \(figure.replacingOccurrences(of: "_", with: " ")).", [], value)
                }
            }
        }
    }

    /// `memoryFull` → `memory_full`.
    static func snakeCase(_ s: String) -> String {
        var out = ""
        for c in s {
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
        return out
    }
}

/// One sharded backend's ring as `/metrics` shows it: the endpoints in it, how often it changed,
/// how many spans were rerouted after changes.
struct ShardFigures: Sendable {
    var backend: String
    var endpoints: [String]
    var ringChanges: Int
    var reroutedSpans: Int
}
