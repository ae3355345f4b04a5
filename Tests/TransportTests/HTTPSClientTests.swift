import Basics
import Foundation
import Logging
import TestSupport
import Testing
import TLS
@testable import Transport

/// `HTTPClient` over `https://` against a real TLS server outside the project: Python's `ssl`
/// module serving HTTP/1.1, and HTTP/2 through the `h2` package when ALPN picks `h2` (the
/// project's own TLS listeners are not used, so a bug there cannot hide one here). The server
/// answers every request with what it saw: ALPN, TLS version, whether the session was
/// resumed, the client certificate's CN, the body's length. Certificates come from
/// `TestCertificates` (openssl CLI at test time).
@Suite(.serialized) struct HTTPSClientTests {
    static let logger = Logger(label: "test.https-client")

    /// A TLS server run by `.venv/bin/python` (it has `h2`), killed at the end of the test.
    final class PythonTLSServer {
        let process = Process()
        let port: Int
        private let stderr = Pipe()

        /// `alpn`: what the server accepts, in its order of preference. `clientCA`: require a
        /// client certificate signed by it. `closeEach`: answer `Connection: close` and close.
        init(cert: String, key: String, alpn: [String] = ["http/1.1"], clientCA: String? = nil, closeEach: Bool = false) throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let script = NSTemporaryDirectory() + "tracerelay-tls-server-\(getpid()).py"
            try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
            process.executableURL = root.appendingPathComponent(".venv/bin/python")
            var args = [script, "--cert", cert, "--key", key, "--alpn", alpn.joined(separator: ",")]
            if let clientCA { args += ["--client-ca", clientCA] }
            if closeEach { args.append("--close") }
            process.arguments = args
            let out = Pipe()
            process.standardOutput = out
            process.standardError = stderr
            try process.run()
            // The first line is "PORT <n>" once it listens.
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("PORT "), let p = Int(text.dropFirst(5).prefix { $0.isNumber }) else {
                process.terminate()
                throw TestFailure("the TLS test server did not start: \(text)")
            }
            port = p
        }

        /// SIGKILL: the test process blocks SIGTERM, and its children inherit the mask.
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        deinit { stop() }

        static let script = #"""
        import argparse, json, socket, ssl, sys, threading
        import h2.config, h2.connection, h2.events

        p = argparse.ArgumentParser()
        p.add_argument("--cert"); p.add_argument("--key"); p.add_argument("--alpn")
        p.add_argument("--client-ca"); p.add_argument("--close", action="store_true")
        a = p.parse_args()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.load_verify_locations(a.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(a.alpn.split(","))

        def seen(tls, proto, body, path):
            cn = None
            cert = tls.getpeercert()
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName": cn = v
            return json.dumps({"proto": proto, "alpn": tls.selected_alpn_protocol(), "version": tls.version(),
                               "resumed": tls.session_reused, "peer": cn, "bytes": len(body), "path": path}).encode()

        def serve_h1(tls):
            f = tls.makefile("rb")
            while True:
                line = f.readline()
                if not line: return
                path = line.split(b" ")[1].decode()
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b"\n", b""): break
                    k, v = h.split(b":", 1)
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get(b"content-length", b"0")))
                answer = seen(tls, "http/1.1", body, path)
                close = b"Connection: close\r\n" if a.close else b""
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + close
                            + b"Content-Length: %d\r\n\r\n" % len(answer) + answer)
                if a.close: return

        def serve_h2(tls):
            conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
            conn.initiate_connection()
            tls.sendall(conn.data_to_send())
            bodies, paths = {}, {}
            while True:
                data = tls.recv(65536)
                if not data: return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        bodies[ev.stream_id] = b""
                        paths[ev.stream_id] = dict(ev.headers).get(":path")
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        answer = seen(tls, "h2", bodies.pop(ev.stream_id), paths.pop(ev.stream_id))
                        conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/json"),
                                                         ("content-length", str(len(answer)))])
                        conn.send_data(ev.stream_id, answer, end_stream=True)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return
                out = conn.data_to_send()
                if out: tls.sendall(out)

        def serve(c):
            try:
                tls = ctx.wrap_socket(c, server_side=True)
            except Exception as e:
                print("handshake failed:", e, file=sys.stderr, flush=True)
                c.close()
                return
            try:
                (serve_h2 if tls.selected_alpn_protocol() == "h2" else serve_h1)(tls)
            except Exception as e:
                print("connection failed:", e, file=sys.stderr, flush=True)
            finally:
                tls.close()

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        print("PORT", s.getsockname()[1], flush=True)
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        """#
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// What the server saw, from its JSON answer.
    struct Seen {
        let proto: String
        let alpn: String?
        let resumed: Bool
        let peer: String?
        let bytes: Int

        init(_ r: Result<ClientResponse, ClientError>?) throws {
            guard let r else { throw TestFailure("no completion") }
            let response = try r.get()
            #expect(response.status == 200)
            guard let o = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \(String(decoding: response.body, as: UTF8.self))")
            }
            proto = o["proto"] as? String ?? "?"
            alpn = o["alpn"] as? String
            resumed = o["resumed"] as? Bool ?? false
            peer = o["peer"] as? String
            bytes = o["bytes"] as? Int ?? -1
        }
    }

    static func client(port: Int, _ protocolVersion: ClientProtocol = .http1, tls: TLSConfiguration?,
                       host: String = "localhost", _ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) throws -> HTTPClient {
        var c = HTTPClientConfiguration()
        c.protocolVersion = protocolVersion
        c.connectTimeout = 3
        c.responseTimeout = 10
        if var t = tls {
            t.alpn = protocolVersion.alpnOffer
            c.tls = try TLSContext(t)
        }
        configure(&c)
        return HTTPClient(endpoint: try ClientEndpoint(url: "https://\(host):\(port)/api/v2/spans"), configuration: c,
                          group: EventLoopGroup(loopCount: 2), logger: logger)
    }

    /// One request through a client made for it (shut down afterwards).
    static func once(_ server: PythonTLSServer, _ protocolVersion: ClientProtocol = .http1, tls: TLSConfiguration?,
                     host: String = "localhost", _ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) throws -> Result<ClientResponse, ClientError>? {
        let client = try Self.client(port: server.port, protocolVersion, tls: tls, host: host, configure)
        defer { client.shutdown() }
        return HTTPClientTests.send(client)
    }

    static func failure(_ r: Result<ClientResponse, ClientError>?) -> ClientError? {
        if case .failure(let e)? = r { return e }
        return nil
    }

    /// The error of a request that must fail.
    static func refusal(_ server: PythonTLSServer, _ protocolVersion: ClientProtocol = .http1, tls: TLSConfiguration?,
                        host: String = "localhost", _ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) throws -> ClientError {
        let r = try once(server, protocolVersion, tls: tls, host: host, configure)
        guard let e = failure(r) else { throw TestFailure("expected a failure, got \(String(describing: r))") }
        return e
    }

    // MARK: tests

    @Test func urlSchemeAndDefaultPort() throws {
        let e = try ClientEndpoint(url: "https://zipkin.example.com/api/v2/spans")
        #expect(e.tls && e.port == 443 && e.authority == "zipkin.example.com")
        #expect(e.description == "https://zipkin.example.com/api/v2/spans")
        let odd = try ClientEndpoint(url: "https://zipkin.example.com:80/")
        #expect(odd.authority == "zipkin.example.com:80")
        #expect(try ClientEndpoint(url: "http://a/").tls == false)
        #expect(throws: ClientError.self) { try ClientEndpoint(url: "ftp://a/") }
    }

    @Test func http1OverTLS() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey)
        defer { server.stop() }
        let client = try Self.client(port: server.port, tls: .client(caFile: certs.caFile))
        defer { client.shutdown() }
        for i in 0..<3 {
            let seen = try Seen(HTTPClientTests.send(client, ClientRequest(path: "/api/v2/spans", body: Array(repeating: 7, count: i * 1000))))
            #expect(seen.proto == "http/1.1" && seen.alpn == "http/1.1" && seen.bytes == i * 1000)
        }
        #expect(client.connectionsOpened == 1, "keep-alive over TLS")
        #expect(client.tlsHandshakes.completed == 1)
        #expect(!client.speaksHTTP2)
    }

    @Test func http2ChosenByALPN() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey, alpn: ["h2", "http/1.1"])
        defer { server.stop() }
        let client = try Self.client(port: server.port, .h2c, tls: .client(caFile: certs.caFile))
        defer { client.shutdown() }
        // Many streams at once with bodies larger than a TLS record and the server's window.
        var rng = SplitMix64(seed: 0x5eed_0014, printing: "http2ChosenByALPN")
        let sizes = (0..<12).map { _ in Int(rng.next() % 300_000) }
        let collector = HTTPClientTests.Collector()
        for (i, n) in sizes.enumerated() {
            client.send(ClientRequest(path: "/api/v2/spans", body: Array(repeating: UInt8(i), count: n)), completion: collector.callback(i))
        }
        #expect(collector.wait(sizes.count, seconds: 30))
        for (i, n) in sizes.enumerated() {
            let seen = try Seen(collector[i])
            #expect(seen.proto == "h2" && seen.bytes == n, "request \(i)")
        }
        #expect(client.speaksHTTP2)
        #expect(client.connectionsOpened == 1)
    }

    @Test func http2ConfiguredFallsBackToHTTP1() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey, alpn: ["http/1.1"])
        defer { server.stop() }
        let client = try Self.client(port: server.port, .h2c, tls: .client(caFile: certs.caFile))
        defer { client.shutdown() }
        let seen = try Seen(HTTPClientTests.send(client))
        #expect(seen.proto == "http/1.1" && seen.alpn == "http/1.1")
        #expect(!client.speaksHTTP2)
    }

    @Test func http1OffersNoH2() throws {
        // A server that prefers h2 still answers HTTP/1.1 when we only offer it.
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey, alpn: ["h2", "http/1.1"])
        defer { server.stop() }
        #expect(try Seen(Self.once(server, .http1, tls: .client(caFile: certs.caFile))).proto == "http/1.1")
    }

    @Test func unknownCARefused() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.otherServerCert, key: certs.otherServerKey)
        defer { server.stop() }
        let e = try Self.refusal(server, tls: .client(caFile: certs.caFile))
        #expect(e.code == .tlsFailed)
        #expect(e.message.contains("not accepted") && e.message.contains("unable to get local issuer certificate"), "\(e)")
        #expect(e.message.contains("localhost"), "names the server: \(e)")
    }

    @Test func systemRootsRefuseTestCA() throws {
        // No configured context: the system roots, which do not know the test CA.
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey)
        defer { server.stop() }
        let e = try Self.refusal(server, tls: nil)
        #expect(e.code == .tlsFailed && e.message.contains("not accepted"), "\(e)")
    }

    @Test func hostNameMismatchRefused() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey)
        defer { server.stop() }
        let e = try Self.refusal(server, tls: .client(caFile: certs.caFile), host: "127.0.0.1") {
            $0.tlsServerName = "relay.example.com"
        }
        #expect(e.code == .tlsFailed && e.message.contains("hostname mismatch"), "\(e)")
        // The IP address itself is in the certificate: no override, no mismatch.
        #expect(try Seen(Self.once(server, tls: .client(caFile: certs.caFile), host: "127.0.0.1")).proto == "http/1.1")
    }

    @Test func insecureSkipVerifyAcceptsAnyCertificate() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.otherServerCert, key: certs.otherServerKey)
        defer { server.stop() }
        let r = try Self.once(server, tls: .client(insecureSkipVerify: true), host: "127.0.0.1") {
            $0.tlsServerName = "not-the-name.example"
        }
        #expect(try Seen(r).proto == "http/1.1")
    }

    @Test func mutualTLS() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey, alpn: ["h2", "http/1.1"], clientCA: certs.caFile)
        defer { server.stop() }
        let client = try Self.client(port: server.port, .h2c, tls: .client(caFile: certs.caFile, certificateChain: certs.clientCert,
                                                                           privateKey: certs.clientKey))
        defer { client.shutdown() }
        let seen = try Seen(HTTPClientTests.send(client))
        #expect(seen.peer == "zone-eu-1 collector" && seen.proto == "h2")

        // Without a certificate the server refuses us (TLS 1.3: after our side of the handshake).
        let e = try Self.refusal(server, tls: .client(caFile: certs.caFile))
        #expect(e.code == .tlsFailed && e.message.contains("certificate required"), "\(e)")
        // A certificate from another CA is refused too.
        let e2 = try Self.refusal(server, tls: .client(caFile: certs.caFile, certificateChain: certs.otherClientCert,
                                                       privateKey: certs.otherClientKey))
        #expect(e2.code == .tlsFailed, "\(e2)")
    }

    @Test func secondConnectionResumes() throws {
        let certs = try TestCertificates.get()
        let server = try PythonTLSServer(cert: certs.serverCert, key: certs.serverKey, closeEach: true)
        defer { server.stop() }
        let client = try Self.client(port: server.port, tls: .client(caFile: certs.caFile)) { $0.poolSize = 1 }
        defer { client.shutdown() }
        let first = try Seen(HTTPClientTests.send(client))
        #expect(!first.resumed)
        #expect(HTTPClientTests.waitUntil { client.connectionCount == 0 }, "the server closed the first connection")
        let second = try Seen(HTTPClientTests.send(client))
        #expect(second.resumed, "the server resumed the session of the first connection")
        #expect(client.connectionsOpened == 2)
        #expect(client.tlsHandshakes == (completed: 2, resumed: 1))
    }

    @Test func handshakeTimeoutIsTheConnectTimeout() throws {
        // A listener that never answers: the TCP connect succeeds (backlog), the TLS one cannot.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: addr.sin_port))
        let certs = try TestCertificates.get()
        let client = try Self.client(port: port, tls: .client(caFile: certs.caFile)) { $0.connectTimeout = 0.5 }
        defer { client.shutdown() }
        let started = Clock.monotonicNanos()
        let e = try #require(Self.failure(HTTPClientTests.send(client)))
        #expect(e.code == .tlsFailed && e.message.contains("did not finish within 0.5 s"), "\(e)")
        #expect(Clock.monotonicNanos() - started < 5_000_000_000)
    }

    @Test func plainHTTPServerIsNotTLS() throws {
        try HTTPClientTests.withServer(RecordingHandler()) { _, port in
            let certs = try TestCertificates.get()
            let client = try Self.client(port: port, tls: .client(caFile: certs.caFile))
            defer { client.shutdown() }
            let e = try #require(Self.failure(HTTPClientTests.send(client)))
            #expect(e.code == .tlsFailed, "\(e)")
        }
    }
}
