import Buffering
import Routing
import Testing
@testable import Relay

/// The Relay document's own settings (listeners, admin, trust, spill), read from the same file
/// as the routing part, with one list of errors.
@Suite struct RelayFileTests {
    @Test func relayDocumentSettings() throws {
        let f = try RelayFile.parse(yaml: """
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
            conf:
              url: http://central:9411/api/v2/spans
        """)
        let r = f.relay
        #expect(r.listeners == [ListenerSettings(name: "zipkin", address: "0.0.0.0:9411", tags: [TagPair("kuma.io/zone", "zone-eu-1")]),
                                ListenerSettings(name: "listener-1", address: "[::1]:0")])
        #expect(r.adminAddress == "127.0.0.1:0")
        #expect(r.trustUpstreamTags)
        #expect(r.spill.directory == "/tmp/spill")
        #expect(r.spill.memoryBytes == 32 << 20)
        #expect(r.spill.maxDiskBytes == 2_000_000_000)
        #expect(r.spill.whenFull == WhenFull.dropOldest)
        #expect(r.spill.maxTotalDiskBytes == 8 << 30)
        #expect(r.spill.maxAgeSeconds == 86_400)
        #expect(r.spill.durability(for: "central") == DurabilityMode.wal)
        #expect(r.spill.durability(for: "other") == DurabilityMode.spill)
        #expect(f.routing.region == "eu-west-1")
        #expect(f.routing.backends.map(\.kind) == [.tracerelay])
        #expect(f.routing.diagnostics.isEmpty, "every key is known to one of the two readers: \(f.routing.diagnostics)")
    }

    @Test func defaultsAndTheEmbeddedDefault() throws {
        let plain = try RelayFile.parse(yaml: "type: Mesh\nname: default\n")
        #expect(plain.relay.listeners.map(\.address) == [RelayDocument.defaultListenerAddress])
        #expect(plain.relay.adminAddress == RelayDocument.defaultAdminAddress)
        let d = RelayFile.embeddedDefault
        #expect(d.relay.listeners.map(\.address) == ["127.0.0.1:9411", "127.0.0.1:8126"])
        #expect(d.relay.adminAddress == "127.0.0.1:9901")
        #expect(d.routing.backends.map(\.kind) == [.log])
    }

    @Test(arguments: [
        ("type: Relay\nlisteners:\n  - address: nowhere\n", "listeners[0].address", "expected host:port (e.g. 0.0.0.0:9411), got 'nowhere'"),
        ("type: Relay\nspill:\n  whenFull: panic\n", "spill.whenFull", "expected whenFull reject or dropOldest, got 'panic'"),
        ("type: Relay\nspill:\n  durability: {default: fast}\n", "spill.durability.default", "expected durability memory, spill or wal, got 'fast'"),
        ("type: Relay\nadmin: {address: 9901}\n", "admin.address", "expected host:port, got '9901'"),
    ])
    func invalidRelaySettingsNameTheirPath(_ c: (String, String, String)) {
        let e = #expect(throws: ConfigError.self) { try RelayFile.parse(yaml: c.0) }
        let issue = e?.issues.first
        #expect(issue?.path == c.1)
        #expect(issue?.message.hasPrefix(c.2) == true, "got \(issue?.message ?? "nothing")")
        #expect(issue?.line != nil)
    }

    @Test func unknownRelayKeysAreWarnedOnceAndKubernetesFormReadsTheSpec() throws {
        let f = try RelayFile.parse(yaml: "type: Relay\nspill: {directory: /x, colour: blue}\nlistenerz: []\n")
        #expect(f.routing.diagnostics.map(\.path).sorted() == ["listenerz", "spill.colour"])
        let k = try RelayFile.parse(yaml: """
        apiVersion: kuma.io/v1alpha1
        kind: Relay
        metadata: {name: r}
        spec:
          admin: {address: 127.0.0.1:19901}
          trustUpstreamTags: true
        """)
        #expect(k.relay.adminAddress == "127.0.0.1:19901" && k.relay.trustUpstreamTags)
    }
}
