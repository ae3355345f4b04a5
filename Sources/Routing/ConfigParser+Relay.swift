/// The Relay document's routing part: region, regions, zone map and relay-only backends (the
/// Relay module reads the rest through `relaySection`).
extension DocumentParser {
    mutating func parseRelay(_ m: ConfigMapping, into c: inout RelayConfig) {
        m.ignore("name")
        relaySection(m)
        c.region = m["region"]?.nonEmptyString()
        if let rm = m["regions"]?.map() {
            for (name, v) in rm.pairs {
                rm.used.insert(name)
                guard let r = v.map() else { continue }
                c.regions[name] = RegionSettings(fallbackBackend: r["fallbackBackend"]?.nonEmptyString())
                r.finish()
            }
        }
        for p in m["zoneRegions"]?.stringPairs() ?? [] { c.zoneRegions[p.key] = p.value }
        // Relay-only backends (a central relay, a log sink) that policies can name.
        for item in m["backends"]?.list() ?? [] {
            guard let b = item.map() else { continue }
            if var backend = parseMeshBackend(b, mesh: "") {
                backend.definedIn = "Relay"
                addBackend(backend, at: b)
            }
            b.finish()
        }
    }
}

/// `host:port` or `[v6]:port` with a port in 0...65535.
package func isHostPort(_ s: String) -> Bool {
    guard let colon = s.lastIndex(of: ":") else { return false }
    let host = s[..<colon]
    guard let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port), !host.isEmpty else { return false }
    return true
}
