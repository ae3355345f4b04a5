internal import Yams
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension RelayConfig {
    /// Reads and parses a configuration file (see `parse(yaml:)`).
    public static func load(path: String) throws(ConfigError) -> RelayConfig {
        try parse(yaml: readText(path))
    }

    /// A configuration file's text, or an error naming the file.
    package static func readText(_ path: String) throws(ConfigError) -> String {
        guard let text = readWholeFile(path) else {
            throw ConfigError(ConfigIssue(.error, .syntax, message: "cannot read config file '\(path)': \(String(cString: strerror(errno)))"))
        }
        return text
    }

    /// The Relay document's keys that are not routing's (the Relay module reads them).
    package static let relayOnlyKeys = ["listeners", "admin", "adminAddress", "spill", "trustUpstreamTags"]

    /// Parses the routing part of a file; the Relay document's other keys are accepted unread.
    public static func parse(yaml: String) throws(ConfigError) -> RelayConfig {
        try parse(yaml: yaml) { m in for k in relayOnlyKeys { m.ignore(k) } }
    }

    /// Parses a multi-document YAML file: an optional `Relay` document and Kuma resources
    /// (`Mesh`, `TrafficTrace`, `MeshTrace`) in Universal (`type:`) or Kubernetes
    /// (`apiVersion`/`kind`/`metadata`/`spec`) form. Unknown fields become warnings in
    /// `diagnostics`; invalid values throw, listing every error with document, path and line.
    ///
    /// `relaySection` is called with the Relay document (its `spec` in Kubernetes form) once,
    /// before its unknown fields are reported: what it reads counts as known, and what it
    /// reports lands in the same list of errors and warnings.
    package static func parse(yaml: String, relaySection: (YMap) -> Void) throws(ConfigError) -> RelayConfig {
        let sink = IssueSink()
        var config = RelayConfig()
        var sawRelay = false
        var docs: [Node] = []
        do {
            var seq = try Yams.compose_all(yaml: yaml)
            while let n = seq.next() { docs.append(n) }
            if let e = seq.error { throw e }
        } catch {
            throw ConfigError(ConfigIssue(.error, .syntax, document: docs.count + 1, line: yamlLine(error),
                                          message: "not valid YAML: \(yamlProblem(error))"))
        }
        withoutActuallyEscaping(relaySection) { relaySection in
            var parser = DocumentParser(sink: sink, relaySection: relaySection)
            for (i, node) in docs.enumerated() {
                sink.document = i + 1
                sink.resource = nil
                let doc = YValue(node: node, path: "", sink: sink)
                if doc.isNull { continue }
                guard let map = doc.map() else { continue }
                parser.parseDocument(map, index: i + 1, into: &config, sawRelay: &sawRelay)
            }
            sink.document = nil
            sink.resource = nil
            parser.finishBackends(into: &config)
        }
        // In file order (readers report inner fields first).
        let ordered = sink.issues.enumerated().sorted { a, b in
            (a.element.document ?? 0, a.element.line ?? 0, a.offset) < (b.element.document ?? 0, b.element.line ?? 0, b.offset)
        }.map(\.element)
        config.diagnostics = ordered.filter { $0.severity == .warning }
        let errors = ordered.filter { $0.severity == .error }
        if !errors.isEmpty { throw ConfigError(errors) }
        return config
    }
}

private func yamlLine(_ error: any Error) -> Int? {
    guard let e = error as? YamlError else { return nil }
    switch e {
    case .scanner(_, _, let m, _), .parser(_, _, let m, _), .composer(_, _, let m, _): return m.line
    default: return nil
    }
}

private func yamlProblem(_ error: any Error) -> String {
    guard let e = error as? YamlError else { return "\(error)" }
    switch e {
    case .scanner(let c, let p, let m, _), .parser(let c, let p, let m, _), .composer(let c, let p, let m, _):
        return (c.map { "\($0.text) " } ?? "") + p + " at line \(m.line), column \(m.column)"
    default: return "\(e)"
    }
}

func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        if bytes.count > 64 << 20 { errno = EFBIG; return nil }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Turns documents into config values, one resource kind per method.
struct DocumentParser {
    let sink: IssueSink
    /// Reads the Relay document's non-routing keys (the Relay module's settings).
    let relaySection: (YMap) -> Void
    /// Backends in definition order, with the first definition kept for each name.
    var backends: [BackendConfig] = []

    init(sink: IssueSink, relaySection: @escaping (YMap) -> Void) {
        self.sink = sink
        self.relaySection = relaySection
    }

    mutating func parseDocument(_ m: YMap, index: Int, into c: inout RelayConfig, sawRelay: inout Bool) {
        // Universal form: `type:` at the top. Kubernetes form: `apiVersion`, `kind`, `metadata`, `spec`.
        if m.has("type") {
            guard let type = m["type"]?.string() else { return }
            switch type {
            case "Relay":
                sink.resource = "Relay"
                if sawRelay { sink.add(.error, .conflict, "type", m.line, "only one Relay document is allowed per file") }
                sawRelay = true
                parseRelay(m, into: &c)
            case "Mesh":
                guard let name = nameField(m, "Mesh") else { return }
                sink.resource = "Mesh '\(name)'"
                m.ignore("creationTime", "modificationTime", "labels")
                parseMeshBody(m, name: name, index: index, into: &c)
            case "TrafficTrace":
                guard let name = nameField(m, "TrafficTrace") else { return }
                sink.resource = "TrafficTrace '\(name)'"
                let mesh = m["mesh"]?.nonEmptyString() ?? "default"
                let time = timeField(m)
                m.ignore("labels")
                parseTrafficTraceBody(m, name: name, mesh: mesh, time: time, index: index, into: &c)
            case "MeshTrace":
                guard let name = nameField(m, "MeshTrace") else { return }
                sink.resource = "MeshTrace '\(name)'"
                let mesh = m["mesh"]?.nonEmptyString() ?? "default"
                m.ignore("creationTime", "modificationTime", "labels")
                if let spec = m.required("spec", "the policy")?.map() {
                    parseMeshTraceSpec(spec, name: name, mesh: mesh, index: index, into: &c)
                    spec.finish()
                }
            default:
                sink.add(.warning, .ignoredResource, "type", m.line, "resource type '\(type)' is not used by tracerelay; ignored")
                return
            }
            m.finish()
        } else if m.has("kind") {
            parseKubernetes(m, index: index, into: &c, sawRelay: &sawRelay)
        } else {
            sink.add(.error, .missingField, "", m.line, "document has neither 'type' (Universal form) nor 'kind' (Kubernetes form)")
        }
    }

    private func nameField(_ m: YMap, _ kind: String) -> String? {
        guard let n = m.required("name", "the \(kind)'s name")?.nonEmptyString() else { return nil }
        return n
    }

    private func timeField(_ m: YMap) -> Int64? {
        var t: Int64? = nil
        for key in ["creationTime", "modificationTime"] {
            guard let v = m[key], let s = v.string() else { continue }
            guard let ns = parseRFC3339(s) else { v.error(.invalidValue, "expected an RFC 3339 time like 2024-05-01T10:00:00Z, got '\(s)'"); continue }
            t = ns // modificationTime, read last, wins over creationTime
        }
        return t
    }

    // MARK: Kubernetes form

    private mutating func parseKubernetes(_ m: YMap, index: Int, into c: inout RelayConfig, sawRelay: inout Bool) {
        guard let kind = m["kind"]?.string() else { return }
        let apiVersion = m["apiVersion"]?.string()
        let meta = m["metadata"]?.map()
        let name = meta?["name"]?.nonEmptyString()
        meta?.ignore("namespace", "uid", "resourceVersion", "generation", "managedFields", "finalizers", "ownerReferences")
        let labels = meta?["labels"]?.stringPairs() ?? []
        let annotations = meta?["annotations"]?.stringPairs() ?? []
        var time: Int64? = nil
        if let v = meta?["creationTimestamp"], let s = v.string() {
            time = parseRFC3339(s)
            if time == nil { v.error(.invalidValue, "expected an RFC 3339 time, got '\(s)'") }
        }
        _ = annotations
        meta?.finish()
        if kind == "Relay" {
            sink.resource = "Relay"
            if sawRelay { sink.add(.error, .conflict, "kind", m.line, "only one Relay document is allowed per file") }
            sawRelay = true
            if let spec = m["spec"]?.map() { parseRelay(spec, into: &c); spec.finish() }
            m.finish()
            return
        }
        guard ["Mesh", "TrafficTrace", "MeshTrace"].contains(kind) else {
            sink.add(.warning, .ignoredResource, "kind", m.line, "resource kind '\(kind)' is not used by tracerelay; ignored")
            return
        }
        if let apiVersion, !apiVersion.hasPrefix("kuma.io/") {
            sink.add(.warning, .invalidValue, "apiVersion", m.line, "expected apiVersion kuma.io/v1alpha1, got '\(apiVersion)'")
        }
        guard let name else {
            sink.add(.error, .missingField, "metadata.name", m.line, "missing required field 'metadata.name' (the \(kind)'s name)")
            return
        }
        sink.resource = "\(kind) '\(name)'"
        // Old-style policies carry `mesh:` at the top; targetRef policies use the kuma.io/mesh label.
        let mesh = m["mesh"]?.nonEmptyString() ?? labels.first(where: { $0.key == "kuma.io/mesh" })?.value ?? "default"
        let spec = m["spec"]?.map()
        switch kind {
        case "Mesh":
            if let spec { parseMeshBody(spec, name: name, index: index, into: &c); spec.finish() }
            else { c.meshes.append(MeshResource(name: name, document: index)) }
        case "TrafficTrace":
            if let spec { parseTrafficTraceBody(spec, name: name, mesh: mesh, time: time, index: index, into: &c); spec.finish() }
            else { sink.add(.error, .missingField, "spec", m.line, "missing required field 'spec'") }
        default:
            if let spec { parseMeshTraceSpec(spec, name: name, mesh: mesh, index: index, into: &c); spec.finish() }
            else { sink.add(.error, .missingField, "spec", m.line, "missing required field 'spec'") }
        }
        m.finish()
    }

    // MARK: Mesh

    private mutating func parseMeshBody(_ m: YMap, name: String, index: Int, into c: inout RelayConfig) {
        var mesh = MeshResource(name: name, document: index)
        if c.meshes.contains(where: { $0.name == name }) {
            sink.add(.error, .conflict, "name", m.line, "Mesh '\(name)' is defined twice")
        }
        // Other Mesh sections (mtls, logging, metrics, networking…) are Kuma's business, not ours.
        m.ignore("mtls", "logging", "metrics", "networking", "routing", "constraints", "skipCreatingInitialPolicies",
                 "meshServices")
        if let tracing = m["tracing"]?.map() {
            mesh.defaultBackend = tracing["defaultBackend"]?.nonEmptyString()
            for item in tracing["backends"]?.list() ?? [] {
                guard let b = item.map() else { continue }
                if let backend = parseMeshBackend(b, mesh: name) {
                    mesh.backends.append(backend.name)
                    addBackend(backend, at: b)
                }
                b.finish()
            }
            tracing.finish()
        }
        c.meshes.append(mesh)
    }

    private func parseMeshBackend(_ b: YMap, mesh: String) -> BackendConfig? {
        let name = b.required("name", "the backend's name")?.nonEmptyString()
        let typeV = b.required("type", "zipkin or datadog")
        var kind: BackendConfig.Kind? = nil
        if let t = typeV?.string() {
            kind = BackendConfig.Kind(rawValue: t.lowercased())
            if kind == nil { typeV?.error(.invalidValue, "expected backend type zipkin, datadog, tracerelay, file, log or discard, got '\(t)'") }
        }
        let sampling = b["sampling"]?.double(in: 0...100) ?? 100
        let region = b["region"]?.nonEmptyString()
        guard let name, let kind else { return nil }
        var backend = BackendConfig(name: name, kind: kind, region: region, sampling: sampling, definedIn: "Mesh '\(mesh)'")
        let conf = b["conf"]?.map()
        switch kind {
        case .zipkin, .tracerelay:
            if let conf {
                backend.url = conf.required("url", "the collector's URL")?.nonEmptyString()
                backend.traceId128bit = conf["traceId128bit"]?.bool() ?? false
                if let v = conf["apiVersion"], let s = v.string() {
                    if ["httpJson", "httpProto", "httpJsonV1"].contains(s) { backend.apiVersion = s }
                    else { v.error(.invalidValue, "expected apiVersion httpJson, httpProto or httpJsonV1, got '\(s)'") }
                }
                conf.ignore("sharedSpanContext")
                if let u = backend.url, !(u.hasPrefix("http://") || u.hasPrefix("https://")) {
                    conf["url"]?.error(.invalidValue, "expected an http:// or https:// URL, got '\(u)'")
                }
            } else {
                b.sink.add(.error, .missingField, b.path.isEmpty ? "conf" : b.path + ".conf", b.line, "missing required field 'conf' with 'url'")
            }
        case .datadog:
            if let conf {
                backend.address = conf.required("address", "the Datadog agent's address")?.nonEmptyString()
                backend.port = conf.required("port", "the Datadog agent's port")?.int(in: 1...65535)
                backend.splitService = conf["splitService"]?.bool() ?? false
            } else {
                b.sink.add(.error, .missingField, b.path.isEmpty ? "conf" : b.path + ".conf", b.line, "missing required field 'conf' with 'address' and 'port'")
            }
        case .log, .discard:
            break
        case .file:
            if let conf {
                backend.path = conf.required("path", "the directory the span files go to")?.nonEmptyString()
                if let v = conf["maxFileBytes"]?.byteSize() { backend.maxFileBytes = max(1 << 16, v) }
            } else {
                b.sink.add(.error, .missingField, b.path.isEmpty ? "conf" : b.path + ".conf", b.line, "missing required field 'conf' with 'path'")
            }
        }
        if kind == .tracerelay, let conf {
            for item in conf["urls"]?.list() ?? [] {
                guard let u = item.nonEmptyString() else { continue }
                if u.hasPrefix("http://") || u.hasPrefix("https://") { backend.urls.append(u) }
                else { item.error(.invalidValue, "expected an http:// URL, got '\(u)'") }
            }
            if let u = backend.url, !backend.urls.contains(u) { backend.urls.insert(u, at: 0) }
            if backend.url == nil, let first = backend.urls.first { backend.url = first }
        }
        conf?.finish()
        if let e = b["export"]?.map() { backend.export = parseExport(e) }
        return backend
    }

    /// Records a backend; a name defined twice must mean the same settings.
    mutating func addBackend(_ backend: BackendConfig, at m: YMap) {
        if let existing = backends.first(where: { $0.name == backend.name }) {
            if !existing.sameSettings(as: backend) {
                sink.add(.error, .conflict, m.path, m.line,
                         "backend '\(backend.name)' is also defined in \(existing.definedIn) with other settings; tracerelay keeps one queue per backend name, so give it another name")
            }
            return
        }
        backends.append(backend)
    }

    func finishBackends(into c: inout RelayConfig) { c.backends = backends }

    // MARK: TrafficTrace

    private func parseTrafficTraceBody(_ m: YMap, name: String, mesh: String, time: Int64?, index: Int, into c: inout RelayConfig) {
        var selectors: [[TagPair]] = []
        if let list = m.required("selectors", "which dataplanes' traffic this policy traces")?.list() {
            if list.isEmpty { sink.add(.error, .invalidValue, m.path.isEmpty ? "selectors" : m.path + ".selectors", m.line, "expected at least one selector") }
            for item in list {
                guard let sel = item.map() else { continue }
                if let match = sel.required("match", "tags to match")?.stringPairs() {
                    if match.isEmpty { sel["match"]?.error(.invalidValue, "expected at least one tag in 'match'") }
                    selectors.append(match)
                }
                sel.finish()
            }
        }
        var backend: String? = nil
        if let conf = m["conf"]?.map() {
            backend = conf["backend"]?.nonEmptyString()
            conf.finish()
        }
        c.trafficTraces.append(TrafficTraceResource(name: name, mesh: mesh, selectors: selectors, backend: backend,
                                                    modificationTime: time, document: index))
    }

    // MARK: MeshTrace

    private mutating func parseMeshTraceSpec(_ spec: YMap, name: String, mesh: String, index: Int, into c: inout RelayConfig) {
        var mt = MeshTraceResource(name: name, mesh: mesh, document: index)
        if let tr = spec["targetRef"]?.map() {
            if let kv = tr.required("kind", "Mesh, MeshSubset, MeshService or MeshServiceSubset"), let k = kv.string() {
                if let kind = MeshTraceResource.TargetKind(rawValue: k) { mt.targetKind = kind }
                else { kv.error(.invalidValue, "expected targetRef kind Mesh, MeshSubset, MeshService or MeshServiceSubset, got '\(k)'") }
            }
            if mt.targetKind == .meshService || mt.targetKind == .meshServiceSubset {
                mt.targetName = tr.required("name", "the kuma.io/service value")?.nonEmptyString()
            } else {
                tr.ignore("name")
            }
            mt.targetTags = tr["tags"]?.stringPairs() ?? []
            if mt.targetKind == .meshSubset, mt.targetTags.isEmpty {
                sink.add(.warning, .invalidValue, tr.path + ".tags", tr.line, "MeshSubset without tags selects the whole mesh")
            }
            tr.ignore("namespace", "labels", "proxyTypes", "sectionName")
            tr.finish()
        }
        if let d = spec.required("default", "the tracing settings")?.map() {
            if let list = d["backends"]?.list() {
                if list.count > 1 {
                    sink.add(.warning, .invalidValue, d.path + ".backends", d.line, "Kuma supports one MeshTrace backend; tracerelay uses the first and ignores the rest")
                }
                for (i, item) in list.enumerated() {
                    guard let b = item.map() else { continue }
                    if let backend = parseMeshTraceBackend(b, policy: name, index: i, count: list.count) {
                        if i == 0 { mt.backends.append(backend.name) }
                        addBackend(backend, at: b)
                    }
                    b.finish()
                }
            } else {
                sink.add(.error, .missingField, d.path + ".backends", d.line, "missing required field 'backends' (an empty list switches tracing off)")
            }
            if let s = d["sampling"]?.map() {
                mt.samplingOverall = s["overall"]?.double(in: 0...100)
                mt.samplingClient = s["client"]?.double(in: 0...100)
                mt.samplingRandom = s["random"]?.double(in: 0...100)
                s.finish()
            }
            for item in d["tags"]?.list() ?? [] {
                guard let t = item.map() else { continue }
                let tagName = t.required("name", "the tag's name")?.nonEmptyString()
                if let lit = t["literal"] {
                    if let v = lit.string(), let tagName { mt.literalTags.append(TagPair(tagName, v)) }
                } else if let h = t["header"]?.map() {
                    let header = h.required("name", "the header's name")?.nonEmptyString()
                    let def = h["default"]?.string()
                    if let header, let tagName { mt.headerTags.append(.init(name: tagName, header: header, defaultValue: def)) }
                    h.finish()
                } else {
                    sink.add(.error, .missingField, t.path, t.line, "a tag needs 'literal' or 'header'")
                }
                t.finish()
            }
            d.finish()
        }
        c.meshTraces.append(mt)
    }

    private func parseMeshTraceBackend(_ b: YMap, policy: String, index: Int, count: Int) -> BackendConfig? {
        let explicitName = b["name"]?.nonEmptyString()
        let name = explicitName ?? (count > 1 ? "\(policy)-\(index)" : policy)
        let region = b["region"]?.nonEmptyString()
        var typeName = b["type"]?.string()
        // Early MeshTrace versions had no `type:`; the one present key says it.
        if typeName == nil {
            if b.has("zipkin") { typeName = "Zipkin" } else if b.has("datadog") { typeName = "Datadog" }
            else if b.has("openTelemetry") { typeName = "OpenTelemetry" }
        }
        var backend = BackendConfig(name: name, kind: .zipkin, region: region, definedIn: "MeshTrace '\(policy)'")
        switch typeName {
        case "Zipkin":
            guard let z = b.required("zipkin", "the Zipkin settings")?.map() else { return nil }
            backend.url = z.required("url", "the collector's URL")?.nonEmptyString()
            backend.traceId128bit = z["traceId128bit"]?.bool() ?? false
            backend.apiVersion = z["apiVersion"]?.string()
            z.ignore("sharedSpanContext")
            z.finish()
        case "Datadog":
            backend.kind = .datadog
            guard let z = b.required("datadog", "the Datadog settings")?.map() else { return nil }
            backend.url = z.required("url", "the agent's URL, e.g. http://127.0.0.1:8126")?.nonEmptyString()
            backend.splitService = z["splitService"]?.bool() ?? false
            z.finish()
        case "OpenTelemetry":
            b.ignore("openTelemetry")
            sink.add(.error, .invalidValue, b.path + ".type", b.line, "OpenTelemetry backends are not supported by tracerelay; expected Zipkin or Datadog")
            return nil
        case nil:
            sink.add(.error, .missingField, b.path + ".type", b.line, "missing required field 'type' (Zipkin or Datadog)")
            return nil
        case let other?:
            sink.add(.error, .invalidValue, b.path + ".type", b.line, "expected backend type Zipkin or Datadog, got '\(other)'")
            return nil
        }
        if let e = b["export"]?.map() { backend.export = parseExport(e) }
        return backend
    }

    // MARK: Relay

    private mutating func parseRelay(_ m: YMap, into c: inout RelayConfig) {
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
