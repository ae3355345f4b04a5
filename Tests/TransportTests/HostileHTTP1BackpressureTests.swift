import Dispatch
import Logging
import Synchronization
import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 leftovers on the HTTP/1.1 side, over real sockets in both event modes: a client
/// that pipelines requests but never reads the answers is served only a bounded backlog, and a
/// full body budget times out the oldest stalled body so a client that sends gets in.
@Suite(.serialized) struct HostileHTTP1BackpressureTests {
    final class Counter: Sendable { let value = Atomic<Int>(0) }

    static let kilobyte = [UInt8](repeating: 0x61, count: 1024)

    /// `POST /kb` → 200 with 1 KiB, counted in `served`.
    static func withServer(mode: HTTPEventMode, _ configure: (inout HTTPServerConfiguration) -> Void,
                           _ body: (HTTPServer, Int, Counter) throws -> Void) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 1
        configure(&c)
        let served = Counter()
        var r = HTTPServerTests.router()
        r.register("POST", "/kb") { _, respond in
            served.value.add(1, ordering: .relaxed)
            respond(HTTPResponse(status: 200, body: Self.kilobyte))
        }
        let server = HTTPServer(configuration: c, handler: r, logger: Logger(label: "test"))
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdownAndWait(grace: Duration.seconds(2)) }
        try body(server, server.boundPorts[0], served)
    }

    static let request = Array("POST /kb HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}".utf8)

    /// A client socket with a 4 KiB receive buffer (a peer that barely reads), non-blocking.
    static func noReadClient(port: Int) throws -> Int32 {
        let fd = try TestClient.connectLoopback(port: port, receiveBuffer: 4096)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    /// Writes up to `count` pipelined requests, waiting at most `stallSeconds` each time the
    /// socket is full; returns how many were written whole.
    static func pipeline(_ fd: Int32, count: Int, stallSeconds: Double) -> Int {
        let batch = Array((0..<256).map { _ in request }.joined())
        var written = 0 // bytes
        let total = count * request.count
        while written < total {
            let off = written % batch.count
            let n = min(batch.count - off, total - written)
            let r = batch.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, n, Int32(MSG_NOSIGNAL)) }
            if r > 0 { written += r; continue }
            guard r < 0, errno == EAGAIN || errno == EWOULDBLOCK else { break }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, Int32(stallSeconds * 1000)) <= 0 { break } // the server stopped reading
        }
        return written / request.count
    }

    /// Connection of the server (one client at a time in these tests).
    static func onlyConnection(_ server: HTTPServer) -> Connection? { server.openConnections.first }

    // MARK: (a) responses queued for a peer that does not read

    @Test(arguments: HTTPEventMode.allCases) func pipeliningClientThatNeverReadsGetsABoundedBacklog(mode: HTTPEventMode) throws {
        // 8 MiB of pipelined requests (≈ 160k) answered with 1 KiB each, never read: before, the
        // server kept reading while the kernel's send queue took the answers (the hostile-mix
        // probe "noread" had it accept all 1.67 GB of 200 such clients). Now it stops once the
        // unreceived output passes maxOutputBufferBytes and closes on the idle timeout.
        let limit = 64 << 10
        try Self.withServer(mode: mode, { $0.maxOutputBufferBytes = limit; $0.idleTimeout = 3 }) { server, port, served in
            let fd = try Self.noReadClient(port: port)
            defer { Glibc.close(fd) }
            let sent = Self.pipeline(fd, count: (8 << 20) / Self.request.count, stallSeconds: 1)
            #expect(HostileHTTP1Tests.eventually { Self.onlyConnection(server).map { c in c.queue.sync { c.outputBacklogged } } ?? false },
                    "the connection never reported its output backlog")
            let answered = served.value.load(ordering: .relaxed)
            // The engine's own output (≤ limit), the backlog (≤ limit + one measuring step) and
            // one read of requests in flight: a few hundred KiB of answers, not megabytes.
            let bound = 4 * limit / Self.kilobyte.count + 64
            #expect(answered <= bound, "served \(answered) of \(sent) requests (bound \(bound)) to a client that reads nothing")
            // Nothing was taken since the last write: the idle timeout closes it.
            #expect(HostileHTTP1Tests.eventually(8) { server.connectionCount == 0 })
        }
    }

    @Test(arguments: HTTPEventMode.allCases) func backloggedConnectionResumesWhenThePeerReads(mode: HTTPEventMode) throws {
        // 1,000 pipelined requests fit the socket buffers; the server pauses after a bounded
        // backlog and serves the rest, in order, once the client reads.
        let limit = 64 << 10
        try Self.withServer(mode: mode, { $0.maxOutputBufferBytes = limit; $0.idleTimeout = 5 }) { server, port, served in
            let fd = try Self.noReadClient(port: port)
            defer { Glibc.close(fd) }
            let count = 1000
            #expect(Self.pipeline(fd, count: count, stallSeconds: 2) == count)
            #expect(HostileHTTP1Tests.eventually { Self.onlyConnection(server).map { c in c.queue.sync { c.outputBacklogged } } ?? false })
            #expect(served.value.load(ordering: .relaxed) < count)
            // Now read everything.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buffer: [UInt8] = []
            var responses = 0
            var chunk = [UInt8](repeating: 0, count: 65536)
            while responses < count {
                if let r = ParsedResponse.parse(&buffer) {
                    #expect(r.status == 200 && r.body.count == Self.kilobyte.count)
                    responses += 1
                    continue
                }
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                buffer += chunk[0..<n]
            }
            #expect(responses == count)
            #expect(served.value.load(ordering: .relaxed) == count)
        }
    }

    // MARK: (b) a full body budget times out the oldest stalled body

    @Test(arguments: HTTPEventMode.allCases) func fullBudgetTimesOutTheOldestStalledBody(mode: HTTPEventMode) throws {
        // A client holds 150 kB of a 200 kB budget with a body it stopped sending. Before, every
        // other body was refused (503) until the staller's own timeouts (here: off) fired; now
        // a refused reservation aborts the stalled body (408, close) once it made no progress
        // for `stalledBodyTimeout`, and the next attempt is served.
        try Self.withServer(mode: mode, {
            $0.maxBufferedBodyBytes = 200_000
            $0.stalledBodyTimeout = 0.3
            $0.minBodyRate = 0
        }) { server, port, _ in
            let staller = try TestClient(port: port, timeoutSeconds: 5)
            staller.send("POST /api/v2/spans HTTP/1.1\r\nHost: t\r\nContent-Length: 150000\r\n\r\n")
            staller.send([UInt8](repeating: 0x20, count: 100_000))
            #expect(HostileHTTP1Tests.eventually { server.bodyBudget.used >= 150_000 && server.bodyBudget.registeredBodies == 1 })

            let request = HTTPServerTests.spansRequest(HTTPServerTests.payload(100_000))
            var statuses: [Int] = []
            let deadline = DispatchTime.now().uptimeNanoseconds + 5_000_000_000
            while DispatchTime.now().uptimeNanoseconds < deadline {
                let c = try TestClient(port: port)
                c.send(request)
                let status = c.readResponse()?.status ?? 0
                statuses.append(status)
                if status == 202 { break }
                usleep(50_000) // pacing between attempts, not ordering
            }
            #expect(statuses.first == 503, "the budget was full: \(statuses)")
            #expect(statuses.last == 202, "a client that sends was never served: \(statuses)")
            let r = staller.readResponse()
            #expect(r?.status == 408)
            #expect(r?.header("Connection") == "close")
            #expect(staller.readEOF())
            #expect(HostileHTTP1Tests.eventually { server.bodyBudget.used == 0 && server.bodyBudget.registeredBodies == 0 })
        }
    }

    @Test func budgetAbortsOnlyTheOldestBodyStalledLongEnough() {
        let budget = BodyBudget(limit: 100, stallTimeout: 1)
        let aborted = Mutex<[Int]>([])
        let a = budget.register(now: 1_000_000_000) { _ in aborted.withLock { $0.append(1) } }
        _ = budget.register(now: 2_000_000_000) { _ in aborted.withLock { $0.append(2) } }
        #expect(!budget.abortOldestStalled(now: 1_500_000_000)) // 0.5 s: not stalled long enough
        a.progressed(now: 2_500_000_000) // body 1 moved: body 2 is now the oldest
        #expect(budget.abortOldestStalled(now: 3_200_000_000))
        #expect(aborted.withLock { $0 } == [2])
        #expect(budget.registeredBodies == 1)
        #expect(!budget.abortOldestStalled(now: 3_200_000_000)) // body 1: 0.7 s
        // A failed reservation is what triggers it.
        #expect(budget.tryReserve(100))
        #expect(!budget.tryReserve(50)) // over the limit; body 1 has stalled ≥ 1 s by the real clock
        #expect(aborted.withLock { $0 } == [2, 1])
        #expect(budget.registeredBodies == 0)
    }
}
