/// How one attempt to deliver a payload ended. Every sender classifies its failures so the
/// exporter knows whether to drop (permanent) or retry later (retryable).
enum SendOutcome: Sendable, Equatable {
    /// The backend took it (2xx; for the file backend: written).
    case delivered
    /// The backend will never take it (a 4xx other than 408/429): drop, count, log.
    case permanent(String)
    /// Try again later (408/429/5xx, timeouts, connection errors, disk errors); `retryAfter`
    /// in seconds when the backend said (`Retry-After`).
    case retryable(String, retryAfter: Double?)
    /// 401 or 403: the backend refused our credentials (a missing, wrong or rotated `conf.auth`
    /// token). Retried like `retryable`, so spans wait (memory, then spill) for the operator to
    /// fix the token and reload instead of being dropped; logged as an error naming the status.
    case unauthorized(status: Int, String)
}

/// The last stage of a backend's pipeline: puts a joined payload on the wire (or on disk).
protocol PayloadSender: Sendable {
    /// Sends one payload; `completion` runs exactly once, on any thread.
    func send(_ payload: Payload, completion: @escaping @Sendable (SendOutcome) -> Void)
    /// Fails what is in flight (completions report `.retryable`) and releases connections/files.
    func shutdown()
    /// Where it sends, for logs and `/status`.
    var target: String { get }
}
