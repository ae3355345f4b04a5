import Foundation
import Testing
@testable import Transport

/// `maxConnections`: connections past the limit are accepted and closed at once, counted; the
/// ones already open keep working, and a slot that frees up is usable again.
@Suite(.serialized) struct ConnectionLimitTests {
    @Test(arguments: HTTPEventMode.allCases) func connectionsPastTheLimitAreClosedAndCounted(mode: HTTPEventMode) throws {
        try HTTPServerTests.withServer(mode: mode, { $0.maxConnections = 3 }) { server, port in
            var open = try (0..<3).map { _ in try TestClient(port: port) }
            #expect(HTTPSServerTests.eventually { server.connectionCount == 3 })
            for _ in 0..<5 {
                let extra = try TestClient(port: port)
                extra.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(extra.readEOF(), "closed without an answer")
            }
            #expect(server.counters.refusedConnections == 5)
            // The three open ones are served as before.
            for c in open {
                c.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(c.readResponse()?.status == 200)
            }
            // One leaves: the next newcomer gets its slot.
            open.removeLast()
            #expect(HTTPSServerTests.eventually { server.connectionCount == 2 })
            let next = try TestClient(port: port)
            next.send("GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(next.readResponse()?.status == 200)
            #expect(server.counters.refusedConnections == 5)
        }
    }
}
