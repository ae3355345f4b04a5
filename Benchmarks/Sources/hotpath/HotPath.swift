import BenchFixtures
import CSimdjsonRef
import Codecs
import Glibc
import Routing
import Spans

/// Runs one hot path over a 1,000-span fixture, for `valgrind --tool=callgrind` (instructions.sh):
///   hotpath PATH ITERATIONS
/// The fixture is built and the path run once (warm-up) before the ITERATIONS counted ones, so
/// instructions(ITERATIONS) − instructions(0) is the path's own cost.
enum HotPath {
    static let spans = 1000

    static let paths: [(name: String, what: String)] = [
        ("decode-zipkin-json", "ZipkinJSONV2.decode, Envoy-like spans (15 tags)"),
        ("simdjson-zipkin-json", "simdjson On-Demand visiting every field of the same JSON (reference)"),
        ("decode-zipkin-proto", "ZipkinProto3.decode, the same spans"),
        ("decode-dd-v04", "DatadogV04.decode, ddtrace-like spans (11 meta, 4 metrics)"),
        ("decode-dd-v05", "DatadogV05.decode, the same spans"),
        ("route", "Router.route of the decoded Zipkin spans (one mesh, warm cache)"),
        ("encode-zipkin-json", "ZipkinJSONV2.encode, full (spans not from Zipkin JSON)"),
        ("encode-zipkin-proto", "ZipkinProto3.encode, full"),
        ("encode-dd", "DatadogV04.encode of Datadog-origin spans"),
        ("encode-dd-from-zipkin", "DatadogV04.encode of Zipkin spans (translation)"),
        ("pipeline-zipkin-zipkin", "decode Zipkin JSON, route, encode for a Zipkin backend"),
        ("pipeline-datadog-datadog", "decode Datadog v0.4, route, encode for a Datadog backend"),
        ("tls-roundtrip", "the Zipkin JSON body encrypted by a TLSEngine client, decrypted by a server in 64 KiB reads, 202 back"),
    ]

    static func main() {
        let args = CommandLine.arguments
        guard args.count == 3, let iterations = Int(args[2]), iterations >= 0, let work = step(args[1]) else {
            var usage = "usage: hotpath PATH ITERATIONS   (\(spans) spans per iteration)\npaths:\n"
            for p in paths { usage += "  \(p.name.padding(toLength: 26, withPad: " ", startingAt: 0)) \(p.what)\n" }
            printError(usage)
            exit(2)
        }
        var sink = work()   // warm-up: first-use allocations and caches stay out of the difference
        for _ in 0..<iterations { sink &+= work() }
        print("\(args[1]) iterations=\(iterations) spans/iteration=\(spans) check=\(sink)")
    }

    /// The work of one iteration for `name` (fixtures built now, outside any iteration).
    static func step(_ name: String) -> (() -> Int)? {
        switch name {
        case "decode-zipkin-json":
            let body = ZipkinFixtures.v2JSON(spans: spans).body
            return { try! ZipkinJSONV2.decode(body, metadata: BatchMetadata(format: .zipkinV2JSON)).count }
        case "simdjson-zipkin-json":
            let json = ZipkinFixtures.v2JSON(spans: spans).body
            let padded = json + [UInt8](repeating: 0x20, count: tr_simdjson_padding())
            return {
                var sum: UInt64 = 0
                let n = padded.withUnsafeBufferPointer { tr_simdjson_zipkin_scan($0.baseAddress, json.count, $0.count, &sum) }
                return Int(n) &+ Int(truncatingIfNeeded: sum & 1)
            }
        case "decode-zipkin-proto":
            let body = ZipkinFixtures.proto3(spans: spans).body
            return { try! ZipkinProto3.decode(body, metadata: BatchMetadata(format: .zipkinV2Proto)).count }
        case "decode-dd-v04":
            let body = DatadogFixtures.v04(spans: spans).body
            return { try! DatadogV04.decode(body, metadata: BatchMetadata(format: .datadogV04)).count }
        case "decode-dd-v05":
            let body = DatadogFixtures.v05(spans: spans).body
            return { try! DatadogV05.decode(body, metadata: BatchMetadata(format: .datadogV05)).count }
        case "route":
            let batch = zipkinBatch()
            var router = Router(InProcessPipeline(input: .zipkinJSON, backend: .zipkin).table)
            return { router.route(batch).routedCount }
        case "encode-zipkin-json":
            var batch = zipkinBatch()
            batch.metadata.format = .constructed
            return encoder(batch) { ZipkinJSONV2.encode($0, into: &$1) }
        case "encode-zipkin-proto":
            var batch = zipkinBatch()
            batch.metadata.format = .constructed
            return encoder(batch) { ZipkinProto3.encode($0, into: &$1) }
        case "encode-dd":
            return encoder(DatadogFixtures.decodedV04(spans: spans)) { DatadogV04.encode($0, into: &$1) }
        case "encode-dd-from-zipkin":
            return encoder(zipkinBatch()) { DatadogV04.encode($0, into: &$1) }
        case "pipeline-zipkin-zipkin":
            let body = ZipkinFixtures.v2JSON(spans: spans).body
            var pipeline = InProcessPipeline(input: .zipkinJSON, backend: .zipkin)
            return { pipeline.run(body) }
        case "pipeline-datadog-datadog":
            let body = DatadogFixtures.v04(spans: spans).body
            var pipeline = InProcessPipeline(input: .datadogV04, backend: .datadog)
            return { pipeline.run(body) }
        case "tls-roundtrip":
            return TLSPath.roundTrip(spans: spans)
        default:
            return nil
        }
    }

    static func zipkinBatch() -> SpanBatch {
        try! ZipkinJSONV2.decode(ZipkinFixtures.v2JSON(spans: spans).body, metadata: BatchMetadata(format: .zipkinV2JSON))
    }

    static func encoder(_ batch: SpanBatch, _ encode: @escaping (SpanBatch, inout [UInt8]) -> Void) -> () -> Int {
        var out: [UInt8] = []
        out.reserveCapacity(4 << 20)
        return {
            out.removeAll(keepingCapacity: true)
            encode(batch, &out)
            return out.count
        }
    }
}
