import Spans

/// Datadog's `/v0.7/traces`: one msgpack `TracerPayload` map (datadog-agent
/// `pkg/proto/datadog/trace/tracer_payload.proto`, msgp field names):
/// `{container_id, language_name, language_version, tracer_version, runtime_id,
///   chunks: [{priority, origin, spans: [span map as in v0.4], tags, dropped_trace}],
///   tags, env, hostname, app_version, apm_mode}`.
///
/// Spans map as in v0.4 (DatadogMapping.swift). In addition: a chunk's `priority` (unless the
/// agent's "none", -128) becomes the `samplingPriority` of all its spans (else the chunk's
/// spans decide, as in v0.4); a chunk's `tags` and the payload's `tags`
/// are added to each span of the chunk/payload that lacks the key (chunk tags first), as are
/// `env` → `env`, `app_version` → `version`, `hostname` → `_dd.hostname`, `origin` →
/// `_dd.origin`; a `_dd.p.tid` among those tags gives the chunk its 128-bit trace id.
/// Other payload fields (container, language, runtime) are skipped.
public enum DatadogV07 {
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try DDMsgpackTraces.decodeBatch(body, metadata: metadata, format: .datadogV07) { (r, batch) throws(DecodeError) in
            if r.isAtEnd { return }
            try decodePayload(&r, &batch)
            if !r.isAtEnd {
                throw DecodeError(.malformed, format: .datadogV07, offset: r.position, "\(r.remaining) unexpected bytes after the tracer payload")
            }
        }
    }

    /// Extra tags for a group of spans: (key, value) as body slices.
    typealias Extra = [(key: Str, value: Str)]

    static func decodePayload(_ r: inout MessagePackReader, _ batch: inout SpanBatch) throws(DecodeError) {
        let b = r.bytes
        let fields = try r.readMapHeader()
        batch.spans.reserveCapacity(r.remaining / 160)
        var payloadExtra: Extra = []
        var builder = DDSpanBuilder()
        var keys = Keys()
        let s = DDMsgpackTraces.str
        for _ in 0..<fields {
            let k = try r.readStringRange()
            if DDKey.eq(b, k, "chunks") {
                let n = try r.readArrayHeader()
                for _ in 0..<n { try decodeChunk(&r, &batch, &builder, &keys) }
            } else if DDKey.eq(b, k, "tags") {
                try readTags(&r, into: &payloadExtra)
            } else if DDKey.eq(b, k, "env") {
                payloadExtra.append((keys.get(0, &batch), s(try r.readStringRange())))
            } else if DDKey.eq(b, k, "app_version") {
                payloadExtra.append((keys.get(1, &batch), s(try r.readStringRange())))
            } else if DDKey.eq(b, k, "hostname") {
                payloadExtra.append((keys.get(2, &batch), s(try r.readStringRange())))
            } else {
                try r.skip()
            }
        }
        if !payloadExtra.isEmpty { addMissing(payloadExtra, to: 0..<batch.spans.count, &batch, b) }
    }

    static func readTags(_ r: inout MessagePackReader, into extra: inout Extra) throws(DecodeError) {
        let n = try r.readMapHeader()
        for _ in 0..<n {
            let k = try r.readStringRange(), v = try r.readStringRange()
            if !k.isEmpty { extra.append((DDMsgpackTraces.str(k), DDMsgpackTraces.str(v))) }
        }
    }

    /// Keys the payload does not spell out (e.g. `version` for `app_version`), interned once
    /// per batch and only when needed.
    struct Keys {
        var cache: [Str?] = [nil, nil, nil, nil]
        static let names: [StaticString] = ["env", "version", "_dd.hostname", "_dd.origin"]
        mutating func get(_ i: Int, _ batch: inout SpanBatch) -> Str {
            if let k = cache[i] { return k }
            let k = Keys.names[i].withUTF8Buffer { batch.intern(UnsafeRawBufferPointer($0)) }
            cache[i] = k
            return k
        }
    }

    static func decodeChunk(_ r: inout MessagePackReader, _ batch: inout SpanBatch, _ builder: inout DDSpanBuilder,
                            _ keys: inout Keys) throws(DecodeError) {
        let b = r.bytes
        let fields = try r.readMapHeader()
        let first = batch.spans.count
        var priority: Int8? = nil
        var extra: Extra = []
        for _ in 0..<fields {
            let k = try r.readStringRange()
            if DDKey.eq(b, k, "spans") {
                let n = try r.readArrayHeader()
                for _ in 0..<n { try DDMsgpackTraces.decodeSpanMap(&r, &batch, &builder) }
            } else if DDKey.eq(b, k, "priority") {
                let v = Int64(bitPattern: try r.readUInt64Bits())
                priority = Int8(clamping: v)
            } else if DDKey.eq(b, k, "tags") {
                try readTags(&r, into: &extra)
            } else if DDKey.eq(b, k, "origin") {
                let v = try r.readStringRange()
                if !v.isEmpty { extra.append((key: Str.empty, value: DDMsgpackTraces.str(v))) }  // key set below
            } else {
                try r.skip()
            }
        }
        let range = first..<batch.spans.count
        if let i = extra.firstIndex(where: { $0.key.isEmpty }) { extra[i].key = keys.get(3, &batch) }
        // `_dd.p.tid` among the chunk tags: the chunk's high trace-id bits.
        if let tid = extra.first(where: { batch.equals($0.key, "_dd.p.tid") }),
           let hi = batch.withBytes(tid.value, { parseHex64($0) }),
           let low = range.first.map({ batch.spans[$0].traceID.low }) {
            for i in range where batch.spans[i].traceID.low == low && batch.spans[i].traceID.high == 0 { batch.spans[i].traceID.high = hi }
        }
        extra.removeAll { batch.equals($0.key, "_dd.p.tid") }
        builder.finishChunk(&batch, from: first, priority: priority)
        if !extra.isEmpty { addMissing(extra, to: range, &batch, b) }
    }

    /// Gives each span in `range` the `extra` tags it lacks. A span's tags must stay one
    /// contiguous range, so a span that gains tags has its list re-appended at the end.
    static func addMissing(_ extra: Extra, to range: Range<Int>, _ batch: inout SpanBatch, _ b: UnsafeRawBufferPointer) {
        for i in range {
            var span = batch.spans[i]
            var added = false
            for e in extra {
                var has = false
                for t in Int(span.tags.lowerBound)..<Int(span.tags.upperBound) where batch.equals(batch.tags[t].key, e.key) { has = true; break }
                if has { continue }
                if !added {
                    // Move the span's tags to the end so the new ones can follow them.
                    let start = batch.tags.count
                    for t in Int(span.tags.lowerBound)..<Int(span.tags.upperBound) { batch.tags.append(batch.tags[t]) }
                    span.tags = UInt32(start)..<UInt32(batch.tags.count)
                    added = true
                }
                batch.tags.append(Tag(key: e.key, value: e.value))
                span.tags = span.tags.lowerBound..<UInt32(batch.tags.count)
            }
            batch.spans[i] = span
        }
    }
}
