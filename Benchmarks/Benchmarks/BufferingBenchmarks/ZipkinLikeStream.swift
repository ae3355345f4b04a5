/// Deterministic Zipkin v2 JSON batches resembling Envoy/Kuma traces: random 128-bit trace ids,
/// shared service/operation vocabularies, ~15 tags per span including request ids and sizes.
enum ZipkinLikeStream {
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func hex(_ digits: Int) -> String {
            let table = Array("0123456789abcdef")
            var s = ""
            for _ in 0..<digits { s.append(table[below(16)]) }
            return s
        }
    }

    static let services = ["frontend", "cart", "checkout", "payment", "shipping", "email", "currency", "recommendation",
                           "ad", "productcatalog", "quote", "accounting", "fraud-detection", "inventory", "auth", "search",
                           "gateway", "user", "orders", "reviews"]
    static let operations = ["GET /api/products", "POST /api/cart", "GET /api/cart", "POST /api/checkout", "GET /health",
                             "GET /api/recommendations", "POST /oteldemo.PaymentService/Charge", "GET /api/data",
                             "POST /oteldemo.CartService/AddItem", "GET /api/currency", "POST /api/orders", "GET /static/app.js",
                             "GET /api/users/me", "PUT /api/users/me", "GET /api/reviews", "POST /api/search",
                             "ingress", "egress", "router outbound", "async publish"]

    static func make(totalBytes: Int, spansPerBatch: Int) -> [[UInt8]] {
        var rng = Rng(state: 42)
        var batches: [[UInt8]] = []
        var total = 0
        var timestamp: UInt64 = 1_732_000_000_000_000
        while total < totalBytes {
            var s = "["
            let trace = rng.hex(32)
            var parent = rng.hex(16)
            for i in 0..<spansPerBatch {
                if i > 0 { s += "," }
                if i % 8 == 0 { parent = rng.hex(16) }
                let id = rng.hex(16)
                let svc = services[rng.below(services.count)]
                let peer = services[rng.below(services.count)]
                let op = operations[rng.below(operations.count)]
                timestamp += UInt64(rng.below(5000))
                let status = [200, 200, 200, 200, 201, 204, 404, 500, 503][rng.below(9)]
                s += "{\"traceId\":\"\(trace)\",\"id\":\"\(id)\",\"parentId\":\"\(parent)\",\"kind\":\"\(i % 2 == 0 ? "CLIENT" : "SERVER")\","
                s += "\"name\":\"\(op.lowercased())\",\"timestamp\":\(timestamp),\"duration\":\(rng.below(250_000) + 50),"
                s += "\"localEndpoint\":{\"serviceName\":\"\(svc)\",\"ipv4\":\"10.\(rng.below(4)).\(rng.below(256)).\(rng.below(256))\"},"
                s += "\"remoteEndpoint\":{\"serviceName\":\"\(peer)\",\"ipv4\":\"10.\(rng.below(4)).\(rng.below(256)).\(rng.below(256))\",\"port\":\([80, 8080, 5050, 9555][rng.below(4)])},"
                s += "\"tags\":{\"component\":\"proxy\",\"node_id\":\"\(svc)-\(rng.hex(10))-\(rng.hex(5)).kuma-demo\","
                s += "\"guid:x-request-id\":\"\(rng.hex(8))-\(rng.hex(4))-\(rng.hex(4))-\(rng.hex(4))-\(rng.hex(12))\","
                s += "\"http.method\":\"\(op.split(separator: " ")[0])\",\"http.url\":\"http://\(peer):8080\(op.split(separator: " ").last!)?id=\(rng.below(100000))\","
                s += "\"http.protocol\":\"HTTP/1.1\",\"http.status_code\":\"\(status)\",\"downstream_cluster\":\"-\","
                s += "\"user_agent\":\"Mozilla/5.0 (X11; Linux x86_64) python-requests/2.31\",\"request_size\":\"\(rng.below(4000))\","
                s += "\"response_size\":\"\(rng.below(60000))\",\"response_flags\":\"-\",\"upstream_cluster\":\"\(peer)_kuma-demo_svc_8080\","
                s += "\"upstream_cluster.name\":\"\(peer)_kuma-demo_svc_8080\",\"peer.address\":\"10.\(rng.below(4)).\(rng.below(256)).\(rng.below(256))\","
                s += "\"kuma.io/mesh\":\"default\",\"kuma.io/zone\":\"zone-\(rng.below(3))\"}}"
            }
            s += "]"
            let b = Array(s.utf8)
            total += b.count
            batches.append(b)
        }
        return batches
    }
}
