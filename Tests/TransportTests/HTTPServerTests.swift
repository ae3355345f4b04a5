import TestSupport
import Dispatch
import Foundation
import Logging
import Synchronization
import Testing
@testable import Transport

/// End-to-end tests of `HTTPServer` over real TCP sockets on 127.0.0.1 (OS-chosen ports),
/// with a tiny blocking client and with curl.
@Suite(.serialized) struct HTTPServerTests {
    /// `POST /api/v2/spans` → 202 with the body's length and FNV-1a checksum; `GET /health` → 200.
    static func router() -> EndpointRouter {
        var r = EndpointRouter()
        r.register("POST", "/api/v2/spans") { req, respond in
            respond(.json(202, "{\"bytes\":\(req.body.count),\"fnv\":\"\(fnv1a(req.body))\"}"))
        }
        r.register("GET", "/health") { _, respond in respond(.json(200, "{\"ok\":true}")) }
        return r
    }

    static func withServer(mode: HTTPEventMode = .dispatchSources, _ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                           handler: any HTTPHandler = router(),
                           _ body: (HTTPServer, Int) throws -> Void) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 2
        configure(&c)
        let server = HTTPServer(configuration: c, handler: handler, logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        let port = server.boundPorts[0]
        #expect(port > 0)
        defer { server.shutdownAndWait(grace: Duration.seconds(2)) }
        try body(server, port)
    }

    static func spansRequest(_ body: [UInt8], extra: String = "") -> [UInt8] {
        Array("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\(extra)\r\n".utf8) + body
    }

    static func payload(_ n: Int, seed: UInt64 = 1) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    @Test(arguments: HTTPEventMode.allCases) func keepAliveConnectionIsReused(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { server, port in
            let c = try TestClient(port: port)
            for i in 0..<5 {
                let body = Self.payload(100 + i, seed: UInt64(i))
                c.send(Self.spansRequest(body))
                let r = c.readResponse()
                #expect(r?.status == 202)
                #expect(r?.bodyText.contains("\"fnv\":\"\(fnv1a(body))\"") == true)
                #expect(r?.header("Connection") == nil)
            }
            #expect(server.connectionCount == 1)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func byteByByteWrites(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { _, port in
            let c = try TestClient(port: port)
            let body = Self.payload(300)
            for b in Self.spansRequest(body) { c.send([b]) }
            let r = c.readResponse()
            #expect(r?.status == 202)
            #expect(r?.bodyText.contains("\(fnv1a(body))") == true)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func pipelinedRequestsInOneWrite(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { _, port in
            let c = try TestClient(port: port)
            var all: [UInt8] = []
            var sums: [UInt64] = []
            for i in 0..<20 {
                let body = Self.payload(1000 + 37 * i, seed: UInt64(i))
                sums.append(fnv1a(body))
                all += Self.spansRequest(body)
                if i % 5 == 0 { all += Array("GET /health HTTP/1.1\r\nHost: t\r\n\r\n".utf8) }
            }
            c.send(all)
            let rs = c.readResponses(24)
            #expect(rs.count == 24)
            let spans = rs.filter { $0.status == 202 }
            #expect(spans.count == 20)
            #expect(spans.map { $0.bodyText } == sums.enumerated().map { "{\"bytes\":\(1000 + 37 * $0.offset),\"fnv\":\"\($0.element)\"}" })
        }
    }

    /// Many more pipelined requests than `maxRequestsPerTurn` in one write: the connection yields
    /// between turns and still answers every one, in order.
    @Test(arguments: HTTPEventMode.allCases) func manyPipelinedRequestsAcrossTurns(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode, { $0.maxRequestsPerTurn = 7; $0.maxPipelinedRequests = 1000 }) { _, port in
            let c = try TestClient(port: port)
            var all: [UInt8] = []
            var sums: [UInt64] = []
            for i in 0..<300 {
                let body = Self.payload(50 + i, seed: UInt64(i))
                sums.append(fnv1a(body))
                all += Self.spansRequest(body)
            }
            c.send(all)
            let rs = c.readResponses(300)
            #expect(rs.count == 300)
            #expect(rs.map(\.bodyText) == sums.enumerated().map { "{\"bytes\":\(50 + $0.offset),\"fnv\":\"\($0.element)\"}" })
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func pipelinedAsyncHandlersKeepOrder(mode: HTTPEventMode) throws {
        // Answers from other threads after random delays.
        let handler = ClosureHandler { req, respond in
            let delay = Int.random(in: 0...20)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(delay)) {
                respond(HTTPResponse(status: 200, body: Array(req.path.utf8)))
            }
        }
        try Self.withServer(mode: mode, handler: handler) { _, port in
            let c = try TestClient(port: port)
            c.send((0..<30).map { "GET /r\($0) HTTP/1.1\r\nHost: t\r\n\r\n" }.joined())
            let rs = c.readResponses(30)
            #expect(rs.map(\.bodyText) == (0..<30).map { "/r\($0)" })
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func chunkedBodyOverSocket(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { _, port in
            let c = try TestClient(port: port)
            let body = Self.payload(70_001)
            var req = Array("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
            var off = 0
            var size = 7
            while off < body.count {
                let n = min(size, body.count - off)
                req += Array("\(String(n, radix: 16));x=y\r\n".utf8) + body[off..<(off + n)] + [13, 10]
                off += n
                size = size * 2 + 3
            }
            req += Array("0\r\n\r\n".utf8)
            // Send in odd pieces.
            var i = 0
            while i < req.count {
                let n = min(req.count - i, 4093)
                c.send(Array(req[i..<(i + n)]))
                i += n
            }
            let r = c.readResponse()
            #expect(r?.status == 202)
            #expect(r?.bodyText == "{\"bytes\":70001,\"fnv\":\"\(fnv1a(body))\"}")
        }
    }

    @Test(arguments: [
        ("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef", 400),
        ("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n", 501),
        ("GET /health HTTP/3.0\r\nHost: t\r\n\r\n", 505),
        ("GET /health HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n", 417),
        ("GET /" + String(repeating: "x", count: 9000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        ("GET /health HTTP/1.1\r\nHost: t\r\nX-A: " + String(repeating: "x", count: 70_000) + "\r\n\r\n", 431),
        ("GET /health HTTP/1.1\r\nHost: t\r\n" + (0..<101).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
        ("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    ])
    func errorStatuses(_ request: String, _ status: Int) throws {
        for mode in HTTPEventMode.allCases { try Self.withServer(mode: mode) { _, port in
            let c = try TestClient(port: port)
            c.send(request)
            let r = c.readResponse()
            #expect(r?.status == status)
            if status != 404 {
                #expect(r?.header("Connection") == "close")
                #expect(r?.bodyText.hasPrefix("{\"error\":") == true)
                #expect(c.readEOF())
            }
        } }
    }

    @Test(arguments: HTTPEventMode.allCases) func tooLargeBodyAnsweredBeforeItIsSent(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode, { $0.maxBodyBytes = 1000 }) { _, port in
            let c = try TestClient(port: port)
            c.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            let r = c.readResponse()
            #expect(r?.status == 413)
            // The client may still push some body; the server drains it and closes cleanly.
            c.send(Self.payload(100_000))
            #expect(c.readEOF())
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func clientClosingMidBodyLeavesServerHealthy(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { server, port in
            for _ in 0..<5 {
                let c = try TestClient(port: port)
                c.send(Array("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 50000\r\n\r\n".utf8) + Self.payload(20_000))
                _ = c // closed at the end of the iteration
            }
            let c = try TestClient(port: port)
            c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
            // The aborted connections go away.
            var waited = 0
            while server.connectionCount > 1 && waited < 200 { usleep(10_000); waited += 1 }
            #expect(server.connectionCount == 1)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func peerVanishingWhileWeWriteDoesNotKillTheProcess(mode: HTTPEventMode) throws {
        // Large responses to a client that closed: send() fails with EPIPE/ECONNRESET, which
        // must neither raise SIGPIPE nor disturb other connections. A connection that stopped
        // reading and writing (backlogged, its next pipelined request waiting for a turn) when
        // the peer's RST came is closed too (its pending SO_ERROR, checked on the timer).
        let big = ClosureHandler { _, respond in respond(HTTPResponse(status: 200, body: [UInt8](repeating: 0x61, count: 2_000_000))) }
        try Self.withServer(mode: mode, handler: big) { server, port in
            for _ in 0..<3 {
                let c = try TestClient(port: port)
                c.send((0..<4).map { _ in "GET /big HTTP/1.1\r\nHost: t\r\n\r\n" }.joined())
                usleep(20_000)
            }
            usleep(200_000)
            let c = try TestClient(port: port)
            c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.body.count == 2_000_000)
            var waited = 0
            while server.connectionCount > 1 && waited < 300 { usleep(10_000); waited += 1 }
            #expect(server.connectionCount == 1)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func slowClientHitsHeaderTimeout(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode, { $0.headerReadTimeout = 0.3 }) { _, port in
            let c = try TestClient(port: port)
            c.send("GET /health HTTP/1.1\r\nHo")
            usleep(150_000)
            c.send("st: t\r\n") // trickling does not extend the deadline
            let r = c.readResponse()
            #expect(r?.status == 408)
            #expect(c.readEOF())
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func stalledBodyHitsBodyTimeout(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode, { $0.bodyReadTimeout = 0.3 }) { _, port in
            let c = try TestClient(port: port)
            c.send(Self.spansRequest(Self.payload(10)).dropLast(5).map { $0 })
            #expect(c.readResponse()?.status == 408)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func idleConnectionIsClosed(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode, { $0.idleTimeout = 0.3 }) { _, port in
            let c = try TestClient(port: port)
            c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
            let start = DispatchTime.now()
            #expect(c.readEOF())
            let waited = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            #expect(waited > 0.2 && waited < 3)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func ipv6AndSeveralListeners(mode: HTTPEventMode) throws {
        let server = HTTPServer(configuration: .testing(mode), handler: Self.router(), logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(parsing: "127.0.0.1:0"), ListenAddress(parsing: "[::1]:0", name: "v6")])
        defer { server.shutdownAndWait(grace: Duration.seconds(1)) }
        let bound = server.boundListeners
        #expect(bound.count == 2)
        #expect(bound[1].name == "v6")
        #expect(bound.allSatisfy { $0.port > 0 })
        let out = try Self.curl(["-s", "-g", "http://[::1]:\(bound[1].port)/health"])
        #expect(out.contains("\"ok\":true"))
    }

    @Test(arguments: HTTPEventMode.allCases) func listenErrorsNameTheAddress(mode: HTTPEventMode) throws {
        let server = HTTPServer(configuration: .testing(mode), handler: Self.router(), logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdownAndWait(grace: Duration.seconds(1)) }
        // Same port without SO_REUSEPORT from another socket type fails; simplest: a bad host.
        #expect(throws: ListenError.self) { try server.start(listeners: [ListenAddress(host: "no.such.host.invalid", port: 0)]) }
        #expect(throws: ListenError.self) { try ListenAddress(parsing: "127.0.0.1") }
        #expect(throws: ListenError.self) { try ListenAddress(parsing: "127.0.0.1:99999") }
        #expect(throws: ListenError.self) { try ListenAddress(parsing: "::1:80") }
        #expect(try ListenAddress(parsing: ":8080").host == "::")
    }

    static func curl(_ args: [String], stdin: Data? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func tempFile(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "tr-body-\(UInt64.random(in: 0...UInt64.max)).bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: HTTPEventMode.allCases) func curlPostOf50KBWithChecksum(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { _, port in
            let body = Self.payload(50_000, seed: 50)
            let file = try Self.tempFile(body)
            defer { try? FileManager.default.removeItem(atPath: file) }
            let out = try Self.curl(["-s", "--http1.1", "-H", "Content-Type: application/json", "--data-binary", "@\(file)",
                                     "-w", "\n%{http_code}", "http://127.0.0.1:\(port)/api/v2/spans"])
            #expect(out == "{\"bytes\":50000,\"fnv\":\"\(fnv1a(body))\"}\n202")
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func curlExpectContinueWithLargeBody(mode: HTTPEventMode) throws {
        try Self.withServer(mode: mode) { _, port in
            let body = Self.payload(3_000_000, seed: 3)
            let file = try Self.tempFile(body)
            defer { try? FileManager.default.removeItem(atPath: file) }
            // --expect100-timeout 30: if the server failed to send 100, curl would wait 30 s
            // (the test would notice through the elapsed time).
            let start = DispatchTime.now()
            let out = try Self.curl(["-s", "-v", "--http1.1", "--expect100-timeout", "30", "-H", "Expect: 100-continue",
                                     "--data-binary", "@\(file)", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)/api/v2/spans"])
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            #expect(out == "{\"bytes\":3000000,\"fnv\":\"\(fnv1a(body))\"}\n202")
            #expect(seconds < 20)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func shutdownDuringUploadFinishesThatRequest(mode: HTTPEventMode) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 2
        let server = HTTPServer(configuration: c, handler: Self.router(), logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        let port = server.boundPorts[0]
        let idle = try TestClient(port: port)
        idle.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(idle.readResponse()?.status == 200)

        let client = try TestClient(port: port)
        let body = Self.payload(40_000)
        let request = Self.spansRequest(body)
        client.send(Array(request[0..<20_000]))
        usleep(50_000)
        let done = DispatchSemaphore(value: 0)
        server.shutdown(grace: Duration.seconds(5)) { done.signal() }
        usleep(50_000)
        // The idle connection is closed at once; new connections are refused.
        #expect(idle.readEOF())
        #expect(throws: (any Error).self) { _ = try TestClient(port: port) }
        client.send(Array(request[20_000...]))
        let r = client.readResponse()
        #expect(r?.status == 202)
        #expect(r?.header("Connection") == "close")
        #expect(r?.bodyText.contains("\(fnv1a(body))") == true)
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(server.connectionCount == 0)
    }

    @Test(arguments: HTTPEventMode.allCases) func shutdownForceClosesAfterGrace(mode: HTTPEventMode) throws {
        let handler = ClosureHandler { _, _ in } // never answers
        let server = HTTPServer(configuration: .testing(mode), handler: handler, logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        let client = try TestClient(port: server.boundPorts[0])
        client.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        usleep(50_000)
        let done = DispatchSemaphore(value: 0)
        server.shutdown(grace: .milliseconds(200)) { done.signal() }
        #expect(done.wait(timeout: .now() + 3) == .success)
        #expect(client.readEOF())
    }
}
