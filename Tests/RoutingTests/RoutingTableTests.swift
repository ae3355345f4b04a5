import Testing
import Spans
@testable import Routing

let fourBackends = """
type: Mesh
name: default
tracing:
  defaultBackend: dflt
  backends:
\(zipkin("dflt"))
\(zipkin("a"))
\(zipkin("b"))
\(zipkin("c"))
\(zipkin("d"))

"""

@Suite struct TrafficTracePrecedenceTests {
    let precedence = fourBackends
        + trafficTrace("all", [[("kuma.io/service", "*")]], backend: "a")
        + trafficTrace("web", [[("kuma.io/service", "web")]], backend: "b")
        + trafficTrace("web-v2", [[("kuma.io/service", "web"), ("version", "v2")]], backend: "c")
        + trafficTrace("any-versioned", [[("kuma.io/service", "*"), ("version", "*")]], backend: "d")

    struct Case: Sendable, CustomStringConvertible {
        var tags: [(String, String)]
        var service: String?
        var want: String
        var matched: String
        var description: String { "\(tags) service=\(service ?? "-") → \(want)" }
    }

    static let cases: [Case] = [
        // 2 tags, 2 exact beats 2 tags 0 exact and 1 tag.
        Case(tags: [("version", "v2")], service: "web", want: "c", matched: "web-v2"),
        // more tags matched (2, both '*') beats fewer exact (1)
        Case(tags: [("version", "v1")], service: "web", want: "d", matched: "any-versioned"),
        // 1 exact beats 1 wildcard
        Case(tags: [], service: "web", want: "b", matched: "web"),
        Case(tags: [], service: "api", want: "a", matched: "all"),
        // The kuma.io/service span tag beats the service name.
        Case(tags: [("kuma.io/service", "web")], service: "api", want: "b", matched: "web"),
        // no service at all: '*' needs the tag present, so the Mesh default
        Case(tags: [], service: nil, want: "dflt", matched: "default"),
    ]

    @Test(arguments: cases) func mostSpecificPolicyWins(_ c: Case) throws {
        let t = try table(precedence)
        let batch = makeBatch([TestSpan(tags: c.tags, service: c.service)])
        let d = t.route(0, in: batch)
        #expect(d.backend.map { t.backends[$0].name } == c.want)
        #expect(d.matched.map { t.describe($0).name } == c.matched)
        #expect(d.refusal == nil)
    }

    @Test func laterModificationTimeWinsThenLaterDocument() throws {
        let timed = fourBackends
            + trafficTrace("newer", [[("kuma.io/service", "api")]], backend: "a", time: "2024-05-02T00:00:00Z")
            + trafficTrace("older", [[("kuma.io/service", "api")]], backend: "b", time: "2024-05-01T23:59:59+00:00")
        #expect(backendName(try table(timed), TestSpan(service: "api")) == "a")
        let untimed = fourBackends
            + trafficTrace("first", [[("kuma.io/service", "api")]], backend: "a")
            + trafficTrace("second", [[("kuma.io/service", "api")]], backend: "b")
        #expect(backendName(try table(untimed), TestSpan(service: "api")) == "b")
        // Only one has a time: document order decides.
        let mixed = fourBackends
            + trafficTrace("first", [[("kuma.io/service", "api")]], backend: "a", time: "2030-01-01T00:00:00Z")
            + trafficTrace("second", [[("kuma.io/service", "api")]], backend: "b")
        #expect(backendName(try table(mixed), TestSpan(service: "api")) == "b")
    }

    @Test func selectorsAreAlternativesAndAllTagsOfOneMustMatch() throws {
        let y = fourBackends + trafficTrace("alt", [[("kuma.io/service", "web"), ("team", "x")], [("kuma.io/service", "api")]], backend: "c")
        let t = try table(y)
        #expect(backendName(t, TestSpan(service: "api")) == "c")
        #expect(backendName(t, TestSpan(tags: [("team", "x")], service: "web")) == "c")
        #expect(backendName(t, TestSpan(tags: [("team", "y")], service: "web")) == "dflt")
    }

    @Test func defaultsWhenNothingMatchesOrNoBackendNamed() throws {
        let y = fourBackends + trafficTrace("nobackend", [[("kuma.io/service", "web")]], backend: nil)
        let t = try table(y)
        #expect(backendName(t, TestSpan(service: "web")) == "dflt")
        #expect(t.route(0, in: makeBatch([TestSpan(service: "web")])).matched.map { t.describe($0).name } == "nobackend")
        // Mesh without defaultBackend: Kuma uses the first backend.
        let noDefault = "type: Mesh\nname: default\ntracing:\n  backends:\n\(zipkin("first"))\n\(zipkin("second"))\n"
        #expect(backendName(try table(noDefault), TestSpan(service: "x")) == "first")
        // Mesh without tracing backends: refused as no_backend.
        let t2 = try table("type: Mesh\nname: default\n")
        #expect(t2.route(0, in: makeBatch([TestSpan(service: "x")])).refusal == .noBackend)
    }

    @Test func meshIsChosenFromKumaMeshTag() throws {
        let y = fourBackends + """
        ---
        type: Mesh
        name: other
        tracing:
          defaultBackend: o
          backends:
        \(zipkin("o"))
        """
        let t = try table(y)
        #expect(backendName(t, TestSpan(tags: [("kuma.mesh", "other")])) == "o")
        #expect(backendName(t, TestSpan(tags: [])) == "dflt")
        #expect(t.route(0, in: makeBatch([TestSpan(tags: [("kuma.mesh", "nope")])])).refusal == .unknownMesh)
    }
}

@Suite struct MeshTraceTests {
    let base = fourBackends + trafficTrace("all", [[("kuma.io/service", "*")]], backend: "a")

    func meshTrace(_ name: String, target: String, backend: String?, extra: String = "") -> String {
        let backends = backend.map { "\n    - type: Zipkin\n      name: \($0)\n      zipkin:\n        url: http://\($0):9411/api/v2/spans" } ?? " []"
        return "---\ntype: MeshTrace\nname: \(name)\nmesh: default\nspec:\n  targetRef:\n\(target)\n  default:\n    backends:\(backends)\n\(extra)"
    }

    @Test func meshTraceWinsOverTrafficTraceAndMoreSpecificTargetRefWins() throws {
        let y = base
            + meshTrace("mesh-wide", target: "    kind: Mesh", backend: "mt-mesh")
            + meshTrace("subset", target: "    kind: MeshSubset\n    tags:\n      version: v2", backend: "mt-subset")
            + meshTrace("svc", target: "    kind: MeshService\n    name: web", backend: "mt-web")
        let t = try table(y)
        #expect(backendName(t, TestSpan(service: "api")) == "mt-mesh")
        #expect(backendName(t, TestSpan(tags: [("version", "v2")], service: "api")) == "mt-subset")
        #expect(backendName(t, TestSpan(tags: [("version", "v2")], service: "web")) == "mt-web")
        let d = t.route(0, in: makeBatch([TestSpan(service: "web")]))
        #expect(d.matched == .meshTrace(2))
    }

    @Test func emptyBackendsSwitchTracingOffAndLiteralTagsAreAdded() throws {
        let y = base
            + meshTrace("off", target: "    kind: MeshService\n    name: noisy", backend: nil)
            + meshTrace("tagged", target: "    kind: Mesh", backend: "mt",
                        extra: "    sampling:\n      overall: 0\n    tags:\n      - name: team\n        literal: core\n      - name: env\n        header:\n          name: x-env\n          default: prod\n")
        let t = try table(y)
        #expect(t.route(0, in: makeBatch([TestSpan(service: "noisy")])).refusal == .tracingDisabled)
        let d = t.route(0, in: makeBatch([TestSpan(service: "api")]))
        #expect(t.tagSets[d.addedTags] == [TagPair("team", "core")])
        #expect(d.sampled == false)  // overall: 0
        #expect(t.route(0, in: makeBatch([TestSpan(service: "api", debug: true)])).sampled)
        #expect(t.config.meshTraces[1].headerTags.first?.header == "x-env")
    }

    @Test func withoutMeshTraceTrafficTraceApplies() throws {
        #expect(backendName(try table(base), TestSpan(service: "api")) == "a")
    }
}

/// Two regions; eu has a fallback backend, us has none.
let regional = """
type: Relay
region: eu-west-1
zoneRegions:
  zone-eu-1: eu-west-1
  zone-us-1: us-east-1
regions:
  eu-west-1:
    fallbackBackend: eu-archive
---
type: Mesh
name: default
tracing:
  defaultBackend: eu-zipkin
  backends:
\(zipkin("eu-zipkin", region: "eu-west-1"))
\(zipkin("eu-archive", region: "eu-west-1"))
    - name: us-datadog
      type: datadog
      region: us-east-1
      conf:
        address: us-agent
        port: 8126
\(zipkin("global"))

""" + trafficTrace("us", [[("kuma.io/zone", "zone-us-1")]], backend: "us-datadog")
    + trafficTrace("payments", [[("kuma.io/service", "payments")]], backend: "global")

@Suite struct ResidencyTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var tags: [(String, String)]
        var service: String?
        var backend: String?
        var refusal: RouteDecision.Refusal?
        var fallback = false
        var region: String?
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "us span to us backend", tags: [("kuma.zone", "zone-us-1")], service: "web", backend: "us-datadog", region: "us-east-1"),
        Case(name: "eu span to eu default", tags: [("zone", "zone-eu-1")], service: "web", backend: "eu-zipkin", region: "eu-west-1"),
        Case(name: "eu span to unpinned backend goes to eu fallback", tags: [("kuma.zone", "zone-eu-1")], service: "payments",
             backend: "eu-archive", fallback: true, region: "eu-west-1"),
        // Both policies match with one exact tag; the later document (payments → global) wins;
        // global has no region and us-east-1 has no fallback: refused.
        Case(name: "us span to unpinned backend without fallback is refused", tags: [("kuma.zone", "zone-us-1")], service: "payments",
             backend: nil, refusal: .residency, region: "us-east-1"),
        Case(name: "no region follows selectors", tags: [], service: "payments", backend: "global", region: nil),
        Case(name: "zone not in map is not pinned", tags: [("kuma.zone", "zone-x")], service: "payments", backend: "global", region: nil),
        Case(name: "explicit region tag beats zone map", tags: [("region", "us-east-1"), ("kuma.zone", "zone-eu-1")], service: "web",
             backend: nil, refusal: .residency, region: "us-east-1"),
        Case(name: "region unknown to config is refused", tags: [("region", "mars")], service: "web", backend: nil, refusal: .residency, region: "other"),
        Case(name: "explicit eu region to eu default", tags: [("region", "eu-west-1")], service: "web", backend: "eu-zipkin", region: "eu-west-1"),
    ]

    @Test(arguments: cases) func pinning(_ c: Case) throws {
        let t = try table(regional)
        let d = t.route(0, in: makeBatch([TestSpan(tags: c.tags, service: c.service)]))
        #expect(d.backend.map { t.backends[$0].name } == c.backend)
        #expect(d.refusal == c.refusal)
        #expect(d.usedFallback == c.fallback)
        #expect(c.region == nil ? d.region == nil : t.regionLabel(d.region) == c.region)
        if let b = d.backend, let r = d.region, r >= 0 { #expect(t.backends[b].region == t.regionNames[r]) }
    }

    @Test func refusalsAreCountedPerRegionAndBackend() throws {
        let t = try table(regional)
        let specs = [TestSpan(tags: [("kuma.zone", "zone-us-1")], service: "payments"),
                     TestSpan(tags: [("kuma.zone", "zone-us-1")], service: "payments"),
                     TestSpan(tags: [("kuma.zone", "zone-eu-1")], service: "web")]
        let r = t.route(makeBatch(specs))
        #expect(r.refused == [.init(reason: .residency, region: "us-east-1", backend: "global", count: 2)])
        #expect(r.perBackend[t.backendIndex(named: "eu-zipkin")!].map(\.span) == [2])
    }

    @Test func contradictionIsAnError() throws {
        let bad = regional + trafficTrace("wrong", [[("kuma.io/zone", "zone-us-1"), ("kuma.io/service", "x")]], backend: "eu-zipkin")
        let e = #expect(throws: ConfigError.self) { try table(bad) }
        let issue = try #require(e?.issues.first { $0.code == .residency })
        #expect(issue.resource == "TrafficTrace 'wrong'")
        #expect(issue.document == 5)
        #expect(issue.message.contains("us-east-1") && issue.message.contains("eu-zipkin"))
        let badRegion = regional + trafficTrace("r", [[("region", "eu-west-1")]], backend: "us-datadog")
        #expect(throws: ConfigError.self) { try table(badRegion) }
    }

    @Test func fallbackMustExistAndBeInItsRegion() throws {
        let wrong = regional.replacingFirst("fallbackBackend: eu-archive", with: "fallbackBackend: us-datadog")
        let e = #expect(throws: ConfigError.self) { try table(wrong) }
        #expect(e?.issues.contains { $0.path == "regions.eu-west-1.fallbackBackend" && $0.code == .residency } == true)
        let missing = regional.replacingFirst("fallbackBackend: eu-archive", with: "fallbackBackend: nope")
        let e2 = #expect(throws: ConfigError.self) { try table(missing) }
        #expect(e2?.issues.first?.code == .unknownReference)
    }

    @Test func wildcardToPinnedBackendIsAWarningNamingTheResource() throws {
        let y = regional + trafficTrace("everything", [[("kuma.io/service", "*")]], backend: "eu-zipkin")
        let t = try table(y)
        let w = t.warnings.filter { $0.code == .residency }
        #expect(w.contains { $0.resource == "TrafficTrace 'everything'" && $0.message.contains("us-east-1 → refused") })
        #expect(w.contains { $0.resource == "Mesh 'default'" })
    }

    @Test func requestTagsWinOverSpanTags() throws {
        let t = try table(regional)
        // Listener tag says us; span says eu.
        #expect(backendName(t, TestSpan(tags: [("kuma.zone", "zone-eu-1")], service: "web"), requestTags: [("kuma.io/zone", "zone-us-1")]) == "us-datadog")
        // Earlier request tag (listener) beats later (upstream header).
        #expect(backendName(t, TestSpan(service: "web"), requestTags: [("kuma.io/zone", "zone-eu-1"), ("kuma.io/zone", "zone-us-1")]) == "eu-zipkin")
        // ...whichever alias each uses.
        #expect(backendName(t, TestSpan(service: "web"), requestTags: [("zone", "zone-eu-1"), ("kuma.io/zone", "zone-us-1")]) == "eu-zipkin")
        // kuma.zone beats Envoy's zone regardless of order.
        #expect(backendName(t, TestSpan(tags: [("zone", "zone-eu-1"), ("kuma.zone", "zone-us-1")], service: "web")) == "us-datadog")
    }
}

extension String {
    func replacingFirst(_ a: String, with b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
