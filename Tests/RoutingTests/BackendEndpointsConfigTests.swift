import Testing
@testable import Routing

/// `conf.urls`, `conf.resolver` and `conf.routingKey` (BackendEndpointsConfig.swift).
@Suite struct BackendEndpointsConfigTests {
    func relay(_ conf: String, type: String = "tracerelay") throws -> BackendConfig {
        let c = try RelayConfig.parse(yaml: """
        type: Relay
        backends:
          - name: central
            type: \(type)
            conf: \(conf)
        """)
        return c.backend(named: "central")!
    }

    func errors(_ conf: String, type: String = "tracerelay") -> [ConfigIssue] {
        do { _ = try relay(conf, type: type); return [] } catch let e as ConfigError { return e.issues } catch { return [] }
    }

    @Test func staticListShardsByTraceIDByDefault() throws {
        let b = try relay("{urls: [http://a:9411, http://b:9411]}")
        #expect(b.urls == ["http://a:9411", "http://b:9411"])
        #expect(b.url == "http://a:9411")
        #expect(b.routingKey == .traceID)
        #expect(b.isSharded)
        let rr = try relay("{urls: [http://a:9411, http://b:9411], routingKey: none}")
        #expect(!rr.isSharded, "none keeps one queue sending round-robin")
        let one = try relay("{url: http://a:9411}")
        #expect(!one.isSharded && one.urls == ["http://a:9411"])
    }

    @Test func dnsAndFileResolvers() throws {
        let d = try relay("{resolver: {dns: {hostname: tracerelay-central-headless.ns.svc, port: 9411, interval: 10s}}}")
        #expect(d.endpoints.resolver == .dns(hostname: "tracerelay-central-headless.ns.svc", port: 9411, intervalMillis: 10_000))
        #expect(d.url == nil && d.isSharded)
        let f = try relay("{resolver: {file: /etc/tracerelay/endpoints.txt}, routingKey: service}")
        #expect(f.endpoints.resolver == .file(path: "/etc/tracerelay/endpoints.txt", intervalMillis: 1_000))
        #expect(f.routingKey == .service)
        let z = try relay("{resolver: {file: /e.txt, interval: 200ms}}", type: "zipkin")
        #expect(z.endpoints.resolver == .file(path: "/e.txt", intervalMillis: 200) && z.isSharded)
        let dd = try relay("{urls: [http://a:8126, http://b:8126]}", type: "datadog")
        #expect(dd.isSharded && dd.address == nil)
        let defaultInterval = try relay("{resolver: {dns: {hostname: h.svc, port: 1}}}")
        #expect(defaultInterval.endpoints.resolver == .dns(hostname: "h.svc", port: 1, intervalMillis: 10_000))
    }

    /// Over TLS an endpoint a DNS resolver found (an IP address) is verified against the
    /// resolved name, unless `conf.tls.serverName` says otherwise.
    @Test func dnsEndpointsOverTLSVerifyTheResolvedName() throws {
        var b = try relay("{resolver: {dns: {hostname: central-headless.tracing.svc, port: 9411}}}")
        #expect(b.single(endpoint: "http://10.0.0.7:9411").tls == nil)
        b.tls = BackendTLSConfig()
        #expect(b.single(endpoint: "http://10.0.0.7:9411").tls?.serverName == "central-headless.tracing.svc")
        b.tls?.serverName = "relay.example.com"
        #expect(b.single(endpoint: "http://10.0.0.7:9411").tls?.serverName == "relay.example.com")
    }

    @Test func mistakesNameTheirPath() {
        let cases: [(String, String, String)] = [
            ("{resolver: {dns: {hostname: h.svc}}}", "backends[0].conf.resolver.dns.port", "missing required field 'port'"),
            ("{resolver: {dns: {hostname: h.svc, port: 0}}}", "backends[0].conf.resolver.dns.port", "1...65535"),
            ("{resolver: {dns: {hostname: 'h.svc:9411', port: 9411}}}", "backends[0].conf.resolver.dns.hostname", "without scheme or port"),
            ("{resolver: {dns: {hostname: h, port: 1, interval: 5ms}}}", "backends[0].conf.resolver.dns.interval", "at least 100ms"),
            ("{resolver: {}}", "backends[0].conf.resolver", "exactly one resolver"),
            ("{resolver: {file: /a, dns: {hostname: h, port: 1}}}", "backends[0].conf.resolver", "got dns and file"),
            ("{resolver: {file: ''}}", "backends[0].conf.resolver.file", "non-empty"),
            ("{url: http://a:1, resolver: {file: /a}}", "backends[0].conf.resolver", "not both"),
            ("{urls: [http://a:1], routingKey: span}", "backends[0].conf.routingKey", "traceID, service or none"),
            ("{urls: [a:1]}", "backends[0].conf.urls[0]", "http:// or https:// URL"),
            ("{resolver: {dns: {hostname: h, port: 1}, interval: 1s}}", "backends[0].conf.resolver.interval", "inside 'dns:'"),
        ]
        for (conf, path, message) in cases {
            let issues = errors(conf)
            #expect(issues.contains { $0.path == path && $0.message.contains(message) }, "\(conf): \(issues)")
        }
        // zipkin still needs a url when it has no list or resolver.
        #expect(errors("{traceId128bit: true}", type: "zipkin").contains { $0.path == "backends[0].conf.url" })
        #expect(errors("{splitService: true}", type: "datadog").contains { $0.path == "backends[0].conf.address" })
    }
}
