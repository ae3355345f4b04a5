import TestSupport
import Testing
import Spans
@testable import Routing

@Suite struct SamplingTests {
    static func config(percent: Double) -> String {
        "type: Mesh\nname: default\ntracing:\n  backends:\n\(zipkin("z", sampling: percent))\n"
    }

    @Test func tenPercentKeepsTenPercentOfRandomTraceIDs() throws {
        let t = try table(Self.config(percent: 10))
        let seed: UInt64 = 0x10_9E7C
        print("ten percent sampling: seed \(seed)")
        var rng = SplitMix64(seed: seed)
        var specs: [TestSpan] = []
        for _ in 0..<100_000 { specs.append(TestSpan(service: "web", trace: TraceID(high: rng.next(), low: rng.next()))) }
        let r = t.route(makeBatch(specs))
        let kept = r.perBackend[0].count
        #expect((9_000...11_000).contains(kept), "kept \(kept) of 100000 (seed \(seed))")
        #expect(r.sampledOut[0] == 100_000 - kept)
    }

    @Test(arguments: [0.0, 1, 33.3, 50, 99.9, 100])
    func sameTraceIDSameDecisionEverywhere(_ percent: Double) throws {
        // Two tables parsed independently (separate arenas and caches) stand in for two relays.
        let a = try table(Self.config(percent: percent)), b = try table(Self.config(percent: percent))
        var rng = SplitMix64(seed: UInt64(percent * 10))
        var routerB = Router(b, capacity: 16)
        for _ in 0..<2_000 {
            let id = TraceID(high: rng.next(), low: rng.next())
            // Different spans of one trace, different services and formats of the id (64-bit half).
            let batch = makeBatch([TestSpan(service: "web", trace: id), TestSpan(service: "db", trace: id),
                                   TestSpan(service: "api", trace: TraceID(low: id.low))])
            let d = (0..<3).map { a.route($0, in: batch).sampled }
            #expect(Set(d).count == 1)
            #expect(routerB.route(0, in: batch).sampled == d[0])
            // The documented rule, computed independently: keep iff low64 × 1111111111111111111
            // (mod 2^64) < percent/100 × 2^64.
            let h = id.low.multipliedReportingOverflow(by: 1_111_111_111_111_111_111).partialValue
            let expected = percent >= 100 || Double(h) < percent / 100 * 18446744073709551616.0
            #expect(d[0] == expected)
        }
    }

    @Test func upstreamDecisionsComeFirst() throws {
        let none = try table(Self.config(percent: 0)), all = try table(Self.config(percent: 100))
        let id = TraceID(low: 77)
        func sampled(_ t: RoutingTable, _ s: TestSpan) -> Bool { t.route(0, in: makeBatch([s])).sampled }
        #expect(sampled(none, TestSpan(service: "a", trace: id, debug: true)))
        #expect(sampled(none, TestSpan(service: "a", trace: id, priority: 2)))
        #expect(!sampled(none, TestSpan(service: "a", trace: id, priority: 1)))
        #expect(!sampled(all, TestSpan(service: "a", trace: id, priority: -1)))
        #expect(sampled(all, TestSpan(service: "a", trace: id, priority: 0)))
    }

    @Test func fallbackBackendUsesItsOwnSampling() throws {
        let y = regional.replacingFirst("url: http://eu-archive:9411", with: "url: http://eu-archive:9411")
            .replacingFirst("- name: eu-archive\n      type: zipkin", with: "- name: eu-archive\n      type: zipkin\n      sampling: 0")
        let t = try table(y)
        let d = t.route(0, in: makeBatch([TestSpan(tags: [("kuma.zone", "zone-eu-1")], service: "payments")]))
        #expect(d.usedFallback)
        #expect(!d.sampled)
    }
}
