import Spans

/// Zipkin API v2 protobuf (`application/x-protobuf`): zipkin.proto's `ListOfSpans`.
///
/// Field numbers (zipkin-api `zipkin.proto`, package `zipkin.proto3`):
/// `ListOfSpans { repeated Span spans = 1 }`;
/// `Span { bytes trace_id = 1; bytes parent_id = 2; bytes id = 3; Kind kind = 4; string name = 5;
/// fixed64 timestamp = 6; uint64 duration = 7; Endpoint local_endpoint = 8;
/// Endpoint remote_endpoint = 9; repeated Annotation annotations = 10;
/// map<string,string> tags = 11; bool debug = 12; bool shared = 13 }`;
/// `Endpoint { string service_name = 1; bytes ipv4 = 2; bytes ipv6 = 3; int32 port = 4 }`;
/// `Annotation { fixed64 timestamp = 1; string value = 2 }`;
/// `Kind { SPAN_KIND_UNSPECIFIED = 0; CLIENT = 1; SERVER = 2; PRODUCER = 3; CONSUMER = 4 }`.
///
/// A hand-written wire reader/writer (no generated code): strings are referenced in the
/// body without copying; ids are 8 or 16 big-endian bytes; addresses arrive as 4/16 bytes and
/// are stored as text. Normalisation matches `ZipkinJSONV2` (zero trace/span id refused,
/// 128-bit id with zero high half → 64-bit, zero parent → none, µs → ns).
///
/// **`Span.raw` rule** (as for JSON): `raw` is the span message's bytes when they are already
/// canonical; `encode` copies them verbatim when the batch's `metadata.format` is
/// `.zipkinV2Proto`. Stages that change a span must clear `raw`.
public enum ZipkinProto3 {
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        var batch = SpanBatch(body: body, metadata: metadata)
        batch.spans.reserveCapacity(body.count / 256 + 1)
        batch.tags.reserveCapacity(body.count / 24 + 1)
        // Addresses arrive as bytes and are stored as text after the body: make room once
        // (one copy of the body) rather than growing the storage while decoding.
        batch.storage.reserveCapacity(body.count + body.count / 16 + 64)
        let result: Result<Void, DecodeError> = body.withUnsafeBytes { raw in
            var r = ProtoReader(raw, format: .zipkinV2Proto)
            do throws(DecodeError) {
                while !r.atEnd {
                    let at = r.position
                    let (field, wire) = try r.tag()
                    if field == 1 {
                        try r.expect(wire, 2, "ListOfSpans.spans", at: at)
                        let range = try r.lengthDelimited()
                        var sr = r.sub(range)
                        batch.spans.append(try decodeSpan(&sr, into: &batch))
                    } else {
                        try r.skip(wire)
                    }
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
        return batch
    }

    private static func decodeSpan(_ r: inout ProtoReader, into batch: inout SpanBatch) throws(DecodeError) -> Span {
        let start = r.position
        var span = Span(traceID: TraceID(low: 0), id: 0)
        var canonical = true
        var haveTrace = false, haveID = false
        let tags0 = UInt32(batch.tags.count), ann0 = UInt32(batch.annotations.count)
        while !r.atEnd {
            let at = r.position
            let (field, wire) = try r.tag()
            switch field {
            case 1:
                try r.expect(wire, 2, "trace_id", at: at)
                let b = try r.lengthDelimited()
                guard b.count == 8 || b.count == 16 else { throw r.error("trace_id must be 8 or 16 bytes, not \(b.count)", at: at, code: .invalidValue) }
                let id = b.count == 8 ? TraceID(low: r.bigEndian(b))
                    : TraceID(high: r.bigEndian(b.lowerBound..<(b.lowerBound + 8)), low: r.bigEndian((b.lowerBound + 8)..<b.upperBound))
                guard !id.isZero else { throw r.error("trace_id is all zeros", at: at, code: .invalidValue) }
                if b.count == 16 && id.high == 0 { canonical = false }
                span.traceID = id; haveTrace = true
            case 2, 3:
                try r.expect(wire, 2, "id", at: at)
                let b = try r.lengthDelimited()
                guard b.count == 8 || (field == 2 && b.count == 0) else {
                    throw r.error("\(field == 2 ? "parent_id" : "id") must be 8 bytes, not \(b.count)", at: at, code: .invalidValue)
                }
                let v = r.bigEndian(b)
                if field == 3 {
                    guard v != 0 else { throw r.error("id is all zeros", at: at, code: .invalidValue) }
                    span.id = v; haveID = true
                } else {
                    span.parentID = v
                    if v == 0 { canonical = false }
                }
            case 4:
                try r.expect(wire, 0, "kind", at: at)
                let k = try r.varint()
                if k <= 4, let kind = SpanKind(rawValue: UInt8(k)) { span.kind = kind } else { canonical = false }
            case 5:
                try r.expect(wire, 2, "name", at: at)
                span.name = slice(try r.lengthDelimited(), batch)
            case 6:
                try r.expect(wire, 1, "timestamp", at: at)
                span.startNanos = try nanos(r.fixed64(), r, at, "timestamp")
            case 7:
                try r.expect(wire, 0, "duration", at: at)
                span.durationNanos = try nanos(r.varint(), r, at, "duration")
            case 8, 9:
                try r.expect(wire, 2, "endpoint", at: at)
                var er = r.sub(try r.lengthDelimited())
                let e = try endpoint(&er, &batch, &canonical)
                if field == 8 { span.localEndpoint = e } else { span.remoteEndpoint = e }
            case 10:
                try r.expect(wire, 2, "annotations", at: at)
                var ar = r.sub(try r.lengthDelimited())
                var a = Annotation(timestampNanos: 0, value: .empty)
                while !ar.atEnd {
                    let aat = ar.position
                    let (f, w) = try ar.tag()
                    if f == 1 { try ar.expect(w, 1, "annotation timestamp", at: aat); a.timestampNanos = try nanos(ar.fixed64(), ar, aat, "annotation timestamp") }
                    else if f == 2 { try ar.expect(w, 2, "annotation value", at: aat); a.value = slice(try ar.lengthDelimited(), batch) }
                    else { try ar.skip(w) }
                }
                batch.annotations.append(a)
            case 11:
                try r.expect(wire, 2, "tags", at: at)
                let entry = try r.lengthDelimited()
                var t = Tag(key: .empty, value: .empty)
                var tr = r.sub(entry)
                // Fast path for the usual entry layout: key (0x0A, short length) then value (0x12).
                if entry.count >= 2, r.base[entry.lowerBound] == 0x0A, r.base[entry.lowerBound + 1] < 0x80 {
                    let k0 = entry.lowerBound + 2, k1 = k0 + Int(r.base[entry.lowerBound + 1])
                    if k1 <= entry.upperBound {
                        if k1 == entry.upperBound {
                            t.key = slice(k0..<k1, batch); tr.position = k1
                        } else if k1 + 2 <= entry.upperBound, r.base[k1] == 0x12, r.base[k1 + 1] < 0x80,
                                  k1 + 2 + Int(r.base[k1 + 1]) == entry.upperBound {
                            t.key = slice(k0..<k1, batch); t.value = slice((k1 + 2)..<entry.upperBound, batch)
                            tr.position = entry.upperBound
                        }
                    }
                }
                while !tr.atEnd {
                    let tat = tr.position
                    let (f, w) = try tr.tag()
                    if f == 1 { try tr.expect(w, 2, "tag key", at: tat); t.key = slice(try tr.lengthDelimited(), batch) }
                    else if f == 2 { try tr.expect(w, 2, "tag value", at: tat); t.value = slice(try tr.lengthDelimited(), batch) }
                    else { try tr.skip(w) }
                }
                if batch.equals(t.key, "error") { span.flags.insert(.error) }
                batch.tags.append(t)
            case 12, 13:
                try r.expect(wire, 0, "flag", at: at)
                if try r.varint() != 0 {
                    if field == 12 { span.flags.insert(.debug); span.samplingPriority = ZipkinSampling.debugPriority } else { span.flags.insert(.shared) }
                }
            default:
                try r.skip(wire)
            }
        }
        guard haveTrace else { throw r.error("span has no trace_id", at: start, code: .invalidValue) }
        guard haveID else { throw r.error("span has no id", at: start, code: .invalidValue) }
        span.tags = tags0..<UInt32(batch.tags.count)
        span.annotations = ann0..<UInt32(batch.annotations.count)
        if canonical { span.raw = batch.slice(start..<r.position) }
        return span
    }

    @inline(__always) private static func slice(_ r: Range<Int>, _ batch: SpanBatch) -> Str {
        r.isEmpty ? .empty : batch.slice(r)
    }

    private static func nanos(_ micros: UInt64, _ r: ProtoReader, _ at: Int, _ what: String) throws(DecodeError) -> Int64 {
        guard micros <= UInt64(Int64.max / 1000) else { throw r.error("\(what) is out of range", at: at, code: .invalidValue) }
        return Int64(micros) * 1000
    }

    private static func endpoint(_ r: inout ProtoReader, _ batch: inout SpanBatch, _ canonical: inout Bool) throws(DecodeError) -> Endpoint {
        var e = Endpoint()
        while !r.atEnd {
            let at = r.position
            let (f, w) = try r.tag()
            switch f {
            case 1: try r.expect(w, 2, "service_name", at: at); e.serviceName = slice(try r.lengthDelimited(), batch)
            case 2, 3:
                try r.expect(w, 2, "address", at: at)
                let b = try r.lengthDelimited()
                if b.count == (f == 2 ? 4 : 16) {
                    let text = ZipkinIP.text(r.bytes(b), in: &batch)
                    if f == 2 { e.ipv4 = text } else { e.ipv6 = text }
                } else if !b.isEmpty {
                    canonical = false // Zipkin drops malformed addresses
                }
            case 4:
                try r.expect(w, 0, "port", at: at)
                let p = try r.varint()
                if p > 0 && p <= 65535 { e.port = UInt16(p) } else { canonical = false }
            default: try r.skip(w)
            }
        }
        return e
    }

    // MARK: Encoding

    /// Appends the spans (`spans` selects indices; nil = all) as a `ListOfSpans` message.
    /// Addresses that do not parse as IPv4/IPv6 text are left out (proto carries bytes).
    public static func encode(_ batch: SpanBatch, spans: [Int]? = nil, into out: inout [UInt8]) {
        let reuseRaw = batch.metadata.format == .zipkinV2Proto
        func one(_ i: Int) {
            let s = batch.spans[i]
            if reuseRaw && !s.raw.isEmpty {
                batch.withBytes(s.raw) { ProtoWriter.bytes(1, $0, to: &out) }
            } else {
                ProtoWriter.message(1, to: &out) { out in encodeSpan(s, of: batch, into: &out) }
            }
        }
        if let spans { for i in spans { one(i) } } else { for i in batch.spans.indices { one(i) } }
    }

    static func encodeSpan(_ s: Span, of batch: SpanBatch, into out: inout [UInt8]) {
        if s.traceID.high != 0 {
            ProtoWriter.tag(1, 2, to: &out)
            out.append(16)
            withUnsafeBytes(of: s.traceID.high.bigEndian) { out.appendBytes($0) }
            withUnsafeBytes(of: s.traceID.low.bigEndian) { out.appendBytes($0) }
        } else {
            ProtoWriter.id(1, s.traceID.low, to: &out)
        }
        if s.parentID != 0 { ProtoWriter.id(2, s.parentID, to: &out) }
        ProtoWriter.id(3, s.id, to: &out)
        if s.kind != .unspecified { ProtoWriter.tag(4, 0, to: &out); ProtoWriter.varint(UInt64(s.kind.rawValue), to: &out) }
        if !s.name.isEmpty { batch.withBytes(s.name) { ProtoWriter.bytes(5, $0, to: &out) } }
        if s.startNanos > 0 { ProtoWriter.fixed64(6, UInt64(s.startNanos / 1000), to: &out) }
        if s.durationNanos > 0 { ProtoWriter.tag(7, 0, to: &out); ProtoWriter.varint(UInt64(max(1, s.durationNanos / 1000)), to: &out) }
        if !s.localEndpoint.isEmpty { encodeEndpoint(8, s.localEndpoint, batch, &out) }
        if !s.remoteEndpoint.isEmpty { encodeEndpoint(9, s.remoteEndpoint, batch, &out) }
        for a in batch.annotations(of: s) {
            ProtoWriter.message(10, to: &out) { out in
                if a.timestampNanos > 0 { ProtoWriter.fixed64(1, UInt64(a.timestampNanos / 1000), to: &out) }
                if !a.value.isEmpty { batch.withBytes(a.value) { ProtoWriter.bytes(2, $0, to: &out) } }
            }
        }
        if let errorTag = ZipkinErrorTag.missing(s, of: batch) {
            ProtoWriter.message(11, to: &out) { out in
                ("error" as StaticString).withUTF8Buffer { ProtoWriter.bytes(1, UnsafeRawBufferPointer($0), to: &out) }
                ZipkinErrorTag.withValue(errorTag, of: batch) { ProtoWriter.bytes(2, $0, to: &out) }
            }
        }
        for t in batch.tags(of: s) {
            let k = Int(t.key.count), v = Int(t.value.count)
            ProtoWriter.tag(11, 2, to: &out)
            ProtoWriter.varint(UInt64(1 + varintSize(k) + k + (v > 0 ? 1 + varintSize(v) + v : 0)), to: &out)
            batch.withBytes(t.key) { ProtoWriter.bytes(1, $0, to: &out) }
            if v > 0 { batch.withBytes(t.value) { ProtoWriter.bytes(2, $0, to: &out) } }
        }
        for m in batch.metrics(of: s) {
            var text = m.value == m.value.rounded() && abs(m.value) < 1e15 ? String(Int64(m.value)) : String(m.value)
            ProtoWriter.message(11, to: &out) { out in
                batch.withBytes(m.key) { ProtoWriter.bytes(1, $0, to: &out) }
                text.withUTF8 { ProtoWriter.bytes(2, UnsafeRawBufferPointer($0), to: &out) }
            }
        }
        if ZipkinSampling.writesDebug(s) { ProtoWriter.tag(12, 0, to: &out); out.append(1) }
        if s.flags.contains(.shared) { ProtoWriter.tag(13, 0, to: &out); out.append(1) }
    }

    @inline(__always) static func varintSize(_ n: Int) -> Int {
        var n = UInt64(n), s = 1
        while n >= 0x80 { n >>= 7; s += 1 }
        return s
    }

    private static func encodeEndpoint(_ field: UInt64, _ e: Endpoint, _ batch: SpanBatch, _ out: inout [UInt8]) {
        ProtoWriter.message(field, to: &out) { out in
            if !e.serviceName.isEmpty { batch.withBytes(e.serviceName) { ProtoWriter.bytes(1, $0, to: &out) } }
            withUnsafeTemporaryAllocation(byteCount: 16, alignment: 1) { buf in
                if !e.ipv4.isEmpty {
                    let n = batch.withBytes(e.ipv4) { ZipkinIP.parse($0, v6: false, into: buf.baseAddress!) }
                    if n == 4 { ProtoWriter.bytes(2, UnsafeRawBufferPointer(rebasing: buf[0..<4]), to: &out) }
                }
                if !e.ipv6.isEmpty {
                    let n = batch.withBytes(e.ipv6) { ZipkinIP.parse($0, v6: true, into: buf.baseAddress!) }
                    if n == 16 { ProtoWriter.bytes(3, UnsafeRawBufferPointer(buf), to: &out) }
                }
            }
            if e.port != 0 { ProtoWriter.tag(4, 0, to: &out); ProtoWriter.varint(UInt64(e.port), to: &out) }
        }
    }
}
