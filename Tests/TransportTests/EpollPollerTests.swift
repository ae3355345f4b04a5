import Dispatch
import Logging
import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

/// `EpollPoller` through a real server in `.epollPerLoop` mode: registrations follow the
/// connections' lives, slots are reused, and a loop with many connections serves them all.
@Suite(.serialized) struct EpollPollerTests {
    static func registered(_ server: HTTPServer) -> Int {
        server.group.loops.reduce(0) { sum, loop in
            sum + loop.queue.sync { (try? loop.poller().registered) ?? -1 }
        }
    }

    static func waitUntil(_ done: () -> Bool) -> Bool {
        for _ in 0..<300 where !done() { usleep(10_000) }
        return done()
    }

    @Test func registrationsFollowConnectionsAndSlotsAreReused() throws {
        try HTTPServerTests.withServer(mode: .epollPerLoop, { $0.loops = 1 }) { server, port in
            // Sequential connections: each one closes before the next, so one slot serves all.
            for i in 0..<40 {
                let c = try TestClient(port: port)
                c.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                #expect(c.readResponse()?.status == 200, "connection \(i)")
                #expect(c.readEOF())
            }
            #expect(Self.waitUntil { server.connectionCount == 0 })
            #expect(Self.registered(server) == 0)
            // Many at once on one loop: all registered, all served, all released.
            let clients = try (0..<24).map { _ in try TestClient(port: port) }
            for c in clients { c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n") }
            for c in clients { #expect(c.readResponse()?.status == 200) }
            #expect(Self.registered(server) == 24)
            #expect(server.connectionCount == 24)
        }
    }

    @Test func closedConnectionsLeaveThePoller() throws {
        try HTTPServerTests.withServer(mode: .epollPerLoop) { server, port in
            do {
                let clients = try (0..<10).map { _ in try TestClient(port: port) }
                for c in clients { c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n") }
                for c in clients { #expect(c.readResponse()?.status == 200) }
                #expect(Self.registered(server) == 10)
            } // clients close here; the server sees EOF on each
            #expect(Self.waitUntil { server.connectionCount == 0 })
            #expect(Self.registered(server) == 0)
        }
    }
}
