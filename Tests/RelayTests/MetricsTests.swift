import TestSupport
import Dispatch
import Foundation
import Prometheus
import Synchronization
import Testing
import Transport
@testable import Relay

/// The Prometheus text format as a test reads it: samples by series (`name{labels}` with labels
/// as the exposition writes them), and the HELP and TYPE lines by family.
struct Exposition {
    var samples: [String: Double] = [:]
    var help: [String: String] = [:]
    var type: [String: String] = [:]

    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let rest = line.dropFirst(7)
                let name = rest.prefix { $0 != " " }
                help[String(name)] = String(rest.dropFirst(name.count + 1))
            } else if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                type[String(parts[0])] = String(parts[1])
            } else if let space = line.lastIndex(of: " ") {
                samples[String(line[..<space])] = Double(line[line.index(after: space)...])
            }
        }
    }

    /// The sample `name{k="v",…}` (labels in the order given), 0 when absent.
    func value(_ name: String, _ labels: [(String, String)] = []) -> Double {
        let key = labels.isEmpty ? name : name + "{" + labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
        return samples[key] ?? 0
    }

    /// Families (from the TYPE lines) of a histogram's or a plain metric's sample name.
    func family(of sample: String) -> String {
        let name = String(sample.prefix { $0 != "{" })
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if type[base] == "histogram" { return base }
        }
        return name
    }
}

extension TestRelay {
    /// GETs an admin path (admin endpoints share the ingest listener in `TestRelay`).
    func get(_ path: String) throws -> (Int, String) {
        let (status, _, body) = try post(path, [], headers: [], method: "GET")
        return (status, body)
    }

    func scrape() throws -> Exposition {
        let (status, body) = try get("/metrics")
        #expect(status == 200)
        return Exposition(body)
    }
}

@Suite(.serialized) struct MetricsTests {
    /// A known load through a real relay to a real backend over loopback; every counter of the
    /// exposition equals what was sent, refused and delivered.
    @Test func countersEqualTheKnownLoadAndEveryFamilyHasHelpAndType() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let relay = try TestRelay(zipkinConfig(sink.port))
        defer { relay.stop() }
        let listener = relay.service.boundListeners[0].name

        // Uneven request sizes, so a counter that counts requests instead of spans (or the reverse) fails.
        let sizes = [7, 50, 1, 33, 12]
        let requests = sizes.count
        var spans = 0, bytes = 0
        for (k, n) in sizes.enumerated() {
            let body = zipkinBody(spans..<(spans + n), trace: k + 1)
            #expect(try relay.post("/api/v2/spans", body).0 == 202)
            spans += n
            bytes += body.count
        }
        #expect(try relay.post("/api/v2/spans", Array("[{\"traceId\":".utf8)).0 == 400, "a truncated body is refused (parse)")
        #expect(try relay.post("/api/v2/spans", Array("x".utf8), headers: [("Content-Type", "text/xml")]).0 == 415)
        #expect(eventually { relay.stats("sink").sentSpans == spans })

        let m = try relay.scrape()
        let l = [("listener", listener), ("format", "zipkin_v2_json")]
        #expect(m.value("tracerelay_ingest_spans_received_total", l) == Double(spans))
        #expect(m.value("tracerelay_ingest_bytes_received_total", l) == Double(bytes))
        #expect(m.value("tracerelay_ingest_requests_total", l) == Double(requests + 1))
        #expect(m.value("tracerelay_ingest_requests_refused_total", l + [("reason", "parse")]) == 1)
        #expect(m.value("tracerelay_ingest_requests_refused_total", [("listener", listener), ("format", "unknown"), ("reason", "unsupported")]) == 1)
        #expect(m.value("tracerelay_spans_routed_total", [("backend", "sink")]) == Double(spans))
        let delivered = try sink.zipkinIDs().count
        #expect(delivered == spans)
        #expect(m.value("tracerelay_backend_spans_sent_total", [("backend", "sink")]) == Double(delivered))
        let okRequests = sink.requests.filter { (200..<300).contains($0.status) }
        #expect(m.value("tracerelay_backend_requests_sent_total", [("backend", "sink")]) == Double(okRequests.count))
        #expect(m.value("tracerelay_backend_bytes_sent_total", [("backend", "sink")]) == Double(okRequests.reduce(0) { $0 + $1.body.count }))
        #expect(m.value("tracerelay_backend_export_duration_seconds_count", [("backend", "sink")]) == Double(okRequests.count))
        #expect(m.value("tracerelay_backend_up", [("backend", "sink")]) == 1)
        #expect(m.value("tracerelay_backend_spans_retried_total", [("backend", "sink")]) == 0)
        #expect(m.value("tracerelay_http_responses_total", [("listener", listener), ("code", "202")]) == Double(requests))
        #expect(m.value("tracerelay_http_responses_total", [("listener", listener), ("code", "400")]) == 1)
        #expect(m.value("tracerelay_http_responses_total", [("listener", listener), ("code", "415")]) == 1)
        // No admin listener here: every request on the listener is timed (this scrape answers after it is read).
        #expect(m.value("tracerelay_ingest_request_duration_seconds_count", [("listener", listener)]) == Double(requests + 2))
        #expect(m.value("tracerelay_queue_bytes", [("backend", "sink"), ("tier", "disk")]) == 0)
        #expect(m.value("tracerelay_build_info", [("version", relayVersion)]) == 1)
        #expect(m.value("tracerelay_http_open_connections") >= 1)

        #expect(!m.samples.isEmpty)
        for sample in m.samples.keys {
            let family = m.family(of: sample)
            #expect(m.type[family] != nil, "\(sample) has a TYPE line")
            #expect(m.help[family]?.isEmpty == false, "\(sample) has a HELP line")
            #expect(family.hasPrefix("tracerelay_"))
            if m.type[family] == "counter" { #expect(family.hasSuffix("_total"), "counter \(family) ends in _total") }
        }
    }

    /// Residency and sampling refusals appear with their region and backend; the status JSON's
    /// `refused_by_region` agrees.
    @Test func residencyRefusalsAreCountedByRegion() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let relay = try TestRelay("""
        type: Relay
        region: eu-west-1
        zoneRegions: {us-zone: us-east-1}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: sink
          backends:
            - name: sink
              type: zipkin
              region: eu-west-1
              export: {batchDelay: 20ms}
              conf: {url: 'http://127.0.0.1:\(sink.port)/api/v2/spans', traceId128bit: true}
        """)
        defer { relay.stop() }
        func span(_ i: Int, _ region: String?) -> String {
            let tags = region.map { #","tags":{"region":"\#($0)"}"# } ?? ""
            return #"{"traceId":"\#(String(i, radix: 16))","id":"\#(String(i, radix: 16))","name":"op","localEndpoint":{"serviceName":"web"}\#(tags)}"#
        }
        let body = "[" + [span(1, "us-east-1"), span(2, "us-east-1"), span(3, "us-east-1"), span(4, "ap-south-1"), span(5, nil), span(6, "eu-west-1")]
            .joined(separator: ",") + "]"
        #expect(try relay.post("/api/v2/spans", Array(body.utf8)).0 == 202)
        #expect(eventually { relay.stats("sink").sentSpans == 2 })
        let m = try relay.scrape()
        #expect(m.value("tracerelay_spans_refused_total", [("reason", "residency"), ("region", "us-east-1"), ("backend", "sink")]) == 3)
        // A region the configuration does not name is labelled `other` (bounded label values).
        #expect(m.value("tracerelay_spans_refused_total", [("reason", "residency"), ("region", "other"), ("backend", "sink")]) == 1)
        #expect(m.value("tracerelay_spans_routed_total", [("backend", "sink")]) == 2)

        let (status, json) = try relay.get("/api/status")
        #expect(status == 200)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let routing = try #require(doc["routing"] as? [String: Any])
        #expect(routing["refused_by_region"] as? [String: Int] == ["us-east-1": 3, "other": 1])
        let problems = try #require(doc["problems"] as? [String])
        #expect(problems.contains { $0.contains("4 spans refused for data residency") })
    }

    /// The response-code table and the latency histogram, driven as the server drives a handler.
    @Test func instrumentedHandlerCountsCodesPerListenerAndTimesOnlyIngest() {
        let registry = PrometheusCollectorRegistry()
        let instruments = HTTPInstruments(listeners: ["in", "admin"], untimed: ["admin"], registry: registry)
        let handler = InstrumentedHandler(ClosureHandler { req, respond in
            respond(HTTPResponse(status: Int(req.path.dropFirst()) ?? 500))
        }, instruments: instruments)
        let answered = Mutex(0)
        for (listener, path) in [("in", "/202"), ("in", "/202"), ("in", "/429"), ("admin", "/200"), ("elsewhere", "/404"), ("in", "/42")] {
            handler.handle(HTTPRequest(method: "GET", path: path, listener: listener)) { _ in answered.withLock { $0 += 1 } }
        }
        #expect(answered.withLock { $0 } == 6)
        let counts = Dictionary(instruments.responses().map { ("\($0.listener) \($0.code)", $0.count) }, uniquingKeysWith: +)
        #expect(counts == ["in 202": 2, "in 429": 1, "admin 200": 1, "other 404": 1, "in other": 1])
        let m = Exposition(registry.emitToString())
        #expect(m.value("tracerelay_ingest_request_duration_seconds_count", [("listener", "in")]) == 4)
        #expect(m.samples["tracerelay_ingest_request_duration_seconds_count{listener=\"admin\"}"] == nil, "the admin listener is not timed")
    }

    @Test func refusalCodesMapToTheDocumentedReasons() {
        #expect(RelayMetrics.refusalReason("bad_payload") == "parse")
        #expect(RelayMetrics.refusalReason("body_too_large") == "too_large")
        #expect(RelayMetrics.refusalReason("too_many_spans") == "too_large")
        #expect(RelayMetrics.refusalReason("queue_full") == "queue_full")
        #expect(RelayMetrics.snakeCase("memoryFull") == "memory_full")
    }
}
