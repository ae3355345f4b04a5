import Spans

// # Datadog ↔ shared span model
//
// Decoding (v0.3 msgpack/JSON, v0.4, v0.5, v0.7 — chunk/payload extras in DatadogV07.swift)
// fills `Span` like this:
//
// | Datadog                                   | Span                                                  |
// |-------------------------------------------|-------------------------------------------------------|
// | `trace_id` (uint64)                       | `traceID.low`                                         |
// | `_dd.p.tid` meta (16 hex digits)          | `traceID.high` for every span of the chunk whose low  |
// |                                           | id matches (the tracer sets it on one span only)      |
// | `span_id`, `parent_id`                    | `id`, `parentID` (0 = root)                           |
// | `service`                                 | `localEndpoint.serviceName`                           |
// | `name`                                    | `name` (Zipkin has only a name, so Datadog's wins)    |
// | `resource`                                | `resource`                                            |
// | `type`                                    | `type`                                                |
// | `start`, `duration` (ns)                  | `startNanos`, `durationNanos`                         |
// | `error` != 0                              | `flags.error` (`error.msg`, `error.type`, … stay tags) |
// | `meta`                                    | `tags`, except the two keys below                     |
// | `span.kind` meta                          | `kind` (not kept as a tag)                            |
// | `_dd.p.tid` meta                          | `traceID.high` (not kept as a tag)                    |
// | `metrics`                                 | `metrics`, except `_sampling_priority_v1`             |
// | `_sampling_priority_v1` metric            | `samplingPriority` of every span of the trace chunk:  |
// |                                           | the root's value, else the first span's that has one  |
// |                                           | (v0.7: the chunk's `priority` first); not a metric    |
// | `_dd.top_level` metric == 1               | `flags.topLevel` (the metric is kept)                 |
// | `peer.service` meta                       | `remoteEndpoint.serviceName` (tag kept)               |
// | `network.destination.ip` / `out.host`     | `remoteEndpoint.ipv4`/`ipv6` when the value is an IP  |
// |                                           | address (tag kept; host names stay tags only)         |
// | `out.port` / `network.destination.port`   | `remoteEndpoint.port` (meta or metric; kept)          |
// | the span's msgpack bytes (v0.4/v0.3)      | `raw`                                                 |
// | `span_links` (v0.4/v0.7 native)           | tag `_dd.span_links`: the JSON list v0.5 tracers put  |
// |                                           | in meta (DatadogSpanLinks.swift); v0.5's meta is kept |
//
// Other keys (`meta_struct`, `span_events`, unknown ones, and `span_links` in v0.3 JSON) are skipped.
// Strings are byte slices of the body (not validated as UTF-8; the agent does that).
// Ints of any msgpack width are accepted (negative int64 ids are read as their bit pattern),
// floats are accepted for metrics and integral times, nil for any absent value.
//
// Encoding (`DatadogV04.encode`) maps back, and translates spans of other origins (Zipkin)
// the way the Datadog agent's OpenTelemetry translation (`pkg/trace/traceutil/otel_util.go`)
// does:
// - `service` = local service name, or `unnamed-service` (the agent's default).
// - `name` = the span name (Zipkin has only one name; we keep it rather than inventing
//   `opentelemetry.server`), `unnamed_operation` when empty.
// - `resource` = `Span.resource` if set; else `<http.method|http.request.method>` plus
//   ` <http.route>` for server spans; else `<messaging.operation> <messaging.destination(.name)>`;
//   else `<rpc.method> <rpc.service>`; else `db.statement`/`db.query.text` when `db.system` is
//   set; else the name.
// - `type` = `Span.type` or a `span.type` tag; for non-Datadog origins: server → `web`,
//   client → by `db.system` (`redis`, `memcached`, `mongodb`, `elasticsearch`, `opensearch`,
//   SQL engines → `sql`, other → `db`) or `http`; otherwise `custom`.
// - `error` = 1 when the error flag or a Zipkin `error` tag is set; the Zipkin `error` tag's
//   text becomes `error.msg` (unless `error.msg`/`error.message` exist) and is not sent as `error`.
// - `span.kind` meta from `kind`; `_dd.p.tid` on the first span of each trace chunk when the
//   trace id is 128-bit; the chunk's sampling priority (as decoding derives it) once per chunk,
//   as the `_sampling_priority_v1` metric of its root (else of its first span); Zipkin's
//   `debug` arrives as priority 1 (AUTO_KEEP, see `ZipkinSampling`); `_dd.top_level` = 1
//   when `flags.topLevel`.
// - A `_dd.span_links` tag holding a JSON list of links becomes the native `span_links` field
//   (not meta); one that does not parse stays meta as it is.
// - Remote endpoint → `peer.service` (service name), `network.destination.ip` (address) and a
//   `network.destination.port` metric, each only when no tag/metric of that meaning exists.
// - Times are already nanoseconds in the model (Zipkin µs × 1000).
// Spans are grouped into traces (chunks) by full 128-bit trace id, in order of first appearance.

/// Literal keys and the small helpers the Datadog codecs share.
enum DDKey {
    /// Compares the bytes at `r` in `b` with a literal.
    @inline(__always)
    static func eq(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ lit: StaticString) -> Bool {
        let n = lit.utf8CodeUnitCount
        guard r.count == n else { return false }
        return lit.withUTF8Buffer { l in memcmp(b.baseAddress! + r.lowerBound, l.baseAddress!, n) == 0 }
    }

    static func parseKind(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> SpanKind {
        if eq(b, r, "server") { return .server }
        if eq(b, r, "client") { return .client }
        if eq(b, r, "producer") { return .producer }
        if eq(b, r, "consumer") { return .consumer }
        if eq(b, r, "SERVER") { return .server }
        if eq(b, r, "CLIENT") { return .client }
        if eq(b, r, "PRODUCER") { return .producer }
        if eq(b, r, "CONSUMER") { return .consumer }
        return .unspecified
    }

    /// Parses a decimal port (1...65535); 0 for anything else.
    static func parsePort(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> UInt16 {
        guard r.count >= 1, r.count <= 5 else { return 0 }
        var v = 0
        for i in r {
            let c = b[i]
            guard c >= 0x30, c <= 0x39 else { return 0 }
            v = v * 10 + Int(c - 0x30)
        }
        return v <= 65535 ? UInt16(v) : 0
    }

    enum IPKind { case none, v4, v6 }

    /// A cheap textual check: digits and dots → IPv4; hex digits and colons with at least one
    /// colon → IPv6. Host names are neither.
    static func ipKind(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> IPKind {
        guard r.count >= 2, r.count <= 45 else { return .none }
        var dots = 0, colons = 0, v4ok = true, v6ok = true
        for i in r {
            let c = b[i]
            switch c {
            case 0x30...0x39: break
            case UInt8(ascii: "."): dots += 1
            case UInt8(ascii: ":"): colons += 1; v4ok = false
            case UInt8(ascii: "a")...UInt8(ascii: "f"), UInt8(ascii: "A")...UInt8(ascii: "F"): v4ok = false
            default: return .none
            }
        }
        if v4ok && dots == 3 { return .v4 }
        if v6ok && colons >= 2 { return .v6 }
        return .none
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
