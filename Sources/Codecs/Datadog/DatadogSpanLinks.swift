import Spans

/// Datadog span links between their two spellings. The model keeps a span's links as one
/// tag, `_dd.span_links`, whose value is the JSON list tracers write in v0.5 meta:
/// `[{"trace_id":"<32 hex>","span_id":"<16 hex>","attributes":{…},"tracestate":"…","flags":1}]`.
/// So v0.5 input needs nothing, Zipkin output carries them as that tag (Zipkin has no links),
/// and only v0.4/v0.7's native `span_links` (datadog-agent `span.proto` `SpanLink`:
/// `trace_id`, `trace_id_high`, `span_id`, `attributes` map, `tracestate`, `flags` whose
/// bit 31 says "set") are converted: to that JSON when decoding, back when encoding v0.4.
/// JSON `flags` carry the W3C flags without bit 31, as tracers write them.
enum DDSpanLinks {
    static let tagKey: StaticString = "_dd.span_links"
    static let flagsSet: UInt32 = 1 << 31

    // MARK: Native msgpack → JSON tag value

    /// Reads a native `span_links` array and appends its JSON form to the batch's storage;
    /// nil when no link has its required ids (a link without trace or span id points nowhere).
    static func decode(_ r: inout MessagePackReader, _ batch: inout SpanBatch) throws(DecodeError) -> Str? {
        let n = try r.readArrayHeader()
        if n == 0 { return nil }
        let b = r.bytes
        var json: [UInt8] = [UInt8(ascii: "[")]
        json.reserveCapacity(96 * min(n, 64)) // n is bounded by the body only
        for _ in 0..<n {
            let fields = try r.readMapHeader()
            var low: UInt64 = 0, high: UInt64 = 0, span: UInt64 = 0, flags: UInt32 = 0
            var tracestate: Range<Int> = 0..<0
            var attributes: [(Range<Int>, Range<Int>)] = []
            for _ in 0..<fields {
                let k = try r.readStringRange()
                if DDKey.eq(b, k, "trace_id") { low = try r.readUInt64Bits() }
                else if DDKey.eq(b, k, "trace_id_high") { high = try r.readUInt64Bits() }
                else if DDKey.eq(b, k, "span_id") { span = try r.readUInt64Bits() }
                else if DDKey.eq(b, k, "flags") { flags = UInt32(truncatingIfNeeded: try r.readUInt64Bits()) }
                else if DDKey.eq(b, k, "tracestate") { tracestate = try r.readStringRange() }
                else if DDKey.eq(b, k, "attributes") {
                    let m = try r.readMapHeader()
                    for _ in 0..<m { attributes.append((try r.readStringRange(), try r.readStringRange())) }
                } else { try r.skip() }
            }
            if (low == 0 && high == 0) || span == 0 { continue }
            if json.count > 1 { json.append(UInt8(ascii: ",")) }
            JSONWriter.raw("{\"trace_id\":\"", to: &json)
            JSONWriter.hex16(high, to: &json)
            JSONWriter.hex16(low, to: &json)
            JSONWriter.raw("\",\"span_id\":", to: &json)
            JSONWriter.quotedHex16(span, to: &json)
            if !attributes.isEmpty {
                JSONWriter.raw(",\"attributes\":{", to: &json)
                for (j, (k, v)) in attributes.enumerated() {
                    if j > 0 { json.append(UInt8(ascii: ",")) }
                    JSONWriter.string(UnsafeRawBufferPointer(rebasing: b[k]), to: &json)
                    json.append(UInt8(ascii: ":"))
                    JSONWriter.string(UnsafeRawBufferPointer(rebasing: b[v]), to: &json)
                }
                json.append(UInt8(ascii: "}"))
            }
            if !tracestate.isEmpty {
                JSONWriter.raw(",\"tracestate\":", to: &json)
                JSONWriter.string(UnsafeRawBufferPointer(rebasing: b[tracestate]), to: &json)
            }
            if flags != 0 {
                JSONWriter.raw(",\"flags\":", to: &json)
                JSONWriter.int(Int64(flags & ~flagsSet), to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        if json.count == 1 { return nil }
        json.append(UInt8(ascii: "]"))
        return json.withUnsafeBytes { batch.intern($0) }
    }

    // MARK: JSON tag value → native msgpack

    /// Appends the links of a `_dd.span_links` JSON value to `out` as native `SpanLink` maps
    /// and returns how many; nil (and `out` unchanged) when the value is not such a list, so
    /// the caller keeps it as a plain meta entry.
    static func appendNative(json: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Int? {
        let mark = out.count
        let text = Array(json)
        do throws(DecodeError) {
            return try JSONReader.withReader(text, format: nil) { (r: inout JSONReader) throws(DecodeError) -> Int in
                var count = 0
                try r.beginArray()
                while try r.nextElement() {
                    try appendLink(&r, into: &out)
                    count += 1
                }
                try r.expectEnd()
                return count
            }
        } catch {
            out.removeSubrange(mark...)
            return nil
        }
    }

    private static func appendLink(_ r: inout JSONReader, into out: inout [UInt8]) throws(DecodeError) {
        typealias W = MessagePackWriter
        try r.beginObject()
        var trace: TraceID? = nil, span: UInt64? = nil
        var flags: UInt32 = 0
        var tracestate: [UInt8] = []
        var attributes: [([UInt8], [UInt8])] = []
        while let k = try r.nextKey() {
            if r.readNull() { continue }
            if r.key(k, is: "trace_id") {
                let s = try r.readString()
                guard !s.hasEscapes, let id = TraceID(hexBytes: r.bytes(s.range)) else { throw r.error("trace_id is not hex") }
                trace = id
            } else if r.key(k, is: "span_id") {
                let s = try r.readString()
                guard !s.hasEscapes, let id = parseHex64(r.bytes(s.range)) else { throw r.error("span_id is not hex") }
                span = id
            } else if r.key(k, is: "flags") {
                guard let v = try r.readNumber().integer, v >= 0, v <= Int64(UInt32.max) else { throw r.error("flags is not a uint32") }
                flags = UInt32(v) | flagsSet
            } else if r.key(k, is: "tracestate") {
                tracestate = unescaped(&r, try r.readString())
            } else if r.key(k, is: "attributes") {
                try r.beginObject()
                while let ak = try r.nextKey() {
                    let key = unescaped(&r, ak)
                    if r.readNull() { continue }
                    if r.peek() == UInt8(ascii: "\"") {
                        attributes.append((key, unescaped(&r, try r.readString())))
                    } else {
                        // Numbers and booleans as their literal text (the native map holds strings).
                        let s = r.position
                        try r.skipValue()
                        attributes.append((key, Array(r.bytes(s..<r.position))))
                    }
                }
            } else {
                try r.skipValue()
            }
        }
        guard let trace, let span, !trace.isZero, span != 0 else { throw r.error("a span link needs non-zero trace_id and span_id") }
        var fields = 2
        if trace.high != 0 { fields += 1 }
        if !attributes.isEmpty { fields += 1 }
        if !tracestate.isEmpty { fields += 1 }
        if flags != 0 { fields += 1 }
        W.writeMapHeader(fields, into: &out)
        W.writeString("trace_id", into: &out); W.writeUInt(trace.low, into: &out)
        if trace.high != 0 { W.writeString("trace_id_high", into: &out); W.writeUInt(trace.high, into: &out) }
        W.writeString("span_id", into: &out); W.writeUInt(span, into: &out)
        if !attributes.isEmpty {
            W.writeString("attributes", into: &out)
            W.writeMapHeader(attributes.count, into: &out)
            for (k, v) in attributes {
                k.withUnsafeBytes { W.writeString($0, into: &out) }
                v.withUnsafeBytes { W.writeString($0, into: &out) }
            }
        }
        if !tracestate.isEmpty {
            W.writeString("tracestate", into: &out)
            tracestate.withUnsafeBytes { W.writeString($0, into: &out) }
        }
        if flags != 0 { W.writeString("flags", into: &out); W.writeUInt(UInt64(flags), into: &out) }
    }

    private static func unescaped(_ r: inout JSONReader, _ s: JSONString) -> [UInt8] {
        if !s.hasEscapes { return Array(r.bytes(s.range)) }
        var out = [UInt8](repeating: 0, count: s.count)
        let n = out.withUnsafeMutableBytes { JSONReader.unescape(r.bytes(s.range), into: $0) }
        out.removeLast(out.count - n)
        return out
    }
}
