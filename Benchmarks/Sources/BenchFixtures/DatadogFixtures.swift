import Codecs
import Spans

/// Deterministic Datadog payloads shaped like ddtrace's: traces of 8 spans, 128-bit ids, 11 meta
/// entries and 4 metrics per span (values from a fixed seed so runs are comparable). v0.4 is
/// written by our encoder; v0.5 and v0.3 JSON are rendered here from the decoded v0.4 batch, so
/// all three carry the same spans.
public enum DatadogFixtures {
    /// v0.4 msgpack: `spans` spans (rounded up to whole traces of 8), or as many as fill `targetBytes`.
    public static func v04(spans: Int = .max, targetBytes: Int = .max) -> (body: [UInt8], spans: Int) {
        precondition(spans < .max || targetBytes < .max, "give a span count or a size")
        var batch = SpanBatch(metadata: BatchMetadata(format: .datadogV04))
        var state: UInt64 = 0x5eed
        func rnd() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
        let services = ["checkout", "cart", "payments", "inventory", "frontend"].map { batch.intern($0) }
        let names = ["web.request", "postgres.query", "redis.command", "http.request", "grpc.client"].map { batch.intern($0) }
        let keys = ["runtime-id", "language", "env", "version", "component", "http.method", "http.url",
                    "http.status_code", "_dd.p.dm", "db.system", "peer.service"].map { batch.intern($0) }
        let metricKeys = ["_dd.top_level", "_dd.agent_psr", "process_id", "_dd.measured"].map { batch.intern($0) }
        var out: [UInt8] = []
        var spanCount = 0
        var trace = 0
        while spanCount < spans && out.count < targetBytes {
            trace += 1
            let tid = TraceID(high: 0x6566_0000_0000_0000 | rnd(), low: rnd() | 1)
            var parent: UInt64 = 0
            batch.spans.removeAll(keepingCapacity: true)
            for i in 0..<8 {
                var s = Span(traceID: tid, id: rnd() | 1)
                s.parentID = parent
                parent = s.id
                s.name = names[i % names.count]
                s.localEndpoint.serviceName = services[Int(rnd() % 5)]
                s.resource = batch.intern("GET /api/v\(rnd() % 3)/items/{id}/\(rnd() % 1000)")
                s.type = batch.intern(i == 0 ? "web" : "http")
                s.startNanos = 1_732_000_000_000_000_000 + Int64(rnd() % 1_000_000_000)
                s.durationNanos = Int64(rnd() % 10_000_000)
                s.kind = i == 0 ? .server : .client
                s.samplingPriority = i == 0 ? 1 : nil
                if rnd() % 20 == 0 { s.flags.insert(.error) }
                let t0 = UInt32(batch.tags.count)
                for k in keys {
                    batch.tags.append(Tag(key: k, value: batch.intern("value-\(rnd() % 100_000)-\(String(repeating: "x", count: Int(rnd() % 24)))")))
                }
                s.tags = t0..<UInt32(batch.tags.count)
                let m0 = UInt32(batch.metrics.count)
                for k in metricKeys { batch.metrics.append(Metric(key: k, value: Double(rnd() % 1000))) }
                s.metrics = m0..<UInt32(batch.metrics.count)
                batch.spans.append(s)
            }
            // Encode one trace at a time and splice it into the outer array.
            var one: [UInt8] = []
            DatadogV04.encode(batch, into: &one)
            out.append(contentsOf: one.dropFirst())   // drop the 1-element array header
            spanCount += 8
        }
        var body: [UInt8] = []
        MessagePackWriter.writeArrayHeader(trace, into: &body)
        body.append(contentsOf: out)
        return (body, spanCount)
    }

    /// The same spans as `v04(spans:)` in v0.5's layout: `[string table, traces]`, each span a
    /// 12-element array of table indices and numbers.
    public static func v05(spans: Int) -> (body: [UInt8], spans: Int) {
        let batch = decodedV04(spans: spans)
        typealias W = MessagePackWriter
        var table: [String: Int] = ["": 0]
        var strings: [String] = [""]
        func index(_ s: String) -> UInt64 {
            if let i = table[s] { return UInt64(i) }
            table[s] = strings.count
            strings.append(s)
            return UInt64(strings.count - 1)
        }
        var traces: [UInt8] = []
        let groups = traceGroups(batch)
        W.writeArrayHeader(groups.count, into: &traces)
        for group in groups {
            W.writeArrayHeader(group.count, into: &traces)
            for i in group {
                let s = batch.spans[i]
                W.writeArrayHeader(12, into: &traces)
                for text in [s.localEndpoint.serviceName, s.name, s.resource] { W.writeUInt(index(batch.string(text)), into: &traces) }
                W.writeUInt(s.traceID.low, into: &traces)
                W.writeUInt(s.id, into: &traces)
                W.writeUInt(s.parentID, into: &traces)
                W.writeInt(s.startNanos, into: &traces)
                W.writeInt(s.durationNanos, into: &traces)
                W.writeInt(s.isError ? 1 : 0, into: &traces)
                let meta = meta(batch, s)
                W.writeMapHeader(meta.count, into: &traces)
                for (k, v) in meta { W.writeUInt(index(k), into: &traces); W.writeUInt(index(v), into: &traces) }
                let metrics = metrics(batch, s)
                W.writeMapHeader(metrics.count, into: &traces)
                for (k, v) in metrics { W.writeUInt(index(k), into: &traces); W.writeDouble(v, into: &traces) }
                W.writeUInt(index(batch.string(s.type)), into: &traces)
            }
        }
        var body: [UInt8] = []
        W.writeArrayHeader(2, into: &body)
        W.writeArrayHeader(strings.count, into: &body)
        for s in strings { W.writeString(s, into: &body) }
        return (body + traces, batch.count)
    }

    /// The same spans as v0.3 JSON (`[[{"trace_id": …}, …], …]`), as older tracers send it.
    public static func v03JSON(spans: Int) -> (body: [UInt8], spans: Int) {
        let batch = decodedV04(spans: spans)
        func quoted(_ s: String) -> String { "\"" + s + "\"" }   // the fixture's text needs no escapes
        var out = "["
        for (g, group) in traceGroups(batch).enumerated() {
            out += g == 0 ? "[" : ",["
            for (k, i) in group.enumerated() {
                let s = batch.spans[i]
                if k > 0 { out += "," }
                out += #"{"trace_id":\#(s.traceID.low),"span_id":\#(s.id),"parent_id":\#(s.parentID),"#
                out += #""service":\#(quoted(batch.string(s.localEndpoint.serviceName))),"name":\#(quoted(batch.string(s.name))),"#
                out += #""resource":\#(quoted(batch.string(s.resource))),"type":\#(quoted(batch.string(s.type))),"#
                out += #""start":\#(s.startNanos),"duration":\#(s.durationNanos),"error":\#(s.isError ? 1 : 0),"meta":{"#
                out += meta(batch, s).map { "\(quoted($0.0)):\(quoted($0.1))" }.joined(separator: ",")
                out += #"},"metrics":{"#
                out += metrics(batch, s).map { "\(quoted($0.0)):\(Int($0.1))" }.joined(separator: ",")
                out += "}}"
            }
            out += "]"
        }
        out += "]"
        return (Array(out.utf8), batch.count)
    }

    public static func decodedV04(spans: Int) -> SpanBatch {
        try! DatadogV04.decode(v04(spans: spans).body, metadata: BatchMetadata(format: .datadogV04))
    }

    /// Span indices per trace, in order of first appearance (the fixture writes traces contiguously).
    static func traceGroups(_ batch: SpanBatch) -> [[Int]] {
        var groups: [[Int]] = []
        for i in batch.spans.indices {
            if i > 0 && batch.spans[i].traceID == batch.spans[i - 1].traceID { groups[groups.count - 1].append(i) } else { groups.append([i]) }
        }
        return groups
    }

    static func meta(_ batch: SpanBatch, _ s: Span) -> [(String, String)] {
        var meta = batch.tags(of: s).map { (batch.string($0.key), batch.string($0.value)) }
        if s.traceID.high != 0 { meta.append(("_dd.p.tid", hex16(s.traceID.high))) }
        return meta
    }

    static func metrics(_ batch: SpanBatch, _ s: Span) -> [(String, Double)] {
        var metrics = batch.metrics(of: s).map { (batch.string($0.key), $0.value) }
        if let p = s.samplingPriority { metrics.append(("_sampling_priority_v1", Double(p))) }
        return metrics
    }
}
