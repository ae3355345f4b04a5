import TestSupport
import Testing
import Spans
@testable import Routing

@Suite struct RelayConfigTests {
    @Test func relayDocumentSettings() throws {
        let c = try RelayConfig.parse(yaml: """
        type: Relay
        name: eu-relay
        region: eu-west-1
        listeners:
          - name: zipkin
            address: 0.0.0.0:9411
            tags:
              kuma.io/zone: zone-eu-1
          - address: "[::1]:0"
        admin:
          address: 127.0.0.1:0
        trustUpstreamTags: true
        zoneRegions:
          zone-eu-1: eu-west-1
        regions:
          eu-west-1:
            fallbackBackend: central
        spill:
          directory: /tmp/spill
          memoryBytes: 32MiB
          maxDiskBytes: 2GB
          maxTotalDiskBytes: 8GiB
          maxAge: 24h
          whenFull: dropOldest
          durability:
            default: spill
            backends:
              central: wal
        backends:
          - name: central
            type: tracerelay
            region: eu-west-1
            conf:
              url: http://central:9411/api/v2/spans
        """)
        #expect(c.region == "eu-west-1")
        // listeners, admin, trust and spill are the Relay module's (RelayFileTests).
        #expect(c.zoneRegions == ["zone-eu-1": "eu-west-1"])
        #expect(c.regions["eu-west-1"]?.fallbackBackend == "central")
        #expect(c.backends.map(\.kind) == [.tracerelay])
        #expect(c.diagnostics.isEmpty)
    }

    @Test func onlyKumaResourcesIsValidWithDefaults() throws {
        let c = try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        tracing:
          defaultBackend: zipkin
          backends:
            - name: zipkin
              type: zipkin
              sampling: 12.5
              conf:
                url: http://zipkin:9411/api/v2/spans
                traceId128bit: true
                apiVersion: httpProto
            - name: dd
              type: datadog
              conf:
                address: 127.0.0.1
                port: 8126
                splitService: true
        """)
        #expect(c.backends == [
            BackendConfig(name: "zipkin", kind: .zipkin, url: "http://zipkin:9411/api/v2/spans", sampling: 12.5,
                          traceId128bit: true, apiVersion: "httpProto", definedIn: "Mesh 'default'"),
            BackendConfig(name: "dd", kind: .datadog, address: "127.0.0.1", port: 8126, splitService: true, definedIn: "Mesh 'default'"),
        ])
    }

    @Test func embeddedDefaultWorksWithoutBackends() throws {
        let c = RelayConfig.embeddedDefault
        #expect(c.backends.map(\.kind) == [.log])
        let t = try RoutingTable(c)
        #expect(t.route(0, in: makeBatch([TestSpan(service: "x")])).backend == 0)
        // No region configured: residency is off, a span naming a region is still delivered.
        #expect(!t.residencyEnabled)
        let d = t.route(0, in: makeBatch([TestSpan(tags: [("region", "us-east-1")], service: "x")]))
        #expect(d.backend == 0 && d.refusal == nil)
    }

    @Test func residencyTurnsOnWithTheFirstPin() throws {
        let yaml = """
        type: Mesh
        name: default
        tracing:
          defaultBackend: a
          backends:
            - name: a
              type: discard
            - name: b
              type: discard
              region: eu
        """
        let t = try RoutingTable(try RelayConfig.parse(yaml: yaml))
        #expect(t.residencyEnabled)
        // `a` has no region: a span of region us is refused (fail closed), one without a region is not.
        #expect(t.route(0, in: makeBatch([TestSpan(tags: [("region", "us")], service: "x")])).refusal == .residency)
        #expect(t.route(0, in: makeBatch([TestSpan(service: "x")])).backend == 0)
    }

    @Test func exportOptionsAndFileBackendsParse() throws {
        let yaml = """
        type: Relay
        backends:
          - name: central
            type: tracerelay
            export: {protocol: http1, compression: zstd, batchSpans: 10, batchBytes: 64KiB, batchDelay: 50ms,
                     concurrency: 2, timeout: 2s, maxBackoff: 1s, downAfter: 5}
            conf:
              url: http://127.0.0.1:1/api/v2/spans
              urls: [http://127.0.0.1:2/api/v2/spans]
          - name: archive
            type: file
            conf: {path: /tmp/x, maxFileBytes: 1MiB}
        ---
        type: Mesh
        name: default
        tracing:
          defaultBackend: central
        """
        let c = try RelayConfig.parse(yaml: yaml)
        let central = try #require(c.backend(named: "central"))
        #expect(central.urls == ["http://127.0.0.1:1/api/v2/spans", "http://127.0.0.1:2/api/v2/spans"])
        #expect(central.export.protocolVersion == .http1 && central.export.compression == .zstd)
        #expect(central.export.batchSpans == 10 && central.export.batchBytes == 65536 && central.export.batchDelayMillis == 50)
        #expect(central.export.concurrency == 2 && central.export.timeoutSeconds == 2 && central.export.maxBackoffSeconds == 1)
        #expect(central.export.downAfter == 5)
        let archive = try #require(c.backend(named: "archive"))
        #expect(archive.kind == .file && archive.path == "/tmp/x" && archive.maxFileBytes == 1 << 20)
        #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
    }

    struct BadCase: Sendable, CustomStringConvertible {
        var yaml: String
        var document: Int?
        var path: String
        var message: String
        var description: String { path + ": " + message }
    }

    static let badCases: [BadCase] = [
        BadCase(yaml: "type: Relay\n---\ntype: Mesh\nname: m\ntracing:\n  backends:\n    - name: z\n      type: zipkin\n      sampling: 150\n      conf: {url: 'http://z'}\n",
                document: 2, path: "tracing.backends[0].sampling", message: "expected a number in 0...100, got 150"),
        BadCase(yaml: "type: Mesh\nname: m\ntracing:\n  backends:\n    - name: z\n      type: jaeger\n",
                document: 1, path: "tracing.backends[0].type", message: "expected backend type zipkin, datadog, tracerelay, file, log or discard, got 'jaeger'"),
        BadCase(yaml: "type: Mesh\nname: m\ntracing:\n  backends:\n    - name: d\n      type: datadog\n      conf: {address: a, port: abc}\n",
                document: 1, path: "tracing.backends[0].conf.port", message: "expected an integer in 1...65535, got 'abc'"),
        BadCase(yaml: "type: TrafficTrace\nname: t\nconf: {backend: x}\n",
                document: 1, path: "selectors", message: "missing required field 'selectors' (which dataplanes' traffic this policy traces)"),
        BadCase(yaml: "type: TrafficTrace\nname: t\nselectors: {match: x}\n",
                document: 1, path: "selectors", message: "expected a list, got a mapping"),
        BadCase(yaml: "name: x\n", document: 1, path: "", message: "document has neither 'type' (Universal form) nor 'kind' (Kubernetes form)"),
        BadCase(yaml: "type: MeshTrace\nname: m\nspec:\n  targetRef: {kind: Pod}\n  default: {backends: []}\n",
                document: 1, path: "spec.targetRef.kind", message: "expected targetRef kind Mesh, MeshSubset, MeshService or MeshServiceSubset, got 'Pod'"),
        BadCase(yaml: "type: TrafficTrace\nname: t\nmodificationTime: yesterday\nselectors:\n  - match: {a: b}\n",
                document: 1, path: "modificationTime", message: "expected an RFC 3339 time like 2024-05-01T10:00:00Z, got 'yesterday'"),
        BadCase(yaml: "type: Mesh\nname: m\n---\ntype: Mesh\nname: [oops\n", document: 2, path: "", message: "not valid YAML"),
    ]

    @Test(arguments: badCases) func invalidValuesNameDocumentPathAndExpectation(_ c: BadCase) {
        let e = #expect(throws: ConfigError.self) { try RelayConfig.parse(yaml: c.yaml) }
        let issue = e?.issues.first
        #expect(issue?.document == c.document)
        #expect(issue?.path == c.path)
        #expect(issue?.message.hasPrefix(c.message) == true, "got \(issue?.message ?? "nothing")")
        #expect(issue?.line != nil)
    }

    @Test func errorsAreAllReportedAtOnce() {
        let e = #expect(throws: ConfigError.self) {
            try RelayConfig.parse(yaml: "type: Mesh\nname: m\ntracing:\n  backends:\n    - name: a\n      type: zipkin\n      sampling: -1\n      conf: {url: 'ftp://x'}\n")
        }
        #expect(e?.issues.count == 2)
        #expect(e?.description.contains("document 1 (Mesh 'm') line 7, tracing.backends[0].sampling") == true)
    }

    @Test func unknownFieldsAreWarningsNamingTheField() throws {
        let c = try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        colour: blue
        tracing:
          backends:
            - name: z
              type: zipkin
              smapling: 5
              conf: {url: 'http://z:9411', extra: 1}
        ---
        type: TrafficPermission
        name: ignored
        """)
        let paths = c.diagnostics.map(\.path)
        #expect(paths == ["colour", "tracing.backends[0].smapling", "tracing.backends[0].conf.extra", "type"])
        #expect(c.diagnostics[0].message == "unknown field 'colour' ignored")
        #expect(c.diagnostics[0].document == 1)
        #expect(c.diagnostics[3].code == .ignoredResource)
    }

    @Test func kubernetesAndUniversalFormsGiveTheSameTable() throws {
        let universal = """
        type: Mesh
        name: default
        tracing:
          defaultBackend: zipkin
          backends:
            - name: zipkin
              type: zipkin
              sampling: 50
              conf: {url: 'http://zipkin:9411/api/v2/spans'}
        ---
        type: TrafficTrace
        name: web
        mesh: default
        selectors:
          - match:
              kuma.io/service: web
        conf:
          backend: zipkin
        ---
        type: MeshTrace
        name: subset
        mesh: default
        spec:
          targetRef:
            kind: MeshSubset
            tags: {version: v2}
          default:
            sampling: {overall: 20}
            tags:
              - {name: team, literal: core}
            backends:
              - type: Zipkin
                zipkin: {url: 'http://mt:9411/api/v2/spans'}
        """
        let kubernetes = """
        apiVersion: kuma.io/v1alpha1
        kind: Mesh
        metadata:
          name: default
        spec:
          tracing:
            defaultBackend: zipkin
            backends:
              - name: zipkin
                type: zipkin
                sampling: 50
                conf: {url: 'http://zipkin:9411/api/v2/spans'}
        ---
        apiVersion: kuma.io/v1alpha1
        kind: TrafficTrace
        mesh: default
        metadata:
          name: web
          namespace: kuma-system
        spec:
          selectors:
            - match:
                kuma.io/service: web
          conf:
            backend: zipkin
        ---
        apiVersion: kuma.io/v1alpha1
        kind: MeshTrace
        metadata:
          name: subset
          namespace: kuma-system
          labels:
            kuma.io/mesh: default
        spec:
          targetRef:
            kind: MeshSubset
            tags: {version: v2}
          default:
            sampling: {overall: 20}
            tags:
              - {name: team, literal: core}
            backends:
              - type: Zipkin
                zipkin: {url: 'http://mt:9411/api/v2/spans'}
        """
        let u = try table(universal), k = try table(kubernetes)
        #expect(u.rows == k.rows)
        #expect(u.rows.count == 3)
        #expect(u.backends.map(\.url) == k.backends.map(\.url))
        #expect(k.config.diagnostics.isEmpty, "\(k.config.diagnostics)")
        for s in [TestSpan(service: "web"), TestSpan(tags: [("version", "v2")], service: "web"), TestSpan(service: "x")] {
            #expect(backendName(u, s) == backendName(k, s))
        }
    }

    @Test func rfc3339() {
        #expect(parseRFC3339("1970-01-01T00:00:00Z") == 0)
        #expect(parseRFC3339("1970-01-01T01:00:00+01:00") == 0)
        #expect(parseRFC3339("2000-03-01T00:00:00.5Z") == 951_868_800_500_000_000)
        #expect(parseRFC3339("2000-03-01") == nil)
        #expect(parseRFC3339("2000-13-01T00:00:00Z") == nil)
    }

    /// Mutated and truncated valid configs must throw a ConfigError or parse; never trap.
    @Test func randomizedRobustness() throws {
        let seeds = [regional, fourBackends + trafficTrace("w", [[("kuma.io/service", "web")]], backend: "a"),
                     RelayConfig.embeddedDefaultYAML]
        var rng = SplitMix64(seed: 42)
        let alphabet = Array(":-[]{}'\"*\n #&!|>%@`\t0a".utf8)
        for i in 0..<600 {
            var bytes = Array(seeds[i % seeds.count].utf8)
            switch rng.next() % 3 {
            case 0: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            case 1: for _ in 0..<(1 + rng.next() % 4) { bytes[Int(rng.next() % UInt64(bytes.count))] = alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            default:
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + Int(rng.next() % 40))], at: Int(rng.next() % UInt64(bytes.count)))
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                let t = try RoutingTable(RelayConfig.parse(yaml: text))
                _ = t.route(makeBatch([TestSpan(tags: [("kuma.zone", "zone-us-1")], service: "web")]))
                _ = t.rows
            } catch {
                #expect(!error.issues.isEmpty)
            }
        }
    }
}
