import BenchFixtures
import Benchmark
import Codecs
import Spans

nonisolated(unsafe) private var printed = false

func zipkinBenchmarks() {
    // Envoy-like spans (~500 B, 15 tags), enough of them for a ~1 MB body.
    let (json, spanCount) = ZipkinFixtures.v2JSON(targetBytes: 1 << 20)
    let decoded = try! ZipkinJSONV2.decode(json, metadata: BatchMetadata(format: .zipkinV2JSON))
    var proto: [UInt8] = []
    var constructed = decoded
    constructed.metadata.format = .constructed
    ZipkinProto3.encode(constructed, into: &proto)
    precondition(try! ZipkinProto3.decode(proto, metadata: .init(format: .zipkinV2Proto)).count == spanCount)
    if !printed {
        printed = true
        print("Zipkin corpus: \(spanCount) spans, JSON \(json.count) B (\(json.count / spanCount) B/span), proto \(proto.count) B")
    }

    let config = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        timeUnits: .microseconds, maxDuration: .seconds(3), maxIterations: 2000)

    // Ceilings measured in the same run: a bare byte loop over the JSON, and our scanner
    // walking the whole document without building spans.
    Benchmark("Zipkin reference: byte loop over JSON (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            var quotes = 0
            json.withUnsafeBufferPointer { for b in $0 where b == UInt8(ascii: "\"") { quotes &+= 1 } }
            blackHole(quotes)
        }
    }
    Benchmark("Zipkin reference: JSONReader.skipValue over JSON (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            try JSONReader.withReader(json, format: .zipkinV2JSON) { (r: inout JSONReader) throws(DecodeError) in
                try r.skipValue()
                blackHole(r.position)
            }
        }
    }
    Benchmark("Zipkin v2 JSON decode (1 MB)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ZipkinJSONV2.decode(json, metadata: BatchMetadata(format: .zipkinV2JSON)))
        }
    }
    Benchmark("Zipkin proto3 decode (same spans)", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ZipkinProto3.decode(proto, metadata: BatchMetadata(format: .zipkinV2Proto)))
        }
    }
    Benchmark("Zipkin v2 JSON decode+encode, same format (raw copy)", configuration: config) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(json.count + 64)
        for _ in benchmark.scaledIterations {
            let b = try ZipkinJSONV2.decode(json, metadata: BatchMetadata(format: .zipkinV2JSON))
            out.removeAll(keepingCapacity: true)
            ZipkinJSONV2.encode(b, into: &out)
            blackHole(out.count)
        }
    }
    Benchmark("Zipkin v2 JSON encode, same format (raw copy)", configuration: config) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(json.count + 64)
        for _ in benchmark.scaledIterations {
            out.removeAll(keepingCapacity: true)
            ZipkinJSONV2.encode(decoded, into: &out)
            blackHole(out.count)
        }
    }
    Benchmark("Zipkin v2 JSON encode, full re-encode", configuration: config) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(json.count * 2)
        for _ in benchmark.scaledIterations {
            out.removeAll(keepingCapacity: true)
            ZipkinJSONV2.encode(constructed, into: &out)
            blackHole(out.count)
        }
    }
    Benchmark("Zipkin proto3 encode, full re-encode", configuration: config) { benchmark in
        var out: [UInt8] = []
        out.reserveCapacity(proto.count * 2)
        for _ in benchmark.scaledIterations {
            out.removeAll(keepingCapacity: true)
            ZipkinProto3.encode(constructed, into: &out)
            blackHole(out.count)
        }
    }
}
