/// The TrafficTrace policy (Kuma's selector-based tracing policy).
extension DocumentParser {
    func parseTrafficTraceBody(_ m: ConfigMapping, name: String, mesh: String, time: Int64?, index: Int, into c: inout RelayConfig) {
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
}
