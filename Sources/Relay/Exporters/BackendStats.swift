import Prometheus
import Synchronization

/// Counters of one backend's exporter, read by `/status`, `/api/status` and `/metrics`, and
/// asserted by tests.
public final class BackendStats: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var sentSpans = 0
        public var sentRequests = 0
        public var sentBytes = 0
        /// Requests the backend did not take: retryable failures (their spans were queued again)
        /// and permanent refusals (their spans were dropped).
        public var failedRequests = 0
        /// Span deliveries retried (a span retried twice counts twice).
        public var retriedSpans = 0
        /// Spans dropped for good: permanent backend answers, undecodable records.
        public var droppedSpans = 0
        /// The backend is up (false after `downAfter` consecutive failures, until a probe succeeds).
        public var up = true
        public var lastError: String?
        /// Export latency of the last successful request, seconds.
        public var lastLatencySeconds: Double = 0
    }
    private let state = Mutex(Snapshot())
    /// Export latency of every request the backend answered (`/metrics`); nil when not measured.
    private let latency: ValueHistogram?

    public init(exportLatency: ValueHistogram? = nil) { latency = exportLatency }
    public var snapshot: Snapshot { state.withLock { $0 } }
    func update(_ body: (inout Snapshot) -> Void) { state.withLock { body(&$0) } }

    /// Records one request's time from send to answer (once per batch, not per span).
    func recordLatency(nanos: UInt64) { latency?.record(Double(nanos) / 1e9) }
}
