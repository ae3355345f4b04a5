import Codecs
import Spans

/// Deterministic Zipkin payloads shared by the suites, `hotpath` and `json-reference`, so every
/// figure in Benchmarks/README.md is measured on the same bytes.
public enum ZipkinFixtures {
    /// One Envoy-like span's values (~500 B as v2 JSON, 15 tags), rendered below as v2 or v1.
    struct EnvoySpan {
        let trace, id, parent: String
        let server: Bool
        let timestamp, duration: Int
        let ipv4: String
        let tags: [(String, String)]

        init(_ n: Int) {
            let t = hex16(0x5a5a_0000_0000_0000 &+ UInt64(n / 8) &* 0x9E37_79B9)
            trace = t + t
            id = hex16(0x1000_0000_0000_0000 &+ UInt64(n) &* 0x2545_F491)
            parent = hex16(0x2000_0000_0000_0000 &+ UInt64(n) &* 0x2545_F491)
            server = n % 2 == 0
            timestamp = 1_700_000_000_000_000 + n * 137
            duration = 1000 + n % 977
            ipv4 = "10.244.\(n % 200).\(n % 250)"
            tags = [
                ("component", "proxy"), ("node_id", "backend-7d9f8c6b5-x2x4k.kuma-demo"), ("zone", "zone-1"),
                ("guid:x-request-id", "6f0c8e6a-\(n % 10000)-4b7e-9c1d-2a3b4c5d6e7f"),
                ("http.url", "http://backend:8080/api/items?page=\(n % 50)"), ("http.method", "GET"),
                ("downstream_cluster", "-"), ("user_agent", "Go-http-client/1.1"), ("http.protocol", "HTTP/1.1"),
                ("peer.address", "10.244.1.\(n % 250)"), ("request_size", "0"), ("response_size", "\(200 + n % 5000)"),
                ("response_flags", "-"), ("upstream_cluster", "localhost_8080"), ("http.status_code", "200"),
            ]
        }

        var endpoint: String { #"{"serviceName":"backend_default_svc_80","ipv4":"\#(ipv4)","port":8080}"# }

        var v2: String {
            let tagText = tags.map { #""\#($0.0)":"\#($0.1)""# }.joined(separator: ",")
            return #"{"traceId":"\#(trace)","parentId":"\#(parent)","id":"\#(id)","kind":"\#(server ? "SERVER" : "CLIENT")","#
                + #""name":"ingress","timestamp":\#(timestamp),"duration":\#(duration),"#
                + #""localEndpoint":\#(endpoint),"tags":{\#(tagText)}}"#
        }

        /// Zipkin v1 as Envoy's v1 collector output had it: core annotations carry the endpoint,
        /// tags are string binary annotations.
        var v1: String {
            let (begin, end) = server ? ("sr", "ss") : ("cs", "cr")
            let annotations = #"[{"timestamp":\#(timestamp),"value":"\#(begin)","endpoint":\#(endpoint)},"#
                + #"{"timestamp":\#(timestamp + duration),"value":"\#(end)","endpoint":\#(endpoint)}]"#
            let binary = tags.map { #"{"key":"\#($0.0)","value":"\#($0.1)","endpoint":\#(endpoint)}"# }.joined(separator: ",")
            return #"{"traceId":"\#(trace)","parentId":"\#(parent)","id":"\#(id)","name":"ingress","#
                + #""timestamp":\#(timestamp),"duration":\#(duration),"annotations":\#(annotations),"binaryAnnotations":[\#(binary)]}"#
        }
    }

    /// Zipkin v2 JSON: `spans` Envoy-like spans, or as many as fill `targetBytes`.
    public static func v2JSON(spans: Int = .max, targetBytes: Int = .max) -> (body: [UInt8], spans: Int) {
        render(spans: spans, targetBytes: targetBytes) { $0.v2 }
    }

    /// Zipkin v1 JSON of the same spans (~2.4× the bytes of v2: endpoints repeat per annotation).
    public static func v1JSON(spans: Int) -> (body: [UInt8], spans: Int) {
        render(spans: spans, targetBytes: .max) { $0.v1 }
    }

    /// Zipkin proto3 of the same spans, through our encoder (full re-encode of a decoded batch).
    public static func proto3(spans: Int) -> (body: [UInt8], spans: Int) {
        var batch = try! ZipkinJSONV2.decode(v2JSON(spans: spans).body, metadata: BatchMetadata(format: .zipkinV2JSON))
        batch.metadata.format = .constructed
        var out: [UInt8] = []
        ZipkinProto3.encode(batch, into: &out)
        return (out, batch.count)
    }

    private static func render(spans: Int, targetBytes: Int, _ text: (EnvoySpan) -> String) -> (body: [UInt8], spans: Int) {
        precondition(spans < .max || targetBytes < .max, "give a span count or a size")
        var out: [UInt8] = Array("[".utf8)
        var n = 0
        while n < spans && out.count < targetBytes {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            out += Array(text(EnvoySpan(n)).utf8)
            n += 1
        }
        out.append(UInt8(ascii: "]"))
        return (out, n)
    }
}
