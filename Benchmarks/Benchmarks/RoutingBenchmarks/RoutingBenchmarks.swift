import BenchBudgets
import Benchmark
import Routing
import Spans

// Routing decisions for 1k services × 50 TrafficTrace resources, two regions.
// Each iteration routes one batch of `spansPerBatch` spans; spans/s = iterations/s × spansPerBatch.
// Run: swift package --package-path Benchmarks benchmark --target RoutingBenchmarks
//
// "scan only" is the reference: it touches every span's tags as routing must (no decision),
// so routing cost is reported as a ratio against it, measured in the same run.

let spansPerBatch = 10_000

func benchConfig() -> String {
    var y = """
    type: Relay
    zoneRegions: {eu-1: eu, eu-2: eu, us-1: us, us-2: us}
    regions:
      eu: {fallbackBackend: eu-a}
    ---
    type: Mesh
    name: default
    tracing:
      defaultBackend: eu-a
      backends:

    """
    for (name, region) in [("eu-a", "eu"), ("eu-b", "eu"), ("us-a", "us"), ("us-b", "us")] {
        y += "    - {name: \(name), type: zipkin, region: \(region), sampling: 50, conf: {url: 'http://\(name):9411/api/v2/spans'}}\n"
    }
    for i in 0..<48 {
        y += "---\ntype: TrafficTrace\nname: tt-\(i)\nmesh: default\nselectors:\n"
        for j in 0..<21 { y += "  - match: {kuma.io/service: svc-\(i * 21 + j)}\n" }
        y += "conf: {backend: \(i % 2 == 0 ? "eu-a" : "eu-b")}\n"
    }
    y += "---\ntype: TrafficTrace\nname: us-1\nmesh: default\nselectors:\n  - match: {kuma.io/service: '*', kuma.io/zone: us-1}\nconf: {backend: us-a}\n"
    y += "---\ntype: TrafficTrace\nname: us-2\nmesh: default\nselectors:\n  - match: {kuma.io/service: '*', kuma.io/zone: us-2}\nconf: {backend: us-b}\n"
    return y
}

/// Envoy-like spans: 8 tags each, 1000 services, 4 zones, random trace ids. `run` spans in a
/// row share a service (a sidecar reports its own spans in one request); run 1 = every span
/// from a random service, the worst case for the cache.
func benchBatch(run: Int = 1) -> SpanBatch {
    var b = SpanBatch(metadata: BatchMetadata(format: .zipkinV2JSON))
    var state: UInt64 = 0x1234_5678
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 27)
    }
    let zones = ["eu-1", "eu-2", "us-1", "us-2"]
    var svc = 0
    for i in 0..<spansPerBatch {
        var span = Span(traceID: TraceID(high: next(), low: next()), id: UInt64(i + 1))
        if i % run == 0 { svc = Int(next() % 1000) }
        span.localEndpoint.serviceName = b.intern("svc-\(svc)")
        let tags: [(String, String)] = [
            ("component", "proxy"), ("node_id", "dp-\(svc)"), ("http.method", "GET"), ("http.status_code", "200"),
            ("upstream_cluster", "svc-\((svc + 1) % 1000)"), ("response_flags", "-"),
            ("kuma.zone", zones[svc % 4]), ("kuma.mesh", "default"),
        ]
        span.tags = b.addTags(tags.map { Tag(key: b.intern($0.0), value: b.intern($0.1)) })
        b.spans.append(span)
    }
    return b
}

let benchmarks: @Sendable () -> Void = {
    // Budgets checked in: Benchmarks/Thresholds/RoutingBenchmarks.*.json (see Benchmarks/README.md);
    // names without spaces, which package-benchmark 1.38.1 cannot match to threshold files.
    Benchmark.defaultConfiguration = .init(metrics: Budgets.metrics, maxDuration: .seconds(2), maxIterations: 1_000, thresholds: Budgets.tolerances)
    let table = try! RoutingTable(RelayConfig.parse(yaml: benchConfig()))
    let batch = benchBatch()
    let sidecarBatch = benchBatch(run: 50)

    Benchmark("routing-scan-only-reference-10k-spans") { benchmark in
        for _ in benchmark.scaledIterations {
            var sum = 0
            batch.storage.withUnsafeBytes { _ in
                for s in batch.spans {
                    for t in batch.tags(of: s) { sum &+= Int(t.key.count) &+ Int(t.value.count) }
                    sum &+= Int(s.localEndpoint.serviceName.count)
                }
            }
            blackHole(sum)
        }
    }

    Benchmark("routing-cached-10k-spans-1k-services-50-traffictraces") { benchmark in
        var router = Router(table)
        _ = router.route(batch)  // warm the cache: tags repeat across batches in steady state
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(router.route(batch)) }
    }

    Benchmark("routing-cached-10k-spans-runs-of-50-per-service") { benchmark in
        var router = Router(table)
        _ = router.route(sidecarBatch)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(router.route(sidecarBatch)) }
    }

    Benchmark("routing-cold-cache-per-batch-10k-spans-1k-services-50-traffictraces") { benchmark in
        for _ in benchmark.scaledIterations {
            var router = Router(table)
            blackHole(router.route(batch))
        }
    }
}
