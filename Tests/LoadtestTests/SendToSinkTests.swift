import Codecs
import Dispatch
import Logging
import Synchronization
import Testing
import Transport
@testable import LoadtestCore

/// The generator against the sink over real sockets: every span sent arrives once, unaltered.
@Suite(.serialized) struct SendToSinkTests {
    /// A sink on a free loopback port (the caller shuts it down).
    func startedSink(_ configure: (inout SinkConfiguration) -> Void = { _ in }) throws -> (SinkServer, Int) {
        var sc = SinkConfiguration()
        sc.listen = ["127.0.0.1:0"]; sc.loops = 1
        configure(&sc)
        let server = SinkServer(configuration: sc)
        try server.start()
        guard let port = server.boundPorts.first else { server.shutdown(); throw LoadtestError("the sink bound no port") }
        return (server, port)
    }

    func runPair(format: WireFormat, http: ClientProtocol, rate: Double?, requests: Int,
                 sink: (inout SinkConfiguration) -> Void = { _ in }) throws -> (SendReport, SinkStats) {
        let (server, port) = try startedSink { $0.region = "eu-west-1"; sink(&$0) }
        defer { server.shutdown() }
        var c = SendConfiguration(target: try ClientEndpoint(url: "http://127.0.0.1:\(port)"))
        c.format = format; c.http = http; c.connections = 2; c.streams = 4; c.batch = 100
        c.rate = rate; c.requests = requests; c.durationSeconds = nil; c.seed = 11; c.templates = 2
        let report = try LoadSender(configuration: c).run()
        return (report, server.stats)
    }

    @Test(arguments: [(WireFormat.zipkinJSON, ClientProtocol.http1), (.zipkinProto, .h2c), (.datadogV04, .http1), (.datadogV05, .h2c)])
    func everySpanArrivesOnceAndUnaltered(_ format: WireFormat, _ http: ClientProtocol) throws {
        let (r, s) = try runPair(format: format, http: http, rate: nil, requests: 20)
        #expect(r.sentRequests == 20 && r.sentSpans == 2000)
        #expect(r.acceptedSpans == 2000 && r.failedRequests == 0)
        #expect(s.uniqueSpans == 2000 && s.duplicates == 0 && s.altered == 0 && s.unverified == 0)
        #expect(s.violations > 0 && s.violations < 2000)  // the us-east-1 half of the mesh
        #expect(r.latencyMicros.count == 20)
    }

    /// `--compress`: the sink (with the relay's decoders) reads every body; the acknowledged ids
    /// the generator regenerates are exactly the span ids the sink received.
    @Test(arguments: [(BodyCompression.gzip, WireFormat.zipkinJSON), (.zstd, .datadogV04), (.zstd, .zipkinProto)])
    func compressedBodiesArriveAndAcknowledgedIDsMatch(_ compression: BodyCompression, _ format: WireFormat) throws {
        let (server, port) = try startedSink()
        defer { server.shutdown() }
        var c = SendConfiguration(target: try ClientEndpoint(url: "http://127.0.0.1:\(port)"))
        c.format = format; c.connections = 2; c.batch = 100; c.compression = compression
        c.requests = 12; c.durationSeconds = nil; c.seed = 13; c.templates = 2
        let sender = try LoadSender(configuration: c)
        let r = sender.run()
        let s = server.stats
        #expect(r.acceptedSpans == 1200 && r.compression == compression.rawValue)
        #expect(s.decodeErrors == 0 && s.uniqueSpans == 1200 && s.altered == 0 && s.unverified == 0)
        let raw = try #require(r.uncompressedBytes)
        #expect(r.sentBytes * 3 < raw, "\(compression.rawValue) bodies \(r.sentBytes) B from \(raw) B (seed 13)")
        var received = Set<UInt64>()
        server.forEachSpan { _, id in received.insert(id) }
        var acked = Set<UInt64>()
        sender.forEachAcknowledgedSpanID { acked.insert($0) }
        #expect(acked == received)
    }

    @Test func openLoopKeepsTheRate() throws {
        // 10 requests of 100 spans at 5000 spans/s: due every 20 ms, so the run lasts ≈ 180 ms.
        let (r, s) = try runPair(format: .zipkinJSON, http: .http1, rate: 5000, requests: 10)
        #expect(s.uniqueSpans == 1000)
        #expect(r.elapsedSeconds >= 0.18 && r.elapsedSeconds < 2)
    }

    @Test func failingSinkShowsInStatusCodes() throws {
        let (r, s) = try runPair(format: .zipkinJSON, http: .http1, rate: nil, requests: 40) { $0.failRatio = 0.5 }
        let failed = r.statusCodes["503"] ?? 0
        #expect(failed > 5 && failed < 35)
        #expect(r.failedRequests == failed)
        #expect(s.failedOnPurpose == failed)
        #expect(s.uniqueSpans == r.acceptedSpans)
    }

    /// One request through the relay's client, waited for.
    func request(_ port: Int, _ r: ClientRequest) throws -> ClientResponse {
        let group = EventLoopGroup(loopCount: 1)
        let client = HTTPClient(endpoint: try ClientEndpoint(url: "http://127.0.0.1:\(port)"), group: group, logger: Logger(label: "t"))
        defer { client.shutdown() }
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<ClientResponse, ClientError>?>(nil)
        client.send(r) { res in result.withLock { $0 = res }; done.signal() }
        done.wait()
        return try #require(result.withLock { $0 }).get()
    }

    @Test func sinkTakesGzipBodiesAndAnswersInfoAndStats() throws {
        let (server, port) = try startedSink()
        defer { server.shutdown() }
        var shaper = TraceShaper(shape: MeshShape(), seed: 2)
        let t = try PayloadTemplate(format: .zipkinJSON, shaper: &shaper, spans: 30, seed: 2)
        var ids = IDSource(seed: 3), scratch = PayloadTemplate.Scratch()
        let body = GzipCompressor().compress(t.render(ids: &ids, baseMicros: 1_764_000_000_000_000, scratch: &scratch))
        let r = try request(port, ClientRequest(path: "/api/v2/spans", headers: [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], body: body))
        #expect(r.status == 202)
        #expect(server.stats.uniqueSpans == 30 && server.stats.altered == 0)
        let bad = try request(port, ClientRequest(path: "/api/v2/spans", headers: [("Content-Type", "application/json")], body: Array("[{".utf8)))
        #expect(bad.status == 400 && server.stats.decodeErrors == 1)
        let info = try request(port, ClientRequest(method: "GET", path: "/info"))
        #expect(info.status == 200 && String(decoding: info.body, as: UTF8.self).contains("/v0.4/traces"))
        let stats = try request(port, ClientRequest(method: "GET", path: "/stats"))
        #expect(String(decoding: stats.body, as: UTF8.self).contains("\"uniqueSpans\":30"))
    }

    @Test func slowSinkShowsInLatency() throws {
        let (r, _) = try runPair(format: .zipkinJSON, http: .http1, rate: nil, requests: 4) { $0.delaySeconds = 0.2 }
        #expect(r.latencyMicros.p50 >= 200_000)
    }

    @Test func openLoopLatencyCountsTheQueueBehindAStalledServer() throws {
        // 8 requests due every 10 ms, one connection, each answered after 100 ms: request k is
        // answered ≈ 100·(k+1) ms after the start but was due at 10·k ms, so the last one's
        // latency is ≈ 800 − 70 = 730 ms. A generator that timed from the actual send would say 100 ms.
        var sc = SinkConfiguration()
        sc.listen = ["127.0.0.1:0"]; sc.loops = 1; sc.delaySeconds = 0.1
        let server = SinkServer(configuration: sc)
        try server.start()
        defer { server.shutdown() }
        var c = SendConfiguration(target: try ClientEndpoint(url: "http://127.0.0.1:\(try #require(server.boundPorts.first))"))
        c.connections = 1; c.batch = 10; c.rate = 1000; c.requests = 8; c.durationSeconds = nil; c.templates = 1; c.seed = 4
        let r = try LoadSender(configuration: c).run()
        #expect(r.acceptedRequests == 8)
        #expect(r.latencyMicros.max >= 650_000, "max \(r.latencyMicros.max) µs")
        #expect(r.latencyMicros.p50 >= 300_000)
        #expect(r.maxSendLagMicros < 50_000)  // the generator itself sent on time
    }

    @Test func timelineHasAPointPerSecondAndTheHTMLDrawsIt() throws {
        var sc = SinkConfiguration()
        sc.listen = ["127.0.0.1:0"]; sc.loops = 1
        let server = SinkServer(configuration: sc)
        try server.start()
        defer { server.shutdown() }
        var c = SendConfiguration(target: try ClientEndpoint(url: "http://127.0.0.1:\(try #require(server.boundPorts.first))"))
        c.connections = 1; c.batch = 100; c.rate = 2000; c.durationSeconds = 2.3; c.templates = 1; c.seed = 5
        let r = try LoadSender(configuration: c).run()
        #expect(r.timeline.count >= 2 && r.timeline.count <= 4, "\(r.timeline)")
        let first = try #require(r.timeline.first)
        #expect(first.t >= 0.9 && first.t <= 1.2)
        #expect(first.spansPerSecond >= 1400 && first.spansPerSecond <= 2600)
        #expect(r.timeline.reduce(0) { $0 + $1.requests } == r.sentRequests)
        let html = r.html()
        #expect(html.hasPrefix("<!doctype html>") && html.contains("<polyline") && html.contains("p99"))
        #expect(!html.contains("<script"))  // self-contained: no scripts
        let v = ScenarioVerdict(scenario: "x<y", send: r, sinks: [server.stats], relayCPUSeconds: 1)
        let page = v.html(send: r)
        #expect(page.contains("PASS") && page.contains("x&lt;y"))
    }
}
