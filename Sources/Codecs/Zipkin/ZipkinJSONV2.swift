import Spans

/// Zipkin API v2 JSON (`POST /api/v2/spans`, `application/json`): a list of span objects.
///
/// Decoding applies Zipkin's normalisation: ids are parsed as hex (any case, short ids
/// left-padded), a 128-bit trace id whose high half is zero becomes 64-bit, an all-zero or
/// non-hex trace/span id is refused (`DecodeError` with the offset of the value), an
/// all-zero `parentId` means none, negative timestamps and durations become 0, and
/// microseconds are stored as nanoseconds. It accepts what real clients send: `null` for any
/// optional field, `debug`/`shared`, numbers in exponent or fraction form, escaped and
/// non-ASCII strings, unknown fields (skipped). A span's `error` flag is set when it has an
/// `error` tag, whatever its value.
///
/// **`Span.raw` rule.** The decoder sets `raw` to the span object's bytes only when the
/// object is already in canonical form — re-encoding it would mean the same thing (ids of
/// exactly 16/32 lower-case hex digits with a non-zero high half, no zero parent, integer
/// non-negative timestamps, no nulls, string tag values, an upper-case known kind). The
/// encoder copies `raw` verbatim when, and only when, the batch being encoded has
/// `metadata.format == .zipkinV2JSON` and the span's `raw` is not empty. Any stage that
/// changes a span must therefore clear its `raw` (set it to `.empty`).
public enum ZipkinJSONV2 {
    /// Decodes a v2 JSON body. The batch's storage starts with `body`; text without escapes
    /// is referenced in place, so decoding costs no allocation per span or tag beyond the
    /// amortised growth of the batch arrays.
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        try decode(body, metadata: metadata, fastPath: true)
    }

    /// `fastPath: false` decodes every span with the general path (`decodeSpan`); tests
    /// compare both paths on the same input.
    static func decode(_ body: [UInt8], metadata: BatchMetadata, fastPath: Bool) throws(DecodeError) -> SpanBatch {
        var batch = SpanBatch(body: body, metadata: metadata)
        batch.spans.reserveCapacity(body.count / 256 + 1)
        batch.tags.reserveCapacity(body.count / 24 + 1)
        // The fast path stores body offsets as UInt32 unchecked (`SpanBatch.slice` checks).
        let fast = fastPath && body.count <= Int(UInt32.max)
        try withUnsafeTemporaryAllocation(of: Tag.self, capacity: 64) { (buffer) throws(DecodeError) in
            var tagBuffer = TagBuffer(buffer)
            try JSONReader.withReader(body, format: .zipkinV2JSON) { (r: inout JSONReader) throws(DecodeError) in
                try r.beginArray()
                while try r.nextElement() {
                    if fast && r.peek() == UInt8(ascii: "{") {
                        // Most spans take the fast path (see ZipkinJSONV2Fast.swift); when it
                        // declines, undo what it added and decode the span the general way.
                        let start = r.position
                        let tags0 = batch.tags.count, ann0 = batch.annotations.count, text0 = batch.storage.count
                        if fastSpan(&r, &batch, &tagBuffer) { continue }
                        tagBuffer.count = 0
                        if batch.tags.count > tags0 { batch.tags.removeLast(batch.tags.count - tags0) }
                        if batch.annotations.count > ann0 { batch.annotations.removeLast(batch.annotations.count - ann0) }
                        if batch.storage.count > text0 { batch.storage.removeLast(batch.storage.count - text0) }
                        r.position = start
                    }
                    let span = try decodeSpan(&r, into: &batch)
                    batch.spans.append(span)
                }
                try r.expectEnd()
            }
        }
        return batch
    }

    /// Reads one span object at the reader's position, appending its tags and annotations
    /// to `batch`. Shared with the v1 decoder's tests and tools.
    static func decodeSpan(_ r: inout JSONReader, into batch: inout SpanBatch) throws(DecodeError) -> Span {
        guard r.peek() == UInt8(ascii: "{") else { throw r.error("expected a span object") }
        let start = r.position
        try r.beginObject()
        var span = Span(traceID: TraceID(low: 0), id: 0)
        var canonical = true
        var haveTrace = false, haveID = false
        let tags0 = UInt32(batch.tags.count), ann0 = UInt32(batch.annotations.count)
        while let k = try r.nextKey() {
            if r.readNull() { canonical = false; continue }
            switch k.count {
            case 2 where r.key(k, is: "id"):
                _ = r.peek()
                let at = r.position
                let (id, c) = try ZipkinIDs.spanID(&r, field: "id")
                guard id != 0 else { throw r.error("span id is all zeros", at: at, code: .invalidValue) }
                span.id = id; haveID = true; canonical = canonical && c
            case 4 where r.key(k, is: "name"):
                span.name = r.text(try r.readString(), in: &batch)
            case 4 where r.key(k, is: "kind"):
                let s = try r.readString()
                let (kind, exact) = ZipkinKinds.parse(r.bytes(s.range))
                span.kind = kind; canonical = canonical && exact
            case 4 where r.key(k, is: "tags"):
                try r.beginObject()
                while let tk = try r.nextKey() {
                    let key = r.text(tk, in: &batch)
                    let value: Str
                    switch r.peek() {
                    case UInt8(ascii: "\""): value = r.text(try r.readString(), in: &batch)
                    case UInt8(ascii: "n") where r.readNull(): canonical = false; continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        throw r.error("tag values must be strings")
                    default:
                        // Numbers and booleans are kept as their literal text.
                        let s = r.position
                        try r.skipValue()
                        value = batch.slice(s..<r.position)
                        canonical = false
                    }
                    if tk.count == 5, r.key(tk, is: "error") { span.flags.insert(.error) }
                    batch.tags.append(Tag(key: key, value: value))
                }
            case 5 where r.key(k, is: "debug"):
                if try r.readBool() { span.flags.insert(.debug); span.samplingPriority = ZipkinSampling.debugPriority }
            case 6 where r.key(k, is: "shared"):
                if try r.readBool() { span.flags.insert(.shared) }
            case 7 where r.key(k, is: "traceId"):
                let (id, c) = try ZipkinIDs.traceID(&r)
                span.traceID = id; haveTrace = true; canonical = canonical && c
            case 8 where r.key(k, is: "parentId"):
                let (id, c) = try ZipkinIDs.spanID(&r, field: "parentId")
                span.parentID = id; canonical = canonical && c && id != 0
            case 8 where r.key(k, is: "duration"):
                let (v, c) = try micros(&r, "duration")
                span.durationNanos = v; canonical = canonical && c
            case 9 where r.key(k, is: "timestamp"):
                let (v, c) = try micros(&r, "timestamp")
                span.startNanos = v; canonical = canonical && c
            case 11 where r.key(k, is: "annotations"):
                try r.beginArray()
                while try r.nextElement() {
                    if r.readNull() { canonical = false; continue }
                    try r.beginObject()
                    var a = Annotation(timestampNanos: 0, value: .empty)
                    while let ak = try r.nextKey() {
                        if r.readNull() { canonical = false; continue }
                        if r.key(ak, is: "timestamp") {
                            let (v, c) = try micros(&r, "annotation timestamp")
                            a.timestampNanos = v; canonical = canonical && c
                        } else if r.key(ak, is: "value") {
                            a.value = r.text(try r.readString(), in: &batch)
                        } else {
                            try r.skipValue()
                        }
                    }
                    batch.annotations.append(a)
                }
            case 13 where r.key(k, is: "localEndpoint"):
                span.localEndpoint = try endpoint(&r, &batch, &canonical)
            case 14 where r.key(k, is: "remoteEndpoint"):
                span.remoteEndpoint = try endpoint(&r, &batch, &canonical)
            default:
                try r.skipValue()
            }
        }
        guard haveTrace else { throw r.error("span has no traceId", at: start, code: .invalidValue) }
        guard haveID else { throw r.error("span has no id", at: start, code: .invalidValue) }
        span.tags = tags0..<UInt32(batch.tags.count)
        span.annotations = ann0..<UInt32(batch.annotations.count)
        if canonical { span.raw = batch.slice(start..<r.position) }
        return span
    }

    /// A µs value as ns; negative → 0 (not canonical), fractions kept, out of range refused.
    static func micros(_ r: inout JSONReader, _ what: String) throws(DecodeError) -> (Int64, Bool) {
        let at = r.position
        let (v, n) = try r.readScaledInt64(scale: 1000)
        guard let v else { throw r.error("\(what) is out of range", at: at, code: .invalidValue) }
        if v < 0 { return (0, false) }
        return (v, n.integer != nil)
    }

    static func endpoint(_ r: inout JSONReader, _ batch: inout SpanBatch, _ canonical: inout Bool) throws(DecodeError) -> Endpoint {
        var e = Endpoint()
        try r.beginObject()
        while let k = try r.nextKey() {
            if r.readNull() { canonical = false; continue }
            if r.key(k, is: "serviceName") {
                e.serviceName = r.text(try r.readString(), in: &batch)
            } else if r.key(k, is: "ipv4") {
                e.ipv4 = r.text(try r.readString(), in: &batch)
            } else if r.key(k, is: "ipv6") {
                e.ipv6 = r.text(try r.readString(), in: &batch)
            } else if r.key(k, is: "port") {
                let n = try r.readNumber()
                // Zipkin treats 0, negative and out-of-range ports as absent. An explicit 0 (Envoy
                // writes its local endpoint so) means "absent" to every Zipkin reader: the span's
                // own bytes still mean what a re-encoding would, so it stays forwardable as is.
                if let p = n.integer, p > 0, p <= 65535 { e.port = UInt16(p) } else if n.integer != 0 { canonical = false }
            } else {
                try r.skipValue()
            }
        }
        return e
    }

    // MARK: Encoding

    /// Appends the spans (`spans` selects indices into `batch.spans`; nil = all) as a v2
    /// JSON list. Output is valid Zipkin v2 JSON: ids as 16/32 lower-case hex, timestamps
    /// and durations as integer µs (omitted when 0), kind upper-case, tags as strings.
    /// Spans whose `raw` may be reused (see the type's doc) are copied verbatim.
    public static func encode(_ batch: SpanBatch, spans: [Int]? = nil, into out: inout [UInt8]) {
        let reuseRaw = batch.metadata.format == .zipkinV2JSON
        out.append(UInt8(ascii: "["))
        var first = true
        func one(_ i: Int) {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            let s = batch.spans[i]
            if reuseRaw && !s.raw.isEmpty {
                batch.withBytes(s.raw) { out.appendBytes($0) }
            } else {
                encodeSpan(s, of: batch, into: &out)
            }
        }
        if let spans { for i in spans { one(i) } } else { for i in batch.spans.indices { one(i) } }
        out.append(UInt8(ascii: "]"))
    }

    /// Appends the spans as newline-delimited JSON: one Zipkin v2 span object a line, each
    /// re-encoded (a span's original bytes may hold newlines, so `raw` is never reused here).
    public static func encodeLines(_ batch: SpanBatch, spans: [Int]? = nil, into out: inout [UInt8]) {
        if let spans {
            for i in spans { encodeSpan(batch.spans[i], of: batch, into: &out); out.append(UInt8(ascii: "\n")) }
        } else {
            for s in batch.spans { encodeSpan(s, of: batch, into: &out); out.append(UInt8(ascii: "\n")) }
        }
    }

    static func encodeSpan(_ s: Span, of batch: SpanBatch, into out: inout [UInt8]) {
        JSONWriter.raw("{\"traceId\":\"", to: &out)
        if s.traceID.high != 0 { JSONWriter.hex16(s.traceID.high, to: &out) }
        JSONWriter.hex16(s.traceID.low, to: &out)
        out.append(UInt8(ascii: "\""))
        if s.parentID != 0 {
            JSONWriter.raw(",\"parentId\":", to: &out)
            JSONWriter.quotedHex16(s.parentID, to: &out)
        }
        JSONWriter.raw(",\"id\":", to: &out)
        JSONWriter.quotedHex16(s.id, to: &out)
        switch s.kind {
        case .unspecified: break
        case .client: JSONWriter.raw(",\"kind\":\"CLIENT\"", to: &out)
        case .server: JSONWriter.raw(",\"kind\":\"SERVER\"", to: &out)
        case .producer: JSONWriter.raw(",\"kind\":\"PRODUCER\"", to: &out)
        case .consumer: JSONWriter.raw(",\"kind\":\"CONSUMER\"", to: &out)
        }
        if !s.name.isEmpty {
            JSONWriter.raw(",\"name\":", to: &out)
            JSONWriter.string(s.name, of: batch, to: &out)
        }
        // Zipkin: durations under one microsecond are rounded up, never written as 0.
        let ts = s.startNanos / 1000, dur = s.durationNanos > 0 ? max(1, s.durationNanos / 1000) : 0
        if ts > 0 { JSONWriter.raw(",\"timestamp\":", to: &out); JSONWriter.int(ts, to: &out) }
        if dur > 0 { JSONWriter.raw(",\"duration\":", to: &out); JSONWriter.int(dur, to: &out) }
        if !s.localEndpoint.isEmpty {
            JSONWriter.raw(",\"localEndpoint\":", to: &out)
            encodeEndpoint(s.localEndpoint, of: batch, into: &out)
        }
        if !s.remoteEndpoint.isEmpty {
            JSONWriter.raw(",\"remoteEndpoint\":", to: &out)
            encodeEndpoint(s.remoteEndpoint, of: batch, into: &out)
        }
        if !s.annotations.isEmpty {
            JSONWriter.raw(",\"annotations\":[", to: &out)
            var first = true
            for a in batch.annotations(of: s) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.raw("{\"timestamp\":", to: &out)
                JSONWriter.int(max(0, a.timestampNanos / 1000), to: &out)
                JSONWriter.raw(",\"value\":", to: &out)
                JSONWriter.string(a.value, of: batch, to: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        let errorTag = ZipkinErrorTag.missing(s, of: batch)
        if !s.tags.isEmpty || !s.metrics.isEmpty || errorTag != nil {
            JSONWriter.raw(",\"tags\":{", to: &out)
            var first = true
            if let errorTag {
                JSONWriter.raw("\"error\":", to: &out)
                ZipkinErrorTag.withValue(errorTag, of: batch) { JSONWriter.string($0, to: &out) }
                first = false
            }
            for t in batch.tags(of: s) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.string(t.key, of: batch, to: &out)
                out.append(UInt8(ascii: ":"))
                JSONWriter.string(t.value, of: batch, to: &out)
            }
            // Datadog metrics have no Zipkin home but tags; written as their decimal text.
            for m in batch.metrics(of: s) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.string(m.key, of: batch, to: &out)
                out.append(UInt8(ascii: ":"))
                var text = m.value == m.value.rounded() && abs(m.value) < 1e15 ? String(Int64(m.value)) : String(m.value)
                text.withUTF8 { JSONWriter.string(UnsafeRawBufferPointer($0), to: &out) }
            }
            out.append(UInt8(ascii: "}"))
        }
        if ZipkinSampling.writesDebug(s) { JSONWriter.raw(",\"debug\":true", to: &out) }
        if s.flags.contains(.shared) { JSONWriter.raw(",\"shared\":true", to: &out) }
        out.append(UInt8(ascii: "}"))
    }

    static func encodeEndpoint(_ e: Endpoint, of batch: SpanBatch, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        var first = true
        func sep() { if !first { out.append(UInt8(ascii: ",")) }; first = false }
        if !e.serviceName.isEmpty { sep(); JSONWriter.raw("\"serviceName\":", to: &out); JSONWriter.string(e.serviceName, of: batch, to: &out) }
        if !e.ipv4.isEmpty { sep(); JSONWriter.raw("\"ipv4\":", to: &out); JSONWriter.string(e.ipv4, of: batch, to: &out) }
        if !e.ipv6.isEmpty { sep(); JSONWriter.raw("\"ipv6\":", to: &out); JSONWriter.string(e.ipv6, of: batch, to: &out) }
        if e.port != 0 { sep(); JSONWriter.raw("\"port\":", to: &out); JSONWriter.int(Int64(e.port), to: &out) }
        out.append(UInt8(ascii: "}"))
    }
}
