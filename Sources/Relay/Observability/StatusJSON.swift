import Basics
import Routing
import Transport

/// `GET /api/status`: the status page's one source. Cold path (a poll a second or two), so it
/// favours plain code over speed; strings from the wire (regions, errors) go through `jsonQuoted`.
///
/// Shape: `version`, `uptime_seconds`, `started_at`, `ready`, `ready_reason`, `listeners[]`,
/// `open_connections`, `ingest` (totals and `by_listener[]`), `backends[]` (config, counters,
/// `queue`, `history`), `history` (relay-wide per-second rates), `routing` (`rows[]`,
/// `refused[]`, `refused_by_region`, `sampled_out`, `routed`), `limits`, `problems[]`.
enum StatusJSON {
    static func render(_ s: RelayStatus, history: ThroughputHistory.Series, table: RoutingTable?, adminName: String) -> String {
        var o = JSONObject()
        o.string("version", s.version)
        o.number("uptime_seconds", s.uptimeSeconds)
        o.number("started_at", s.startedAtUnixSeconds)
        o.raw("ready", s.ready ? "true" : "false")
        o.string("ready_reason", s.readyReason)
        o.raw("listeners", "[" + s.listeners.map { l in
            var x = JSONObject()
            x.string("name", l.name)
            x.string("address", "\(l.host):\(l.port)")
            x.string("kind", l.name == adminName ? "admin" : "ingest")
            return x.text
        }.joined(separator: ",") + "]")
        o.int("open_connections", s.openConnections)

        var ingest = JSONObject()
        var totals = IngestStats.Snapshot()
        for v in s.ingest.values { totals.add(v) }
        ingest.int("requests", totals.requests)
        ingest.int("spans", totals.spans)
        ingest.int("bytes", totals.bytes)
        ingest.int("rejected_requests", totals.rejectedRequests)
        ingest.int("dropped_spans", totals.droppedSpans)
        ingest.raw("refused", intMap(totals.refused))
        ingest.raw("by_listener", "[" + s.ingest.sorted { ($0.key.listener, $0.key.format) < ($1.key.listener, $1.key.format) }.map { k, v in
            var x = JSONObject()
            x.string("listener", k.listener)
            x.string("format", k.format)
            x.int("requests", v.requests)
            x.int("spans", v.spans)
            x.int("bytes", v.bytes)
            x.int("rejected_requests", v.rejectedRequests)
            return x.text
        }.joined(separator: ",") + "]")
        o.raw("ingest", ingest.text)

        o.raw("backends", "[" + s.backends.map { b in
            var x = JSONObject()
            x.string("name", b.name)
            x.string("kind", b.kind)
            x.optionalString("region", b.region)
            x.string("target", b.target)
            x.string("durability", b.durability)
            x.raw("up", b.stats.up ? "true" : "false")
            x.optionalString("last_error", b.stats.lastError)
            x.int("sent_spans", b.stats.sentSpans)
            x.int("sent_requests", b.stats.sentRequests)
            x.int("sent_bytes", b.stats.sentBytes)
            x.int("failed_requests", b.stats.failedRequests)
            x.int("retried_spans", b.stats.retriedSpans)
            x.int("dropped_spans", b.stats.droppedSpans + b.queue.droppedSpans.values.reduce(0, +))
            x.number("last_latency_seconds", b.stats.lastLatencySeconds)
            var q = JSONObject()
            q.int("memory_bytes", b.queue.memoryBytes)
            q.int("memory_limit_bytes", s.queueMemoryLimitBytes)
            q.int("disk_bytes", b.queue.diskBytes)
            q.int("disk_limit_bytes", s.queueDiskLimitBytes)
            q.int("segments", b.queue.segments)
            q.int("records", b.queue.records)
            q.int("in_flight", b.queue.inFlight)
            q.number("oldest_age_seconds", b.queue.oldestAgeSeconds)
            q.number("oldest_spilled_age_seconds", b.queue.oldestSpilledAgeSeconds)
            q.int("rejected_records", b.queue.rejectedRecords)
            x.raw("queue", q.text)
            let h = history.backends[b.name]
            var hx = JSONObject()
            hx.raw("sent_per_second", numbers(h?.sentPerSecond ?? []))
            hx.raw("queued_bytes", "[" + (h?.queuedBytes ?? []).map(String.init).joined(separator: ",") + "]")
            x.raw("history", hx.text)
            return x.text
        }.joined(separator: ",") + "]")

        var hist = JSONObject()
        hist.int("interval_seconds", 1)
        hist.raw("ingest_spans_per_second", numbers(history.ingestSpansPerSecond))
        hist.raw("refused_spans_per_second", numbers(history.refusedSpansPerSecond))
        o.raw("history", hist.text)

        o.raw("routing", routing(s, table: table))
        o.raw("limits", "{" + s.limits.map { name, figures in
            jsonQuoted(name) + ":" + intMap(Dictionary(figures, uniquingKeysWith: { a, _ in a }))
        }.joined(separator: ",") + "}")
        o.raw("last_reload", s.lastReload?.json ?? "null")
        o.raw("problems", "[" + problems(s).map(jsonQuoted).joined(separator: ",") + "]")
        return o.text
    }

    /// The routing table as `check` prints it, and what routing refused.
    static func routing(_ s: RelayStatus, table: RoutingTable?) -> String {
        var r = JSONObject()
        r.raw("configured", table == nil ? "false" : "true")
        r.raw("residency_enabled", table?.residencyEnabled == true ? "true" : "false")
        r.raw("rows", "[" + (table?.rows ?? []).map { row in
            var x = JSONObject()
            x.string("mesh", row.mesh)
            x.string("resource_type", row.resource.type)
            x.string("resource", row.resource.name)
            x.string("selector", row.selector)
            x.string("backend", row.backend)
            x.optionalString("region", row.region)
            x.number("sampling", row.sampling)
            x.string("note", row.note)
            return x.text
        }.joined(separator: ",") + "]")
        var byRegion: [String: Int] = [:]
        var refused: [String] = []
        for (key, n) in s.routing.refused.sorted(by: { $0.key < $1.key }) {
            let p = key.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard p.count == 3 else { continue }
            if p[0] == "residency" { byRegion[p[1], default: 0] += n }
            var x = JSONObject()
            x.string("reason", p[0])
            x.string("region", p[1])
            x.string("backend", p[2])
            x.int("spans", n)
            refused.append(x.text)
        }
        r.raw("refused", "[" + refused.joined(separator: ",") + "]")
        r.raw("refused_by_region", intMap(byRegion))
        r.raw("sampled_out", intMap(s.routing.sampledOut))
        r.raw("routed", intMap(s.routing.routed))
        return r.text
    }

    /// What someone paged at night should read first, worst first.
    static func problems(_ s: RelayStatus) -> [String] {
        var out: [String] = []
        if !s.ready { out.append("not ready: \(s.readyReason)") }
        if let r = s.lastReload, !r.ok { out.append("the last reload was refused (the previous configuration runs): \(r.message)") }
        for b in s.backends where !b.stats.up {
            out.append("backend \(b.name) is down" + (b.stats.lastError.map { ": \($0)" } ?? ""))
        }
        for b in s.backends where b.queue.diskBytes > 0 && b.durability != "wal" {
            out.append("backend \(b.name) is spilling to disk: \(humanBytes(b.queue.diskBytes)) in \(b.queue.segments) segment\(b.queue.segments == 1 ? "" : "s")")
        }
        for b in s.backends where b.queue.oldestAgeSeconds >= 60 {
            out.append("backend \(b.name) is behind: its oldest queued record is \(Int(b.queue.oldestAgeSeconds)) s old")
        }
        for b in s.backends where s.queueDiskLimitBytes > 0 && b.queue.diskBytes * 10 >= s.queueDiskLimitBytes * 9 {
            out.append("backend \(b.name)'s spill is over 90% of its cap")
        }
        let residency = s.routing.refused.filter { $0.key.hasPrefix("residency|") }.values.reduce(0, +)
        if residency > 0 { out.append("\(residency) spans refused for data residency since start") }
        return out
    }

    /// `98286` → `96.0 KiB`.
    static func humanBytes(_ n: Int) -> String {
        var v = Double(n), unit = 0
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        while v >= 1024 && unit < units.count - 1 { v /= 1024; unit += 1 }
        return unit == 0 ? "\(n) bytes" : String(Int(v * 10) / 10) + "." + String(Int(v * 10) % 10) + " " + units[unit]
    }

    private static func intMap(_ d: [String: Int]) -> String {
        "{" + d.sorted { $0.key < $1.key }.map { "\(jsonQuoted($0.key)):\($0.value)" }.joined(separator: ",") + "}"
    }

    private static func numbers(_ a: [Double]) -> String { "[" + a.map(JSONObject.format).joined(separator: ",") + "]" }
}

/// A JSON object written field by field (keys are ours; string values are quoted and escaped).
struct JSONObject {
    private var fields: [String] = []
    var text: String { "{" + fields.joined(separator: ",") + "}" }
    mutating func raw(_ key: String, _ json: String) { fields.append(jsonQuoted(key) + ":" + json) }
    mutating func string(_ key: String, _ value: String) { raw(key, jsonQuoted(value)) }
    mutating func optionalString(_ key: String, _ value: String?) { raw(key, value.map(jsonQuoted) ?? "null") }
    mutating func int(_ key: String, _ value: Int) { raw(key, String(value)) }
    mutating func number(_ key: String, _ value: Double) { raw(key, Self.format(value)) }
    /// Finite numbers with at most 3 decimals; NaN and infinities as 0 (JSON has neither).
    static func format(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 1000).rounded() / 1000
        return r == r.rounded() && abs(r) < 1e15 ? String(Int(r)) : String(r)
    }
}
