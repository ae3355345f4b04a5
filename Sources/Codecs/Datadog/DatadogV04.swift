import Spans

/// Datadog's `/v0.4/traces` payload: a msgpack array of traces, each an array of span maps.
///
/// `decode` reads every span without allocating per field: all text is a slice of the body,
/// and only the batch's flat arrays (spans, tags, metrics) grow. Field mapping: DatadogMapping.swift.
/// `encode` writes spans in the same format, translating spans of other origins (Zipkin) the
/// way the Datadog agent does.
public enum DatadogV04 {
    /// Decodes a v0.4 body. Throws on malformed msgpack, wrong types, zero trace/span ids or
    /// trailing bytes, naming the byte offset.
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try DDMsgpackTraces.decode(body, metadata: metadata, format: .datadogV04)
    }

    /// Appends the spans of `batch` (all, or those at the indices in `spans`) to `out` as a v0.4
    /// payload, grouped into traces by trace id in order of first appearance.
    public static func encode(_ batch: SpanBatch, spans: [Int]? = nil, into out: inout [UInt8]) {
        DDEncoder.encodeV04(batch, spans: spans, into: &out)
    }

    /// How many traces `encode` would write for these spans (the `X-Datadog-Trace-Count` header).
    public static func traceCount(_ batch: SpanBatch, spans: [Int]? = nil) -> Int {
        DDEncoder.groupByTrace(batch, spans: spans).starts.count - 1
    }
}

/// The shared reader for the msgpack trace-array formats (v0.3 msgpack and v0.4).
enum DDMsgpackTraces {
    static func decode(_ body: [UInt8], metadata: BatchMetadata, format: SpanFormat) throws(DecodeError) -> SpanBatch {
        try decodeBatch(body, metadata: metadata, format: format) { (r, batch) throws(DecodeError) in try decodeTraces(&r, &batch) }
    }

    /// A batch over `body` (kept as the span storage) filled by `read` from a msgpack reader
    /// over the same bytes: the frame every Datadog msgpack format shares.
    static func decodeBatch(_ body: [UInt8], metadata: BatchMetadata, format: SpanFormat,
                            _ read: (inout MessagePackReader, inout SpanBatch) throws(DecodeError) -> Void) throws(DecodeError) -> SpanBatch {
        guard body.count < Int(UInt32.max) else {
            throw DecodeError(.tooLarge, format: format, offset: nil, "body of \(body.count) bytes exceeds the 4 GiB span-storage limit")
        }
        var batch = SpanBatch(body: body, metadata: metadata)
        let result: Result<Void, DecodeError> = body.withUnsafeBytes { raw in
            Result { () throws(DecodeError) in
                var r = MessagePackReader(raw, format: format)
                try read(&r, &batch)
            }
        }
        try result.get()
        return batch
    }

    @inline(__always)
    static func decodeTraces(_ r: inout MessagePackReader, _ batch: inout SpanBatch) throws(DecodeError) {
        if r.isAtEnd { return } // an empty body is an empty batch, as the agent treats it
        let traces = try r.readArrayHeader()
        // A span map takes ≥ 60 bytes in practice; reserving by size avoids regrowing.
        batch.spans.reserveCapacity(batch.spans.count + r.remaining / 160)
        batch.tags.reserveCapacity(batch.tags.count + r.remaining / 64)
        var builder = DDSpanBuilder()
        for _ in 0..<traces {
            let n = try r.readArrayHeader()
            let chunkStart = batch.spans.count
            for _ in 0..<n {
                try decodeSpanMap(&r, &batch, &builder)
            }
            builder.finishChunk(&batch, from: chunkStart)
        }
        if !r.isAtEnd {
            throw DecodeError(.malformed, format: r.format, offset: r.position,
                              "\(r.remaining) unexpected bytes after the array of \(traces) traces")
        }
    }

    @inline(__always)
    static func str(_ range: Range<Int>) -> Str {
        Str(offset: UInt32(truncatingIfNeeded: range.lowerBound), count: UInt32(truncatingIfNeeded: range.count))
    }

    @inline(__always)
    static func decodeSpanMap(_ r: inout MessagePackReader, _ batch: inout SpanBatch, _ builder: inout DDSpanBuilder) throws(DecodeError) {
        let start = r.position
        let fields = try r.readMapHeader()
        let b = r.bytes
        var span = Span(traceID: TraceID(low: 0), id: 0)
        let t0 = UInt32(batch.tags.count), m0 = UInt32(batch.metrics.count)
        for _ in 0..<fields {
            let k = try r.readStringRange()
            switch k.count {
            case 4:
                if DDKey.eq(b, k, "name") { span.name = str(try r.readStringRange()) }
                else if DDKey.eq(b, k, "type") { span.type = str(try r.readStringRange()) }
                else if DDKey.eq(b, k, "meta") { try decodeMeta(&r, &span, &batch, &builder) }
                else { try r.skip() }
            case 5:
                if DDKey.eq(b, k, "start") { span.startNanos = try r.readInt64() }
                else if DDKey.eq(b, k, "error") { if try r.readBool() { span.flags.insert(.error) } }
                else { try r.skip() }
            case 7:
                if DDKey.eq(b, k, "span_id") { span.id = try r.readUInt64Bits() }
                else if DDKey.eq(b, k, "service") { span.localEndpoint.serviceName = str(try r.readStringRange()) }
                else if DDKey.eq(b, k, "metrics") { try decodeMetrics(&r, &span, &batch, &builder) }
                else { try r.skip() }
            case 8:
                if DDKey.eq(b, k, "trace_id") { span.traceID.low = try r.readUInt64Bits() }
                else if DDKey.eq(b, k, "resource") { span.resource = str(try r.readStringRange()) }
                else if DDKey.eq(b, k, "duration") { span.durationNanos = try r.readInt64() }
                else { try r.skip() }
            case 9:
                if DDKey.eq(b, k, "parent_id") { span.parentID = try r.readUInt64Bits() } else { try r.skip() }
            case 10:
                if DDKey.eq(b, k, "span_links") { try decodeSpanLinks(&r, &batch) } else { try r.skip() }
            default:
                try r.skip()
            }
        }
        try finish(&span, start: start, end: r.position, t0: t0, m0: m0, &batch, &builder, format: r.format)
    }

    @inline(__always)
    static func finish(_ span: inout Span, start: Int, end: Int, t0: UInt32, m0: UInt32,
                       _ batch: inout SpanBatch, _ builder: inout DDSpanBuilder, format: SpanFormat?) throws(DecodeError) {
        if _slowPath(span.traceID.low == 0) {
            throw DecodeError(.invalidValue, format: format, offset: start, "span has no trace_id (or it is 0)")
        }
        if _slowPath(span.id == 0) {
            throw DecodeError(.invalidValue, format: format, offset: start, "span has no span_id (or it is 0)")
        }
        span.tags = t0..<UInt32(batch.tags.count)
        span.metrics = m0..<UInt32(batch.metrics.count)
        span.raw = Str(offset: UInt32(truncatingIfNeeded: start), count: UInt32(truncatingIfNeeded: end - start))
        builder.endSpan(span)
        batch.spans.append(span)
    }

    /// Native links become the `_dd.span_links` tag (DatadogSpanLinks.swift). Rare: kept out of line.
    @inline(never)
    static func decodeSpanLinks(_ r: inout MessagePackReader, _ batch: inout SpanBatch) throws(DecodeError) {
        guard let json = try DDSpanLinks.decode(&r, &batch) else { return }
        let key = DDSpanLinks.tagKey.withUTF8Buffer { batch.intern(UnsafeRawBufferPointer($0)) }
        batch.tags.append(Tag(key: key, value: json))
    }

    @inline(__always)
    static func decodeMeta(_ r: inout MessagePackReader, _ span: inout Span, _ batch: inout SpanBatch,
                           _ builder: inout DDSpanBuilder) throws(DecodeError) {
        let n = try r.readMapHeader()
        let b = r.bytes
        for _ in 0..<n {
            let k = try r.readStringRange()
            let v = try r.readStringRange()
            builder.meta(key: UnsafeRawBufferPointer(rebasing: b[k]), str(k),
                         value: UnsafeRawBufferPointer(rebasing: b[v]), str(v), span: &span, batch: &batch)
        }
    }

    @inline(__always)
    static func decodeMetrics(_ r: inout MessagePackReader, _ span: inout Span, _ batch: inout SpanBatch,
                              _ builder: inout DDSpanBuilder) throws(DecodeError) {
        let n = try r.readMapHeader()
        let b = r.bytes
        for _ in 0..<n {
            let k = try r.readStringRange()
            let v = try r.readDouble()
            builder.metric(key: UnsafeRawBufferPointer(rebasing: b[k]), str(k), value: v, span: &span, batch: &batch)
        }
    }
}
