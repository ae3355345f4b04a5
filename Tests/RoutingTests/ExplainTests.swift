import TestSupport
import Testing
import Spans
@testable import Routing

@Suite struct ExplainTests {
    @Test func explainsPolicyBackendRegionAndSampling() throws {
        let t = try table(regional)
        let e = t.explain(tags: [TagPair("kuma.io/service", "payments"), TagPair("kuma.zone", "zone-eu-1")], traceID: TraceID(low: 5))
        #expect(e.matched == ResourceRef(type: "TrafficTrace", name: "payments"))
        #expect(e.selectedBackend == "global")
        #expect(e.backend == "eu-archive")
        #expect(e.region == "eu-west-1")
        #expect(e.refused == nil)
        #expect(e.decision.usedFallback)
        #expect(e.notes.contains { $0.contains("fallback backend eu-archive") })
        #expect(e.candidates.filter(\.matched).map(\.resource.name) == ["payments"])
    }

    @Test func explainAgreesWithRouting() throws {
        let t = try table(regional)
        var rng = SplitMix64(seed: 3)
        for zone in ["zone-eu-1", "zone-us-1", "zone-x"] {
            for svc in ["web", "payments"] {
                let id = TraceID(low: rng.next())
                let e = t.explain(tags: [TagPair("kuma.io/service", svc), TagPair("kuma.zone", zone)], traceID: id)
                let d = t.route(0, in: makeBatch([TestSpan(tags: [("kuma.zone", zone)], service: svc, trace: id)]))
                #expect(e.decision == d)
                #expect(e.refused == d.refusal?.rawValue)
            }
        }
    }

    /// `explain` scans every selector; routing uses the by-service index. They must agree.
    @Test func indexedSelectionAgreesWithFullScan() throws {
        let y = fourBackends
            + trafficTrace("all", [[("kuma.io/service", "*")]], backend: "a")
            + trafficTrace("web", [[("kuma.io/service", "web")], [("team", "x")]], backend: "b")
            + trafficTrace("web-v2", [[("kuma.io/service", "web"), ("version", "v2")]], backend: "c")
            + trafficTrace("api-or-v2", [[("kuma.io/service", "api")], [("version", "v2"), ("team", "*")]], backend: "d")
            + trafficTrace("web-again", [[("kuma.io/service", "web")]], backend: "c")
        let t = try table(y)
        for svc in ["web", "api", "db", nil] {
            for version in ["v1", "v2", nil] {
                for team in ["x", "y", nil] {
                    var tags: [TagPair] = []
                    if let svc { tags.append(TagPair("kuma.io/service", svc)) }
                    if let version { tags.append(TagPair("version", version)) }
                    if let team { tags.append(TagPair("team", team)) }
                    let e = t.explain(tags: tags, traceID: TraceID(low: 1))
                    let d = t.route(0, in: makeBatch([TestSpan(tags: tags.map { ($0.key, $0.value) }, trace: TraceID(low: 1))]))
                    #expect(e.decision == d, "\(tags)")
                }
            }
        }
    }

    @Test func refusedSpanNamesReasonAndRegion() throws {
        let t = try table(regional)
        let e = t.explain(tags: [TagPair("kuma.io/service", "payments"), TagPair("kuma.zone", "zone-us-1")])
        #expect(e.backend == nil)
        #expect(e.refused == "residency")
        #expect(e.region == "us-east-1")
        #expect(!e.sampled)
    }
}
