import Basics
import ArgumentParser
import Relay
import Routing
import Spans

/// `tracerelay explain --config FILE --tag k=v …`: shows which resource matches a span with
/// these mesh tags, which backend it goes to, the region decision and the sampling decision, and why.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain how a span with the given mesh tags is routed, pinned and sampled.")

    @Option(name: .long, help: "The configuration file.")
    var config: String

    @Option(name: .customLong("tag"), help: "A span tag as key=value, e.g. kuma.io/service=web or kuma.zone=zone-eu-1 (repeatable).")
    var tags: [String] = []

    @Option(name: .customLong("request-tag"), help: "A request-level tag (listener tag or X-Tracerelay-Tags), key=value (repeatable).")
    var requestTags: [String] = []

    @Option(name: .customLong("trace-id"), help: "Trace id in hex (16 or 32 digits) for the sampling decision.")
    var traceID: String?

    @Flag(name: .long, help: "The span carries Zipkin's debug flag.")
    var debug = false

    @Option(name: .customLong("sampling-priority"), help: "Upstream Datadog sampling priority.")
    var samplingPriority: Int?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        for t in tags + requestTags where !t.contains("=") || t.hasPrefix("=") {
            throw ValidationError("--tag expects key=value, got '\(t)'")
        }
        if let traceID, TraceID(hex: traceID) == nil { throw ValidationError("--trace-id expects 1 to 32 hex digits, got '\(traceID)'") }
        if let p = samplingPriority, !(-128...127).contains(p) { throw ValidationError("--sampling-priority expects -128...127") }
    }

    func run() throws {
        let table: RoutingTable
        do {
            table = try RoutingTable(RelayConfig.load(path: config))
        } catch {
            printError("\(config): invalid configuration")
            for issue in error.issues { printError("  " + issue.description) }
            throw ExitCode(1)
        }
        let e = table.explain(tags: tags.map(pair), requestTags: requestTags.map(pair), traceID: traceID.flatMap { TraceID(hex: $0) },
                              debug: debug, samplingPriority: samplingPriority.map { Int8($0) })
        print(json ? explanationJSON(e) : explanationText(e))
    }

    private func pair(_ s: String) -> TagPair {
        let i = s.firstIndex(of: "=")!
        return TagPair(String(s[..<i]), String(s[s.index(after: i)...]))
    }
}

func explanationText(_ e: Explanation) -> String {
    var out: [String] = []
    out.append("tags:      " + (e.resolvedTags.isEmpty ? "(none)" : e.resolvedTags.map(\.description).joined(separator: ", ")))
    out.append("matched:   " + (e.matched?.description ?? "(nothing)"))
    if let sel = e.selectedBackend, sel != e.backend { out.append("selected:  \(sel)") }
    out.append("backend:   " + (e.backend.map { $0 + (e.backendRegion.map { " (region \($0))" } ?? " (no region)") } ?? "(none)"))
    out.append("region:    " + (e.region ?? "unknown (not pinned)"))
    if let r = e.refused { out.append("refused:   \(r)") }
    out.append("sampled:   \(e.sampled) — \(e.samplingReason)")
    if !e.addedTags.isEmpty { out.append("adds tags: " + e.addedTags.map(\.description).joined(separator: ", ")) }
    if !e.candidates.isEmpty {
        out.append("policies considered:")
        for c in e.candidates { out.append("  \(c.matched ? "match   " : "no match") \(c.resource)" + (c.detail.isEmpty ? "" : " (\(c.detail))")) }
    }
    out.append("why:")
    out += e.notes.map { "  - " + $0 }
    return out.joined(separator: "\n")
}
