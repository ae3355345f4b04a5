import Spans

/// Zipkin API v1 JSON (`POST /api/v1/spans`): spans described by annotations and binary
/// annotations. Reading follows Zipkin's `V1JsonSpanReader`; the conversion to the v2 model
/// (one v1 span may become two spans) is `ZipkinV1Converter` (ZipkinV1Converter.swift).
///
/// What the reader keeps (Zipkin's rules, see docs/protocol-fidelity.md):
/// - an annotation needs `timestamp` and `value` (else the body is refused, as Zipkin does);
///   an empty endpoint (`{}`) counts as none;
/// - a binary annotation needs `key`; a string `value` is kept as a tag (whatever its declared
///   `type`, so `BYTES` stays base64 text); `true` with a non-empty endpoint under `ca`, `sa`
///   or `ma` is an address; every other value (numbers, `false`, `true` under another key,
///   objects) is dropped, as Zipkin drops them;
/// - `timestamp`/`duration` of 0 or absent mean unset; negative ones are 0 (unset).
/// Ids and errors follow `ZipkinJSONV2`'s rules. `raw` is never set (a v1 body cannot be
/// forwarded as v2).
public enum ZipkinJSONV1 {
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        var batch = SpanBatch(body: body, metadata: metadata)
        batch.spans.reserveCapacity(body.count / 512 + 1)
        batch.tags.reserveCapacity(body.count / 64 + 1)
        var converter = ZipkinV1Converter()
        try JSONReader.withReader(body, format: .zipkinV1JSON) { (r: inout JSONReader) throws(DecodeError) in
            try r.beginArray()
            var span = V1Span()
            while try r.nextElement() {
                try readSpan(&r, into: &span, &batch)
                converter.convert(span, into: &batch)
            }
            try r.expectEnd()
        }
        return batch
    }

    /// Reads one v1 span object into `span` (reusing its arrays).
    static func readSpan(_ r: inout JSONReader, into span: inout V1Span, _ batch: inout SpanBatch) throws(DecodeError) {
        guard r.peek() == UInt8(ascii: "{") else { throw r.error("expected a span object") }
        let start = r.position
        try r.beginObject()
        span.reset()
        var haveTrace = false, haveID = false
        var ignored = true
        while let k = try r.nextKey() {
            if r.readNull() { continue }
            if r.key(k, is: "traceId") {
                span.traceID = try ZipkinIDs.traceID(&r).0; haveTrace = true
            } else if r.key(k, is: "id") {
                _ = r.peek()
                let at = r.position
                let id = try ZipkinIDs.spanID(&r, field: "id").0
                guard id != 0 else { throw r.error("span id is all zeros", at: at, code: .invalidValue) }
                span.id = id; haveID = true
            } else if r.key(k, is: "parentId") {
                span.parentID = try ZipkinIDs.spanID(&r, field: "parentId").0
            } else if r.key(k, is: "name") {
                span.name = r.text(try r.readString(), in: &batch)
            } else if r.key(k, is: "timestamp") {
                span.timestamp = try ZipkinJSONV2.micros(&r, "timestamp").0
            } else if r.key(k, is: "duration") {
                span.duration = try ZipkinJSONV2.micros(&r, "duration").0
            } else if r.key(k, is: "debug") {
                span.debug = try r.readBool()
            } else if r.key(k, is: "annotations") {
                try r.beginArray()
                while try r.nextElement() {
                    if r.readNull() { continue }
                    span.annotations.append(try readAnnotation(&r, &batch, &ignored))
                }
            } else if r.key(k, is: "binaryAnnotations") {
                try r.beginArray()
                while try r.nextElement() {
                    if r.readNull() { continue }
                    if let b = try readBinaryAnnotation(&r, &batch, &ignored) { span.binaryAnnotations.append(b) }
                }
            } else {
                try r.skipValue()
            }
        }
        guard haveTrace else { throw r.error("span has no traceId", at: start, code: .invalidValue) }
        guard haveID else { throw r.error("span has no id", at: start, code: .invalidValue) }
        span.sort(batch)
    }

    static func readAnnotation(_ r: inout JSONReader, _ batch: inout SpanBatch, _ ignored: inout Bool) throws(DecodeError) -> V1Span.Annotation {
        let at = r.position
        try r.beginObject()
        var ts: Int64? = nil
        var value: JSONString? = nil
        var ep: Endpoint? = nil
        while let k = try r.nextKey() {
            if r.readNull() { continue }
            if r.key(k, is: "timestamp") { ts = try ZipkinJSONV2.micros(&r, "annotation timestamp").0 }
            else if r.key(k, is: "value") { value = try r.readString() }
            else if r.key(k, is: "endpoint") { ep = try ZipkinJSONV2.endpoint(&r, &batch, &ignored) }
            else { try r.skipValue() }
        }
        guard let ts, let value else {
            throw r.error("annotation needs a timestamp and a value", at: at, code: .invalidValue)
        }
        var core: V1Span.Core? = nil
        if value.count == 2 && !value.hasEscapes {
            let b = r.bytes(value.range)
            core = V1Span.Core(b[0], b[1])
        }
        return .init(timestampNanos: ts, value: r.text(value, in: &batch), endpoint: ep.flatMap { $0.isEmpty ? nil : $0 }, core: core)
    }

    /// A binary annotation Zipkin keeps (a string tag or an address), or nil for one it drops.
    static func readBinaryAnnotation(_ r: inout JSONReader, _ batch: inout SpanBatch,
                                     _ ignored: inout Bool) throws(DecodeError) -> V1Span.Binary? {
        let at = r.position
        try r.beginObject()
        var key: JSONString? = nil
        var string: Str? = nil
        var bool: Bool? = nil
        var ep: Endpoint? = nil
        while let k = try r.nextKey() {
            if r.readNull() { continue }
            if r.key(k, is: "key") { key = try r.readString() }
            else if r.key(k, is: "endpoint") { ep = try ZipkinJSONV2.endpoint(&r, &batch, &ignored) }
            else if r.key(k, is: "value") {
                switch r.peek() {
                case UInt8(ascii: "\""): string = r.text(try r.readString(), in: &batch)
                case UInt8(ascii: "t"), UInt8(ascii: "f"): bool = try r.readBool()
                default: try r.skipValue() // numbers, objects, arrays: Zipkin drops them
                }
            } else { try r.skipValue() }
        }
        guard let key else { throw r.error("binary annotation has no key", at: at, code: .invalidValue) }
        let endpoint = ep.flatMap { $0.isEmpty ? nil : $0 }
        var address: V1Span.Address? = nil
        if key.count == 2 && !key.hasEscapes {
            let b = r.bytes(key.range)
            address = V1Span.Address(b[0], b[1])
        }
        let keyStr = r.text(key, in: &batch)
        if let string { return .init(key: keyStr, value: string, endpoint: endpoint, address: address) }
        // `true` is an address only under ca/sa/ma and with an endpoint; anything else is dropped.
        if bool == true, let address, let endpoint { return .init(key: keyStr, value: nil, endpoint: endpoint, address: address) }
        return nil
    }
}

/// A v1 span as read, before conversion (times in nanoseconds, 0 = unset).
struct V1Span {
    /// Core annotations: the two-letter values with a meaning for the span's shape.
    enum Core: UInt8 {
        case cs, cr, sr, ss, ms, mr, ws, wr

        init?(_ a: UInt8, _ b: UInt8) {
            switch (a, b) {
            case (UInt8(ascii: "c"), UInt8(ascii: "s")): self = .cs
            case (UInt8(ascii: "c"), UInt8(ascii: "r")): self = .cr
            case (UInt8(ascii: "s"), UInt8(ascii: "r")): self = .sr
            case (UInt8(ascii: "s"), UInt8(ascii: "s")): self = .ss
            case (UInt8(ascii: "m"), UInt8(ascii: "s")): self = .ms
            case (UInt8(ascii: "m"), UInt8(ascii: "r")): self = .mr
            case (UInt8(ascii: "w"), UInt8(ascii: "s")): self = .ws
            case (UInt8(ascii: "w"), UInt8(ascii: "r")): self = .wr
            default: return nil
            }
        }
    }

    /// Address binary-annotation keys.
    enum Address: UInt8 {
        case ca, sa, ma

        init?(_ a: UInt8, _ b: UInt8) {
            guard b == UInt8(ascii: "a") else { return nil }
            switch a {
            case UInt8(ascii: "c"): self = .ca
            case UInt8(ascii: "s"): self = .sa
            case UInt8(ascii: "m"): self = .ma
            default: return nil
            }
        }
    }

    struct Annotation {
        var timestampNanos: Int64
        var value: Str
        /// nil when absent or empty.
        var endpoint: Endpoint?
        /// Set when the value is a core annotation's (whether or not it has an endpoint).
        var core: Core?
    }

    struct Binary {
        var key: Str
        /// The tag value; nil for an address annotation (`true`).
        var value: Str?
        var endpoint: Endpoint?
        /// Set when the key is `ca`, `sa` or `ma` (Zipkin treats such keys as addresses even
        /// with a string value, for old zipkin-ruby which wrote "1").
        var address: Address?
    }

    var traceID = TraceID(low: 0)
    var id: UInt64 = 0
    var parentID: UInt64 = 0
    var name: Str = .empty
    var timestamp: Int64 = 0
    var duration: Int64 = 0
    var debug = false
    var annotations: [Annotation] = []
    var binaryAnnotations: [Binary] = []

    mutating func reset() {
        traceID = TraceID(low: 0); id = 0; parentID = 0; name = .empty
        timestamp = 0; duration = 0; debug = false
        annotations.removeAll(keepingCapacity: true)
        binaryAnnotations.removeAll(keepingCapacity: true)
    }

    /// Zipkin's `V1Span` keeps annotations sorted by (timestamp, value) and binary annotations
    /// by key (stable sorts): the order decides which endpoint becomes the first span's.
    mutating func sort(_ batch: SpanBatch) {
        if annotations.count > 1 {
            annotations = stableSorted(annotations) { a, b in
                a.timestampNanos != b.timestampNanos ? a.timestampNanos < b.timestampNanos
                    : ZipkinV1Converter.compare(a.value, b.value, batch) < 0
            }
        }
        if binaryAnnotations.count > 1 {
            binaryAnnotations = stableSorted(binaryAnnotations) { ZipkinV1Converter.compare($0.key, $1.key, batch) < 0 }
        }
    }

    private func stableSorted<T>(_ list: [T], by less: (T, T) -> Bool) -> [T] {
        list.enumerated().sorted { x, y in
            less(x.element, y.element) || (!less(y.element, x.element) && x.offset < y.offset)
        }.map(\.element)
    }
}
