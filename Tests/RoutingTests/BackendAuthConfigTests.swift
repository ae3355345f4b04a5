import Foundation
import TestSupport
import Testing
@testable import Routing

/// `conf.auth` of backends (BackendAuthConfig.swift): the token file, the header by kind, errors
/// with their path, the cleartext warning, MeshTrace inline `tls:`/`auth:`, and that the token
/// never appears in a message or a printed configuration.
@Suite struct BackendAuthConfigTests {
    /// A fresh directory with the given files (name → content).
    func files(_ contents: [String: String]) throws -> String {
        let dir = NSTemporaryDirectory() + "tracerelay-backend-auth-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in contents { try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        return dir
    }

    /// The header as it goes on the wire, `Name: value`.
    func line(_ auth: BackendAuthConfig?, _ kind: BackendConfig.Kind) -> String? {
        auth.map { a in let f = a.field(for: kind); return "\(f.name): \(f.value)" }
    }

    /// A Relay document with one backend `central` of `type` whose `conf:` is `conf` (the TLS
    /// tests' reader; tracerelay backends by default here).
    func parse(_ conf: String, type: String = "tracerelay") throws -> RelayConfig { try BackendTLSConfigTests().parse(conf, type: type) }
    func errors(_ conf: String, type: String = "tracerelay") -> [ConfigIssue] { BackendTLSConfigTests().errors(conf, type: type) }

    @Test func tokenAndDefaultHeaderByKind() throws {
        let dir = try files(["token": "\n  \n  s3cr3t-central \r\nsecond-line-ignored\n"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let relay = try #require(try parse("{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/token}}").backend(named: "central"))
        let auth = try #require(relay.auth)
        #expect(auth.tokenFile == dir + "/token" && auth.header == nil)
        #expect(line(auth, .tracerelay) == "Authorization: Bearer s3cr3t-central")
        let dd = try #require(try parse("{address: 127.0.0.1, port: 8126, auth: {tokenFile: \(dir)/token}}", type: "datadog")
            .backend(named: "central"))
        #expect(line(dd.auth, .datadog) == "DD-Api-Key: s3cr3t-central")
        let zipkin = try #require(try parse("{url: http://localhost:9411/api/v2/spans, auth: {tokenFile: \(dir)/token, header: X-Api-Key}}",
                                            type: "zipkin").backend(named: "central"))
        #expect(line(zipkin.auth, .zipkin) == "X-Api-Key: s3cr3t-central")
        let bearer = try #require(try parse("{address: 127.0.0.1, port: 8126, auth: {tokenFile: \(dir)/token, header: authorization}}",
                                            type: "datadog").backend(named: "central"))
        #expect(line(bearer.auth, .datadog) == "authorization: Bearer s3cr3t-central", "Authorization keeps the Bearer scheme")
    }

    @Test func mistakesNameTheirPathButNeverTheToken() throws {
        let dir = try files(["empty": " \n\t\n", "spaced": "two words-s3cr3t\n", "good": "s3cr3t-central"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cases: [(String, String, String, String)] = [
            ("tracerelay", "{url: http://127.0.0.1:1, auth: {tokenFile: \(dir)/missing}}", "backends[0].conf.auth.tokenFile",
             "cannot read the token file '\(dir)/missing': No such file or directory"),
            ("tracerelay", "{url: http://127.0.0.1:1, auth: {tokenFile: \(dir)/empty}}", "backends[0].conf.auth.tokenFile",
             "the token file '\(dir)/empty' is empty"),
            ("tracerelay", "{url: http://127.0.0.1:1, auth: {tokenFile: \(dir)/spaced}}", "backends[0].conf.auth.tokenFile",
             "printable ASCII without spaces"),
            ("tracerelay", "{url: http://127.0.0.1:1, auth: {header: X-Key}}", "backends[0].conf.auth.tokenFile",
             "missing required field 'tokenFile'"),
            ("zipkin", "{url: http://127.0.0.1:1, auth: {tokenFile: \(dir)/good, header: 'X Key'}}", "backends[0].conf.auth.header",
             "expected an HTTP header name"),
            ("zipkin", "{url: http://127.0.0.1:1, auth: {tokenFile: \(dir)/good, header: Content-Type}}", "backends[0].conf.auth.header",
             "the exporter sets 'Content-Type' itself"),
            ("zipkin", "{url: http://127.0.0.1:1, auth: s3cr3t}", "backends[0].conf.auth", "expected a mapping"),
            ("file", "{path: \(dir)/spans, auth: {tokenFile: \(dir)/good}}", "backends[0].conf.auth",
             "auth applies to zipkin, datadog and tracerelay backends, not file"),
        ]
        for (type, conf, path, message) in cases {
            let found = errors(conf, type: type)
            #expect(found.contains { $0.path == path && $0.message.contains(message) && $0.severity == .error },
                    "\(conf): expected \(path): …\(message)…, got \(found)")
            #expect(!found.description.contains("s3cr3t"), "a message shows the token: \(found)")
        }
    }

    @Test func tokenOverCleartextWarnsExceptOnLoopback() throws {
        let dir = try files(["token": "s3cr3t-central"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let remote = try parse("{url: http://central.example.com:9411, urls: [http://10.0.0.2:9411], auth: {tokenFile: \(dir)/token}}")
        let w = try #require(remote.diagnostics.first { $0.path == "backends[0].conf.auth" })
        #expect(w.severity == .warning && w.message.contains("'central'") && w.message.contains("10.0.0.2, central.example.com")
                && w.message.contains("\(dir)/token") && w.message.contains("without TLS"), "\(w)")
        #expect(!w.description.contains("s3cr3t"))
        #expect(try RoutingTable(remote).warnings.contains(w), "check and the start log show it")
        let dd = try parse("{address: agent.internal, port: 8126, auth: {tokenFile: \(dir)/token}}", type: "datadog")
        #expect(dd.diagnostics.contains { $0.path == "backends[0].conf.auth" && $0.message.contains("agent.internal") })
        for quiet in ["{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/token}}",
                      "{url: 'http://[::1]:9411', auth: {tokenFile: \(dir)/token}}",
                      "{url: http://localhost:9411, auth: {tokenFile: \(dir)/token}}",
                      "{url: https://central.example.com, auth: {tokenFile: \(dir)/token}}"] {
            #expect(try parse(quiet).diagnostics.isEmpty, "\(quiet)")
        }
        let tlsAddress = try parse("{address: agent.internal, port: 8126, tls: {}, auth: {tokenFile: \(dir)/token}}", type: "datadog")
        #expect(tlsAddress.diagnostics.isEmpty, "tls: on an address means TLS: \(tlsAddress.diagnostics)")
    }

    @Test func printedConfigurationHidesTheToken() throws {
        let dir = try files(["token": "s3cr3t-central"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try parse("{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/token}}")
        var dumped = ""
        dump(c, to: &dumped)
        for text in ["\(c)", String(reflecting: c), dumped] {
            #expect(!text.contains("s3cr3t") && text.contains("<redacted>"), "\(text)")
        }
    }

    @Test func aChangedTokenIsAChangedBackend() throws {
        let dir = try files(["a": "token-a", "b": "token-b"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try #require(try parse("{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/a}}").backend(named: "central"))
        let b = try #require(try parse("{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/b}}").backend(named: "central"))
        #expect(a != b, "a reload that reads a new token sees a changed backend")
        try "token-b".write(toFile: dir + "/a", atomically: true, encoding: .utf8)
        let again = try #require(try parse("{url: http://127.0.0.1:9411, auth: {tokenFile: \(dir)/a}}").backend(named: "central"))
        #expect(again.auth?.token == b.auth?.token, "the file is read again on every parse")
    }

    @Test func meshBackendsTakeAuth() throws {
        let dir = try files(["token": "s3cr3t-eu"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let c = try RelayConfig.parse(yaml: """
        {type: Mesh, name: default, tracing: {backends: [
          {name: dd-eu, type: datadog, conf: {address: 127.0.0.1, port: 8126, auth: {tokenFile: \(dir)/token, header: X-Api-Key}}}]}}
        """)
        #expect(line(c.backend(named: "dd-eu")?.auth, .datadog) == "X-Api-Key: s3cr3t-eu")
        #expect(c.diagnostics.isEmpty, "\(c.diagnostics)")
    }

    func meshTrace(_ backend: String) throws -> RelayConfig {
        try RelayConfig.parse(yaml: """
        type: Mesh
        name: default
        ---
        type: MeshTrace
        name: edge
        mesh: default
        spec:
          targetRef: {kind: Mesh}
          default:
            backends:
              - \(backend)
        """)
    }

    @Test func meshTraceInlineBackendsTakeTLSAndAuth() throws {
        let certs = try TestCertificates.get()
        let dir = try files(["token": "s3cr3t-edge"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let z = try meshTrace("""
        {type: Zipkin, zipkin: {url: https://zipkin.example.com/api/v2/spans, tls: {caFile: \(certs.caFile), serverName: zipkin.internal},
                     auth: {tokenFile: \(dir)/token}}}
        """)
        let zb = try #require(z.backend(named: "edge"))
        #expect(zb.tls == BackendTLSConfig(caFile: certs.caFile, serverName: "zipkin.internal"))
        #expect(line(zb.auth, .zipkin) == "Authorization: Bearer s3cr3t-edge")
        #expect(z.diagnostics.isEmpty, "\(z.diagnostics)")
        let d = try meshTrace("{type: Datadog, datadog: {url: https://agent.example.com:8126, tls: {}, auth: {tokenFile: \(dir)/token}}}")
        let db = try #require(d.backend(named: "edge"))
        #expect(db.kind == .datadog && db.tls == BackendTLSConfig() && line(db.auth, .datadog) == "DD-Api-Key: s3cr3t-edge")
        // Mistakes are reported at the inline backend's path, as for a Mesh backend's conf.
        for (inline, path, message) in [
            ("{type: Zipkin, zipkin: {url: http://z:9411/, tls: {}}}", "spec.default.backends[0].zipkin.tls", "is not an https:// URL"),
            ("{type: Datadog, datadog: {url: http://127.0.0.1:8126, auth: {tokenFile: \(dir)/none}}}",
             "spec.default.backends[0].datadog.auth.tokenFile", "cannot read the token file"),
        ] {
            var found: [ConfigIssue] = []
            do { _ = try meshTrace(inline) } catch let e as ConfigError { found = e.issues }
            #expect(found.contains { $0.path == path && $0.message.contains(message) }, "\(inline): got \(found)")
        }
        let unknown = try meshTrace("{type: Zipkin, zipkin: {url: http://127.0.0.1:9411/, tsl: {}}}")
        #expect(unknown.diagnostics.contains { $0.path == "spec.default.backends[0].zipkin.tsl" && $0.code == .unknownField })
    }
}
