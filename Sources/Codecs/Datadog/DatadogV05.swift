import Spans

/// Datadog's `/v0.5/traces` payload: `[string table, traces]`, where each span is a 12-element
/// array `[service, name, resource, trace_id, span_id, parent_id, start, duration, error,
/// meta, metrics, type]` and every string is an index into the table (meta and metrics map
/// indices to indices / numbers). Decoding resolves indices to slices of the body, so like v0.4
/// it copies no text; the table costs one array per batch. Mapping: DatadogMapping.swift.
public enum DatadogV05 {
    /// Largest string table accepted (4 Mi entries, far above what tracers send).
    public static let maxStrings = 1 << 22

    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try DDMsgpackTraces.decodeBatch(body, metadata: metadata, format: .datadogV05) { (r, batch) throws(DecodeError) in
            try decode(&r, &batch)
        }
    }

    static func decode(_ r: inout MessagePackReader, _ batch: inout SpanBatch) throws(DecodeError) {
        let top = r.position
        let parts = try r.readArrayHeader()
        guard parts == 2 else {
            throw DecodeError(.malformed, format: r.format, offset: top, "v0.5 payload must be a 2-element array [strings, traces], found \(parts) elements")
        }
        let tableAt = r.position
        let count = try r.readArrayHeader()
        // Each entry costs 8 bytes here for ≥ 1 byte of body; the cap bounds that amplification.
        guard count <= DatadogV05.maxStrings else {
            throw DecodeError(.invalidValue, format: r.format, offset: tableAt,
                              "string table declares \(count) entries; at most \(DatadogV05.maxStrings) are accepted")
        }
        var table = [Str]()
        table.reserveCapacity(min(count, 65536))
        for _ in 0..<count { table.append(DDMsgpackTraces.str(try r.readStringRange())) }

        let traces = try r.readArrayHeader()
        batch.spans.reserveCapacity(r.remaining / 96)
        var builder = DDSpanBuilder()
        let b = r.bytes
        @inline(__always) func index(_ r: inout MessagePackReader) throws(DecodeError) -> Range<Int> {
            let s = try strIndex(&r)
            return Int(s.offset)..<Int(s.offset + s.count)
        }
        @inline(__always) func strIndex(_ r: inout MessagePackReader) throws(DecodeError) -> Str {
            let at = r.position
            let i = try r.readUInt64Bits()
            guard i < UInt64(table.count) else {
                throw DecodeError(.invalidValue, format: r.format, offset: at, "string index \(i) is outside the \(table.count)-entry string table")
            }
            return table[Int(i)]
        }
        for _ in 0..<traces {
            let n = try r.readArrayHeader()
            let chunkStart = batch.spans.count
            for _ in 0..<n {
                let start = r.position
                let fields = try r.readArrayHeader()
                guard fields == 12 else {
                    throw DecodeError(.malformed, format: r.format, offset: start, "v0.5 span must be a 12-element array, found \(fields) elements")
                }
                var span = Span(traceID: TraceID(low: 0), id: 0)
                let t0 = UInt32(batch.tags.count), m0 = UInt32(batch.metrics.count)
                span.localEndpoint.serviceName = DDMsgpackTraces.str(try index(&r))
                span.name = DDMsgpackTraces.str(try index(&r))
                span.resource = DDMsgpackTraces.str(try index(&r))
                span.traceID.low = try r.readUInt64Bits()
                span.id = try r.readUInt64Bits()
                span.parentID = try r.readUInt64Bits()
                span.startNanos = try r.readInt64()
                span.durationNanos = try r.readInt64()
                if try r.readBool() { span.flags.insert(.error) }
                let metaCount = try r.readMapHeader()
                for _ in 0..<metaCount {
                    let k = try index(&r), v = try index(&r)
                    builder.meta(key: UnsafeRawBufferPointer(rebasing: b[k]), DDMsgpackTraces.str(k),
                                 value: UnsafeRawBufferPointer(rebasing: b[v]), DDMsgpackTraces.str(v), span: &span, batch: &batch)
                }
                let metricCount = try r.readMapHeader()
                for _ in 0..<metricCount {
                    let k = try index(&r)
                    let v = try r.readDouble()
                    builder.metric(key: UnsafeRawBufferPointer(rebasing: b[k]), DDMsgpackTraces.str(k), value: v, span: &span, batch: &batch)
                }
                span.type = DDMsgpackTraces.str(try index(&r))
                try DDMsgpackTraces.finish(&span, start: start, end: r.position, t0: t0, m0: m0, &batch, &builder, format: r.format)
                // A v0.5 span's bytes are meaningless without the string table.
                batch.spans[batch.spans.count - 1].raw = .empty
            }
            builder.finishChunk(&batch, from: chunkStart)
        }
        if !r.isAtEnd {
            throw DecodeError(.malformed, format: r.format, offset: r.position, "\(r.remaining) unexpected bytes after the v0.5 payload")
        }
    }
}
