import Spans

/// Datadog's `/v0.3/traces`: the same array of traces of span maps as v0.4, sent either as
/// msgpack (identical to v0.4 on the wire) or as JSON (`Content-Type: application/json`,
/// as older tracers and hand-written clients send). Mapping: DatadogMapping.swift.
public enum DatadogV03 {
    /// Decodes a msgpack v0.3 body (same rules and mapping as `DatadogV04.decode`).
    public static func decodeMsgpack(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try DDMsgpackTraces.decode(body, metadata: metadata, format: .datadogV04)
    }

    /// Decodes a JSON v0.3 body: `[[{"trace_id": 1, "span_id": 2, …}, …], …]`.
    /// Ids are decimal numbers up to 2^64-1 (or decimal strings); times are integer
    /// nanoseconds (fractions and exponents accepted); `null` is accepted for any field.
    /// Text without escapes is a slice of the body; escaped text is unescaped into the batch.
    public static func decodeJSON(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        guard body.count < Int(UInt32.max) else {
            throw DecodeError(.tooLarge, format: .datadogV03JSON, offset: nil, "body of \(body.count) bytes exceeds the 4 GiB span-storage limit")
        }
        var batch = SpanBatch(body: body, metadata: metadata)
        batch.spans.reserveCapacity(body.count / 256 + 1)
        try JSONReader.withReader(body, format: .datadogV03JSON) { (r: inout JSONReader) throws(DecodeError) in
            if r.atEnd() { return }
            var builder = DDSpanBuilder()
            try r.beginArray()
            while try r.nextElement() {
                if r.readNull() { continue }
                try r.beginArray()
                let chunkStart = batch.spans.count
                while try r.nextElement() {
                    try decodeSpan(&r, &batch, &builder)
                }
                builder.finishChunk(&batch, from: chunkStart)
            }
            try r.expectEnd()
        }
        return batch
    }

    /// Reads an unsigned id: a JSON integer up to 2^64-1 (negative ones as their 64-bit
    /// pattern) or a string of decimal digits.
    static func readID(_ r: inout JSONReader, _ field: StaticString) throws(DecodeError) -> UInt64 {
        let at = r.position
        if r.peek() == UInt8(ascii: "\"") {
            let s = try r.readString()
            guard !s.hasEscapes, let v = parseDecimal(r.bytes(s.range), negative: false) else {
                throw r.error("\(field) must be a decimal integer", at: at, code: .invalidValue)
            }
            return v
        }
        let n = try r.readNumber()
        if let i = n.integer { return UInt64(bitPattern: i) }
        let text = r.bytes(n.start..<n.end)
        guard let v = parseDecimal(text, negative: false) else {
            throw r.error("\(field) must be an integer below 2^64", at: n.start, code: .invalidValue)
        }
        return v
    }

    /// Digits only, no sign, at most 2^64-1.
    static func parseDecimal(_ b: UnsafeRawBufferPointer, negative: Bool) -> UInt64? {
        guard !b.isEmpty, b.count <= 20 else { return nil }
        var v: UInt64 = 0
        for c in b {
            guard c >= 0x30, c <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }

    static func readTime(_ r: inout JSONReader, _ field: StaticString) throws(DecodeError) -> Int64 {
        let at = r.position
        let (v, _) = try r.readScaledInt64(scale: 1)
        guard let v else { throw r.error("\(field) does not fit a 64-bit integer", at: at, code: .invalidValue) }
        return v
    }

    /// The bytes of a string: the body's when it had no escapes, else `copy` (its unescaped text).
    @inline(__always)
    static func withText<R>(_ r: JSONReader, _ js: JSONString, _ copy: [UInt8]?, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let copy { return copy.withUnsafeBytes { body($0) } }
        return body(r.bytes(js.range))
    }

    /// A copy of escaped text (rare), so the builder can read it while the batch grows.
    @inline(__always)
    static func copyIfEscaped(_ js: JSONString, _ s: Str, _ batch: SpanBatch) -> [UInt8]? {
        js.hasEscapes ? batch.withBytes(s) { Array($0) } : nil
    }

    static func decodeSpan(_ r: inout JSONReader, _ batch: inout SpanBatch, _ builder: inout DDSpanBuilder) throws(DecodeError) {
        guard r.peek() == UInt8(ascii: "{") else { throw r.error("expected a span object") }
        let start = r.position
        try r.beginObject()
        var span = Span(traceID: TraceID(low: 0), id: 0)
        let t0 = UInt32(batch.tags.count), m0 = UInt32(batch.metrics.count)
        while let k = try r.nextKey() {
            if r.readNull() { continue }
            switch k.count {
            case 4 where r.key(k, is: "name"): span.name = r.text(try r.readString(), in: &batch)
            case 4 where r.key(k, is: "type"): span.type = r.text(try r.readString(), in: &batch)
            case 4 where r.key(k, is: "meta"):
                try r.beginObject()
                while let mk = try r.nextKey() {
                    let key = r.text(mk, in: &batch)
                    var vs = JSONString(start: r.position, end: r.position, hasEscapes: false)
                    var value = Str.empty
                    if !r.readNull() { vs = try r.readString(); value = r.text(vs, in: &batch) }
                    let kc = copyIfEscaped(mk, key, batch), vc = copyIfEscaped(vs, value, batch)
                    withText(r, mk, kc) { kb in
                        withText(r, vs, vc) { vb in
                            builder.meta(key: kb, key, value: vb, value, span: &span, batch: &batch)
                        }
                    }
                }
            case 5 where r.key(k, is: "start"): span.startNanos = try readTime(&r, "start")
            case 5 where r.key(k, is: "error"):
                if r.peek() == UInt8(ascii: "t") || r.peek() == UInt8(ascii: "f") { if try r.readBool() { span.flags.insert(.error) } }
                else if try readTime(&r, "error") != 0 { span.flags.insert(.error) }
            case 7 where r.key(k, is: "span_id"): span.id = try readID(&r, "span_id")
            case 7 where r.key(k, is: "service"): span.localEndpoint.serviceName = r.text(try r.readString(), in: &batch)
            case 7 where r.key(k, is: "metrics"):
                try r.beginObject()
                while let mk = try r.nextKey() {
                    let key = r.text(mk, in: &batch)
                    var v = 0.0
                    if !r.readNull() { v = r.doubleValue(try r.readNumber()) }
                    let kc = copyIfEscaped(mk, key, batch)
                    withText(r, mk, kc) { kb in
                        builder.metric(key: kb, key, value: v, span: &span, batch: &batch)
                    }
                }
            case 8 where r.key(k, is: "trace_id"): span.traceID.low = try readID(&r, "trace_id")
            case 8 where r.key(k, is: "resource"): span.resource = r.text(try r.readString(), in: &batch)
            case 8 where r.key(k, is: "duration"): span.durationNanos = try readTime(&r, "duration")
            case 9 where r.key(k, is: "parent_id"): span.parentID = try readID(&r, "parent_id")
            default: try r.skipValue()
            }
        }
        try DDMsgpackTraces.finish(&span, start: start, end: r.position, t0: t0, m0: m0, &batch, &builder, format: .datadogV03JSON)
    }
}
