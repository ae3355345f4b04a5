/// Reading a backend's `export:` map (tracerelay's extension: how the exporter talks to it).
extension DocumentParser {
    /// The `export:` map of a backend (tracerelay's extension).
    func parseExport(_ e: ConfigMapping) -> ExportOptions {
        var o = ExportOptions()
        if let v = e["protocol"], let t = v.string() {
            if let p = ExportOptions.WireProtocol(rawValue: t) { o.protocolVersion = p }
            else { v.error(.invalidValue, "expected protocol http1 or h2c, got '\(t)'") }
        }
        if let v = e["compression"], let t = v.string() {
            if let c = ExportOptions.Compression(rawValue: t) { o.compression = c }
            else { v.error(.invalidValue, "expected compression none, gzip or zstd, got '\(t)'") }
        }
        if let v = e["batchSpans"]?.int(in: 1...1_000_000) { o.batchSpans = v }
        if let v = e["batchBytes"]?.byteSize() { o.batchBytes = max(1024, v) }
        if let v = e["batchDelay"]?.durationMillis() { o.batchDelayMillis = v }
        if let v = e["concurrency"]?.int(in: 1...1024) { o.concurrency = v }
        if let v = e["poolSize"]?.int(in: 1...1024) { o.poolSize = v }
        if let v = e["timeout"]?.durationMillis() { o.timeoutSeconds = max(0.001, Double(v) / 1000) }
        if let v = e["connectTimeout"]?.durationMillis() { o.connectTimeoutSeconds = max(0.001, Double(v) / 1000) }
        if let v = e["maxBackoff"]?.durationMillis() { o.maxBackoffSeconds = max(0.001, Double(v) / 1000) }
        if let v = e["downAfter"]?.int(in: 1...1_000_000) { o.downAfter = v }
        e.finish()
        return o
    }
}
