import Basics
import Spans
import Transport

/// Renders spans as JSON objects with every field of the model, for `/debug/captured` and the
/// end-to-end tests. Not on the hot path; not a wire format any backend reads.
public enum SpanDebugJSON {
    public static func render(_ batch: SpanBatch) -> String {
        var out = "["
        for (i, span) in batch.spans.enumerated() {
            if i > 0 { out += "," }
            out += render(span, in: batch)
        }
        return out + "]"
    }

    public static func render(_ span: Span, in batch: SpanBatch) -> String {
        var f: [String] = []
        func str(_ key: String, _ s: Str) { if !s.isEmpty { f.append("\(jsonQuoted(key)):\(jsonQuoted(batch.string(s)))") } }
        f.append("\"traceId\":\(jsonQuoted(span.traceID.description))")
        f.append("\"id\":\(jsonQuoted(hex16(span.id)))")
        if span.parentID != 0 { f.append("\"parentId\":\(jsonQuoted(hex16(span.parentID)))") }
        str("name", span.name)
        if let k = span.kind.zipkinName { f.append("\"kind\":\(jsonQuoted(k))") }
        f.append("\"startNanos\":\(span.startNanos)")
        f.append("\"durationNanos\":\(span.durationNanos)")
        for (key, e) in [("localEndpoint", span.localEndpoint), ("remoteEndpoint", span.remoteEndpoint)] where !e.isEmpty {
            var ef: [String] = []
            if !e.serviceName.isEmpty { ef.append("\"serviceName\":\(jsonQuoted(batch.string(e.serviceName)))") }
            if !e.ipv4.isEmpty { ef.append("\"ipv4\":\(jsonQuoted(batch.string(e.ipv4)))") }
            if !e.ipv6.isEmpty { ef.append("\"ipv6\":\(jsonQuoted(batch.string(e.ipv6)))") }
            if e.port != 0 { ef.append("\"port\":\(e.port)") }
            f.append("\"\(key)\":{\(ef.joined(separator: ","))}")
        }
        let tags = batch.tags(of: span).map { "\(jsonQuoted(batch.string($0.key))):\(jsonQuoted(batch.string($0.value)))" }
        f.append("\"tags\":{\(tags.joined(separator: ","))}")
        let metrics = batch.metrics(of: span).map { "\(jsonQuoted(batch.string($0.key))):\(jsonNumber($0.value))" }
        f.append("\"metrics\":{\(metrics.joined(separator: ","))}")
        let ann = batch.annotations(of: span).map { "{\"timestampNanos\":\($0.timestampNanos),\"value\":\(jsonQuoted(batch.string($0.value)))}" }
        f.append("\"annotations\":[\(ann.joined(separator: ","))]")
        f.append("\"error\":\(span.isError)")
        f.append("\"debug\":\(span.isDebug)")
        f.append("\"shared\":\(span.flags.contains(.shared))")
        if let p = span.samplingPriority { f.append("\"samplingPriority\":\(p)") }
        str("resource", span.resource)
        str("type", span.type)
        return "{" + f.joined(separator: ",") + "}"
    }

    static func jsonNumber(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }
}
