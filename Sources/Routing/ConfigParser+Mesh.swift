/// The Mesh resource: its tracing backends (Kuma's `tracing.backends`), which policies name.
extension DocumentParser {
    mutating func parseMeshBody(_ m: ConfigMapping, name: String, index: Int, into c: inout RelayConfig) {
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

    func parseMeshBackend(_ b: ConfigMapping, mesh: String) -> BackendConfig? {
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
                backend.url = hasEndpointList(conf) ? conf["url"]?.nonEmptyString() : conf.required("url", "the collector's URL")?.nonEmptyString()
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
                if !hasEndpointList(conf) {
                    backend.address = conf.required("address", "the Datadog agent's address")?.nonEmptyString()
                    backend.port = conf.required("port", "the Datadog agent's port")?.int(in: 1...65535)
                }
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
        if let conf { parseEndpoints(conf, into: &backend) }
        if let conf {
            backend.tls = parseBackendTLS(conf, backend)
            backend.auth = parseBackendAuth(conf, backend)
        }
        conf?.finish()
        if let e = b["export"]?.map() { backend.export = parseExport(e) }
        return backend
    }
}
