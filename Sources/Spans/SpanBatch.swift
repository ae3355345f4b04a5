/// The wire format a batch arrived in; also names the formats encoders produce.
public enum SpanFormat: String, Sendable, CaseIterable {
    case zipkinV2JSON = "zipkin_v2_json"
    case zipkinV2Proto = "zipkin_v2_proto"
    case zipkinV1JSON = "zipkin_v1_json"
    case datadogV03JSON = "datadog_v03_json"
    case datadogV03Msgpack = "datadog_v03_msgpack"
    case datadogV04 = "datadog_v04"
    case datadogV05 = "datadog_v05"
    case datadogV07 = "datadog_v07"
    /// Built in code (tests, translation) rather than decoded.
    case constructed = "constructed"

    /// Sent by a Datadog tracer (any of the agent's trace endpoints).
    public var isDatadog: Bool {
        switch self {
        case .datadogV03JSON, .datadogV03Msgpack, .datadogV04, .datadogV05, .datadogV07: true
        case .zipkinV2JSON, .zipkinV2Proto, .zipkinV1JSON, .constructed: false
        }
    }
}

/// Facts about the request a batch came from, used by routing and metrics.
public struct BatchMetadata: Sendable, Hashable {
    public var format: SpanFormat
    /// Name of the listener that accepted the request ("" when not from a listener).
    public var listener: String
    /// Request-level mesh tags: the listener's static tags, then `X-Tracerelay-Tags` from a
    /// trusted upstream relay. They win over span tags with the same key.
    public var requestTags: [(key: String, value: String)]
    /// Datadog `X-Datadog-Trace-Count`, when sent.
    public var declaredTraceCount: Int?
    /// Wall clock at receipt, nanoseconds since the epoch (0 = unknown).
    public var receivedAtNanos: Int64
    /// Client headers an exporter passes on to a backend of the same family (Datadog's
    /// `Datadog-Meta-Lang`, `Datadog-Meta-Tracer-Version`, …), in arrival order.
    public var forwardHeaders: [(name: String, value: String)] = []
    /// The region the sending client may speak for, from its verified certificate (`peers` in
    /// the Relay document); spans routed to any other region are refused. nil: no pin.
    public var pinnedRegion: String?

    public init(format: SpanFormat, listener: String = "", requestTags: [(key: String, value: String)] = [],
                declaredTraceCount: Int? = nil, receivedAtNanos: Int64 = 0) {
        self.format = format
        self.listener = listener
        self.requestTags = requestTags
        self.declaredTraceCount = declaredTraceCount
        self.receivedAtNanos = receivedAtNanos
    }

    public static func == (a: BatchMetadata, b: BatchMetadata) -> Bool {
        a.format == b.format && a.listener == b.listener && a.declaredTraceCount == b.declaredTraceCount
            && a.receivedAtNanos == b.receivedAtNanos && a.pinnedRegion == b.pinnedRegion
            && a.requestTags.elementsEqual(b.requestTags, by: { $0.key == $1.key && $0.value == $1.value })
            && a.forwardHeaders.elementsEqual(b.forwardHeaders, by: { $0.name == $1.name && $0.value == $1.value })
    }

    public func hash(into h: inout Hasher) {
        h.combine(format); h.combine(listener); h.combine(declaredTraceCount); h.combine(receivedAtNanos)
        h.combine(pinnedRegion)
        for t in requestTags { h.combine(t.key); h.combine(t.value) }
        for f in forwardHeaders { h.combine(f.name); h.combine(f.value) }
    }
}

/// A decoded request: its spans plus the flat arrays and byte storage they point into.
///
/// `storage` begins with the request body exactly as received (so `Span.raw` and most `Str`s
/// are slices of it, and nothing is copied) and continues with bytes decoders appended
/// (unescaped strings, converted values). A batch is a value: copies share storage until written.
public struct SpanBatch: Sendable, Equatable {
    public var storage: [UInt8]
    /// How many leading bytes of `storage` are the original body.
    public private(set) var bodyCount: Int
    public var spans: [Span] = []
    public var tags: [Tag] = []
    public var annotations: [Annotation] = []
    public var metrics: [Metric] = []
    public var metadata: BatchMetadata

    /// A batch over `body` (taken without copying); decoders add spans to it.
    public init(body: [UInt8], metadata: BatchMetadata) {
        self.storage = body
        self.bodyCount = body.count
        self.metadata = metadata
    }

    /// An empty batch for spans built in code.
    public init(metadata: BatchMetadata = BatchMetadata(format: .constructed)) {
        self.storage = []
        self.bodyCount = 0
        self.metadata = metadata
    }

    public var count: Int { spans.count }
    public var isEmpty: Bool { spans.isEmpty }

    // MARK: Text

    /// Appends bytes to the storage and returns a reference to them.
    @inlinable @discardableResult
    public mutating func intern(_ bytes: UnsafeRawBufferPointer) -> Str {
        if bytes.isEmpty { return .empty }
        let off = storage.count
        // As typed bytes, `append` is one memcpy; a raw buffer would be appended byte by byte.
        storage.append(contentsOf: bytes.assumingMemoryBound(to: UInt8.self))
        return Str(offset: UInt32(off), count: UInt32(bytes.count))
    }

    @inlinable @discardableResult
    public mutating func intern(_ s: String) -> Str {
        var s = s
        return s.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    /// Appends bytes with a closure writing at most `capacity` bytes (returns how many it wrote).
    @inlinable
    public mutating func appendText(capacity: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Str {
        let off = storage.count
        storage.append(contentsOf: repeatElement(0, count: capacity))
        let n = storage.withUnsafeMutableBytes { all in
            body(UnsafeMutableRawBufferPointer(rebasing: all[off..<(off + capacity)]))
        }
        storage.removeLast(capacity - n)
        return n == 0 ? .empty : Str(offset: UInt32(off), count: UInt32(n))
    }

    /// A reference to a slice of the body, `range` in body byte offsets (no copy).
    @inlinable public func slice(_ range: Range<Int>) -> Str {
        Str(offset: UInt32(range.lowerBound), count: UInt32(range.count))
    }

    /// The text as a Swift String (allocates for long strings: use off the hot path).
    public func string(_ s: Str) -> String {
        if s.count == 0 { return "" }
        return withBytes(s) { String(decoding: $0, as: UTF8.self) }
    }

    /// The text's bytes, valid only inside `body`.
    @inlinable
    public func withBytes<R>(_ s: Str, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[Int(s.offset)..<(Int(s.offset) + Int(s.count))]))
        }
    }

    /// Byte-wise comparison with a literal, without allocating.
    @inlinable
    public func equals(_ s: Str, _ literal: StaticString) -> Bool {
        guard s.count == literal.utf8CodeUnitCount else { return false }
        if s.count == 0 { return true }
        return withBytes(s) { b in
            literal.withUTF8Buffer { l in memcmp(b.baseAddress!, l.baseAddress!, l.count) == 0 }
        }
    }

    @inlinable
    public func equals(_ a: Str, _ b: Str) -> Bool {
        guard a.count == b.count else { return false }
        if a.offset == b.offset || a.count == 0 { return true }
        return storage.withUnsafeBytes { all in
            memcmp(all.baseAddress! + Int(a.offset), all.baseAddress! + Int(b.offset), Int(a.count)) == 0
        }
    }

    // MARK: Spans

    /// Appends tags and returns their index range, for `Span.tags`.
    @inlinable
    public mutating func addTags(_ list: some Sequence<Tag>) -> Range<UInt32> {
        let start = UInt32(tags.count)
        tags.append(contentsOf: list)
        return start..<UInt32(tags.count)
    }

    /// The span's tags.
    @inlinable public func tags(of span: Span) -> ArraySlice<Tag> { tags[Int(span.tags.lowerBound)..<Int(span.tags.upperBound)] }
    @inlinable public func annotations(of span: Span) -> ArraySlice<Annotation> {
        annotations[Int(span.annotations.lowerBound)..<Int(span.annotations.upperBound)]
    }
    @inlinable public func metrics(of span: Span) -> ArraySlice<Metric> {
        metrics[Int(span.metrics.lowerBound)..<Int(span.metrics.upperBound)]
    }

    /// The value of the span's first tag named `key`, if any (no allocation).
    @inlinable
    public func tag(_ span: Span, _ key: StaticString) -> Str? {
        for t in tags(of: span) where equals(t.key, key) { return t.value }
        return nil
    }

    /// The value of the span's tag `key` as a String (for tests and tools).
    public func tagValue(_ span: Span, _ key: String) -> String? {
        for t in tags(of: span) where string(t.key) == key { return string(t.value) }
        return nil
    }

    /// All tags of a span as Strings, in order (for tests and tools).
    public func tagDictionary(_ span: Span) -> [String: String] {
        var d: [String: String] = [:]
        for t in tags(of: span) { d[string(t.key)] = string(t.value) }
        return d
    }

    /// Appends `span` from another batch, copying its text into this batch's storage.
    public mutating func append(_ span: Span, from other: SpanBatch) {
        func copy(_ s: Str) -> Str { s.isEmpty ? .empty : other.withBytes(s) { intern($0) } }
        func copy(_ e: Endpoint) -> Endpoint {
            Endpoint(serviceName: copy(e.serviceName), ipv4: copy(e.ipv4), ipv6: copy(e.ipv6), port: e.port)
        }
        var s = span
        s.name = copy(span.name)
        s.localEndpoint = copy(span.localEndpoint)
        s.remoteEndpoint = copy(span.remoteEndpoint)
        s.resource = copy(span.resource)
        s.type = copy(span.type)
        s.raw = copy(span.raw)
        let t0 = UInt32(tags.count)
        for t in other.tags(of: span) { tags.append(Tag(key: copy(t.key), value: copy(t.value))) }
        s.tags = t0..<UInt32(tags.count)
        let a0 = UInt32(annotations.count)
        for a in other.annotations(of: span) { annotations.append(Annotation(timestampNanos: a.timestampNanos, value: copy(a.value))) }
        s.annotations = a0..<UInt32(annotations.count)
        let m0 = UInt32(metrics.count)
        for m in other.metrics(of: span) { metrics.append(Metric(key: copy(m.key), value: m.value)) }
        s.metrics = m0..<UInt32(metrics.count)
        spans.append(s)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
