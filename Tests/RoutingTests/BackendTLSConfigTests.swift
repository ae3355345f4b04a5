import TestSupport
import Testing
@testable import Routing

/// `conf.tls` of https backends (BackendTLSConfig.swift): values, errors with their path, the
/// insecureSkipVerify warning.
@Suite struct BackendTLSConfigTests {
    func parse(_ conf: String, type: String = "zipkin") throws -> RelayConfig {
        try RelayConfig.parse(yaml: """
        type: Relay
        backends:
          - name: central
            type: \(type)
            conf: \(conf)
        """)
    }

    func errors(_ conf: String, type: String = "zipkin") -> [ConfigIssue] {
        do { _ = try parse(conf, type: type); return [] } catch let e as ConfigError { return e.issues } catch { return [] }
    }

    @Test func fullSettings() throws {
        let certs = try TestCertificates.get()
        let c = try parse("""
        {url: https://zipkin.example.com/api/v2/spans, tls: {caFile: \(certs.caFile), certificate: \(certs.clientCert),
         privateKey: \(certs.clientKey), serverName: zipkin.internal}}
        """)
        let b = try #require(c.backend(named: "central"))
        #expect(b.tls == BackendTLSConfig(caFile: certs.caFile, certificate: certs.clientCert, privateKey: certs.clientKey,
                                          serverName: "zipkin.internal"))
        #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
    }

    @Test func httpsWithoutTLSMapUsesDefaults() throws {
        let b = try #require(try parse("{url: https://zipkin.example.com/}").backend(named: "central"))
        #expect(b.tls == nil && b.url == "https://zipkin.example.com/")
        let relay = try #require(try parse("{url: https://a:9411, urls: [https://b:9411], tls: {serverName: central}}", type: "tracerelay")
            .backend(named: "central"))
        #expect(relay.tls?.serverName == "central")
        let dd = try #require(try parse("{address: agent, port: 8126, tls: {}}", type: "datadog").backend(named: "central"))
        #expect(dd.tls == BackendTLSConfig(), "a Datadog address/port with tls: speaks TLS")
    }

    @Test func mistakesNameTheirPath() throws {
        let certs = try TestCertificates.get()
        let cases: [(String, String, String, String)] = [
            ("zipkin", "{url: https://z/, tls: {caFile: /no/such/ca.pem}}", "backends[0].conf.tls.caFile",
             "cannot read the CA file '/no/such/ca.pem': No such file or directory"),
            ("zipkin", "{url: https://z/, tls: {certificate: \(certs.clientCert)}}", "backends[0].conf.tls",
             "certificate and privateKey go together"),
            ("zipkin", "{url: https://z/, tls: {certificate: \(certs.clientCert), privateKey: /no/key.pem}}",
             "backends[0].conf.tls.privateKey", "cannot read the client private key"),
            ("zipkin", "{url: http://z:9411/, tls: {caFile: \(certs.caFile)}}", "backends[0].conf.tls",
             "'http://z:9411/' is not an https:// URL"),
            ("tracerelay", "{url: https://a:1, urls: [http://b:1], tls: {}}", "backends[0].conf.tls", "'http://b:1' is not an https:// URL"),
            ("zipkin", "{url: https://z/, tls: {insecureSkipVerify: maybe}}", "backends[0].conf.tls.insecureSkipVerify", "true or false"),
            ("zipkin", "{url: https://z/, tls: [a]}", "backends[0].conf.tls", "expected a mapping"),
        ]
        for (type, conf, path, message) in cases {
            let found = errors(conf, type: type)
            #expect(found.contains { $0.path == path && $0.message.contains(message) && $0.severity == .error },
                    "\(conf): expected \(path): …\(message)…, got \(found)")
        }
    }

    @Test func unknownTLSFieldWarns() throws {
        let c = try parse("{url: https://z/, tls: {caFlie: /x}}")
        #expect(c.diagnostics.contains { $0.path == "backends[0].conf.tls.caFlie" && $0.code == .unknownField })
    }

    @Test func insecureSkipVerifyWarnsLoudly() throws {
        let c = try parse("{url: https://z/, tls: {insecureSkipVerify: true}}")
        #expect(c.backend(named: "central")?.tls?.insecureSkipVerify == true)
        let w = try #require(c.diagnostics.first { $0.path == "backends[0].conf.tls.insecureSkipVerify" })
        #expect(w.severity == .warning && w.message.hasPrefix("INSECURE") && w.message.contains("'central'"))
        // The routing table carries it to `tracerelay check` and the start log.
        #expect(try RoutingTable(c).warnings.contains(w))
    }

    @Test func meshBackendsTakeTLSToo() throws {
        let c = try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        tracing:
          backends:
            - name: zipkin-eu
              type: zipkin
              conf:
                url: https://zipkin.eu.example.com/api/v2/spans
                tls: {serverName: zipkin.eu.internal}
        """)
        #expect(c.backend(named: "zipkin-eu")?.tls?.serverName == "zipkin.eu.internal")
    }
}
