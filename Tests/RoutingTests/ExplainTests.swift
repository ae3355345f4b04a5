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
        var rng = SplitMix(seed: 3)
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

    @Test func refusedSpanNamesReasonAndRegion() throws {
        let t = try table(regional)
        let e = t.explain(tags: [TagPair("kuma.io/service", "payments"), TagPair("kuma.zone", "zone-us-1")])
        #expect(e.backend == nil)
        #expect(e.refused == "residency")
        #expect(e.region == "us-east-1")
        #expect(!e.sampled)
    }
}
