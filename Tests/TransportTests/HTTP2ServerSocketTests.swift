import TestSupport
import Foundation
import Logging
import Testing
@testable import Transport

/// End to end over real sockets with real HTTP/2 clients (curl, h2load from nghttp2-client):
/// the server's handler verifies every byte of each 50 KB body against the checksum the
/// client sends in `x-checksum`, and answers 202 only when it matches.
@Suite(.serialized) struct HTTP2ServerSocketTests {
    /// A server on 127.0.0.1 with an OS-chosen port; counts verified and mismatched bodies.
    final class Fixture: Sendable {
        let server: HTTPServer
        let port: Int
        let verified = H2Recorder<Int>()
        let mismatched = H2Recorder<String>()
        let versions = H2Recorder<HTTPVersion>()
        let body: [UInt8]
        let bodyFile: URL

        init(bodySize: Int = 50_000, eventMode: HTTPEventMode) throws {
            let verified = self.verified, mismatched = self.mismatched, versions = self.versions
            let handler = ClosureHandler { request, respond in
                versions.add(request.version)
                let expected = request.headers["x-checksum"]
                let got = String(h2Checksum(request.body))
                if request.method == "POST", request.path == "/upload", expected == got {
                    verified.add(request.body.count)
                    respond(HTTPResponse(status: 202, body: Array("{\"ok\":\(request.body.count)}".utf8)))
                } else {
                    mismatched.add("\(request.method) \(request.path) len=\(request.body.count) want=\(expected ?? "-") got=\(got)")
                    respond(.error(400, code: "checksum", message: "body checksum mismatch"))
                }
            }
            var config = HTTPServerConfiguration.testing(eventMode)
            config.loops = 2
            server = HTTPServer(configuration: config, handler: handler, logger: Logger(label: "test.h2.server"))
            try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
            port = server.boundPorts[0]
            // Printable bytes, so tools that treat `-d` data as text still send it unchanged.
            var rng = SplitMix64(seed: 2026)
            body = (0..<bodySize).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 26) }
            bodyFile = FileManager.default.temporaryDirectory.appendingPathComponent("h2-body-\(getpid())-\(port).bin")
            try Data(body).write(to: bodyFile)
        }

        var checksum: String { String(h2Checksum(body)) }
        var url: String { "http://127.0.0.1:\(port)/upload" }

        func stop() {
            server.shutdownAndWait(grace: .seconds(2))
            try? FileManager.default.removeItem(at: bodyFile)
        }
    }

    /// Runs a tool to completion; returns its exit status and output.
    static func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try Tool.run(tool, arguments)
    }

    static let curl = "/usr/bin/curl"
    static let h2load = "/usr/bin/h2load"

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: curl)), arguments: ["--http2-prior-knowledge", "--http2"], HTTPEventMode.allCases)
    func curlPosts50KB(mode: String, eventMode: HTTPEventMode) throws {
        let f = try Fixture(eventMode: eventMode)
        defer { f.stop() }
        let r = try Self.run(Self.curl, ["-sS", mode, "--max-time", "20", "-X", "POST", "-H", "content-type: application/json",
                                         "-H", "x-checksum: \(f.checksum)", "--data-binary", "@\(f.bodyFile.path)",
                                         "-o", "-", "-w", "\n%{http_code} %{http_version}", f.url])
        #expect(r.status == 0, "curl failed: \(r.output)")
        #expect(r.output.hasSuffix("\n202 2"), "curl output: \(r.output)")
        #expect(r.output.contains("{\"ok\":50000}"))
        #expect(f.verified.all == [50_000])
        #expect(f.mismatched.all.isEmpty)
        // Prior knowledge is HTTP/2 throughout; the upgraded request arrived over HTTP/1.1
        // and was answered on stream 1.
        #expect(f.versions.all == [mode == "--http2" ? .http1_1 : .http2])
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: curl)), arguments: HTTPEventMode.allCases)
    func curlUpgradeThenMoreRequestsOnTheSameConnection(eventMode: HTTPEventMode) throws {
        let f = try Fixture(eventMode: eventMode)
        defer { f.stop() }
        var args = ["-sS", "--http2", "--max-time", "20"]
        for i in 0..<3 {
            if i > 0 { args.append("--next") }
            args += ["--http2", "-X", "POST", "-H", "x-checksum: \(f.checksum)", "--data-binary", "@\(f.bodyFile.path)",
                     "-o", "/dev/null", "-w", "%{http_code} %{http_version}\n", f.url]
        }
        let r = try Self.run(Self.curl, args)
        #expect(r.status == 0, "curl failed: \(r.output)")
        #expect(r.output == "202 2\n202 2\n202 2\n", "curl output: \(r.output)")
        #expect(f.verified.count == 3)
        #expect(f.versions.all.filter { $0 == .http2 }.count == 2)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: h2load)), arguments: HTTPEventMode.allCases)
    func h2loadFourConnectionsTenStreams(eventMode: HTTPEventMode) throws {
        let f = try Fixture(eventMode: eventMode)
        defer { f.stop() }
        let r = try Self.run(Self.h2load, ["-c", "4", "-m", "10", "-n", "400", "-d", f.bodyFile.path,
                                           "-H", "x-checksum: \(f.checksum)", "-H", "content-type: application/json", f.url])
        #expect(r.status == 0, "h2load failed: \(r.output)")
        #expect(r.output.contains("400 succeeded, 0 failed, 0 errored"), "h2load output: \(r.output)")
        #expect(r.output.contains("status codes: 400 2xx"), "h2load output: \(r.output)")
        #expect(f.verified.count == 400)
        #expect(f.mismatched.all.isEmpty, "\(f.mismatched.all.prefix(3))")
    }

    /// Graceful server shutdown over a real socket, with our nghttp2 test client on the other
    /// end: GOAWAY arrives while a request waits for its handler, the answer still gets
    /// through, then the server closes the connection.
    @Test(arguments: HTTPEventMode.allCases) func serverShutdownFinishesAnH2StreamInFlight(eventMode: HTTPEventMode) throws {
        let responders = H2Recorder<@Sendable (HTTPResponse) -> Void>()
        let server = HTTPServer(configuration: .testing(eventMode), handler: ClosureHandler { _, respond in responders.add(respond) },
                                logger: Logger(label: "test.h2.shutdown"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        let socket = try TestClient(port: server.boundPorts[0])
        let client = HTTP2TestClient()
        let body = h2RandomBytes(40_000, seed: 4)
        let id = client.request(body: body)
        var eof = false

        /// Moves bytes both ways until `done` or 5 s pass.
        func pump(until done: () -> Bool) -> Bool {
            let deadline = DispatchTime.now().uptimeNanoseconds + 5_000_000_000
            while DispatchTime.now().uptimeNanoseconds < deadline {
                if done() { return true }
                if eof { usleep(10_000); continue }
                let out = client.output()
                if !out.isEmpty { socket.send(out) }
                var p = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 20) > 0 else { continue }
                var buf = [UInt8](repeating: 0, count: 65_536)
                let n = buf.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { eof = true; continue }
                client.receive(Array(buf[0..<n]))
            }
            return done()
        }

        #expect(pump { responders.count == 1 })
        #expect(server.counters.openStreams == 1, "the waiting stream is counted open")
        let stopped = H2Recorder<Bool>()
        server.shutdown(grace: .seconds(10)) { stopped.add(true) }
        #expect(pump { client.goawayReceived })
        #expect(client.goawayErrorCode == 0)
        #expect(client.goawayLastStreamID == id)
        #expect(!eof)
        responders.all.first?(HTTPResponse(status: 202, body: Array("late".utf8)))
        #expect(pump { client.response(id)?.closed == true })
        #expect(client.response(id)?.status == 202)
        #expect(client.response(id)?.body == Array("late".utf8))
        #expect(pump { eof })
        #expect(pump { stopped.count == 1 })
        #expect(server.counters.openStreams == 0)
    }

    /// Answers the server gives itself (the request never reaches the handler) are counted by
    /// status for the metrics; the handler's own answers are not.
    @Test(arguments: HTTPEventMode.allCases) func serverCountsTheAnswersItGivesItself(eventMode: HTTPEventMode) throws {
        let server = HTTPServer(configuration: .testing(eventMode), handler: ClosureHandler { _, respond in respond(HTTPResponse(status: 202)) },
                                logger: Logger(label: "test.counters"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdown(grace: .seconds(1)) {} }
        let good = try TestClient(port: server.boundPorts[0])
        good.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n[]")
        #expect(good.readResponse()?.status == 202)
        let bad = try TestClient(port: server.boundPorts[0])
        bad.send("POST /x HTTP/1.1\r\nHost: a b\r\nContent-Length: 2\r\n\r\n[]")
        #expect(bad.readResponse()?.status == 400)
        #expect(server.counters.ownAnswers == [400: 1])
    }
}
