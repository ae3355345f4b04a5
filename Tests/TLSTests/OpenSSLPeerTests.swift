import TestSupport
import Foundation
import Testing
@testable import TLS
#if canImport(Glibc)
import Glibc
#endif

/// The engines against real TLS implementations over real loopback sockets: `openssl s_server`
/// with our client engine (mTLS, ALPN, resumption), and `openssl s_client` and `curl` against
/// our server engine behind a tiny test-only loop answering one fixed HTTP/1.1 response.
@Suite(.serialized) struct OpenSSLPeerTests {
    static let curl = "/usr/bin/curl"

    // MARK: our client, OpenSSL's server

    @Test func clientEngineAgainstOpenSSLServerWithMutualTLSAndResumption() throws {
        let certs = try TestCertificates.get()
        let server = try OpenSSLServer(["-cert", certs.serverCert, "-key", certs.serverKey, "-CAfile", certs.caFile,
                                        "-Verify", "1", "-verify_return_error", "-alpn", "h2,http/1.1", "-www"])
        defer { server.stop() }
        let context = try TLSContext(certs.client(withCertificate: true))

        func get(session: TLSSession?) throws -> (SocketDriver, TLSSession?) {
            let fd = try Loopback.connect(port: server.port)
            let d = SocketDriver(fd: fd, engine: try TLSEngine(client: context, serverName: "localhost", resuming: session))
            try d.engine.write(Array("GET / HTTP/1.0\r\n\r\n".utf8))
            // s_server -www answers with a page describing the connection, then closes.
            try d.run { d.eof || d.engine.closeNotifyReceived || d.failure != nil }
            let session = d.engine.resumableSession()
            d.finish() // s_server serves one connection at a time: let it go on to the next
            return (d, session)
        }

        let (first, session) = try get(session: nil)
        #expect(first.failure == nil, "\(first.events)")
        let h = try #require(first.handshake, "no handshake; s_server said: \(server.output)")
        #expect(h.alpn == "h2")
        #expect(h.protocolVersion == "TLSv1.3")
        #expect(h.peer?.dnsNames == ["localhost"] && h.peer?.verified == true)
        #expect(first.plaintextString.hasPrefix("HTTP/1.0 200 ok"), "\(first.plaintextString.prefix(200))")
        #expect(first.plaintextString.contains("New, TLSv1.3"))

        let ticket = try #require(session, "no resumable session from s_server")
        let (second, _) = try get(session: ticket)
        #expect(second.handshake?.resumed == true, "\(second.events)")
        #expect(second.plaintextString.contains("Reused, TLSv1.3"), "\(second.plaintextString.prefix(400))")
    }

    @Test func clientEngineRefusesOpenSSLServerWithAnotherCAsCertificate() throws {
        let certs = try TestCertificates.get()
        let server = try OpenSSLServer(["-cert", certs.otherServerCert, "-key", certs.otherServerKey, "-www"])
        defer { server.stop() }
        let d = SocketDriver(fd: try Loopback.connect(port: server.port),
                             engine: try TLSEngine(client: TLSContext(certs.client()), serverName: "localhost"))
        try d.run { d.failure != nil }
        #expect(d.failure?.message == "the server's certificate was not accepted: unable to get local issuer certificate")
    }

    // MARK: OpenSSL's client and curl, our server

    @Test func openSSLClientWithCertificateAgainstServerEngine() throws {
        let certs = try TestCertificates.get()
        let server = try OneShotHTTPSServer(context: TLSContext(certs.server(clientCA: true, require: true)))
        let r = try Tool.run(TestCertificates.openssl, [
            "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost", "-CAfile", certs.caFile,
            "-verify_return_error", "-alpn", "h2,http/1.1", "-cert", certs.clientCert, "-key", certs.clientKey, "-ign_eof",
        ], stdin: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let served = try server.wait()
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("ALPN protocol: h2"))
        #expect(r.output.contains("Verify return code: 0 (ok)"))
        #expect(r.output.contains("HTTP/1.1 200 OK"))
        #expect(r.output.hasSuffix("ok") || r.output.contains("\r\n\r\nok"), "\(r.output.suffix(300))")
        let h = try #require(served.handshake, "server events: \(served.events)")
        #expect(h.serverName == "localhost")
        #expect(h.alpn == "h2")
        #expect(h.peer?.uris == [TestCertificates.clientURI])
        #expect(h.peer?.verified == true)
        #expect(served.request.hasPrefix("GET / HTTP/1.1\r\n"))
    }

    @Test func openSSLClientWithoutCertificateIsRefused() throws {
        let certs = try TestCertificates.get()
        let server = try OneShotHTTPSServer(context: TLSContext(certs.server(clientCA: true, require: true)))
        let r = try Tool.run(TestCertificates.openssl, [
            "s_client", "-connect", "127.0.0.1:\(server.port)", "-servername", "localhost", "-CAfile", certs.caFile, "-ign_eof",
        ], stdin: "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        let served = try server.wait()
        #expect(served.failure?.code == .peerCertificateMissing, "\(served.events)")
        #expect(r.output.contains("certificate required"), "\(r.output)")
        #expect(!r.output.contains("HTTP/1.1 200 OK"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: curl)))
    func curlOverHTTP1AgainstServerEngine() throws {
        let certs = try TestCertificates.get()
        let server = try OneShotHTTPSServer(context: TLSContext(certs.server()))
        let r = try Tool.run(Self.curl, [
            "-sS", "--http1.1", "--max-time", "20", "--cacert", certs.caFile,
            "--resolve", "localhost:\(server.port):127.0.0.1", "-w", "\n%{http_code} %{http_version}",
            "https://localhost:\(server.port)/api/v2/spans",
        ], stdin: nil)
        let served = try server.wait()
        #expect(r.status == 0, "curl: \(r.output)")
        #expect(r.output == "ok\n200 1.1")
        #expect(served.handshake?.alpn == "http/1.1", "\(served.events)")
        #expect(served.handshake?.serverName == "localhost")
        #expect(served.request.hasPrefix("GET /api/v2/spans HTTP/1.1\r\n"))
    }
}
