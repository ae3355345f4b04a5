import BenchBudgets
import BenchFixtures
import Benchmark
import CSimdjsonRef
import Codecs
import Routing
import Spans

// One benchmark per stage of the data path, each over the same 1,000 spans per iteration, with
// budgets checked in (Benchmarks/Thresholds/, see Benchmarks/README.md):
//   decode  Zipkin v2 JSON, proto3, v1 JSON; Datadog v0.4, v0.5, v0.3 JSON
//           + simdjson On-Demand visiting every field of the same Zipkin JSON (the reference)
//   encode  Zipkin v2 JSON (same format: original bytes; other origin: full), proto3; Datadog v0.4
//   route   a mesh with one TrafficTrace (RoutingBenchmarks has the 1k-service table)
//   pipeline decode → route → backend encode, no sockets: zipkin→zipkin, zipkin→datadog,
//           datadog→datadog, datadog→zipkin
// Spill (zstd segments written and replayed) is BufferingBenchmarks; 1 MB payloads and their
// byte-loop / skip-scan ceilings are CodecsBenchmarks.
// Bytes per span: zipkin-v2-json 729, zipkin-proto3 548, zipkin-v1-json 2457, datadog-v04 687,
// datadog-v05 442, datadog-v03-json 815.
// Run: swift package --package-path Benchmarks --scratch-path Benchmarks/.build benchmark --target StagesBenchmarks --scale

// Names are the checked-in threshold files' names (Thresholds/StagesBenchmarks.<name>.p90.json):
// keep them stable, and without spaces or slashes — package-benchmark 1.38.1 writes those as `_`
// but looks the file up by the raw name, so `thresholds check` would find nothing.
let spanCount = 1000

let benchmarks: @Sendable () -> Void = {
    let zipkinJSON = ZipkinFixtures.v2JSON(spans: spanCount).body
    let zipkinProto = ZipkinFixtures.proto3(spans: spanCount).body
    let zipkinV1 = ZipkinFixtures.v1JSON(spans: spanCount).body
    let ddV04 = DatadogFixtures.v04(spans: spanCount).body
    let ddV05 = DatadogFixtures.v05(spans: spanCount).body
    let ddV03 = DatadogFixtures.v03JSON(spans: spanCount).body
    let config = Budgets.perThousandSpans()

    func decode(_ name: String, _ body: [UInt8], _ decoder: @escaping @Sendable ([UInt8]) throws(DecodeError) -> SpanBatch) {
        // Checked once up front, so a fixture that stops decoding fails loudly instead of timing an error path.
        let n = try! decoder(body).count
        precondition(n == spanCount, "\(name): decoded \(n) spans, expected \(spanCount)")
        Benchmark("decode-\(name)", configuration: config) { _ in
            blackHole(try decoder(body))
        }
    }
    decode("zipkin-v2-json", zipkinJSON) { b throws(DecodeError) in try ZipkinJSONV2.decode(b, metadata: BatchMetadata(format: .zipkinV2JSON)) }
    decode("zipkin-proto3", zipkinProto) { b throws(DecodeError) in try ZipkinProto3.decode(b, metadata: BatchMetadata(format: .zipkinV2Proto)) }
    decode("zipkin-v1-json", zipkinV1) { b throws(DecodeError) in try ZipkinJSONV1.decode(b, metadata: BatchMetadata(format: .zipkinV1JSON)) }
    decode("datadog-v04", ddV04) { b throws(DecodeError) in try DatadogV04.decode(b, metadata: BatchMetadata(format: .datadogV04)) }
    decode("datadog-v05", ddV05) { b throws(DecodeError) in try DatadogV05.decode(b, metadata: BatchMetadata(format: .datadogV05)) }
    decode("datadog-v03-json", ddV03) { b throws(DecodeError) in try DatadogV03.decodeJSON(b, metadata: BatchMetadata(format: .datadogV03JSON)) }

    // The reference for "decode Zipkin v2 JSON": the same bytes, every field visited by simdjson.
    let padded = zipkinJSON + [UInt8](repeating: 0x20, count: tr_simdjson_padding())
    Benchmark("reference-simdjson-zipkin-v2-json", configuration: config) { _ in
        var sum: UInt64 = 0
        let n = padded.withUnsafeBufferPointer { tr_simdjson_zipkin_scan($0.baseAddress, zipkinJSON.count, $0.count, &sum) }
        precondition(n == spanCount, "simdjson scanned \(n) spans")
        blackHole(sum)
    }

    let zipkinBatch = try! ZipkinJSONV2.decode(zipkinJSON, metadata: BatchMetadata(format: .zipkinV2JSON))
    let zipkinConstructed = { var b = zipkinBatch; b.metadata.format = .constructed; return b }()
    let ddBatch = DatadogFixtures.decodedV04(spans: spanCount)
    func encode(_ name: String, _ batch: SpanBatch, _ encoder: @escaping @Sendable (SpanBatch, inout [UInt8]) -> Void) {
        Benchmark("encode-\(name)", configuration: config) { benchmark in
            var out: [UInt8] = []
            out.reserveCapacity(4 << 20)
            benchmark.startMeasurement()
            encoder(batch, &out)
            blackHole(out.count)
        }
    }
    encode("zipkin-v2-json-same-format", zipkinBatch) { ZipkinJSONV2.encode($0, into: &$1) }
    encode("zipkin-v2-json-full", zipkinConstructed) { ZipkinJSONV2.encode($0, into: &$1) }
    encode("zipkin-proto3-full", zipkinConstructed) { ZipkinProto3.encode($0, into: &$1) }
    encode("zipkin-v2-json-from-datadog", ddBatch) { ZipkinJSONV2.encode($0, into: &$1) }
    encode("datadog-v04-from-datadog", ddBatch) { DatadogV04.encode($0, into: &$1) }
    encode("datadog-v04-from-zipkin", zipkinBatch) { DatadogV04.encode($0, into: &$1) }

    Benchmark("route-trace-all", configuration: config) { benchmark in
        var router = Router(InProcessPipeline(input: .zipkinJSON, backend: .zipkin).table)
        _ = router.route(zipkinBatch)   // warm the cache, as in steady state
        benchmark.startMeasurement()
        blackHole(router.route(zipkinBatch))
    }

    for (input, backend, body) in [(InProcessPipeline.Input.zipkinJSON, BackendConfig.Kind.zipkin, zipkinJSON),
                                   (.zipkinJSON, .datadog, zipkinJSON), (.datadogV04, .datadog, ddV04), (.datadogV04, .zipkin, ddV04)] {
        Benchmark("pipeline-\(input.rawValue)-to-\(backend.rawValue)", configuration: config) { benchmark in
            var pipeline = InProcessPipeline(input: input, backend: backend)
            pipeline.run(body)   // warm the router's cache
            benchmark.startMeasurement()
            precondition(pipeline.run(body) == spanCount)
        }
    }
}
