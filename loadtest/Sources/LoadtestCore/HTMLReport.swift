import Foundation

/// A self-contained HTML page (inline SVG, no scripts, no network): a table on top, then
/// throughput and latency percentiles over time.
public enum HTMLReport {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A line chart of one or more series over `t` (seconds): the title, a legend line under
    /// it, the lines drawn in order (a later one on top; the last dashed when there are several,
    /// so an equal line under it — p99 = max in a second of few requests — still shows).
    static func chart(title: String, unit: String, series: [(name: String, color: String, points: [(Double, Double)])]) -> String {
        let w = 760.0, h = 240.0, left = 70.0, bottom = 30.0, top = 44.0, right = 16.0
        let all = series.flatMap(\.points)
        guard !all.isEmpty else { return "<p>\(escape(title)): no data</p>" }
        let maxT = max(all.map(\.0).max() ?? 1, 1)
        let maxY = max(all.map(\.1).max() ?? 1, 1) * 1.1
        func x(_ t: Double) -> Double { left + t / maxT * (w - left - right) }
        func y(_ v: Double) -> Double { h - bottom - v / maxY * (h - bottom - top) }
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(w))' height='\(Int(h))' font-family='sans-serif' font-size='11'>"
        svg += "<text x='\(left)' y='14' font-size='13' font-weight='bold'>\(escape(title))</text>"
        for i in 0...4 {
            let v = maxY * Double(i) / 4, yy = y(v)
            svg += "<line x1='\(left)' y1='\(yy)' x2='\(w - right)' y2='\(yy)' stroke='#ddd'/>"
            svg += "<text x='\(left - 6)' y='\(yy + 4)' text-anchor='end'>\(String(format: v >= 100 ? "%.0f" : "%.2f", v))</text>"
        }
        svg += "<text x='\(w - right)' y='\(h - 6)' text-anchor='end'>\(String(format: "%.0f", maxT)) s</text><text x='\(left)' y='\(h - 6)'>0 s</text>"
        svg += "<text x='12' y='\(h / 2)' transform='rotate(-90 12 \(h / 2))' text-anchor='middle'>\(escape(unit))</text>"
        var lx = left
        for (i, s) in series.enumerated() {
            let dash = series.count > 1 && i == series.count - 1 ? " stroke-dasharray='6 4'" : ""
            let pts = s.points.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ")
            svg += "<polyline fill='none' stroke='\(s.color)' stroke-width='2'\(dash) points='\(pts)'/>"
            svg += "<rect x='\(lx)' y='22' width='10' height='10' fill='\(s.color)'/><text x='\(lx + 14)' y='31'>\(escape(s.name))</text>"
            lx += 90
        }
        return svg + "</svg>"
    }

    static func page(title: String, rows: [(String, String)], verdict: (passed: Bool, reasons: [String])?, timeline: [TimelinePoint]) -> String {
        var out = "<!doctype html><html><head><meta charset='utf-8'><title>\(escape(title))</title>"
        out += "<style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin-bottom:18px}"
        out += "td{border:1px solid #ccc;padding:4px 10px}td:first-child{font-weight:bold;background:#f6f6f6}"
        out += ".pass{color:#080}.fail{color:#b00}</style></head><body><h1>\(escape(title))</h1>"
        if let verdict {
            out += "<h2 class='\(verdict.passed ? "pass" : "fail")'>\(verdict.passed ? "PASS" : "FAIL")</h2>"
            if !verdict.reasons.isEmpty { out += "<ul>" + verdict.reasons.map { "<li>\(escape($0))</li>" }.joined() + "</ul>" }
        }
        out += "<table>" + rows.map { "<tr><td>\(escape($0.0))</td><td>\(escape($0.1))</td></tr>" }.joined() + "</table>"
        out += chart(title: "Accepted spans per second", unit: "spans/s",
                     series: [("spans/s", "#1f77b4", timeline.map { ($0.t, $0.spansPerSecond) })])
        out += "<br>"
        out += chart(title: "Latency per second (from intended send times)", unit: "ms",
                     series: [("p50", "#2ca02c", timeline.map { ($0.t, Double($0.p50Micros) / 1000) }),
                              ("p99", "#ff7f0e", timeline.map { ($0.t, Double($0.p99Micros) / 1000) }),
                              ("max", "#d62728", timeline.map { ($0.t, Double($0.maxMicros) / 1000) })])
        return out + "</body></html>\n"
    }
}

extension SendReport {
    var rows: [(String, String)] {
        func ms(_ us: UInt64) -> String { String(format: "%.2f ms", Double(us) / 1000) }
        return [
            ("target", "\(format) over \(http) to \(target)"),
            ("connections × streams", "\(connections) × \(streams), \(batchSpans) spans/request"),
            ("offered", rateSpansPerSecond.map { String(format: "%.0f spans/s", $0) } ?? "max"),
            ("sent", "\(sentSpans) spans, \(sentRequests) requests in \(elapsedSeconds) s"),
            ("accepted", "\(acceptedSpans) spans (\(acceptedRequests) requests); failed requests \(failedRequests)"),
            ("status codes", statusCodes.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")),
            ("throughput", String(format: "%.0f spans/s", spansPerSecond)),
            ("generator CPU", String(format: "%.2f s (%.0f spans per CPU second)", cpuSeconds, spansPerCPUSecond)),
            ("latency", "p50 \(ms(latencyMicros.p50)), p90 \(ms(latencyMicros.p90)), p99 \(ms(latencyMicros.p99)), p99.9 \(ms(latencyMicros.p999)), max \(ms(latencyMicros.max))"),
        ]
    }

    /// The run as a self-contained HTML page.
    public func html() -> String {
        HTMLReport.page(title: "loadtest send: \(format)", rows: rows, verdict: nil, timeline: timeline)
    }
}

extension ScenarioVerdict {
    /// The verdict on top, then the load's table and charts.
    public func html(send: SendReport) -> String {
        var rows: [(String, String)] = [
            ("sent / accepted / delivered", "\(sent) / \(accepted) / \(delivered)"),
            ("lost / duplicated / altered / violations", "\(lost) / \(duplicated) / \(altered) / \(violations)"),
        ]
        if let u = deliveredUnacknowledged, u > 0 { rows.append(("delivered, never acknowledged", "\(u)")) }
        if relayRestarts > 0 { rows.append(("relay kills (kill -9, restart)", "\(relayRestarts)")) }
        if let c = relayCPUSeconds, let per = spansPerRelayCoreSecond {
            rows.append(("relay CPU", String(format: "%.2f s → %.0f spans/s per relay core", c, per)))
        }
        for s in sinks where sinks.count > 1 || s.duplicates > 0 {
            var text = "\(s.uniqueSpans) spans, \(s.duplicates) duplicates"
            if s.failedOnPurpose > 0 { text += ", \(s.failedOnPurpose) requests failed on purpose" }
            if let l = s.deliveryLagMicros {
                text += String(format: ", delivery lag p50 %.1f ms p99 %.1f ms", Double(l.p50) / 1000, Double(l.p99) / 1000)
            }
            rows.append(("sink \(s.name)", text))
        }
        for n in notes { rows.append(("check", n)) }
        return HTMLReport.page(title: "loadtest run \(scenario)", rows: rows + send.rows, verdict: (passed, reasons), timeline: send.timeline)
    }
}
