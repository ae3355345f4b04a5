import Spans

/// Zipkin API v1 JSON (`POST /api/v1/spans`): spans described by annotations and binary
/// annotations, converted to the v2 model the way Zipkin's `V1SpanConverter` does:
///
/// - `cs`/`cr` make a CLIENT span, `sr`/`ss` a SERVER span, `ms` a PRODUCER, `mr` a CONSUMER;
///   the core annotation's endpoint is the local endpoint; timestamp and duration are the
///   span's own fields when present, else taken from the core annotations (`cr - cs`,
///   `ss - sr`).
/// - A span with both `cs` and `sr` (one span id shared by client and server) becomes two
///   spans: the client, and a `shared` server span timed by `sr`/`ss`. A server-only span
///   without its own `timestamp` is also `shared` (its timestamp belongs to the client).
/// - Other annotations stay annotations; the first endpoint seen on any annotation or
///   binary annotation is the local endpoint when no core annotation gave one.
/// - Binary annotations `sa`, `ca`, `ma` (value `true`) set the remote endpoint; other binary
///   annotations become tags: strings as they are, booleans as `true`/`false`, numbers as
///   their literal text.
///
/// Known simplification: when a shared span is split, all tags and plain annotations go to
/// the client half. Ids, timestamps and errors follow `ZipkinJSONV2`'s rules. `raw` is never
/// set (a v1 body cannot be forwarded as v2).
public enum ZipkinJSONV1 {
    public static func decode(_ body: [UInt8], metadata: BatchMetadata) throws(DecodeError) -> SpanBatch {
        var batch = SpanBatch(body: body, metadata: metadata)
        batch.spans.reserveCapacity(body.count / 512 + 1)
        batch.tags.reserveCapacity(body.count / 64 + 1)
        try JSONReader.withReader(body, format: .zipkinV1JSON) { (r: inout JSONReader) throws(DecodeError) in
            try r.beginArray()
            while try r.nextElement() { try decodeSpan(&r, into: &batch) }
            try r.expectEnd()
        }
        return batch
    }

    private struct Core {
        var ts: Int64 = 0
        var endpoint = Endpoint()
        var present = false
    }

    private static func decodeSpan(_ r: inout JSONReader, into batch: inout SpanBatch) throws(DecodeError) {
        guard r.peek() == UInt8(ascii: "{") else { throw r.error("expected a span object") }
        let start = r.position
        try r.beginObject()
        var span = Span(traceID: TraceID(low: 0), id: 0)
        var haveTrace = false, haveID = false
        var timestamp: Int64? = nil, duration: Int64? = nil
        var cs = Core(), cr = Core(), sr = Core(), ss = Core(), ms = Core(), mr = Core()
        var firstEndpoint: Endpoint? = nil
        var sa: Endpoint? = nil, ca: Endpoint? = nil, ma: Endpoint? = nil
        var ignored = true
        let tags0 = UInt32(batch.tags.count), ann0 = UInt32(batch.annotations.count)
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
                timestamp = try ZipkinJSONV2.micros(&r, "timestamp").0
            } else if r.key(k, is: "duration") {
                duration = try ZipkinJSONV2.micros(&r, "duration").0
            } else if r.key(k, is: "debug") {
                if try r.readBool() { span.flags.insert(.debug); span.samplingPriority = 2 }
            } else if r.key(k, is: "annotations") {
                try r.beginArray()
                while try r.nextElement() {
                    if r.readNull() { continue }
                    try r.beginObject()
                    var ts: Int64 = 0
                    var value = JSONString(start: 0, end: 0, hasEscapes: false)
                    var ep: Endpoint? = nil
                    while let ak = try r.nextKey() {
                        if r.readNull() { continue }
                        if r.key(ak, is: "timestamp") { ts = try ZipkinJSONV2.micros(&r, "annotation timestamp").0 }
                        else if r.key(ak, is: "value") { value = try r.readString() }
                        else if r.key(ak, is: "endpoint") { ep = try ZipkinJSONV2.endpoint(&r, &batch, &ignored) }
                        else { try r.skipValue() }
                    }
                    let core: Bool
                    if value.count == 2 && !value.hasEscapes {
                        let b = r.bytes(value.range)
                        switch (b[0], b[1]) {
                        case (UInt8(ascii: "c"), UInt8(ascii: "s")): cs = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        case (UInt8(ascii: "c"), UInt8(ascii: "r")): cr = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        case (UInt8(ascii: "s"), UInt8(ascii: "r")): sr = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        case (UInt8(ascii: "s"), UInt8(ascii: "s")): ss = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        case (UInt8(ascii: "m"), UInt8(ascii: "s")): ms = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        case (UInt8(ascii: "m"), UInt8(ascii: "r")): mr = Core(ts: ts, endpoint: ep ?? Endpoint(), present: true); core = true
                        default: core = false
                        }
                    } else {
                        core = false
                    }
                    if !core {
                        if firstEndpoint == nil, let ep, !ep.isEmpty { firstEndpoint = ep }
                        batch.annotations.append(Annotation(timestampNanos: ts, value: r.text(value, in: &batch)))
                    }
                }
            } else if r.key(k, is: "binaryAnnotations") {
                try r.beginArray()
                while try r.nextElement() {
                    if r.readNull() { continue }
                    try r.beginObject()
                    var key = JSONString(start: 0, end: 0, hasEscapes: false)
                    var value: Str = .empty
                    var isTrue = false, isBool = false
                    var ep: Endpoint? = nil
                    while let bk = try r.nextKey() {
                        if r.readNull() { continue }
                        if r.key(bk, is: "key") { key = try r.readString() }
                        else if r.key(bk, is: "endpoint") { ep = try ZipkinJSONV2.endpoint(&r, &batch, &ignored) }
                        else if r.key(bk, is: "value") {
                            switch r.peek() {
                            case UInt8(ascii: "\""): value = r.text(try r.readString(), in: &batch)
                            case UInt8(ascii: "t"), UInt8(ascii: "f"):
                                let s = r.position
                                isBool = true; isTrue = try r.readBool()
                                value = batch.slice(s..<r.position)
                            default:
                                let s = r.position
                                try r.skipValue()
                                value = batch.slice(s..<r.position)
                            }
                        } else { try r.skipValue() }
                    }
                    if isBool && isTrue && key.count == 2 && !key.hasEscapes,
                       r.key(key, is: "sa") || r.key(key, is: "ca") || r.key(key, is: "ma") {
                        let which = r.bytes(key.range)[0]
                        if which == UInt8(ascii: "s") { sa = ep } else if which == UInt8(ascii: "c") { ca = ep } else { ma = ep }
                        continue
                    }
                    if firstEndpoint == nil, let ep, !ep.isEmpty { firstEndpoint = ep }
                    let keyStr = r.text(key, in: &batch)
                    if batch.equals(keyStr, "error") { span.flags.insert(.error) }
                    batch.tags.append(Tag(key: keyStr, value: value))
                }
            } else {
                try r.skipValue()
            }
        }
        guard haveTrace else { throw r.error("span has no traceId", at: start, code: .invalidValue) }
        guard haveID else { throw r.error("span has no id", at: start, code: .invalidValue) }
        span.tags = tags0..<UInt32(batch.tags.count)
        span.annotations = ann0..<UInt32(batch.annotations.count)
        let fallback = firstEndpoint ?? Endpoint()

        func timed(_ a: Core, _ b: Core) -> (Int64, Int64) {
            let begin = a.present ? a.ts : 0
            let d = a.present && b.present && b.ts > a.ts ? b.ts - a.ts : 0
            return (begin, d)
        }

        let client = cs.present || cr.present
        let server = sr.present || ss.present
        if client {
            span.kind = .client
            span.localEndpoint = cs.present ? cs.endpoint : cr.endpoint
            let (b, d) = timed(cs, cr)
            span.startNanos = timestamp ?? b
            span.durationNanos = duration ?? d
            span.remoteEndpoint = sa ?? Endpoint()
            if server {
                // One span id for both sides: the server half is its own, shared span.
                var s = Span(traceID: span.traceID, id: span.id)
                s.parentID = span.parentID
                s.name = span.name
                s.kind = .server
                s.flags = span.flags.intersection([.debug]).union(.shared)
                s.samplingPriority = span.samplingPriority
                s.localEndpoint = sr.present ? sr.endpoint : ss.endpoint
                s.remoteEndpoint = ca ?? Endpoint()
                let (sb, sd) = timed(sr, ss)
                s.startNanos = sb
                s.durationNanos = sd
                s.tags = span.tags.upperBound..<span.tags.upperBound
                s.annotations = span.annotations.upperBound..<span.annotations.upperBound
                batch.spans.append(span)
                batch.spans.append(s)
                return
            }
        } else if server {
            span.kind = .server
            span.localEndpoint = sr.present ? sr.endpoint : ss.endpoint
            let (b, d) = timed(sr, ss)
            span.startNanos = timestamp ?? b
            span.durationNanos = duration ?? d
            if timestamp == nil && sr.present { span.flags.insert(.shared) }
            span.remoteEndpoint = ca ?? Endpoint()
        } else if ms.present || mr.present {
            span.kind = ms.present ? .producer : .consumer
            let c = ms.present ? ms : mr
            span.localEndpoint = c.endpoint
            span.startNanos = timestamp ?? c.ts
            span.durationNanos = duration ?? 0
            span.remoteEndpoint = ma ?? Endpoint()
        } else {
            span.localEndpoint = fallback
            span.startNanos = timestamp ?? 0
            span.durationNanos = duration ?? 0
            span.remoteEndpoint = sa ?? ca ?? ma ?? Endpoint()
        }
        if span.localEndpoint.isEmpty { span.localEndpoint = fallback }
        batch.spans.append(span)
    }
}
