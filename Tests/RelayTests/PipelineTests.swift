import TestSupport
import Codecs
import Dispatch
import Foundation
import Logging
import Routing
import Spans
import Synchronization
import Testing
import Transport
@testable import Relay

/// A backend over real loopback sockets: the project's own HTTP server, recording what it is
/// sent and answering as the test says.
final class SinkServer: Sendable {
    struct Received: Sendable { var path: String; var headers: HTTPHeaders; var body: [UInt8]; var status: Int }
    final class State: Sendable {
        let received = Mutex<[Received]>([])
        /// Status (and body) to answer; 200 by default.
        let answer = Mutex<(status: Int, body: String, headers: [(name: String, value: String)])>((200, "", []))
    }
    let state = State()
    let server: HTTPServer
    let port: Int

    init(port: Int = 0) throws {
        let state = self.state
        server = HTTPServer(handler: ClosureHandler { req, respond in
            var body = req.body
            if let enc = req.headers["content-encoding"] {
                body = (try? ContentDecoding.decode(body, contentEncoding: enc, limits: DecompressionLimits())) ?? []
            }
            let a = state.answer.withLock { $0 }
            state.received.withLock { $0.append(Received(path: req.path, headers: req.headers, body: body, status: a.status)) }
            respond(HTTPResponse(status: a.status, headers: a.headers + [("Content-Type", "application/json")], body: Array(a.body.utf8)))
        }, logger: Logger(label: "sink"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: port)])
        self.port = server.boundPorts[0]
    }

    var requests: [Received] { state.received.withLock { $0 } }

    /// Every Zipkin span id received in a request answered 2xx (JSON bodies).
    func zipkinIDs() throws -> [UInt64] {
        try requests.filter { $0.path == "/api/v2/spans" && (200..<300).contains($0.status) }.flatMap { r in
            try ZipkinJSONV2.decode(r.body, metadata: BatchMetadata(format: .zipkinV2JSON)).spans.map(\.id)
        }
    }

    func stop() {
        let done = DispatchSemaphore(value: 0)
        server.shutdown(grace: .milliseconds(100)) { done.signal() }
        done.wait()
    }
}

/// A relay over real sockets with a config text; ingest on a free port, no admin listener.
final class TestRelay: Sendable {
    let service: RelayService
    let port: Int
    let spillDir: String

    init(_ yaml: String, spillDir: String? = nil, debugCapture: Int = 0) throws {
        let file = try RelayFile.parse(yaml: yaml)
        let table = try RoutingTable(file.routing)
        var o = RelayOverrides()
        o.listen = ["127.0.0.1:0"]
        let dir = spillDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("tr-pipeline-\(UInt64.random(in: 0..<UInt64.max))").path
        o.spillDirectory = dir
        var s = try RelayService.Settings(file: file, table: table, overrides: o)
        s.admin = nil
        s.debugCapture = debugCapture
        s.shutdownGrace = .seconds(2)
        service = try RelayService(settings: s, logger: Logger(label: "relay"))
        try service.start()
        port = service.boundListeners[0].port
        self.spillDir = dir
    }

    /// POSTs with the project's HTTP client (a fresh one each time, so every request is independent).
    func post(_ path: String, _ body: [UInt8], headers: [(String, String)] = [("Content-Type", "application/json")],
              method: String = "POST") throws -> (Int, [(String, String)], String) {
        let client = HTTPClient(endpoint: ClientEndpoint(host: "127.0.0.1", port: port), group: TestRelay.clientGroup, logger: Logger(label: "client"))
        defer { client.shutdown() }
        let out = Mutex<(Int, [(String, String)], String)?>(nil)
        let done = DispatchSemaphore(value: 0)
        client.send(ClientRequest(method: method, path: path, headers: headers.map { (name: $0.0, value: $0.1) }, body: body)) { r in
            switch r {
            case .success(let resp):
                out.withLock { $0 = (resp.status, resp.headers.map { ($0.name, $0.value) }, String(decoding: resp.body, as: UTF8.self)) }
            case .failure(let e):
                out.withLock { $0 = (-1, [], e.description) }
            }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 10)
        return out.withLock { $0 } ?? (-1, [], "timeout")
    }

    static let clientGroup = EventLoopGroup(loopCount: 1)

    func stop() {
        let done = DispatchSemaphore(value: 0)
        service.shutdown { done.signal() }
        done.wait()
    }

    func stats(_ backend: String) -> BackendStats.Snapshot { service.backendStats[backend]!.snapshot }
}

func zipkinBody(_ ids: Range<Int>, trace: Int = 1) -> [UInt8] {
    let spans = ids.map { i in
        #"{"traceId":"\#(String(trace, radix: 16))","id":"\#(String(i + 1, radix: 16))","name":"op","timestamp":1700000000000000,"duration":5,"localEndpoint":{"serviceName":"web"}}"#
    }
    return Array(("[" + spans.joined(separator: ",") + "]").utf8)
}


func zipkinConfig(_ port: Int, extra: String = "", spill: String = "") -> String {
    """
    type: Relay
    \(spill)
    backends:
      - name: sink
        type: zipkin
        export: {batchDelay: 20ms, maxBackoff: 200ms, downAfter: 2 \(extra)}
        conf: {url: 'http://127.0.0.1:\(port)/api/v2/spans', traceId128bit: true}
    ---
    type: Mesh
    name: default
    tracing:
      defaultBackend: sink
    """
}

@Suite(.serialized) struct PipelineTests {
    @Test func spansReachTheBackendOnceAndInOrder() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let relay = try TestRelay(zipkinConfig(sink.port))
        defer { relay.stop() }
        for k in 0..<10 {
            let (status, _, _) = try relay.post("/api/v2/spans", zipkinBody((k * 50)..<((k + 1) * 50)))
            #expect(status == 202)
        }
        #expect(try eventually { try sink.zipkinIDs().count >= 500 })
        let ids = try sink.zipkinIDs()
        #expect(ids.count == 500, "no span twice")
        #expect(Set(ids) == Set((1...500).map(UInt64.init)))
        // The counter moves when the sink's answer is back, just after it holds the spans.
        #expect(eventually { relay.stats("sink").sentSpans == 500 })
        #expect(sink.requests.count < 10, "records are batched into fewer requests (\(sink.requests.count))")
    }

    @Test func retryableAnswersAreRetriedUntilDelivered() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        sink.state.answer.withLock { $0 = (503, "{\"error\":\"busy\"}", []) }
        let relay = try TestRelay(zipkinConfig(sink.port))
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<20)).0 == 202)
        #expect(eventually { relay.stats("sink").failedRequests >= 2 })
        #expect(eventually { !relay.stats("sink").up }, "marked down after downAfter failures")
        sink.state.answer.withLock { $0 = (200, "", []) }
        #expect(try eventually { Set(try sink.zipkinIDs()).count == 20 })
        // The counters move when the sink's answer is back, just after it holds the spans.
        #expect(eventually { relay.stats("sink").sentSpans == 20 && relay.stats("sink").up })
    }

    @Test func permanentAnswersDropAndCountWithoutLooping() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        sink.state.answer.withLock { $0 = (400, "{\"error\":\"bad span\"}", []) }
        let relay = try TestRelay(zipkinConfig(sink.port))
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<7)).0 == 202)
        #expect(eventually { relay.stats("sink").droppedSpans == 7 })
        usleep(300_000)
        #expect(sink.requests.count == 1, "a permanent answer is not retried")
        #expect(relay.stats("sink").lastError?.contains("bad span") == true)
    }

    @Test func fullQueueAnswers429WithRetryAfterAndLosesNothingAccepted() throws {
        let sink = try SinkServer()
        let port = sink.port
        sink.stop() // the backend is down from the start
        let spill = "spill: {memoryBytes: 4KiB, maxDiskBytes: 64KiB, whenFull: reject, durability: memory}"
        let relay = try TestRelay(zipkinConfig(port, spill: spill))
        defer { relay.stop() }
        var accepted: [Range<Int>] = []
        var saw429 = false
        for k in 0..<40 {
            let r = (k * 10)..<((k + 1) * 10)
            let (status, headers, _) = try relay.post("/api/v2/spans", zipkinBody(r))
            if status == 202 { accepted.append(r) }
            if status == 429 {
                saw429 = true
                #expect(headers.contains { $0.0.lowercased() == "retry-after" })
            }
        }
        #expect(saw429)
        #expect(!accepted.isEmpty)
        let back = try SinkServer(port: port)
        defer { back.stop() }
        let want = Set(accepted.flatMap { $0 }.map { UInt64($0 + 1) })
        #expect(try eventually(15) { want.isSubset(of: Set(try back.zipkinIDs())) })
    }

    @Test func shutdownSpillsWhatIsUnsentAndTheNextStartReplaysIt() throws {
        let sink = try SinkServer()
        let port = sink.port
        sink.stop()
        let first = try TestRelay(zipkinConfig(port))
        #expect(try first.post("/api/v2/spans", zipkinBody(0..<30)).0 == 202)
        first.stop()
        let back = try SinkServer(port: port)
        defer { back.stop() }
        let second = try TestRelay(zipkinConfig(port), spillDir: first.spillDir)
        defer { second.stop() }
        #expect(try eventually(15) { Set(try back.zipkinIDs()).count == 30 })
    }

    @Test func datadogRatesArePassedBackToTracers() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        sink.state.answer.withLock { $0 = (200, #"{"rate_by_service":{"service:web,env:":0.25}}"#, []) }
        let relay = try TestRelay("""
        type: Mesh
        name: default
        tracing:
          defaultBackend: dd
          backends:
            - {name: dd, type: datadog, export: {batchDelay: 10ms}, conf: {address: 127.0.0.1, port: \(sink.port)}}
        """)
        defer { relay.stop() }
        let z = zipkinBody(0..<3)
        #expect(try relay.post("/api/v2/spans", z).0 == 202)
        #expect(eventually { !sink.requests.isEmpty })
        let req = sink.requests[0]
        #expect(req.path == "/v0.4/traces")
        #expect(req.headers["x-datadog-trace-count"] == "1")
        #expect(try DatadogV04.decode(req.body, metadata: BatchMetadata(format: .datadogV04)).count == 3)
        // A Datadog tracer whose spans route to that backend now gets its rates.
        let dd = #"[[{"trace_id":7,"span_id":8,"name":"x","service":"web","resource":"r","start":1700000000000000000,"duration":10}]]"#
        let (status, _, body) = try relay.post("/v0.4/traces", Array(dd.utf8))
        #expect(status == 200)
        #expect(body.contains("\"service:web,env:\":0.25"), "\(body)")
    }

    @Test func datadogStatsAreForwardedAndTelemetryIsAccepted() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let relay = try TestRelay("""
        type: Mesh
        name: default
        tracing:
          defaultBackend: dd
          backends:
            - {name: dd, type: datadog, conf: {address: 127.0.0.1, port: \(sink.port)}}
        """)
        defer { relay.stop() }
        let stats: [UInt8] = [0x81, 0xa8] + Array("Hostname".utf8) + [0xa1, 0x68]
        let (status, _, body) = try relay.post("/v0.6/stats", stats, headers: [("Content-Type", "application/msgpack"), ("Datadog-Meta-Lang", "python")])
        #expect(status == 200 && body == "OK")
        #expect(eventually { sink.requests.contains { $0.path == "/v0.6/stats" } })
        let fwd = try #require(sink.requests.first { $0.path == "/v0.6/stats" })
        #expect(fwd.body == stats && fwd.headers["datadog-meta-lang"] == "python")
        #expect(try relay.post("/telemetry/proxy/api/v2/apmtelemetry", Array("{}".utf8)).0 == 202)
        #expect(relay.service.ingestStats.snapshot["datadog_telemetry"]?.requests == 1)
    }

    @Test func relayChainKeepsRequestTagsOverH2C() throws {
        let central = try TestRelay("""
        type: Relay
        trustUpstreamTags: true
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: d
          backends: [{name: d, type: discard}]
        """, debugCapture: 100)
        defer { central.stop() }
        let regional = try TestRelay("""
        type: Relay
        listeners:
          - {name: zone, address: 127.0.0.1:0, tags: {kuma.io/zone: eu-1, region: eu}}
        backends:
          - {name: central, type: tracerelay, export: {batchDelay: 10ms}, conf: {url: 'http://127.0.0.1:\(central.port)/api/v2/spans'}}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: central
        """)
        defer { regional.stop() }
        #expect(try regional.post("/api/v2/spans", zipkinBody(0..<25)).0 == 202)
        let dd = #"[[{"trace_id":7,"span_id":8,"name":"x","service":"web","resource":"r","start":1700000000000000000,"duration":10}]]"#
        #expect(try regional.post("/v0.4/traces", Array(dd.utf8)).0 == 200)
        #expect(eventually { central.service.capture.spanCount == 26 })
        let batches = central.service.capture.batches
        #expect(Set(batches.map(\.metadata.format)) == [.zipkinV2JSON, .datadogV04], "each family keeps its format between relays")
        for b in batches {
            let tags = Dictionary(b.metadata.requestTags.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            #expect(tags == ["kuma.io/zone": "eu-1", "region": "eu"])
        }
        // The sent counter moves when central's answer is back, just after it captured the spans.
        #expect(eventually { regional.stats("central").sentSpans == 26 })
    }

    @Test func statusShowsIngestRefusalsAndTheSharedLimits() throws {
        let relay = try TestRelay("type: Mesh\nname: default\ntracing:\n  backends: [{name: d, type: discard}]\n")
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<2)).0 == 202)
        let (status, _, body) = try relay.post("/status", [], method: "GET")
        #expect(status == 200)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        let zipkin = try #require((json["ingest"] as? [String: Any])?["zipkin_v2_json"] as? [String: Any])
        #expect(zipkin["spans"] as? Int == 2 && zipkin["too_many_spans"] as? Int == 0 && zipkin["overloaded"] as? Int == 0)
        let limits = try #require(json["limits"] as? [String: [String: Int]])
        #expect((limits["memory_budget"]?["limit_bytes"] ?? 0) > 0)
        #expect(limits["memory_budget"]?["in_use_bytes"] == 0, "released once the batch was taken")
        #expect((limits["body_budget"]?["limit_bytes"] ?? 0) > 0 && limits["body_budget"]?["used_bytes"] == 0)
    }
}
