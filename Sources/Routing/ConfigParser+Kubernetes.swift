/// Kubernetes form (`apiVersion`, `kind`, `metadata`, `spec`) of every resource kind: the
/// metadata is read here, the spec by the kind's own reader.
extension DocumentParser {
    mutating func parseKubernetes(_ m: ConfigMapping, index: Int, into c: inout RelayConfig, sawRelay: inout Bool) {
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
}
