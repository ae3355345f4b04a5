import Spans
@testable import Routing

/// A span for tests: mesh tags as span tags, an optional service name and trace id.
struct TestSpan {
    var tags: [(String, String)] = []
    var service: String? = nil
    var trace: TraceID = TraceID(low: 0x1234)
    var debug = false
    var priority: Int8? = nil
}

func makeBatch(_ specs: [TestSpan], requestTags: [(String, String)] = []) -> SpanBatch {
    var b = SpanBatch(metadata: BatchMetadata(format: .constructed, requestTags: requestTags.map { (key: $0.0, value: $0.1) }))
    for (i, s) in specs.enumerated() {
        var span = Span(traceID: s.trace, id: UInt64(i + 1))
        span.tags = b.addTags(s.tags.map { Tag(key: b.intern($0.0), value: b.intern($0.1)) })
        if let svc = s.service { span.localEndpoint.serviceName = b.intern(svc) }
        if s.debug { span.flags.insert(.debug) }
        span.samplingPriority = s.priority
        b.spans.append(span)
    }
    return b
}

func table(_ yaml: String) throws -> RoutingTable { try RoutingTable(RelayConfig.parse(yaml: yaml)) }

/// Routes one span and returns the backend name (nil when refused).
func backendName(_ t: RoutingTable, _ s: TestSpan, requestTags: [(String, String)] = []) -> String? {
    let d = t.route(0, in: makeBatch([s], requestTags: requestTags))
    return d.backend.map { t.backends[$0].name }
}

func zipkin(_ name: String, region: String? = nil, sampling: Double? = nil) -> String {
    """
        - name: \(name)
          type: zipkin\(region.map { "\n      region: \($0)" } ?? "")\(sampling.map { "\n      sampling: \($0)" } ?? "")
          conf:
            url: http://\(name):9411/api/v2/spans
    """
}

func trafficTrace(_ name: String, _ selectors: [[(String, String)]], backend: String?, time: String? = nil) -> String {
    var s = "---\ntype: TrafficTrace\nname: \(name)\nmesh: default\n"
    if let time { s += "modificationTime: \(time)\n" }
    s += "selectors:\n"
    for sel in selectors {
        s += "  - match:\n"
        for (k, v) in sel { s += "      \(k): '\(v)'\n" }
    }
    if let backend { s += "conf:\n  backend: \(backend)\n" }
    return s
}

