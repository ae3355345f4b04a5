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
    package static func parse(yaml: String, relaySection: (ConfigMapping) -> Void) throws(ConfigError) -> RelayConfig {
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
                let doc = ConfigNode(node: node, path: "", sink: sink)
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
    let relaySection: (ConfigMapping) -> Void
    /// Backends in definition order, with the first definition kept for each name.
    var backends: [BackendConfig] = []

    init(sink: IssueSink, relaySection: @escaping (ConfigMapping) -> Void) {
        self.sink = sink
        self.relaySection = relaySection
    }

    mutating func parseDocument(_ m: ConfigMapping, index: Int, into c: inout RelayConfig, sawRelay: inout Bool) {
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

    private func nameField(_ m: ConfigMapping, _ kind: String) -> String? {
        guard let n = m.required("name", "the \(kind)'s name")?.nonEmptyString() else { return nil }
        return n
    }

    private func timeField(_ m: ConfigMapping) -> Int64? {
        var t: Int64? = nil
        for key in ["creationTime", "modificationTime"] {
            guard let v = m[key], let s = v.string() else { continue }
            guard let ns = parseRFC3339(s) else { v.error(.invalidValue, "expected an RFC 3339 time like 2024-05-01T10:00:00Z, got '\(s)'"); continue }
            t = ns // modificationTime, read last, wins over creationTime
        }
        return t
    }

    /// Records a backend; a name defined twice must mean the same settings.
    mutating func addBackend(_ backend: BackendConfig, at m: ConfigMapping) {
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
}
