/// Turns a `RelayConfig` into the flat arrays `RoutingTable` routes with, and finds reference
/// and residency errors. Runs once per (re)load, so clarity beats speed here.
struct TableCompiler {
    let config: RelayConfig
    var issues: [ConfigIssue] = []
    var arena = ArenaBuilder()
    var keys: [RoutingTable.KeyDef] = []
    var keyIndex: [String: Int] = [:]
    var aliases: [RoutingTable.Alias] = []
    var conds: [RoutingTable.Cond] = []
    var meshes: [RoutingTable.CompiledMesh] = []
    var tts: [RoutingTable.CompiledTT] = []
    var mts: [RoutingTable.CompiledMT] = []
    var zoneRegions: [(zone: Bytes, region: Int)] = []
    var regionNames: [String] = []
    var regionBytes: [Bytes] = []
    var backendRegion: [Int] = []
    var fallbackByRegion: [Int] = []
    var tagSets: [[TagPair]] = [[]]
    var defaultMesh = 0
    var ttMesh: [Int] = []
    var selectorsByService: [[UInt8]: [RoutingTable.SelectorRef]] = [:]
    var selectorsAnyService: [RoutingTable.SelectorRef] = []

    init(config: RelayConfig) { self.config = config }

    /// Span tag names that carry each mesh tag, in priority order (earlier wins).
    static let spanAliases: [String: [String]] = [
        "kuma.io/mesh": ["kuma.io/mesh", "kuma.mesh"],
        "kuma.io/service": ["kuma.io/service"],
        "kuma.io/zone": ["kuma.io/zone", "kuma.zone", "zone"],
        "region": ["region"],
        "kuma.io/workload": ["kuma.io/workload", "kuma.workload"],
        "kuma.io/node": ["kuma.io/node", "node_id"],
    ]

    mutating func key(_ name: String) -> Int {
        if let i = keyIndex[name] { return i }
        let i = keys.count
        keys.append(.init(name: name))
        keyIndex[name] = i
        for (rank, alias) in (Self.spanAliases[name] ?? [name]).enumerated() {
            let b = arena.add(alias)
            let w = alias.utf8.withContiguousStorageIfAvailable { loadWord(UnsafeRawPointer($0.baseAddress!), $0.count) }
                ?? Array(alias.utf8).withUnsafeBytes { loadWord($0.baseAddress!, $0.count) }
            aliases.append(.init(key: i, rank: rank, bytes: b, word: w))
        }
        return i
    }

    func error(_ code: ConfigIssue.Code, doc: Int?, _ resource: String?, _ path: String, _ msg: String) -> ConfigIssue {
        ConfigIssue(.error, code, document: doc, resource: resource, path: path, message: msg)
    }

    mutating func compile() {
        _ = key("kuma.io/mesh"); _ = key("kuma.io/service"); _ = key("kuma.io/zone"); _ = key("region")
        // Regions named anywhere.
        var names = Set<String>()
        if let r = config.region { names.insert(r) }
        names.formUnion(config.regions.keys)
        names.formUnion(config.zoneRegions.values)
        for b in config.backends { if let r = b.region { names.insert(r) } }
        regionNames = names.sorted()
        regionBytes = regionNames.map { arena.add($0) }
        let regionIdx = Dictionary(uniqueKeysWithValues: regionNames.enumerated().map { ($1, $0) })
        for (z, r) in config.zoneRegions.sorted(by: { $0.key < $1.key }) { zoneRegions.append((arena.add(z), regionIdx[r]!)) }
        backendRegion = config.backends.map { $0.region.map { regionIdx[$0]! } ?? -1 }
        let backendIdx = Dictionary(config.backends.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })

        fallbackByRegion = Array(repeating: -1, count: regionNames.count)
        for (region, settings) in config.regions.sorted(by: { $0.key < $1.key }) {
            guard let fb = settings.fallbackBackend else { continue }
            guard let bi = backendIdx[fb] else {
                issues.append(error(.unknownReference, doc: nil, "Relay", "regions.\(region).fallbackBackend", "no backend named '\(fb)'"))
                continue
            }
            if config.backends[bi].region != region {
                issues.append(error(.residency, doc: nil, "Relay", "regions.\(region).fallbackBackend",
                                    "fallback backend '\(fb)' must be pinned to region \(region) (it has \(config.backends[bi].region.map { "region " + $0 } ?? "no region"))"))
                continue
            }
            fallbackByRegion[regionIdx[region]!] = bi
        }

        // Meshes.
        for m in config.meshes {
            var def = -1
            if let d = m.defaultBackend {
                if let bi = backendIdx[d] { def = bi } else {
                    issues.append(error(.unknownReference, doc: m.document, "Mesh '\(m.name)'", "tracing.defaultBackend", "no backend named '\(d)' in this mesh"))
                }
            } else if let first = m.backends.first {
                def = backendIdx[first] ?? -1  // Kuma: without defaultBackend the first backend is used
            }
            meshes.append(.init(name: arena.add(m.name), nameString: m.name, defaultBackend: def, tts: [], mts: []))
        }
        defaultMesh = meshes.count == 1 ? 0 : (config.meshes.firstIndex { $0.name == "default" } ?? (meshes.isEmpty ? 0 : 0))
        let meshIdx = Dictionary(config.meshes.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })

        func backendAllowed(_ name: String, mesh: String) -> Bool {
            guard let b = config.backend(named: name) else { return false }
            return b.definedIn == "Relay" || b.definedIn == "Mesh '\(mesh)'" || b.definedIn.hasPrefix("MeshTrace")
        }

        // TrafficTraces.
        for (i, t) in config.trafficTraces.enumerated() {
            let res = "TrafficTrace '\(t.name)'"
            var backend = -1
            if let b = t.backend {
                if let bi = backendIdx[b], backendAllowed(b, mesh: t.mesh) { backend = bi } else {
                    issues.append(error(.unknownReference, doc: t.document, res, "conf.backend", "no backend named '\(b)' in Mesh '\(t.mesh)'"))
                }
            }
            var ranges: [Range<Int>] = []
            var exact: [Int] = []
            for (si, sel) in t.selectors.enumerated() {
                let ref = RoutingTable.SelectorRef(tt: i, selector: si)
                if let svc = sel.first(where: { $0.key == "kuma.io/service" && $0.value != "*" }) {
                    selectorsByService[Array(svc.value.utf8), default: []].append(ref)
                } else {
                    selectorsAnyService.append(ref)
                }
                let start = conds.count
                var ex = 0
                for p in sel {
                    let w = p.value == "*"
                    if !w { ex += 1 }
                    conds.append(.init(key: key(p.key), value: arena.add(p.value), wildcard: w))
                }
                ranges.append(start..<conds.count)
                exact.append(ex)
            }
            tts.append(.init(selectors: ranges, exact: exact, backend: backend, time: t.modificationTime, document: t.document))
            ttMesh.append(meshIdx[t.mesh] ?? -1)
            if let mi = meshIdx[t.mesh] { meshes[mi].tts.append(i) } else {
                issues.append(error(.unknownReference, doc: t.document, res, "mesh", "no Mesh named '\(t.mesh)' in this file"))
            }
        }

        // MeshTraces: rank by (targetRef specificity, number of tags, name) — the higher wins.
        let order = config.meshTraces.indices.sorted { a, b in
            let x = config.meshTraces[a], y = config.meshTraces[b]
            return (x.targetKind.specificity, x.targetTags.count, x.name, x.document) < (y.targetKind.specificity, y.targetTags.count, y.name, y.document)
        }
        var rank = Array(repeating: 0, count: order.count)
        for (r, i) in order.enumerated() { rank[i] = r }
        for (i, m) in config.meshTraces.enumerated() {
            let res = "MeshTrace '\(m.name)'"
            let start = conds.count
            if let n = m.targetName { conds.append(.init(key: key("kuma.io/service"), value: arena.add(n), wildcard: false)) }
            if m.targetKind == .meshSubset || m.targetKind == .meshServiceSubset {
                for p in m.targetTags { conds.append(.init(key: key(p.key), value: arena.add(p.value), wildcard: false)) }
            }
            var backend = -1
            if let b = m.backends.first { backend = backendIdx[b] ?? -1 }
            var tagSet = 0
            if !m.literalTags.isEmpty { tagSet = tagSets.count; tagSets.append(m.literalTags) }
            mts.append(.init(conds: start..<conds.count, rank: rank[i], backend: backend,
                             threshold: m.samplingOverall.map { .init(percent: $0) }, tagSet: tagSet))
            if let mi = meshIdx[m.mesh] { meshes[mi].mts.append(i) } else {
                issues.append(error(.unknownReference, doc: m.document, res, "mesh", "no Mesh named '\(m.mesh)' in this file"))
            }
        }
        checkResidency()
    }

    /// The region a selector pins its spans to, from an exact `region` or zone tag.
    func pinnedRegion(_ tags: [TagPair]) -> (region: String, because: String)? {
        for p in tags where p.value != "*" {
            if p.key == "region" { return (p.value, "region: \(p.value)") }
            if p.key == "kuma.io/zone" || p.key == "kuma.zone" || p.key == "zone", let r = config.zoneRegions[p.value] {
                return (r, "\(p.key): \(p.value) → \(r)")
            }
        }
        return nil
    }

    /// Errors for explicit contradictions; warnings where wildcards can carry other regions'
    /// spans to a pinned backend.
    mutating func checkResidency() {
        let multiRegion = regionNames.count >= 2
        func consider(_ tags: [TagPair], backendName: String?, res: String, doc: Int, path: String) {
            guard let backendName, let b = config.backend(named: backendName) else { return }
            if let pin = pinnedRegion(tags) {
                if let br = b.region, br != pin.region {
                    issues.append(ConfigIssue(.error, .residency, document: doc, resource: res, path: path,
                                              message: "selects spans of region \(pin.region) (\(pin.because)) but targets backend '\(b.name)' pinned to region \(br)"))
                } else if b.region == nil, multiRegion {
                    issues.append(ConfigIssue(.warning, .residency, document: doc, resource: res, path: path,
                                              message: "selects spans of region \(pin.region) (\(pin.because)) but backend '\(b.name)' has no region: they go to \(pin.region)'s fallback backend or are refused"))
                }
            } else if let br = b.region, multiRegion {
                let others = regionNames.filter { $0 != br }
                let fate = others.map { r in config.regions[r]?.fallbackBackend.map { "\(r) → fallback '\($0)'" } ?? "\(r) → refused" }
                let what = tags.isEmpty && res.hasPrefix("Mesh ") ? "spans that match no policy, of any region, go to default backend" : "wildcard selector can carry spans of several regions to backend"
                issues.append(ConfigIssue(.warning, .residency, document: doc, resource: res, path: path,
                                          message: "\(what) '\(b.name)' pinned to \(br); other regions' spans are rerouted: \(fate.joined(separator: ", "))"))
            }
        }
        for t in config.trafficTraces {
            let backend = t.backend ?? meshDefaultName(t.mesh)
            for (i, sel) in t.selectors.enumerated() {
                consider(sel, backendName: backend, res: "TrafficTrace '\(t.name)'", doc: t.document, path: "selectors[\(i)]")
            }
        }
        for m in config.meshTraces {
            consider(m.targetTags, backendName: m.backends.first, res: "MeshTrace '\(m.name)'", doc: m.document, path: "spec.targetRef")
        }
        for m in config.meshes {
            consider([], backendName: meshDefaultName(m.name), res: "Mesh '\(m.name)'", doc: m.document, path: "tracing.defaultBackend")
        }
    }

    func meshDefaultName(_ mesh: String) -> String? {
        guard let m = config.meshes.first(where: { $0.name == mesh }) else { return nil }
        return m.defaultBackend ?? m.backends.first
    }
}
