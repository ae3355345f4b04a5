/// Why a stage did not take a batch. Every stage classifies its failures so the one before
/// it knows whether to drop (permanent) or retry later (retryable).
public struct ConsumeError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The data can never be accepted (bad content, refused by policy): drop, count, log once.
        case permanent
        /// A later attempt may succeed (queue full, backend down): requeue or tell the client to retry.
        case retryable
    }

    /// A short machine-readable code used in metrics and JSON replies. Compare codes with the
    /// constants below, never with string literals.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
        /// A backend queue cannot take the data now (HTTP 429).
        public static let queueFull = Code(rawValue: "queue_full")
        /// The spill write failed (disk full, I/O error).
        public static let spillFailed = Code(rawValue: "spill_failed")
        /// The relay is draining for shutdown.
        public static let shuttingDown = Code(rawValue: "shutting_down")
    }

    public var kind: Kind
    public var code: Code
    /// A sentence a person can act on.
    public var message: String
    /// For retryable errors, how long the caller should wait, when the stage can tell.
    public var retryAfterSeconds: Int?

    public init(_ kind: Kind, code: Code, message: String, retryAfterSeconds: Int? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String { "\(code): \(message)" }
}

/// The one interface between pipeline stages: take a batch, answer once, possibly later
/// (after the batch is durably queued, say). `completion` may run on any thread.
public protocol SpanConsumer: Sendable {
    func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void)
}
