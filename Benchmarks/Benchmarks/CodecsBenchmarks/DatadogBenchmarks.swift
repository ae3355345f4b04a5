import BenchFixtures
import Benchmark
import Codecs
import Foundation
import Spans

/// A ~1 MB v0.4 payload shaped like ddtrace's (BenchFixtures/DatadogFixtures.swift).
let ddPayload = DatadogFixtures.v04(targetBytes: 1_000_000)

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
