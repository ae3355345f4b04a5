/// The MeshTrace policy (Kuma's targetRef tracing policy) and its inline backends.
extension DocumentParser {
    mutating func parseMeshTraceSpec(_ spec: ConfigMapping, name: String, mesh: String, index: Int, into c: inout RelayConfig) {
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

    func parseMeshTraceBackend(_ b: ConfigMapping, policy: String, index: Int, count: Int) -> BackendConfig? {
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
            parseSecurity(z, into: &backend)
        case "Datadog":
            backend.kind = .datadog
            guard let z = b.required("datadog", "the Datadog settings")?.map() else { return nil }
            backend.url = z.required("url", "the agent's URL, e.g. http://127.0.0.1:8126")?.nonEmptyString()
            backend.splitService = z["splitService"]?.bool() ?? false
            parseSecurity(z, into: &backend)
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

    /// `tls:` and `auth:` beside an inline backend's `url` (the `zipkin:`/`datadog:` map), read
    /// as a Mesh backend's `conf.tls` and `conf.auth` are; then the map's unknown fields.
    private func parseSecurity(_ z: ConfigMapping, into backend: inout BackendConfig) {
        backend.tls = parseBackendTLS(z, backend)
        backend.auth = parseBackendAuth(z, backend)
        z.finish()
    }
}
