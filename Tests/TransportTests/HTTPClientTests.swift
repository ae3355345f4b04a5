import Basics
import TestSupport
import Dispatch
import Logging
import Synchronization
import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

/// `HTTPClient` over real loopback sockets: against the project's own `HTTPServer` and against
/// a raw listening socket scripted by hand (stale keep-alive, silence, refusal, full backlog).
@Suite(.serialized) struct HTTPClientTests {
    static let logger = Logger(label: "test.client")

    // MARK: helpers

    /// Starts an `HTTPServer` on 127.0.0.1 (OS-chosen port) and runs `body`.
    static func withServer(_ handler: any HTTPHandler, mode: HTTPEventMode = .epollPerLoop,
                           configure: (inout HTTPServerConfiguration) -> Void = { _ in },
                           _ body: (HTTPServer, Int) throws -> Void) throws {
        var c = HTTPServerConfiguration.testing(mode)
        c.loops = 2
        configure(&c)
        let server = HTTPServer(configuration: c, handler: handler, logger: logger)
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdownAndWait(grace: .seconds(2)) }
        try body(server, server.boundPorts[0])
    }

    static func client(port: Int, host: String = "127.0.0.1", group: EventLoopGroup = EventLoopGroup(loopCount: 2),
                       resolver: Resolver = .system,
                       _ configure: (inout HTTPClientConfiguration) -> Void = { _ in }) -> HTTPClient {
        var c = HTTPClientConfiguration()
        c.connectTimeout = 2
        c.responseTimeout = 5
        configure(&c)
        return HTTPClient(endpoint: ClientEndpoint(host: host, port: port, path: "/"), configuration: c, group: group,
                          logger: logger, resolver: resolver)
    }

    /// Completions collected from any thread, waited for with a deadline.
    final class Collector: Sendable {
        private let results = Mutex<[Int: Result<ClientResponse, ClientError>]>([:])
        private let signal = DispatchSemaphore(value: 0)

        func callback(_ index: Int = 0) -> @Sendable (Result<ClientResponse, ClientError>) -> Void {
            { r in
                let first = self.results.withLock { d in
                    let isNew = d[index] == nil
                    d[index] = r
                    return isNew
                }
                #expect(first, "completion \(index) ran twice")
                self.signal.signal()
            }
        }

        /// Waits for `count` completions (false on timeout).
        @discardableResult
        func wait(_ count: Int, seconds: Double = 10) -> Bool {
            for _ in 0..<count where signal.wait(timeout: .now() + seconds) == .timedOut { return false }
            return true
        }

        var all: [Int: Result<ClientResponse, ClientError>] { results.withLock { $0 } }
        subscript(_ i: Int) -> Result<ClientResponse, ClientError>? { all[i] }
    }

    static func send(_ client: HTTPClient, _ request: ClientRequest = ClientRequest(path: "/api/v2/spans", body: Array("hello".utf8)),
                     seconds: Double = 10) -> Result<ClientResponse, ClientError>? {
        let c = Collector()
        client.send(request, completion: c.callback())
        guard c.wait(1, seconds: seconds) else { return nil }
        return c[0]
    }

    static func waitUntil(seconds: Double = 5, _ done: () -> Bool) -> Bool {
        let deadline = Clock.monotonicNanos() + UInt64(seconds * 1e9)
        while !done() && Clock.monotonicNanos() < deadline { usleep(2_000) }
        return done()
    }

    static func status(_ r: Result<ClientResponse, ClientError>?) -> Int? {
        if case .success(let resp)? = r { return resp.status }
        return nil
    }

    static func code(_ r: Result<ClientResponse, ClientError>?) -> ClientError.Code? {
        if case .failure(let e)? = r { return e.code }
        return nil
    }

    static func text(_ r: Result<ClientResponse, ClientError>?) -> String? {
        if case .success(let resp)? = r { return String(decoding: resp.body, as: UTF8.self) }
        return nil
    }

    // MARK: against HTTPServer

    @Test(arguments: HTTPEventMode.allCases)
    func requestsReuseOneKeepAliveConnection(mode: HTTPEventMode) throws {
        let handler = RecordingHandler()
        try Self.withServer(handler, mode: mode) { server, port in
            let client = Self.client(port: port)
            defer { client.shutdown() }
            for i in 0..<5 {
                let body = Array("request \(i)".utf8)
                let r = Self.send(client, ClientRequest(path: "/api/v2/spans?n=\(i)", headers: [("Content-Type", "application/json")], body: body))
                #expect(Self.status(r) == 202)
                #expect(Self.text(r) == "{\"bytes\":\(body.count)}")
            }
            #expect(client.connectionsOpened == 1)
            #expect(server.connectionCount == 1)
            let seen = handler.all
            #expect(seen.count == 5)
            #expect(seen.first?.headers["host"] == "127.0.0.1:\(port)")
            #expect(seen.first?.headers["content-type"] == "application/json")
            #expect(seen.last?.query == "n=4")
            #expect(seen.last.map { String(decoding: $0.body, as: UTF8.self) } == "request 4")
            #expect(client.resolvedAddresses == ["127.0.0.1:\(port)"])
        }
    }

    @Test func serverAndClientShareOneGroup() throws {
        let group = EventLoopGroup(loopCount: 2)
        let server = HTTPServer(configuration: .testing(.epollPerLoop), handler: RecordingHandler(), logger: Self.logger, group: group)
        try server.start(listeners: [ListenAddress(host: "127.0.0.1", port: 0)])
        defer { server.shutdownAndWait(grace: .seconds(2)) }
        #expect(server.group === group)
        let client = Self.client(port: server.boundPorts[0], group: server.group)
        defer { client.shutdown() }
        let c = Collector()
        for i in 0..<20 { client.send(ClientRequest(path: "/x", body: Array(repeating: 1, count: i)), completion: c.callback(i)) }
        #expect(c.wait(20))
        for i in 0..<20 { #expect(Self.text(c[i]) == "{\"bytes\":\(i)}") }
    }

    @Test func poolOfFourRunsFourRequestsAtOnce() throws {
        let handler = DeferredHandler()
        try Self.withServer(handler) { server, port in
            let client = Self.client(port: port) { $0.poolSize = 4 }
            defer { client.shutdown() }
            let c = Collector()
            for i in 0..<6 { client.send(ClientRequest(path: "/r\(i)"), completion: c.callback(i)) }
            #expect(Self.waitUntil { handler.count == 4 })
            usleep(50_000)
            #expect(handler.count == 4) // the other two wait for a free connection
            #expect(client.waitingRequests == 2)
            #expect(client.connectionsOpened == 4)
            for i in 0..<4 { handler.answer(i, .json(200, "{\"i\":\(i)}")) }
            #expect(Self.waitUntil { handler.count == 6 })
            for i in 4..<6 { handler.answer(i, .json(200, "{\"i\":\(i)}")) }
            #expect(c.wait(6))
            #expect(c.all.values.allSatisfy { Self.status($0) == 200 })
            #expect(Set(handler.waiting.withLock { $0.map(\.0.path) }) == Set((0..<6).map { "/r\($0)" }))
            #expect(client.connectionsOpened == 4)
            #expect(server.connectionCount == 4)
        }
    }

    @Test func twoHundredRequestsThroughAPoolOfTwo() throws {
        let echo = ClosureHandler { req, respond in
            respond(HTTPResponse(status: 200, headers: [("X-Path", req.path)], body: Array("\(fnv1a(req.body))".utf8)))
        }
        try Self.withServer(echo) { server, port in
            let client = Self.client(port: port) { $0.poolSize = 2 }
            defer { client.shutdown() }
            let c = Collector()
            var bodies: [[UInt8]] = []
            var rng = SplitMix64(seed: 42)
            for i in 0..<200 {
                let body = (0..<(Int(rng.next() % 5000))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                bodies.append(body)
                client.send(ClientRequest(path: "/p/\(i)", body: body), completion: c.callback(i))
            }
            #expect(c.wait(200))
            for i in 0..<200 {
                guard case .success(let r)? = c[i] else {
                    Issue.record("request \(i): \(String(describing: c[i]))")
                    continue
                }
                #expect(r.headers["x-path"] == "/p/\(i)")
                #expect(String(decoding: r.body, as: UTF8.self) == "\(fnv1a(bodies[i]))")
            }
            #expect(client.connectionsOpened <= 2)
            #expect(server.connectionCount <= 2)
        }
    }

    @Test func earlyResponseToAnOversizedBodyCompletesAndTheNextRequestWorks() throws {
        try Self.withServer(RecordingHandler(), configure: { $0.maxBodyBytes = 1000 }) { _, port in
            let client = Self.client(port: port) { $0.poolSize = 1 }
            defer { client.shutdown() }
            let r = Self.send(client, ClientRequest(path: "/big", body: [UInt8](repeating: 7, count: 4 << 20)))
            #expect(Self.status(r) == 413)
            #expect(Self.status(Self.send(client)) == 202)
            #expect(client.connectionsOpened == 2)
        }
    }

    @Test func shutdownFailsQueuedAndInFlightRequests() throws {
        let handler = DeferredHandler()
        try Self.withServer(handler) { _, port in
            let client = Self.client(port: port) { $0.poolSize = 1 }
            let c = Collector()
            client.send(ClientRequest(path: "/a"), completion: c.callback(0))
            client.send(ClientRequest(path: "/b"), completion: c.callback(1))
            #expect(Self.waitUntil { handler.count == 1 })
            client.shutdown()
            #expect(c.wait(2))
            #expect(Self.code(c[0]) == .shutdown)
            #expect(Self.code(c[1]) == .shutdown)
            #expect(Self.code(Self.send(client, seconds: 1)) == .shutdown)
            #expect(Self.waitUntil { client.connectionCount == 0 })
            #expect(Self.waitUntil { Self.registrations(client.group) == 0 })
            handler.answer(0, .json(200, "{}")) // too late: nobody listens, nothing crashes
        }
    }

    @Test func idleConnectionsCloseAndLeaveThePoller() throws {
        try Self.withServer(RecordingHandler()) { server, port in
            let client = Self.client(port: port) { $0.idleTimeout = 0.2 }
            defer { client.shutdown() }
            #expect(Self.status(Self.send(client)) == 202)
            #expect(client.connectionCount == 1)
            #expect(Self.registrations(client.group) == 1)
            let start = Clock.monotonicNanos()
            #expect(Self.waitUntil { client.connectionCount == 0 })
            #expect(Double(Clock.monotonicNanos() - start) / 1e9 >= 0.15)
            #expect(Self.registrations(client.group) == 0)
            #expect(Self.waitUntil { server.connectionCount == 0 })
            #expect(Self.status(Self.send(client)) == 202)
            #expect(client.connectionsOpened == 2)
        }
    }

    /// Live registrations in the pollers of `group`'s loops.
    static func registrations(_ group: EventLoopGroup) -> Int {
        group.loops.reduce(0) { sum, loop in sum + loop.queue.sync { (try? loop.poller().registered) ?? -1 } }
    }

    // MARK: names and addresses

    @Test func localhostResolvesAndEveryAddressIsListed() throws {
        try Self.withServer(RecordingHandler()) { _, port in
            let client = Self.client(port: port, host: "localhost")
            defer { client.shutdown() }
            #expect(Self.status(Self.send(client)) == 202)
            let expected = (try? Resolver.system.resolve("localhost", port).get())?.map(\.text) ?? []
            #expect(!expected.isEmpty)
            #expect(client.resolvedAddresses == expected)
            #expect(client.resolvedAddresses.contains("127.0.0.1:\(port)"))
        }
    }

    /// A name with two addresses (127.0.0.1 and ::1, or 127.0.0.2 without IPv6): connections
    /// go to both.
    @Test func everyAddressOfANameIsUsed() throws {
        let handler = DeferredHandler()
        try Self.withServer(handler) { server, port in
            var second = "::1"
            do {
                try server.start(listeners: [ListenAddress(host: "::1", port: port)])
            } catch {
                second = "127.0.0.2"
                try server.start(listeners: [ListenAddress(host: second, port: port)])
            }
            let addresses = [ResolvedAddress.numeric(host: "127.0.0.1", port: port)!, ResolvedAddress.numeric(host: second, port: port)!]
            let client = Self.client(port: port, host: "backend.test", resolver: Resolver { _, _ in .success(addresses) }) {
                $0.poolSize = 2
            }
            defer { client.shutdown() }
            let c = Collector()
            for i in 0..<4 { client.send(ClientRequest(path: "/\(i)"), completion: c.callback(i)) }
            #expect(Self.waitUntil { handler.count == 4 })
            let peers = handler.waiting.withLock { $0.map(\.0.remoteAddress) }
            let v4 = peers.filter { $0.hasPrefix("127.0.0.1:") }.count
            #expect(v4 == 2, "\(peers)")
            #expect(peers.count - v4 == 2, "\(peers)")
            #expect(client.resolvedAddresses == addresses.map(\.text))
            for i in 0..<4 { handler.answer(i, .json(200, "{}")) }
            #expect(c.wait(4))
        }
    }

    @Test func anAddressThatRefusesIsSkipped() throws {
        let dead = Self.unusedPort()
        try Self.withServer(RecordingHandler()) { _, port in
            let addresses = [ResolvedAddress.numeric(host: "127.0.0.1", port: dead)!, ResolvedAddress.numeric(host: "127.0.0.1", port: port)!]
            let client = Self.client(port: port, host: "backend.test", resolver: Resolver { _, _ in .success(addresses) }) {
                $0.poolSize = 2
                $0.failedAddressDelay = 30
            }
            defer { client.shutdown() }
            let c = Collector()
            for i in 0..<10 { client.send(ClientRequest(path: "/\(i)"), completion: c.callback(i)) }
            #expect(c.wait(10))
            #expect(c.all.values.allSatisfy { Self.status($0) == 202 }, "\(c.all)")
            // Later requests do not try the dead address again while it is skipped.
            let opened = client.connectionsOpened
            for _ in 0..<5 { #expect(Self.status(Self.send(client)) == 202) }
            #expect(client.connectionsOpened == opened)
        }
    }

    @Test func theClientFollowsDNSWhenTheBackendMoves() throws {
        let a = RecordingHandler()
        let b = RecordingHandler()
        try Self.withServer(a) { _, portA in
            try Self.withServer(b) { _, portB in
                let answer = Mutex([ResolvedAddress.numeric(host: "127.0.0.1", port: portA)!])
                let client = Self.client(port: 80, host: "backend.test", resolver: Resolver { _, _ in .success(answer.withLock { $0 }) }) {
                    $0.resolveInterval = 0.05
                }
                defer { client.shutdown() }
                #expect(Self.status(Self.send(client)) == 202)
                #expect(a.all.count == 1)
                answer.withLock { $0 = [ResolvedAddress.numeric(host: "127.0.0.1", port: portB)!] }
                usleep(60_000)
                _ = Self.send(client) // triggers the new resolution
                #expect(Self.waitUntil { client.resolvedAddresses == ["127.0.0.1:\(portB)"] })
                // Connections to the old address retire once idle; new requests go to the new one.
                var moved = false
                for _ in 0..<20 where !moved {
                    #expect(Self.status(Self.send(client)) == 202)
                    moved = b.all.count >= 1
                }
                #expect(moved)
                #expect(a.all.first?.headers["host"] == "backend.test")
            }
        }
    }

    @Test func aNameThatDoesNotResolveFails() {
        let client = Self.client(port: 80, host: "backend.test",
                                 resolver: Resolver { host, _ in .failure(ClientError(.resolveFailed, "no such host \(host)")) })
        defer { client.shutdown() }
        let r = Self.send(client, seconds: 5)
        #expect(Self.code(r) == .resolveFailed)
    }

    // MARK: against a scripted socket

    @Test func staleKeepAliveConnectionIsRetriedOnAFreshOne() throws {
        let server = try ScriptedServer()
        let client = Self.client(port: server.port) { $0.poolSize = 1 }
        defer { client.shutdown() }

        // 1. A normal exchange; the server keeps the connection.
        let c = Collector()
        client.send(ClientRequest(path: "/one"), completion: c.callback(0))
        let first = try #require(server.accept())
        #expect(first.readRequest()?.hasPrefix("POST /one HTTP/1.1\r\n") == true)
        first.send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        #expect(c.wait(1))
        #expect(Self.text(c[0]) == "one")

        // 2. The server closes the idle connection; the client notices and the next request
        //    goes out on a new one.
        first.close()
        #expect(Self.waitUntil { client.connectionCount == 0 })
        client.send(ClientRequest(path: "/two"), completion: c.callback(1))
        let second = try #require(server.accept())
        #expect(second.readRequest()?.hasPrefix("POST /two") == true)
        second.send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
        #expect(c.wait(1))
        #expect(Self.text(c[1]) == "two")

        // 3. The server takes the next request and closes without a byte of answer (it closed
        //    just as we wrote): the request is sent again once, on a fresh connection.
        client.send(ClientRequest(path: "/three"), completion: c.callback(2))
        #expect(second.readRequest()?.hasPrefix("POST /three") == true)
        second.close()
        let third = try #require(server.accept())
        #expect(third.readRequest()?.hasPrefix("POST /three") == true)
        third.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree")
        #expect(c.wait(1))
        #expect(Self.text(c[2]) == "three")
        #expect(client.retriedRequests == 1)
        #expect(client.connectionsOpened == 3)

        // 4. A fresh connection that dies the same way is not retried: the caller hears of it.
        client.send(ClientRequest(path: "/four"), completion: c.callback(3))
        #expect(third.readRequest()?.hasPrefix("POST /four") == true)
        third.close()
        let fourth = try #require(server.accept())
        #expect(fourth.readRequest()?.hasPrefix("POST /four") == true)
        fourth.close()
        #expect(c.wait(1))
        #expect(Self.code(c[3]) == .connectionClosed)
    }

    @Test func aServerThatNeverAnswersTimesOut() throws {
        let server = try ScriptedServer()
        let client = Self.client(port: server.port) { $0.responseTimeout = 0.3 }
        defer { client.shutdown() }
        let c = Collector()
        let start = Clock.monotonicNanos()
        client.send(ClientRequest(path: "/silence"), completion: c.callback())
        let peer = try #require(server.accept())
        #expect(peer.readRequest() != nil)
        #expect(c.wait(1, seconds: 5))
        let elapsed = Double(Clock.monotonicNanos() - start) / 1e9
        #expect(Self.code(c[0]) == .timeout)
        #expect(elapsed >= 0.29 && elapsed < 3, "\(elapsed)")
        #expect(peer.readEOF()) // the client closed the connection
    }

    @Test func connectRefusedFailsWithConnectFailed() {
        let client = Self.client(port: Self.unusedPort())
        defer { client.shutdown() }
        let start = Clock.monotonicNanos()
        let r = Self.send(client, seconds: 5)
        #expect(Self.code(r) == .connectFailed)
        #expect(Double(Clock.monotonicNanos() - start) / 1e9 < 2)
        if case .failure(let e)? = r { #expect(e.message.contains("refused"), "\(e)") }
        #expect(client.connectionCount == 0)
    }

    /// A listener with backlog 0 that never accepts, its queue filled: the kernel drops our SYN,
    /// so only `connectTimeout` ends the attempt.
    @Test func connectTimeoutOnAFullBacklog() throws {
        let listener = try ScriptedServer(backlog: 0)
        var fillers: [Int32] = []
        defer { for f in fillers { Glibc.close(f) } }
        for _ in 0..<3 { fillers.append(Self.nonBlockingConnect(port: listener.port)) }
        usleep(50_000)
        let client = Self.client(port: listener.port) { $0.connectTimeout = 0.3 }
        defer { client.shutdown() }
        let start = Clock.monotonicNanos()
        let r = Self.send(client, seconds: 5)
        let elapsed = Double(Clock.monotonicNanos() - start) / 1e9
        #expect(Self.code(r) == .connectFailed)
        if case .failure(let e)? = r { #expect(e.message.contains("did not connect within"), "\(e)") }
        #expect(elapsed >= 0.29 && elapsed < 3, "\(elapsed)")
    }

    @Test func h2cRequestsShareOneConnection() throws {
        try Self.withServer(RecordingHandler()) { server, port in
            let client = Self.client(port: port) { $0.protocolVersion = .h2c }
            defer { client.shutdown() }
            let c = Collector()
            for i in 0..<20 { client.send(ClientRequest(path: "/h2/\(i)", body: Array(repeating: 2, count: i)), completion: c.callback(i)) }
            #expect(c.wait(20))
            for i in 0..<20 { #expect(Self.text(c[i]) == "{\"bytes\":\(i)}", "\(String(describing: c[i]))") }
            #expect(client.connectionsOpened == 1)
            #expect(server.connectionCount == 1)
        }
    }

    // MARK: socket helpers

    /// A port nothing listens on (bound, then closed).
    static func unusedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return (try? Socket.localPort(fd)) ?? 1
    }

    static func nonBlockingConnect(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return fd
    }
}

/// A blocking listening socket on 127.0.0.1 that a test drives by hand.
final class ScriptedServer {
    let fd: Int32
    let port: Int

    init(backlog: Int32 = 16) throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0, listen(s, backlog) == 0 else { Glibc.close(s); throw SystemCallError(call: "bind/listen", errno: errno) }
        var tv = timeval(tv_sec: 5, tv_usec: 0) // accept gives up after 5 s
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        fd = s
        port = try Socket.localPort(s)
    }

    deinit { Glibc.close(fd) }

    func accept() -> ScriptedPeer? {
        let c = Glibc.accept(fd, nil, nil)
        return c >= 0 ? ScriptedPeer(fd: c) : nil
    }
}

final class ScriptedPeer {
    private(set) var fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) {
        self.fd = fd
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    func send(_ s: String) {
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// One request (head + Content-Length body) as text; nil on EOF or timeout.
    func readRequest() -> String? {
        while true {
            if let end = headEnd() {
                let head = String(decoding: buffer[0..<end], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int(String($0.split(separator: ":")[1]).trimmingCharacters()) } ?? 0
                if buffer.count >= end + length {
                    let text = String(decoding: buffer[0..<(end + length)], as: UTF8.self)
                    buffer.removeFirst(end + length)
                    return text
                }
            }
            guard fill() else { return nil }
        }
    }

    /// True if the peer closed (EOF or reset) within the timeout.
    func readEOF() -> Bool {
        while true {
            var tmp = [UInt8](repeating: 0, count: 4096)
            let n = tmp.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private func fill() -> Bool {
        var tmp = [UInt8](repeating: 0, count: 65536)
        let n = tmp.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
        if n <= 0 { return false }
        buffer += tmp[0..<n]
        return true
    }

    private func headEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i + 4
        }
        return nil
    }
}
