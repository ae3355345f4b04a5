import Benchmark
import Codecs
import Spans

/// Envoy-like Zipkin spans (~500 B, 15 tags), enough of them for a ~1 MB body.
private func envoyLikeJSON(targetBytes: Int) -> (body: [UInt8], spans: Int) {
    var out: [UInt8] = Array("[".utf8)
    var n = 0
    while out.count < targetBytes {
        if n > 0 { out.append(UInt8(ascii: ",")) }
        let trace = hex16(0x5a5a_0000_0000_0000 &+ UInt64(n / 8) &* 0x9E37_79B9)
        let id = hex16(0x1000_0000_0000_0000 &+ UInt64(n) &* 0x2545_F491)
        let parent = hex16(0x2000_0000_0000_0000 &+ UInt64(n) &* 0x2545_F491)
        let ts = 1_700_000_000_000_000 + n * 137
        let span = """
        {"traceId":"\(trace)\(trace)","parentId":"\(parent)","id":"\(id)","kind":"\(n % 2 == 0 ? "SERVER" : "CLIENT")",\
        "name":"ingress","timestamp":\(ts),"duration":\(1000 + n % 977),\
        "localEndpoint":{"serviceName":"backend_default_svc_80","ipv4":"10.244.\(n % 200).\(n % 250)","port":8080},\
        "tags":{"component":"proxy","node_id":"backend-7d9f8c6b5-x2x4k.kuma-demo","zone":"zone-1",\
        "guid:x-request-id":"6f0c8e6a-\(n % 10000)-4b7e-9c1d-2a3b4c5d6e7f","http.url":"http://backend:8080/api/items?page=\(n % 50)",\
        "http.method":"GET","downstream_cluster":"-","user_agent":"Go-http-client/1.1","http.protocol":"HTTP/1.1",\
        "peer.address":"10.244.1.\(n % 250)","request_size":"0","response_size":"\(200 + n % 5000)",\
        "response_flags":"-","upstream_cluster":"localhost_8080","http.status_code":"200"}}
        """
        out += Array(span.utf8)
        n += 1
    }
    out.append(UInt8(ascii: "]"))
    return (out, n)
}

nonisolated(unsafe) private var printed = false

func zipkinBenchmarks() {
    let (json, spanCount) = envoyLikeJSON(targetBytes: 1 << 20)
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
