import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SocketTests {
    @Test func listenOnPortZeroAcceptsNonBlockingCloexecSockets() throws {
        let (lfd, port) = try Socket.listen(host: "127.0.0.1", port: 0, backlog: 8)
        defer { close(lfd) }
        #expect(port > 0)
        #expect(fcntl(lfd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(lfd, F_GETFD) & FD_CLOEXEC != 0)
        guard case .wouldBlock = try Socket.accept(lfd) else { Issue.record("nothing to accept yet"); return }

        let client = try TestClient(port: port)
        _ = client
        var accepted: Socket.AcceptResult = .wouldBlock
        for _ in 0..<100 {
            accepted = try Socket.accept(lfd)
            if case .accepted = accepted { break }
            usleep(10_000)
        }
        guard case .accepted(let fd, let remote) = accepted else { Issue.record("no connection accepted"); return }
        defer { close(fd) }
        #expect(remote.hasPrefix("127.0.0.1:"))
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func twoListenersMayShareAPort() throws {
        let (a, port) = try Socket.listen(host: "127.0.0.1", port: 0, backlog: 8)
        defer { close(a) }
        let (b, port2) = try Socket.listen(host: "127.0.0.1", port: port, backlog: 8) // SO_REUSEPORT
        defer { close(b) }
        #expect(port2 == port)
    }

    @Test func ipv6Wildcard() throws {
        let (fd, port) = try Socket.listen(host: "::", port: 0, backlog: 8)
        defer { close(fd) }
        #expect(port > 0)
        // Dual-stack: an IPv4 client reaches the "::" listener.
        _ = try TestClient(port: port)
    }

    @Test func unresolvableHostIsAClearError() {
        #expect {
            try Socket.listen(host: "no.such.host.invalid", port: 0, backlog: 8)
        } throws: { error in
            (error as? ListenError)?.description.contains("no.such.host.invalid") == true
        }
    }
}
