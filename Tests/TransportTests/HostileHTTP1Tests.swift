import Dispatch
import Foundation
import Logging
import Synchronization
import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10, HTTP/1.1 side: what a hostile or buggy client must not be able to do to the
/// server (and so to every other client). Real sockets on 127.0.0.1, a scripted raw client;
/// every test runs in both event modes. Each test names the item of the issue it covers.
@Suite(.serialized) struct HostileHTTP1Tests {
    /// `POST /api/v2/spans` → 202 + body length; `GET /health` → 200; `POST /echo` → 200 with
    /// the (combined) `Content-Encoding` value and how many fields carried it; `GET /big` →
    /// 2 MB body.
    static func router() -> EndpointRouter {
        var r = HTTPServerTests.router()
        r.register("POST", "/echo") { req, respond in
            let ce = req.headers["Content-Encoding"] ?? ""
            respond(HTTPResponse(status: 200, body: Array("\(req.headers.values("Content-Encoding").count)|\(ce)".utf8)))
        }
        let big = [UInt8](repeating: 0x61, count: 2_000_000)
        r.register("GET", "/big") { _, respond in respond(HTTPResponse(status: 200, body: big)) }
        return r
    }

    static func withServer(mode: HTTPEventMode, _ configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                           listeners: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 0)],
                           _ body: (HTTPServer, [Int]) throws -> Void) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 2
        configure(&c)
        let server = HTTPServer(configuration: c, handler: router(), logger: Logger(label: "test"))
        try server.start(listeners: listeners)
        defer { server.shutdownAndWait(grace: Duration.seconds(2)) }
        try body(server, server.boundPorts)
    }

    /// Polls `condition` every 10 ms for up to `seconds`.
    static func eventually(_ seconds: Double = 3, _ condition: () -> Bool) -> Bool {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// VmSize of this process (the server runs in it), bytes.
    static func virtualSize() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmSize:") {
            return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
        }
        return 0
    }

    // MARK: item 3 — buffers grow with data, never from the declared length

    @Test(arguments: HTTPEventMode.allCases) func declaredContentLengthDoesNotSizeTheBodyBuffer(mode: HTTPEventMode) throws {
        // Item 3: 8 heads declaring 256 MiB each (and 4 chunks declaring 128 MiB) with 10 bytes
        // of body. Sizing the buffer from the declared length reserved 2.5 GiB of address space;
        // growing with the data keeps it at one 64 KiB reservation per connection.
        let declared = 256 << 20
        try Self.withServer(mode: mode, { $0.maxBodyBytes = declared }) { server, ports in
            let before = Self.virtualSize()
            var clients: [TestClient] = []
            for _ in 0..<8 {
                let c = try TestClient(port: ports[0])
                c.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: \(declared)\r\n\r\n0123456789")
                clients.append(c)
            }
            for _ in 0..<4 { // a chunk declaring 128 MiB is not trusted either
                let c = try TestClient(port: ports[0])
                c.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n8000000\r\n0123456789")
                clients.append(c)
            }
            #expect(Self.eventually { server.bodyBudget.used == 12 * HTTP1Engine.initialBodyReservation })
            let grown = Self.virtualSize() - before
            #expect(grown < 512 << 20, "address space grew by \(grown) bytes")
            for conn in server.openConnections {
                // At most the initial reservation (1 MiB) plus the head buffer, never the 256 MiB declared.
                #expect(conn.queue.sync { conn.retainedBufferBytes } < HTTP1Engine.initialBodyReservation + (64 << 10))
            }
            clients.removeAll()
            #expect(Self.eventually { server.bodyBudget.used == 0 })
        }
    }

    // MARK: item 2 — global body budget and body-progress timeout

    @Test(arguments: HTTPEventMode.allCases) func bodyBudgetRefusesNewBodiesWith503(mode: HTTPEventMode) throws {
        // Item 2: the budget is shared by all connections; a body that would pass it gets 503 +
        // Retry-After and the connection closes; bytes return when the request reaches the handler.
        try Self.withServer(mode: mode, { $0.maxBufferedBodyBytes = 100_000 }) { server, ports in
            let slow = try TestClient(port: ports[0])
            let big = HTTPServerTests.payload(90_000)
            let bigRequest = HTTPServerTests.spansRequest(big)
            slow.send(Array(bigRequest.dropLast(10_000)))
            #expect(Self.eventually { server.bodyBudget.used >= 80_000 })

            let refused = try TestClient(port: ports[0])
            refused.send(HTTPServerTests.spansRequest(HTTPServerTests.payload(50_000)))
            let r = refused.readResponse()
            #expect(r?.status == 503)
            #expect(r?.header("Retry-After") == "1")
            #expect(r?.header("Connection") == "close")
            #expect(refused.readEOF())

            slow.send(Array(bigRequest.suffix(10_000)))
            #expect(slow.readResponse()?.status == 202)
            #expect(Self.eventually { server.bodyBudget.used == 0 })

            let later = try TestClient(port: ports[0])
            later.send(HTTPServerTests.spansRequest(HTTPServerTests.payload(50_000)))
            #expect(later.readResponse()?.status == 202)
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func tricklingBodyIsTimedOutByMinimumRate(mode: HTTPEventMode) throws {
        // Item 2: 10 bytes every 50 ms resets a between-reads timeout forever; the minimum
        // average rate (here 1000 B/s over 0.3 s) answers 408 and closes, releasing the budget.
        try Self.withServer(mode: mode, { $0.minBodyRate = 1000; $0.bodyRateWindow = 0.3 }) { server, ports in
            let c = try TestClient(port: ports[0], timeoutSeconds: 4)
            c.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
            for _ in 0..<40 {
                c.send([UInt8](repeating: 0x41, count: 10))
                usleep(50_000)
            }
            let r = c.readResponse()
            #expect(r?.status == 408)
            #expect(c.readEOF())
            #expect(Self.eventually { server.bodyBudget.used == 0 })

            // A body sent in pieces faster than the minimum rate is served.
            let ok = try TestClient(port: ports[0])
            let body = HTTPServerTests.payload(20_000)
            let req = HTTPServerTests.spansRequest(body)
            for k in stride(from: 0, to: req.count, by: 5_000) {
                ok.send(Array(req[k..<min(req.count, k + 5_000)]))
                usleep(100_000)
            }
            #expect(ok.readResponse()?.status == 202)
        }
    }

    // MARK: item 5 — buffers returned after a large request

    @Test(arguments: HTTPEventMode.allCases) func connectionsDoNotKeepLargeBuffersWhenIdle(mode: HTTPEventMode) throws {
        // Item 5: after a 1 MB upload and a 2 MB response, an idle keep-alive connection holds
        // at most a few hundred KiB of buffers (it kept the 2 MB output buffer before).
        try Self.withServer(mode: mode) { server, ports in
            let c = try TestClient(port: ports[0])
            c.send(HTTPServerTests.spansRequest(HTTPServerTests.payload(1_000_000)))
            #expect(c.readResponse()?.status == 202)
            c.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.body.count == 2_000_000)
            let conns = server.openConnections
            #expect(conns.count == 1)
            for conn in conns {
                #expect(Self.eventually { conn.queue.sync { conn.retainedBufferBytes } <= 3 * HTTP1Engine.retainedBufferLimit })
            }
            c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
        }
    }

    // MARK: item 6 — h2c Upgrade validated before 101

    static let validSettings = "AAMAAABkAAQAAP__" // MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 65535

    @Test(arguments: [
        // Malformed HTTP2-Settings (5 bytes: not whole 6-byte entries).
        ("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAAA\r\n", false),
        // ENABLE_PUSH = 2 is not a valid setting.
        ("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAIAAAAC\r\n", false),
        // Connection does not list HTTP2-Settings / Upgrade.
        ("Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: \(validSettings)\r\n", false),
        ("Upgrade: h2c\r\nHTTP2-Settings: \(validSettings)\r\n", false),
        // Two HTTP2-Settings fields.
        ("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \(validSettings)\r\nHTTP2-Settings: \(validSettings)\r\n", false),
    ])
    func invalidH2CUpgradeIsServedAsHTTP1(_ extra: String, _ unused: Bool) throws {
        // Item 6: never 101 for an upgrade that is not valid; the request is answered over
        // HTTP/1.1 and the connection stays usable.
        for mode in HTTPEventMode.allCases { try Self.withServer(mode: mode) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send("GET /health HTTP/1.1\r\nHost: t\r\n\(extra)\r\n")
            let r = c.readResponse()
            #expect(r?.status == 200)
            c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
        } }
    }

    @Test(arguments: HTTPEventMode.allCases) func h2cUpgradeWithConnectionCloseIsNotUpgraded(mode: HTTPEventMode) throws {
        // Item 6: `Connection: close` with an upgrade → plain HTTP/1.1 answer, then close.
        try Self.withServer(mode: mode) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close, Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \(Self.validSettings)\r\n\r\n")
            let r = c.readResponse()
            #expect(r?.status == 200)
            #expect(r?.header("Connection") == "close")
            #expect(c.readEOF())
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func h2cUpgradeCanBeTurnedOffPerListener(mode: HTTPEventMode) throws {
        // Item 6: the same valid upgrade gets 101 on a listener that allows it and plain
        // HTTP/1.1 on one that does not (and on a server that does not).
        var closed = ListenAddress(host: "127.0.0.1", port: 0, name: "no-upgrade")
        closed.allowH2CUpgrade = false
        let upgrade = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \(Self.validSettings)\r\n\r\n"
        try Self.withServer(mode: mode, listeners: [ListenAddress(host: "127.0.0.1", port: 0), closed]) { _, ports in
            let open = try TestClient(port: ports[0])
            open.send(upgrade)
            #expect(open.readResponse()?.status == 101)
            let off = try TestClient(port: ports[1])
            off.send(upgrade)
            #expect(off.readResponse()?.status == 200)
        }
        try Self.withServer(mode: mode, { $0.allowH2CUpgrade = false }) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send(upgrade)
            #expect(c.readResponse()?.status == 200)
        }
    }

    // MARK: lingering after the last answer

    @Test(arguments: HTTPEventMode.allCases) func aPeerSendingOnAfterTheLastAnswerIsCutOffByBytes(mode: HTTPEventMode) throws {
        // After `Connection: close` the server half-closes and reads what the peer still sends,
        // dropping it, so the peer sees the answer rather than a reset. A peer that never stops
        // would keep it reading for the whole linger time (30 s here); past `lingerMaxBytes`
        // (1 MiB) the server closes at once and the peer's writes fail.
        try Self.withServer(mode: mode, { $0.lingerTimeout = 30 }) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            #expect(c.readResponse()?.status == 200)
            let chunk = [UInt8](repeating: 0x78, count: 64 << 10)
            var tv = timeval(tv_sec: 1, tv_usec: 0) // a blocked send returns after 1 s
            setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let start = DispatchTime.now().uptimeNanoseconds
            var sent = 0
            var failed = false
            while DispatchTime.now().uptimeNanoseconds - start < 10_000_000_000 {
                let n = chunk.withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 { sent += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                failed = true // EPIPE / ECONNRESET: the server closed
                break
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            #expect(failed, "still sending after \(seconds) s and \(sent) bytes: the server kept lingering")
            #expect(sent > 1 << 20, "the server read at least lingerMaxBytes before closing (sent \(sent))")
        }
    }

    // MARK: item 7 — HTTP/1 framing

    @Test(arguments: [
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 → faulty framing.
        ("POST /api/v2/spans HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /health HTTP/1.0\r\n\r\n", [400]),
        // Empty Transfer-Encoding must not slip past the Content-Length + Transfer-Encoding guard.
        ("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\nContent-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\nHost: t\r\n\r\n", [400, 501]),
        ("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: \r\n\r\n{}", [501]),
        // Host with whitespace, and two Host fields in HTTP/1.0.
        ("GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", [400]),
        ("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", [400]),
    ])
    func framingDefectsAreRefusedAndClosed(_ request: String, _ allowed: [Int]) throws {
        // Item 7.
        for mode in HTTPEventMode.allCases { try Self.withServer(mode: mode) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send(request)
            let r = c.readResponse()
            #expect(r.map { allowed.contains($0.status) } == true, "got \(String(describing: r?.status))")
            #expect(r?.header("Connection") == "close")
            #expect(c.readEOF())
        } }
    }

    @Test(arguments: HTTPEventMode.allCases) func repeatedListFieldLinesAreCombined(mode: HTTPEventMode) throws {
        // Item 7: two `Content-Encoding: gzip` lines reach the handler exactly like
        // `Content-Encoding: gzip, gzip` (one field, one combined value).
        try Self.withServer(mode: mode) { _, ports in
            let c = try TestClient(port: ports[0])
            c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\ncontent-encoding: gzip\r\nContent-Length: 0\r\n\r\n")
            let twoLines = c.readResponse()?.bodyText
            c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip, gzip\r\nContent-Length: 0\r\n\r\n")
            let oneLine = c.readResponse()?.bodyText
            #expect(twoLines == "1|gzip, gzip")
            #expect(oneLine == twoLines)
        }
    }
}

/// Issue 10, hostile-mix "stall-h2": large stalled bodies must not lock out small ones.
@Suite struct BodyBudgetTests {
    @Test func smallReservationsUseTheHeadroomLargeOnesDoNot() {
        let b = BodyBudget(limit: 16 << 20)
        #expect(b.headroom == 1 << 20)
        // An attacker's large reservations fill the budget …
        for _ in 0..<16 { #expect(b.tryReserve(1 << 20)) }
        #expect(!b.tryReserve(1 << 20))
        #expect(!b.tryReserve(BodyBudget.smallReservationBytes + 1))
        // … small bodies still get in, up to the headroom, then they are refused too.
        var small = 0
        while b.tryReserve(BodyBudget.smallReservationBytes) { small += 1 }
        #expect(small == (1 << 20) / BodyBudget.smallReservationBytes)
        #expect(!b.tryReserve(1))
        b.release(1 << 20)
        #expect(b.tryReserve(1 << 20) == false, "the headroom in use still counts against large reservations")
        #expect(b.tryReserve(26))
    }
}
