import Dispatch
import Foundation
import Logging
import Synchronization
import TestSupport
import Testing
import TLS
@testable import Transport

/// HTTPS and HTTP/2 over TLS on the server's listeners (`ListenAddress.tls`), over real
/// sockets: curl and h2load as clients, and our own TLS client engine where the test needs
/// control over the bytes (records split byte by byte, a client that stops mid-handshake).
/// Certificates are made with the openssl CLI (TestSupport.TestCertificates).
@Suite(.serialized) struct HTTPSServerTests {
    /// `POST /api/v2/spans` → 202 with the body's length and checksum; `GET /peer` → the
    /// client certificate's identity as the request saw it; `GET /health` → 200.
    static func router() -> EndpointRouter {
        var r = HTTPServerTests.router()
        r.register("GET", "/peer") { req, respond in
            let uris = req.peer?.uris.joined(separator: ",") ?? "-"
            respond(.json(200, "{\"peer\":\"\(uris)\",\"version\":\"\(req.version.rawValue)\"}"))
        }
        return r
    }

    static func serverTLS(_ c: TestCertificates, clientCA: String? = nil, require: Bool = false) throws -> ListenerTLS {
        try ListenerTLS(.server(certificateChain: c.serverCert, privateKey: c.serverKey, clientCA: clientCA,
                                requireClientCertificate: require))
    }

    static func withServer(mode: HTTPEventMode = .epollPerLoop, tls: ListenerTLS,
                           _ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                           _ body: (HTTPServer, Int) throws -> Void) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 2
        configure(&c)
        let server = HTTPServer(configuration: c, handler: router(), logger: Logger(label: "test"))
        var address = ListenAddress(host: "127.0.0.1", port: 0)
        address.tls = tls
        try server.start(listeners: [address])
        defer { server.shutdownAndWait(grace: .seconds(2)) }
        try body(server, server.boundPorts[0])
    }

    static func curl(_ args: [String]) throws -> (status: Int32, output: String) {
        try Tool.run("/usr/bin/curl", ["-sS", "--max-time", "10"] + args)
    }

    @Test(arguments: HTTPEventMode.allCases) func curlOverHTTPSWithHTTP1AndHTTP2(mode: HTTPEventMode) throws {
        let certs = try TestCertificates.get()
        try Self.withServer(mode: mode, tls: try Self.serverTLS(certs)) { _, port in
            let body = HTTPServerTests.payload(50_000, seed: 7)
            let file = NSTemporaryDirectory() + "https-body-\(getpid())"
            try Data(body).write(to: URL(fileURLWithPath: file))
            defer { try? FileManager.default.removeItem(atPath: file) }
            for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
                let r = try Self.curl([flag, "--cacert", certs.caFile, "-w", "\n%{http_version}", "-H", "Content-Type: application/json",
                                       "--data-binary", "@\(file)", "https://localhost:\(port)/api/v2/spans"])
                #expect(r.status == 0, "\(flag): \(r.output)")
                #expect(r.output.contains("\"fnv\":\"\(fnv1a(body))\""), "\(flag): \(r.output)")
                #expect(r.output.hasSuffix("\n\(version)"), "\(flag) negotiated: \(r.output)")
            }
        }
    }

    @Test func h2loadOverTLS() throws {
        let certs = try TestCertificates.get()
        try Self.withServer(tls: try Self.serverTLS(certs)) { server, port in
            let r = try Tool.run("/usr/bin/h2load", ["-n", "400", "-c", "4", "-m", "10", "https://127.0.0.1:\(port)/health"])
            #expect(r.status == 0, "\(r.output)")
            #expect(r.output.contains("400 succeeded, 0 failed"), "\(r.output)")
            #expect(r.output.contains("Application protocol: h2"), "\(r.output)")
            #expect(server.counters.tlsHandshakes.total >= 4)
        }
    }

    @Test func plainHTTPToTheTLSPortIsToldSo() throws {
        let certs = try TestCertificates.get()
        try Self.withServer(tls: try Self.serverTLS(certs)) { server, port in
            let c = try TestClient(port: port)
            c.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n[]")
            let r = c.readResponse()
            #expect(r?.status == 400)
            #expect(r?.bodyText.contains("this port speaks TLS") == true, "\(r?.bodyText ?? "no answer")")
            #expect(c.readEOF())
            #expect(server.counters.tlsFailuresByReason["handshake_failed"] == 1)
        }
    }

    /// Every TLS record in pieces of one byte, both directions' handshake included; the request
    /// and its answer go through, and the server's answer to `Connection: close` ends with
    /// close_notify.
    @Test(arguments: HTTPEventMode.allCases) func recordsArrivingByteByByte(mode: HTTPEventMode) throws {
        let certs = try TestCertificates.get()
        try Self.withServer(mode: mode, tls: try Self.serverTLS(certs)) { _, port in
            let client = try TLSTestClient(port: port, certs: certs, byteByByte: true)
            let body = HTTPServerTests.payload(3_000, seed: 3)
            try client.send(HTTPServerTests.spansRequest(body, extra: "Connection: close\r\n"))
            let r = try client.readResponse()
            #expect(r?.status == 202)
            #expect(r?.bodyText.contains("\(fnv1a(body))") == true)
            #expect(client.readUntilEOF(), "the server ends with close_notify, then EOF")
            #expect(client.sawCloseNotify)
        }
    }

    @Test func aPeerThatStopsMidHandshakeIsClosedAfterTheHeaderTimeout() throws {
        let certs = try TestCertificates.get()
        try Self.withServer(tls: try Self.serverTLS(certs), { $0.headerReadTimeout = 0.5 }) { server, port in
            // Half a ClientHello, then nothing.
            let engine = try TLSEngine(client: try TLSContext(.client(caFile: certs.caFile)), serverName: "localhost")
            let hello = engine.drainCiphertext()
            let c = try TestClient(port: port)
            c.send(Array(hello.prefix(hello.count / 2)))
            let started = Date()
            #expect(c.readEOF())
            let waited = Date().timeIntervalSince(started)
            #expect(waited >= 0.4 && waited < 4, "closed after \(waited) s")
            #expect(HTTPSServerTests.eventually { server.counters.tlsFailuresByReason["handshake_timeout"] == 1 })
        }
    }

    @Test func mutualTLSGivesTheRequestThePeerIdentity() throws {
        let certs = try TestCertificates.get()
        let tls = try Self.serverTLS(certs, clientCA: certs.caFile, require: true)
        try Self.withServer(tls: tls) { server, port in
            for flag in ["--http1.1", "--http2"] {
                let ok = try Self.curl([flag, "--cacert", certs.caFile, "--cert", certs.clientCert, "--key", certs.clientKey,
                                        "https://localhost:\(port)/peer"])
                #expect(ok.status == 0 && ok.output.contains("\"peer\":\"\(TestCertificates.clientURI)\""), "\(flag): \(ok.output)")
            }
            // No certificate, one from another CA, an expired one: refused at the handshake.
            let refused: [[String]] = [
                [],
                ["--cert", certs.otherClientCert, "--key", certs.otherClientKey],
                ["--cert", certs.expiredClientCert, "--key", certs.expiredClientKey],
            ]
            for extra in refused {
                let r = try Self.curl(["--cacert", certs.caFile] + extra + ["https://localhost:\(port)/peer"])
                #expect(r.status != 0 && !r.output.contains("\"peer\""), "\(extra): \(r.output)")
            }
            #expect(HTTPSServerTests.eventually {
                let f = server.counters.tlsFailuresByReason
                return f["certificate_missing"] == 1 && f["certificate_rejected"] == 2
            }, "\(server.counters.tlsFailuresByReason)")
        }
    }

    /// A reload replaces the certificate for new connections; a connection opened before keeps
    /// working with the one it started with.
    @Test func replacingTheContextKeepsOpenConnections() throws {
        let certs = try TestCertificates.get()
        let tls = try Self.serverTLS(certs)
        try Self.withServer(tls: tls) { _, port in
            let before = try TLSTestClient(port: port, certs: certs)
            try before.send(Array("GET /health HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            #expect(try before.readResponse()?.status == 200)
            tls.replace(try TLSContext(.server(certificateChain: certs.otherServerCert, privateKey: certs.otherServerKey)))
            let old = try Self.curl(["--cacert", certs.caFile, "https://localhost:\(port)/health"])
            #expect(old.status != 0, "the old CA no longer verifies: \(old.output)")
            let new = try Self.curl(["--cacert", certs.otherCAFile, "https://localhost:\(port)/health"])
            #expect(new.status == 0 && new.output.contains("ok"), "\(new.output)")
            try before.send(Array("GET /health HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            #expect(try before.readResponse()?.status == 200)
        }
    }

    static func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}

/// A blocking HTTPS client on our TLS engine, for tests that need to control the bytes.
final class TLSTestClient {
    let socket: TestClient
    let engine: TLSEngine
    let byteByByte: Bool
    private var plaintext: [UInt8] = []
    private(set) var sawCloseNotify = false

    init(port: Int, certs: TestCertificates, clientCertificate: Bool = false, byteByByte: Bool = false) throws {
        var config = TLSConfiguration.client(caFile: certs.caFile)
        if clientCertificate {
            config.certificateChain = certs.clientCert
            config.privateKey = certs.clientKey
        }
        config.alpn = ["http/1.1"]
        engine = try TLSEngine(client: try TLSContext(config), serverName: "localhost")
        socket = try TestClient(port: port)
        self.byteByByte = byteByByte
        try flush()
        while engine.state == .handshaking {
            guard try read() else { throw TLSError(.unexpectedEOF, "the server closed during the handshake") }
        }
    }

    private func flush() throws {
        let out = engine.drainCiphertext()
        if byteByByte { for b in out { socket.send([b]) } } else { socket.send(out) }
    }

    /// Reads once from the socket into the engine; false on EOF; throws on a timeout or reset.
    private func read() throws -> Bool {
        var tmp = [UInt8](repeating: 0, count: 16_384)
        let n = tmp.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, byteByByte ? 1 : 16_384, 0) }
        if n < 0 { throw TLSError(.unexpectedEOF, "recv failed: errno \(errno)") }
        guard n > 0 else { return false }
        let events = tmp[0..<n].withUnsafeBytes { engine.feed($0, plaintext: &plaintext) }
        for e in events {
            if case .failed(let error) = e { throw error }
            if case .closeNotifyReceived = e { sawCloseNotify = true }
        }
        try flush()
        return true
    }

    func send(_ bytes: [UInt8]) throws {
        try engine.write(bytes)
        try flush()
    }

    func readResponse() throws -> ParsedResponse? {
        while true {
            if let r = ParsedResponse.parse(&plaintext) { return r }
            guard try read() else { return nil }
        }
    }

    /// Reads until the server closes; true on a clean EOF.
    func readUntilEOF() -> Bool {
        while true {
            do { if try !read() { return true } } catch { return false }
        }
    }
}
