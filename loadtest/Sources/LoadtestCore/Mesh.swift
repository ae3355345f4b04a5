import Spans

/// The shape of the simulated mesh: services spread round-robin over zones, zones mapped to
/// regions (a zone with no region gets no `region` tag).
public struct MeshShape: Sendable, Hashable {
    public var services: Int
    public var zones: [String]
    public var zoneRegions: [String: String]
    public var mesh: String

    public init(services: Int = 50, zones: [String] = ["zone-eu-1", "zone-us-1"],
                zoneRegions: [String: String] = ["zone-eu-1": "eu-west-1", "zone-us-1": "us-east-1"],
                mesh: String = "default") {
        self.services = max(2, services)
        self.zones = zones.isEmpty ? ["zone-1"] : zones
        self.zoneRegions = zoneRegions
        self.mesh = mesh
    }

    public func serviceName(_ i: Int) -> String {
        let width = String(services - 1).count
        let n = String(i)
        return "svc-" + String(repeating: "0", count: max(0, width - n.count)) + n
    }
    public func zone(ofService i: Int) -> String { zones[i % zones.count] }
    public func region(ofService i: Int) -> String? { zoneRegions[zone(ofService: i)] }

    /// Parses `a=b,c=d` (the `--zone-regions` flag).
    public static func parsePairs(_ text: String) throws(LoadtestError) -> [String: String] {
        var out: [String: String] = [:]
        for part in text.split(separator: ",") where !part.isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else {
                throw LoadtestError("expected zone=region pairs separated by commas, got \"\(part)\"")
            }
            out[String(kv[0])] = String(kv[1])
        }
        return out
    }
}

/// An error a person can act on.
public struct LoadtestError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Builds template spans shaped like an Envoy mesh: each call from service A to service B is
/// a CLIENT span at A's sidecar (upstream_cluster = B) and a SERVER span at B's sidecar, its
/// child; trees are 2–5 calls deep with a fan-out of 1–3; about 2 % of calls fail (503,
/// `error=true`). Ids, start times and checksums are placeholders (`Sentinels`) the payload
/// template patches per request.
public struct TraceShaper {
    public let shape: MeshShape
    var rng: SplitMix64
    /// Fraction of traces with 128-bit ids.
    public var ratio128: Double = 0.5
    public var errorRatio: Double = 0.02

    public init(shape: MeshShape, seed: UInt64) {
        self.shape = shape
        rng = SplitMix64(seed: seed)
    }

    /// One span before encoding: indexes into the sentinel tables plus its text.
    public struct SpanDraft {
        public var trace: Int
        public var index: Int
        public var parent: Int   // index of the parent span, -1 for a root
        public var kind: SpanKind
        public var service: Int
        public var name: String
        public var startOffsetMicros: Int64
        public var durationMicros: Int64
        public var tags: [(String, String)]
        public var remote: (service: String, ip: String, port: UInt16)?
    }

    /// Appends whole traces' spans until `count` spans exist (the last trace may be cut short:
    /// spans come parents first, so a cut trace has no orphans).
    public mutating func draftSpans(count: Int) -> (spans: [SpanDraft], traces: Int, is128: [Bool]) {
        var spans: [SpanDraft] = []
        var is128: [Bool] = []
        var trace = 0
        while spans.count < count {
            is128.append(rng.chance(ratio128))
            let entry = rng.below(shape.services)
            // The edge: a SERVER span at the entry service with no client parent.
            let root = addServer(&spans, trace: trace, parent: -1, caller: nil, service: entry, start: 0,
                                 duration: 20_000 + Int64(rng.below(80_000)), limit: count)
            if let root { call(&spans, trace: trace, from: root, depth: 1 + rng.below(4), limit: count) }
            trace += 1
        }
        return (spans, trace, is128)
    }

    private mutating func call(_ spans: inout [SpanDraft], trace: Int, from parent: Int, depth: Int, limit: Int) {
        guard depth > 0 else { return }
        let fan = 1 + rng.below(3)
        let p = spans[parent]
        for k in 0..<fan {
            guard spans.count + 2 <= limit else { return }
            var callee = rng.below(shape.services)
            if callee == p.service { callee = (callee + 1) % shape.services }
            let start = p.startOffsetMicros + 100 + Int64(k) * Int64(p.durationMicros / Int64(fan + 1))
            let dur = max(50, p.durationMicros / Int64(fan + 1) - 50)
            let failed = rng.chance(errorRatio)
            let client = addClient(&spans, trace: trace, parent: parent, caller: p.service, callee: callee,
                                   start: start, duration: dur, failed: failed)
            if let server = addServer(&spans, trace: trace, parent: client, caller: p.service, service: callee,
                                      start: start + 20, duration: max(10, dur - 40), limit: limit, failed: failed) {
                if !failed { call(&spans, trace: trace, from: server, depth: depth - 1, limit: limit) }
            }
        }
    }

    private static let paths = ["/api/v1/orders", "/api/v1/cart", "/healthz", "/api/v2/users/me", "/checkout",
                                "/api/v1/items/42", "/graphql", "/api/v1/payments"]
    private static let methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]

    private mutating func commonTags(service: Int, status: Int, method: String, path: String, host: String) -> [(String, String)] {
        let zone = shape.zone(ofService: service)
        let name = shape.serviceName(service)
        var t: [(String, String)] = [
            ("node_id", "\(name)-\(String(rng.next() & 0xfffff, radix: 16)).\(shape.mesh)"),
            ("zone", zone),
            ("kuma.mesh", shape.mesh),
            ("kuma.zone", zone),
            ("component", "proxy"),
            ("http.method", method),
            ("http.url", "http://\(host)\(path)"),
            ("http.protocol", "HTTP/1.1"),
            ("http.status_code", String(status)),
            ("guid:x-request-id", uuid()),
            ("user_agent", "envoy-loadtest/1.0"),
            ("request_size", String(rng.below(2000))),
            ("response_size", String(rng.below(20000))),
            ("response_flags", status >= 500 ? "UF" : "-"),
        ]
        if let region = shape.region(ofService: service) { t.append(("region", region)) }
        if status >= 500 { t.append(("error", "true")) }
        return t
    }

    private mutating func uuid() -> String {
        let a = rng.next(), b = rng.next()
        let h = hex16(a) + hex16(b)
        let c = Array(h)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    private mutating func addClient(_ spans: inout [SpanDraft], trace: Int, parent: Int, caller: Int, callee: Int,
                                    start: Int64, duration: Int64, failed: Bool) -> Int {
        let path = Self.paths[rng.below(Self.paths.count)], method = Self.methods[rng.below(Self.methods.count)]
        let calleeName = shape.serviceName(callee)
        var tags = commonTags(service: caller, status: failed ? 503 : 200, method: method, path: path, host: calleeName)
        tags.append(("upstream_cluster", "\(calleeName)_\(shape.mesh)_svc_80"))
        tags.append(("peer.address", "10.\(callee / 250).\(callee % 250).\(1 + rng.below(200))"))
        let i = spans.count
        spans.append(SpanDraft(trace: trace, index: i, parent: parent, kind: .client, service: caller,
                               name: "\(calleeName):80", startOffsetMicros: start, durationMicros: duration, tags: tags,
                               remote: (calleeName, "10.\(callee / 250).\(callee % 250).7", 80)))
        return i
    }

    @discardableResult
    private mutating func addServer(_ spans: inout [SpanDraft], trace: Int, parent: Int, caller: Int?, service: Int,
                                    start: Int64, duration: Int64, limit: Int, failed: Bool = false) -> Int? {
        guard spans.count < limit else { return nil }
        let path = Self.paths[rng.below(Self.paths.count)]
        let name = shape.serviceName(service)
        var tags = commonTags(service: service, status: failed ? 503 : 200, method: "GET", path: path, host: name)
        tags.append(("upstream_cluster", "localhost_80"))
        tags.append(("downstream_cluster", caller.map { shape.serviceName($0) } ?? "edge-gateway"))
        let i = spans.count
        spans.append(SpanDraft(trace: trace, index: i, parent: parent, kind: .server, service: service,
                               name: "inbound|80||\(name)", startOffsetMicros: start, durationMicros: duration,
                               tags: tags, remote: nil))
        return i
    }
}
