import TestSupport
import Foundation
import Routing
import Testing
import Transport
@testable import Relay

@Suite(.serialized) struct StatusTests {
    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// `/api/status` over a real socket: backends with their counters and queue, the routing
    /// table, listeners, uptime, and per-second history that fills while spans flow.
    @Test func apiStatusShowsBackendsRoutingListenersAndHistory() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let relay = try TestRelay(zipkinConfig(sink.port))
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<25)).0 == 202)
        #expect(eventually { relay.stats("sink").sentSpans == 25 })
        // The sampler ticks once a second: two samples make one rate.
        var doc: [String: Any] = [:]
        #expect(try eventually(5) {
            doc = try Self.json(try relay.get("/api/status").1)
            let backends = doc["backends"] as? [[String: Any]] ?? []
            return ((backends.first?["history"] as? [String: Any])?["sent_per_second"] as? [Double])?.isEmpty == false
        })
        #expect(doc["version"] as? String == relayVersion)
        #expect((doc["uptime_seconds"] as? Double ?? -1) >= 0)
        #expect(doc["ready"] as? Bool == true)
        let backends = try #require(doc["backends"] as? [[String: Any]])
        #expect(backends.count == 1)
        let b = backends[0]
        #expect(b["name"] as? String == "sink")
        #expect(b["kind"] as? String == "zipkin")
        #expect(b["up"] as? Bool == true)
        #expect(b["sent_spans"] as? Int == 25)
        #expect(b["target"] as? String == "http://127.0.0.1:\(sink.port)/api/v2/spans")
        let queue = try #require(b["queue"] as? [String: Any])
        #expect(queue["memory_limit_bytes"] as? Int == SpillSettings().memoryBytes)
        let ingest = try #require(doc["ingest"] as? [String: Any])
        #expect(ingest["spans"] as? Int == 25)
        let listeners = try #require(doc["listeners"] as? [[String: Any]])
        #expect(listeners.map { $0["address"] as? String } == ["127.0.0.1:\(relay.port)"])
        let routing = try #require(doc["routing"] as? [String: Any])
        let rows = try #require(routing["rows"] as? [[String: Any]])
        #expect(rows.contains { $0["backend"] as? String == "sink" && $0["resource_type"] as? String == "Mesh" })
        #expect(doc["problems"] as? [String] == [])

        // The legacy `/status` still answers with its own shape.
        let legacy = try Self.json(try relay.get("/status").1)
        #expect(((legacy["backends"] as? [String: Any])?["sink"] as? [String: Any])?["sent_spans"] as? Int == 25)
    }

    /// A backend that refuses connections is down with its last error, and that is the first problem.
    @Test func aDownBackendIsAProblemWithItsLastError() throws {
        let sink = try SinkServer()
        let port = sink.port
        sink.stop()
        let relay = try TestRelay(zipkinConfig(port))
        defer { relay.stop() }
        #expect(try relay.post("/api/v2/spans", zipkinBody(0..<3)).0 == 202)
        #expect(eventually { !relay.stats("sink").up })
        let doc = try Self.json(try relay.get("/api/status").1)
        let b = try #require((doc["backends"] as? [[String: Any]])?.first)
        #expect(b["up"] as? Bool == false)
        #expect((b["last_error"] as? String)?.isEmpty == false)
        let problems = try #require(doc["problems"] as? [String])
        #expect(problems.first?.hasPrefix("backend sink is down") == true)
    }

    /// `/api/routes` answers what `explain` answers, for the same question.
    @Test func apiRoutesAnswersLikeExplain() throws {
        let yaml = """
        type: Relay
        zoneRegions: {eu-zone: eu}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: us-backend
          backends:
            - name: us-backend
              type: log
              region: us
            - name: eu-backend
              type: log
              region: eu
        ---
        type: TrafficTrace
        name: eu-web
        mesh: default
        selectors:
          - match: {kuma.io/service: web, kuma.io/zone: eu-zone}
        conf: {backend: eu-backend}
        """
        let relay = try TestRelay(yaml)
        defer { relay.stop() }
        let table = try RoutingTable(try RelayFile.parse(yaml: yaml).routing)
        let (status, body) = try relay.get("/api/routes?tag=kuma.io%2Fservice%3Dweb&tag=kuma.zone=eu-zone")
        #expect(status == 200)
        #expect(body == explanationJSON(table.explain(tags: [TagPair("kuma.io/service", "web"), TagPair("kuma.zone", "eu-zone")])))
        #expect(try Self.json(body)["backend"] as? String == "eu-backend")
        let refused = try Self.json(try relay.get("/api/routes?tag=kuma.zone=eu-zone&tag=kuma.io/service=api").1)
        #expect(refused["refused"] as? String == "residency")
        #expect(try relay.get("/api/routes?tag=novalue").0 == 400)
        #expect(try relay.get("/api/routes?trace_id=xyz").0 == 400)
        #expect(try relay.get("/api/routes?colour=red").0 == 400)
    }

    @Test func routeQueriesAreDecoded() throws {
        let q = try RouteQuery(query: "tag=a%3Db&tag=kuma.io/service=web+app&request_tag=region=eu&trace_id=ab&debug=1&sampling_priority=-1")
        #expect(q.tags == [TagPair("a", "b"), TagPair("kuma.io/service", "web app")])
        #expect(q.requestTags == [TagPair("region", "eu")])
        #expect(q.traceID == "ab")
        #expect(q.debug)
        #expect(q.samplingPriority == -1)
        #expect(RouteQuery.decode("%zz%4") == "%zz%4", "invalid escapes stay as written")
        #expect(throws: RouteQueryError.self) { try RouteQuery(query: "tag==v") }
        // "=" followed by a combining mark is one Character; the query is cut on bytes.
        #expect(try RouteQuery(query: "tag=k=%CC%81v").tags == [TagPair("k", "\u{301}v")])
        #expect(try RouteQuery(query: "tag=\u{301}k=v").tags == [TagPair("\u{301}k", "v")])
        #expect(throws: RouteQueryError.self) { try RouteQuery(query: "sampling_priority=300") }
    }

    /// The page is one self-contained document that polls `/api/status`.
    @Test func statusPageIsSelfContained() throws {
        let relay = try TestRelay(zipkinConfig(9))
        defer { relay.stop() }
        let (status, html) = try relay.get("/")
        #expect(status == 200)
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(html.contains("fetch(\"/api/status\""))
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "url(http"] {
            #expect(!html.contains(external), "no external asset (\(external))")
        }
    }
}
