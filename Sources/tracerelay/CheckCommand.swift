import ArgumentParser
import Relay
import Routing

/// `tracerelay check --config FILE`: validates a configuration and prints its routing table,
/// or every error with document, path and line. Exit status 0 when usable, 1 otherwise.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a config file and print the routing table (selectors → backend, region, sampling).")

    @Option(name: .long, help: "The configuration file (Relay document and Kuma resources).")
    var config: String

    @Flag(name: .long, help: "Treat warnings as errors (exit 1 when there are any).")
    var strict = false

    func run() throws {
        let parsed: RelayFile
        let table: RoutingTable
        do {
            parsed = try RelayFile.load(path: config)
            table = try RoutingTable(parsed.routing)
        } catch {
            printError("\(config): invalid configuration (\(error.issues.count) error\(error.issues.count == 1 ? "" : "s"))")
            for issue in error.issues { printError("  " + issue.description) }
            throw ExitCode(1)
        }
        // Listener TLS files, tokens files and `peers` rules are checked the way `serve` checks them.
        let settings: RelayService.Settings
        do { settings = try RelayService.Settings(file: parsed, table: table, overrides: RelayOverrides()) } catch {
            printError("\(config): invalid configuration: \(error)")
            throw ExitCode(1)
        }
        print(renderCheck(table, relay: parsed.relay, path: config, tokens: settings.ingest.tokens))
        if strict, !table.warnings.isEmpty { throw ExitCode(1) }
    }
}

/// The `check` report: relay settings, backends, regions, routing rows, warnings.
func renderCheck(_ t: RoutingTable, relay r: RelayDocument, path: String, tokens: [String: ListenerTokens] = [:]) -> String {
    let c = t.config
    var out: [String] = []
    out.append("\(path): OK" + (t.warnings.isEmpty ? "" : " (\(t.warnings.count) warning\(t.warnings.count == 1 ? "" : "s"))"))
    let listeners: [String] = r.listeners.map { l in
        let tags = l.tags.isEmpty ? "" : " [" + l.tags.map(\.description).joined(separator: ",") + "]"
        let tls = l.tls.map { $0.clientCA == nil ? " (https)" : $0.requireClientCertificate ? " (https, client certificate required)" : " (https, client certificate optional)" } ?? ""
        return l.name + "@" + l.address + tls + (l.auth == nil ? "" : " (token required)") + tags
    }
    out.append("relay: region \(c.region ?? "(none)"), admin \(r.adminAddress), listeners " + listeners.joined(separator: ", ")
               + (r.trustUpstreamTags ? ", trusts X-Tracerelay-Tags" : ""))
    out.append("")
    out.append("backends:")
    out += table([["NAME", "TYPE", "REGION", "SAMPLING", "TARGET", "DEFINED IN"]]
                 + t.backends.map { [$0.name, $0.kind.rawValue, $0.region ?? "-", percent($0.sampling),
                                     $0.target + ($0.auth.map { " (token from \($0.tokenFile))" } ?? ""), $0.definedIn] })
    if !t.residencyEnabled {
        out.append("")
        out.append("residency: off — no backend has a region and no regions are configured, so every span is delivered")
        out.append("  whatever region it names (give a backend `region:` to pin spans to their region).")
    } else if !t.regionNames.isEmpty {
        out.append("")
        out.append("regions (spans of a known region only go to backends of that region):")
        var rows = [["REGION", "ZONES", "OTHER BACKEND SELECTED →"]]
        for r in t.regionNames {
            let zones = c.zoneRegions.filter { $0.value == r }.keys.sorted().joined(separator: ",")
            rows.append([r, zones.isEmpty ? "-" : zones, c.regions[r]?.fallbackBackend.map { "fallback \($0)" } ?? "refused (spans_refused_residency_total)"])
        }
        out += table(rows)
    }
    if !r.peers.isEmpty {
        out.append("")
        let pinned = r.listeners.filter { $0.tls?.clientCA != nil }.map(\.name)
        out.append("peers (client certificate identity → what it may send; on listeners " + (pinned.isEmpty ? "(none: no listener has tls.clientCA)" : pinned.joined(separator: ", "))
                   + "; other regions refused as spans_refused_total{reason=\"identity\"}, unmatched certificates get 403):")
        out += table([["MATCH", "ZONE", "REGION"]] + r.peers.map { p in
            [p.match, p.zone ?? "-", p.zone.map { c.zoneRegions[$0] ?? "?" } ?? (p.region ?? "-")]
        })
    }
    for l in r.listeners {
        // Names, zones and regions only: never a token or its digest.
        guard let set = tokens[l.name]?.current else { continue }
        out.append("")
        out.append("ingest tokens of listener \(l.name) (\(set.path); `Authorization: Bearer`, or `DD-Api-Key` on Datadog endpoints; "
                   + "none or a wrong one gets 401; a pinned token's other regions are refused as spans_refused_total{reason=\"identity\"}):")
        out += set.entries.isEmpty ? ["  (no tokens: every request is refused)"] : table([["NAME", "ZONE", "REGION", "TAGS"]] + set.entries.map { e in
            [e.rule.name, e.rule.zone ?? "-", e.region ?? "any", e.rule.tags.isEmpty ? "-" : e.rule.tags.map(\.description).joined(separator: ",")]
        })
    }
    out.append("")
    out.append("routing (per mesh, in precedence order: the first row that matches a span decides):")
    out += table([["MESH", "RESOURCE", "SELECTOR", "BACKEND", "REGION", "SAMPLING", "NOTE"]]
                 + t.rows.map { [$0.mesh, $0.resource.description, $0.selector, $0.backend, $0.region ?? "-", percent($0.sampling), $0.note] })
    if !t.warnings.isEmpty {
        out.append("")
        out.append("warnings:")
        out += t.warnings.map { "  " + $0.description }
    }
    return out.joined(separator: "\n")
}

private func percent(_ v: Double) -> String {
    (v == v.rounded() ? String(Int(v)) : String(v)) + "%"
}

/// Left-aligned columns, two spaces apart, indented by two.
func table(_ rows: [[String]]) -> [String] {
    guard let n = rows.first?.count else { return [] }
    var width = Array(repeating: 0, count: n)
    for r in rows { for (i, cell) in r.enumerated() { width[i] = max(width[i], cell.count) } }
    return rows.map { r in
        var line = " "
        for (i, cell) in r.enumerated() {
            line += " " + cell + (i == n - 1 ? "" : String(repeating: " ", count: width[i] - cell.count + 1))
        }
        while line.last == " " { line.removeLast() }
        return line
    }
}

func printError(_ s: String) {
    var stderr = StandardError()
    print(s, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var s = string
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = writeFD(2, buf.baseAddress! + off, buf.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
private let writeFD = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let writeFD = Darwin.write
#endif
