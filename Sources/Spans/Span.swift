/// A reference to text held in a `SpanBatch`'s storage: either a slice of the request body
/// (the common case, no copy) or bytes the decoder appended after it (unescaped strings,
/// translated values). `count == 0` means empty or absent.
public struct Str: Hashable, Sendable {
    public var offset: UInt32
    public var count: UInt32

    @inlinable public init(offset: UInt32, count: UInt32) {
        self.offset = offset
        self.count = count
    }

    public static let empty = Str(offset: 0, count: 0)
    @inlinable public var isEmpty: Bool { count == 0 }
}

/// Zipkin's span kinds; Datadog's `span.kind` meta maps onto the same values.
public enum SpanKind: UInt8, Sendable, CaseIterable {
    case unspecified = 0, client, server, producer, consumer

    /// Zipkin's upper-case spelling (`CLIENT`), nil for unspecified.
    public var zipkinName: String? {
        switch self {
        case .unspecified: nil
        case .client: "CLIENT"
        case .server: "SERVER"
        case .producer: "PRODUCER"
        case .consumer: "CONSUMER"
        }
    }

    /// OpenTelemetry / Datadog lower-case spelling (`client`), nil for unspecified.
    public var lowercaseName: String? { zipkinName?.lowercased() }
}

/// A network endpoint as Zipkin models it. Addresses are kept as text.
public struct Endpoint: Hashable, Sendable {
    public var serviceName: Str = .empty
    public var ipv4: Str = .empty
    public var ipv6: Str = .empty
    public var port: UInt16 = 0

    public init(serviceName: Str = .empty, ipv4: Str = .empty, ipv6: Str = .empty, port: UInt16 = 0) {
        self.serviceName = serviceName
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.port = port
    }

    @inlinable public var isEmpty: Bool { serviceName.isEmpty && ipv4.isEmpty && ipv6.isEmpty && port == 0 }
}

/// A string tag (Zipkin tag, Datadog `meta`).
public struct Tag: Hashable, Sendable {
    public var key: Str
    public var value: Str
    @inlinable public init(key: Str, value: Str) { self.key = key; self.value = value }
}

/// A numeric tag (Datadog `metrics`).
public struct Metric: Hashable, Sendable {
    public var key: Str
    public var value: Double
    @inlinable public init(key: Str, value: Double) { self.key = key; self.value = value }
}

/// A timestamped event (Zipkin annotation).
public struct Annotation: Hashable, Sendable {
    public var timestampNanos: Int64
    public var value: Str
    @inlinable public init(timestampNanos: Int64, value: Str) { self.timestampNanos = timestampNanos; self.value = value }
}

/// One span. Text fields and the tag/annotation/metric lists point into the owning
/// `SpanBatch`, so decoding a span allocates nothing of its own; read them through the batch.
public struct Span: Hashable, Sendable {
    public var traceID: TraceID
    public var id: UInt64
    /// 0 means no parent (a root span).
    public var parentID: UInt64 = 0
    public var name: Str = .empty
    public var kind: SpanKind = .unspecified
    /// Start time, nanoseconds since the Unix epoch (Zipkin's µs × 1000).
    public var startNanos: Int64 = 0
    public var durationNanos: Int64 = 0
    public var localEndpoint: Endpoint = .init()
    public var remoteEndpoint: Endpoint = .init()
    /// Index range into `SpanBatch.tags`.
    public var tags: Range<UInt32> = 0..<0
    /// Index range into `SpanBatch.annotations`.
    public var annotations: Range<UInt32> = 0..<0
    /// Index range into `SpanBatch.metrics`.
    public var metrics: Range<UInt32> = 0..<0
    public var flags: Flags = []
    /// Upstream sampling decision (Datadog `_sampling_priority_v1`, the trace chunk's; Zipkin debug maps to 1).
    public var samplingPriority: Int8? = nil
    /// Datadog resource (Zipkin has none; translation uses the name).
    public var resource: Str = .empty
    /// Datadog span type (`web`, `http`, `sql`, …).
    public var type: Str = .empty
    /// The span's original bytes in the request body, when the source format is kept and
    /// a same-format backend may forward them unchanged. Empty when unknown.
    public var raw: Str = .empty

    public init(traceID: TraceID, id: UInt64) {
        self.traceID = traceID
        self.id = id
    }

    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let debug = Flags(rawValue: 1 << 0)
        public static let shared = Flags(rawValue: 1 << 1)
        public static let error = Flags(rawValue: 1 << 2)
        /// Datadog: this span is the top of its service in the trace.
        public static let topLevel = Flags(rawValue: 1 << 3)
    }

    @inlinable public var isRoot: Bool { parentID == 0 }
    @inlinable public var isError: Bool { flags.contains(.error) }
    @inlinable public var isDebug: Bool { flags.contains(.debug) }
}
