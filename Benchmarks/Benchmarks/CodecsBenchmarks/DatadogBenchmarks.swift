import Benchmark
import Codecs
import Foundation
import Spans

/// A ~1 MB v0.4 payload shaped like ddtrace's: traces of 8 spans, 128-bit ids, ~11 meta
/// entries and 4 metrics per span (values drawn from a fixed seed so runs are comparable).
let ddPayload: (body: [UInt8], spans: Int) = {
    var batch = SpanBatch(metadata: BatchMetadata(format: .datadogV04))
    var state: UInt64 = 0x5eed
    func rnd() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
    let services = ["checkout", "cart", "payments", "inventory", "frontend"].map { batch.intern($0) }
    let names = ["web.request", "postgres.query", "redis.command", "http.request", "grpc.client"].map { batch.intern($0) }
    let keys = ["runtime-id", "language", "env", "version", "component", "http.method", "http.url",
                "http.status_code", "_dd.p.dm", "db.system", "peer.service"].map { batch.intern($0) }
    let metricKeys = ["_dd.top_level", "_dd.agent_psr", "process_id", "_dd.measured"].map { batch.intern($0) }
    var out: [UInt8] = []
    var spanCount = 0
    var trace = 0
    while out.count < 1_000_000 {
        trace += 1
        let tid = TraceID(high: 0x6566_0000_0000_0000 | rnd(), low: rnd() | 1)
        var parent: UInt64 = 0
        batch.spans.removeAll(keepingCapacity: true)
        for i in 0..<8 {
            var s = Span(traceID: tid, id: rnd() | 1)
            s.parentID = parent
            parent = s.id
            s.name = names[i % names.count]
            s.localEndpoint.serviceName = services[Int(rnd() % 5)]
            s.resource = batch.intern("GET /api/v\(rnd() % 3)/items/{id}/\(rnd() % 1000)")
            s.type = batch.intern(i == 0 ? "web" : "http")
            s.startNanos = 1_732_000_000_000_000_000 + Int64(rnd() % 1_000_000_000)
            s.durationNanos = Int64(rnd() % 10_000_000)
            s.kind = i == 0 ? .server : .client
            s.samplingPriority = i == 0 ? 1 : nil
            if rnd() % 20 == 0 { s.flags.insert(.error) }
            let t0 = UInt32(batch.tags.count)
            for k in keys {
                batch.tags.append(Tag(key: k, value: batch.intern("value-\(rnd() % 100_000)-\(String(repeating: "x", count: Int(rnd() % 24)))")))
            }
            s.tags = t0..<UInt32(batch.tags.count)
            let m0 = UInt32(batch.metrics.count)
            for k in metricKeys { batch.metrics.append(Metric(key: k, value: Double(rnd() % 1000))) }
            s.metrics = m0..<UInt32(batch.metrics.count)
            batch.spans.append(s)
        }
        // Encode one trace at a time and splice it into the outer array.
        var one: [UInt8] = []
        DatadogV04.encode(batch, into: &one)
        out.append(contentsOf: one.dropFirst())   // drop the 1-element array header
        spanCount += 8
    }
    var body: [UInt8] = []
    MessagePackWriter.writeArrayHeader(trace, into: &body)
    body.append(contentsOf: out)
    return (body, spanCount)
}()

/// The same payload compressed by the real command-line tools.
func ddCompressed(_ tool: String, _ args: [String]) -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
    p.arguments = args
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    try! p.run()
    let body = ddPayload.body
    let writer = Thread { inPipe.fileHandleForWriting.write(Data(body)); try? inPipe.fileHandleForWriting.close() }
    writer.start()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Array(out)
}

let ddGzip = ddCompressed("gzip", ["-c", "-6"])
let ddZstd = ddCompressed("zstd", ["-q", "-c", "-3"])

/// Reference: walk every value of the payload with the bare msgpack reader, touching nothing.
func msgpackSkipScan(_ body: [UInt8]) -> Int {
    body.withUnsafeBytes { raw in
        var r = MessagePackReader(raw)
        try! r.skip()
        return r.position
    }
}

func datadogBenchmarks() {
    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(3), maxIterations: 2000)
    print("Datadog v0.4 payload: \(ddPayload.body.count) bytes, \(ddPayload.spans) spans; gzip \(ddGzip.count) B, zstd \(ddZstd.count) B")

    Benchmark("Datadog v0.4 decode (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try! DatadogV04.decode(ddPayload.body, metadata: BatchMetadata(format: .datadogV04)))
        }
    }
    Benchmark("msgpack skip-scan reference (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(msgpackSkipScan(ddPayload.body)) }
    }
    let decoded = try! DatadogV04.decode(ddPayload.body, metadata: BatchMetadata(format: .datadogV04))
    Benchmark("Datadog v0.4 encode (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            var out: [UInt8] = []
            DatadogV04.encode(decoded, into: &out)
            blackHole(out)
        }
    }
    Benchmark("gzip decompress (1 MB out)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! ContentDecoding.decode(ddGzip, contentEncoding: "gzip")) }
    }
    Benchmark("zstd decompress (1 MB out)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! ContentDecoding.decode(ddZstd, contentEncoding: "zstd")) }
    }
    Benchmark("memcpy reference (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            var copy = [UInt8](repeating: 0, count: ddPayload.body.count)
            copy.withUnsafeMutableBytes { d in ddPayload.body.withUnsafeBytes { s in d.copyMemory(from: s) } }
            blackHole(copy)
        }
    }
}
