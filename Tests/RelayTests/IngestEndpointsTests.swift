import Codecs
import Dispatch
import Routing
import Spans
import Synchronization
import Testing
import Transport
@testable import Relay

/// Drives the ingest and admin routes as the server does (request in, one answer out), without
/// sockets: transport is covered by TransportTests and the real-client suite in Tests/e2e.
final class IngestHarness: Sendable {
    let capture = CapturingConsumer(capacity: 100)
    let stats = IngestStats()
    let router: EndpointRouter

    init(configuration: IngestConfiguration = IngestConfiguration(), consumer: (any SpanConsumer)? = nil) {
        var r = EndpointRouter()
        IngestEndpoints(configuration: configuration, consumer: consumer ?? capture, stats: stats).register(into: &r)
        router = r
    }

    func send(_ path: String, method: String = "POST", body: [UInt8], headers: [(String, String)] = [],
              listener: String = "default") -> HTTPResponse {
        let answer = Mutex<HTTPResponse?>(nil)
        let done = DispatchSemaphore(value: 0)
        router.handle(HTTPRequest(method: method, path: path, headers: HTTPHeaders(headers.map { (name: $0.0, value: $0.1) }),
                                  body: body, listener: listener)) { r in
            answer.withLock { $0 = r }
            done.signal()
        }
        done.wait()
        return answer.withLock { $0! }
    }
}

let zipkinSpan = #"[{"traceId":"463ac35c9f6413ad48485a3953bb6124","id":"a2fb4a1d1a96d312","name":"get","timestamp":1700000000000000,"duration":1500,"localEndpoint":{"serviceName":"web"},"tags":{"kuma.zone":"eu-west-zone-1"}}]"#

func text(_ r: HTTPResponse) -> String { String(decoding: r.body, as: UTF8.self) }

@Suite struct IngestEndpointsTests {
    @Test func zipkinJSONIsDecodedCountedAndAnswered202() throws {
        let h = IngestHarness()
        let r = h.send("/api/v2/spans", body: Array(zipkinSpan.utf8), headers: [("Content-Type", "application/json; charset=utf-8")])
        #expect(r.status == 202)
        let batch = try #require(h.capture.batches.first)
        #expect(batch.count == 1)
        #expect(batch.spans[0].traceID.description == "463ac35c9f6413ad48485a3953bb6124")
        #expect(batch.metadata.format == .zipkinV2JSON)
        #expect(h.stats.snapshot["zipkin_v2_json"] == IngestStats.Snapshot(requests: 1, spans: 1, bytes: zipkinSpan.utf8.count, rejectedRequests: 0))
    }

    @Test func badPayloadIs400WithAReasonAndNothingIsConsumed() {
        let h = IngestHarness()
        let r = h.send("/api/v2/spans", body: Array(#"[{"traceId": 12"#.utf8), headers: [("Content-Type", "application/json")])
        #expect(r.status == 400)
        #expect(text(r).contains("\"error\":\"bad_payload\""))
        #expect(text(r).contains("byte"))
        #expect(h.capture.batchCount == 0)
        #expect(h.stats.snapshot["zipkin_v2_json"]?.rejectedRequests == 1)
    }

    @Test func wrongContentTypeIs415AndThriftIsExplained() {
        let h = IngestHarness()
        #expect(h.send("/api/v2/spans", body: [1], headers: [("Content-Type", "image/png")]).status == 415)
        let thrift = h.send("/api/v1/spans", body: [1], headers: [("Content-Type", "application/x-thrift")])
        #expect(thrift.status == 415)
        #expect(text(thrift).contains("Thrift"))
    }

    @Test func unknownContentEncodingIs415() {
        let h = IngestHarness()
        let r = h.send("/api/v2/spans", body: Array(zipkinSpan.utf8), headers: [("Content-Encoding", "br")])
        #expect(r.status == 415)
        #expect(text(r).contains("unsupported_content_encoding"))
    }

    @Test func upstreamTagsAreReadOnlyOnTrustedListeners() throws {
        var config = IngestConfiguration()
        config.listenerTags["edge"] = [("kuma.io/zone", "zone-a")]
        config.trustedListeners = ["relay"]
        let h = IngestHarness(configuration: config)
        let header = ("X-Tracerelay-Tags", "region=eu-west-1, kuma.io/zone=forged")
        _ = h.send("/api/v2/spans", body: Array(zipkinSpan.utf8), headers: [header], listener: "edge")
        _ = h.send("/api/v2/spans", body: Array(zipkinSpan.utf8), headers: [header], listener: "relay")
        let batches = h.capture.batches
        try #require(batches.count == 2)
        // Untrusted: only the listener's own tags.
        #expect(batches[0].metadata.requestTags.map { "\($0.key)=\($0.value)" } == ["kuma.io/zone=zone-a"])
        // Trusted: the header's tags.
        #expect(batches[1].metadata.requestTags.map { "\($0.key)=\($0.value)" } == ["region=eu-west-1", "kuma.io/zone=forged"])
    }

    @Test func datadogAnswersLikeAnAgentAndKeepsTheTraceCount() throws {
        let h = IngestHarness()
        var w: [UInt8] = []
        var batch = SpanBatch()
        var span = Span(traceID: TraceID(low: 7), id: 8)
        span.name = batch.intern("web.request")
        span.localEndpoint.serviceName = batch.intern("checkout")
        batch.spans.append(span)
        DatadogV04.encode(batch, into: &w)
        let r = h.send("/v0.4/traces", method: "PUT", body: w, headers: [("Content-Type", "application/msgpack"), ("X-Datadog-Trace-Count", "1")])
        #expect(r.status == 200)
        #expect(text(r).contains("rate_by_service"))
        let got = try #require(h.capture.batches.first)
        #expect(got.metadata.declaredTraceCount == 1)
        #expect(got.string(got.spans[0].localEndpoint.serviceName) == "checkout")
        #expect(h.send("/info", method: "GET", body: []).status == 200)
        // v0.3 takes msgpack too, answers "OK", and is counted as what it is, not as JSON.
        let v03 = h.send("/v0.3/traces", method: "PUT", body: w, headers: [("Content-Type", "application/msgpack")])
        #expect(v03.status == 200 && text(v03) == "OK")
        #expect(h.capture.batches.last?.metadata.format == .datadogV03Msgpack)
        #expect(h.stats.snapshot["datadog_v03_msgpack"]?.spans == 1)
        #expect(h.stats.snapshot["datadog_v03_json"] == nil)
    }

    @Test func retryableRefusalBecomes429WithRetryAfter() {
        struct Full: SpanConsumer {
            func consume(_ batch: SpanBatch, completion: @escaping @Sendable (Result<Void, ConsumeError>) -> Void) {
                completion(.failure(ConsumeError(.retryable, code: .queueFull, message: "backend queue full", retryAfterSeconds: 3)))
            }
        }
        let h = IngestHarness(consumer: Full())
        let r = h.send("/api/v2/spans", body: Array(zipkinSpan.utf8))
        #expect(r.status == 429)
        #expect(r.headers.contains { $0.name == "Retry-After" && $0.value == "3" })
    }
}

@Suite struct RoutingConsumerTests {
    @Test func residencyRefusalsAndRoutedSpansAreCounted() throws {
        let config = try RelayConfig.parse(yaml: """
        type: Relay
        zoneRegions: {eu-zone: eu}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: us-backend
          backends:
            - name: us-backend
              type: zipkin
              region: us
              conf: {url: "http://127.0.0.1:1/api/v2/spans"}
            - name: eu-backend
              type: zipkin
              region: eu
              conf: {url: "http://127.0.0.1:2/api/v2/spans"}
        ---
        type: TrafficTrace
        name: us-only
        mesh: default
        selectors:
          - match: {kuma.io/service: '*', kuma.io/zone: us-zone}
        conf: {backend: us-backend}
        """)
        let capture = CapturingConsumer()
        let stats = RoutingStats()
        let consumer = RoutingConsumer(table: try RoutingTable(config), next: capture, stats: stats)
        let h = IngestHarness(consumer: consumer)
        // One eu-zone span: the Mesh default is the us backend, eu has no fallback → refused.
        // One us-zone span: routed to us-backend.
        let body = #"[{"traceId":"1","id":"1","name":"a","localEndpoint":{"serviceName":"web"},"tags":{"kuma.zone":"eu-zone"}},"# +
            #"{"traceId":"2","id":"2","name":"b","localEndpoint":{"serviceName":"web"},"tags":{"kuma.zone":"us-zone"}}]"#
        #expect(h.send("/api/v2/spans", body: Array(body.utf8)).status == 202)
        let s = stats.snapshot
        #expect(s.routed == ["us-backend": 1])
        #expect(s.refused == ["residency|eu|us-backend": 1])
        #expect(capture.spanCount == 2)
    }
}
