import Codecs
import Dispatch
import Foundation
import Logging
import Spans
import Synchronization
import Transport

/// Settings of a `loadtest sink`.
public struct SinkConfiguration: Sendable {
    public var listen: [String] = ["127.0.0.1:9412"]
    /// Every span whose `region` tag differs is a residency violation.
    public var region: String? = nil
    /// Answer this much later (a slow backend).
    public var delaySeconds: Double = 0
    /// Answer this fraction of span requests 503 without counting them (a flaky backend).
    public var failRatio: Double = 0
    /// Start listening only this long after start (a backend that is down: connections refused).
    public var downForSeconds: Double = 0
    /// Only read bodies and answer (no decoding): for measuring the generator.
    public var discard = false
    public var loops: Int? = nil
    public var maxBodyBytes: Int = 64 << 20
    public init() {}
}

/// A Zipkin collector (`POST /api/v2/spans`, JSON or proto3, gzip/deflate/zstd bodies) and
/// Datadog agent (`PUT|POST /v0.4|v0.5/traces`, `GET /info`) in one, that checks and counts
/// every span (`SinkAccounting`) and answers `GET /stats` with the counts as JSON.
public final class SinkServer: Sendable {
    public let configuration: SinkConfiguration
    private let accounting: Mutex<SinkAccounting>
    private let servers: Mutex<[HTTPServer]>
    private let makeServer: @Sendable () -> HTTPServer
    private let rng = Mutex(SplitMix64(seed: 0x5EED))
    private let started = Mutex<[Int]>([])

    public init(configuration c: SinkConfiguration, logger: Logger = Logger(label: "loadtest.sink")) {
        configuration = c
        accounting = Mutex(SinkAccounting(region: c.region))
        var sc = HTTPServerConfiguration()
        sc.maxBodyBytes = c.maxBodyBytes
        sc.loops = c.loops
        var router = EndpointRouter()
        let box = Box()
        let zipkin = ClosureHandler { req, respond in box.sink?.ingest(req, zipkin: true, respond) }
        let datadog = ClosureHandler { req, respond in box.sink?.ingest(req, zipkin: false, respond) }
        router.register("POST", "/api/v2/spans", zipkin)
        for p in ["/v0.4/traces", "/v0.5/traces"] { router.register("PUT", p, datadog); router.register("POST", p, datadog) }
        router.register("GET", "/info") { _, respond in
            respond(.json(200, #"{"version":"loadtest-sink","endpoints":["/v0.4/traces","/v0.5/traces"],"client_drop_p0s":false}"#))
        }
        router.register("GET", "/stats") { _, respond in respond(.json(200, box.sink?.statsJSON() ?? "{}")) }
        router.register("GET", "/health") { _, respond in respond(.json(200, #"{"status":"ok"}"#)) }
        var lg = logger
        lg.logLevel = .warning
        let handler = router, serverConfig = sc, serverLogger = lg
        makeServer = { HTTPServer(configuration: serverConfig, handler: handler, logger: serverLogger) }
        servers = Mutex([makeServer()])
        box.sink = self
    }

    /// Late-bound self for the handlers (the router must exist before the server).
    private final class Box: @unchecked Sendable { weak var sink: SinkServer? }

    /// Binds the listeners (after `downForSeconds`, in the background, when set).
    public func start() throws {
        let server = servers.withLock { $0[0] }
        let addrs = try configuration.listen.map { try ListenAddress(parsing: $0) }
        if configuration.downForSeconds > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + configuration.downForSeconds) { [self] in
                do { try server.start(listeners: addrs); started.withLock { $0 = server.boundPorts } } catch {
                    writeStderr("loadtest sink: \(error)\n")
                }
            }
        } else {
            try server.start(listeners: addrs)
            started.withLock { $0 = server.boundPorts }
        }
    }

    public var boundPorts: [Int] { started.withLock { $0 } }

    public func shutdown() {
        let all = servers.withLock { s in let all = s; s = []; return all }
        for s in all { s.shutdownAndWait(grace: .seconds(1)) }
    }

    /// A backend outage: closes the listeners and every connection (connections are refused
    /// from now on). The counts are kept; `comeBack()` listens again on the same ports.
    public func goDown() {
        let current = servers.withLock { $0.last }
        current?.shutdownAndWait(grace: .zero)
    }

    /// Ends an outage (`goDown()`): a fresh server on the same ports, counting into the same totals.
    public func comeBack() throws {
        let ports = boundPorts
        let hosts = try configuration.listen.map { try ListenAddress(parsing: $0).host }
        let server = makeServer()
        try server.start(listeners: zip(hosts, ports).map { ListenAddress(host: $0, port: $1) })
        servers.withLock { $0.append(server) }
    }

    /// The counts (without delivery-lag percentiles: cheap enough to poll).
    public var stats: SinkStats { accounting.withLock { $0.stats } }
    /// The counts with delivery-lag percentiles.
    public var report: SinkStats { accounting.withLock { $0.report } }
    public var uniqueSpans: Int { accounting.withLock { $0.stats.uniqueSpans } }

    /// Calls `body` with every distinct (trace id low, span id) received (under the lock).
    public func forEachSpan(_ body: (_ traceLow: UInt64, _ id: UInt64) -> Void) {
        accounting.withLock { $0.forEachSpan(body) }
    }

    public func statsJSON() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return String(decoding: (try? e.encode(report)) ?? Data(), as: UTF8.self)
    }

    private func ingest(_ req: HTTPRequest, zipkin: Bool, _ respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let c = configuration
        let ok: HTTPResponse = zipkin ? HTTPResponse(status: 202) : .json(200, #"{"rate_by_service":{}}"#)
        func answer(_ r: HTTPResponse) {
            if c.delaySeconds > 0 {
                DispatchQueue.global().asyncAfter(deadline: .now() + c.delaySeconds) { respond(r) }
            } else { respond(r) }
        }
        if c.failRatio > 0, rng.withLock({ $0.chance(c.failRatio) }) {
            accounting.withLock { $0.countFailedOnPurpose() }
            return answer(.error(503, code: "unavailable", message: "loadtest sink: failing on purpose (--fail-ratio)"))
        }
        if c.discard {
            accounting.withLock { a in a.countDiscarded(bytes: req.body.count) }
            return answer(ok)
        }
        let format: WireFormat
        if zipkin {
            format = (req.headers["Content-Type"] ?? "").contains("protobuf") ? .zipkinProto : .zipkinJSON
        } else {
            format = req.path.hasPrefix("/v0.5") ? .datadogV05 : .datadogV04
        }
        do {
            let body = try ContentDecoding.decode(req.body, contentEncoding: req.headers["Content-Encoding"])
            let batch = try format.decode(body)
            let checked = SinkAccounting.check(batch, region: c.region, bytes: req.body.count)
            accounting.withLock { $0.add(checked) }
            answer(ok)
        } catch {
            accounting.withLock { $0.countDecodeError(bytes: req.body.count) }
            answer(.error(400, code: "bad_payload", message: "loadtest sink: \(error)"))
        }
    }
}

extension SinkAccounting {
    /// A request read and answered without decoding (`--discard`).
    public mutating func countDiscarded(bytes: Int) { addRaw(bytes: bytes) }
}
