import Testing
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SyscallTests {
    @Test func eagainBecomesWouldBlockAndDataIsDone() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        var buf = [UInt8](repeating: 0, count: 16)
        let r1 = try buf.withUnsafeMutableBytes { p in try syscall("read") { read(fds[0], p.baseAddress, p.count) } }
        guard case .wouldBlock = r1 else { Issue.record("expected wouldBlock, got \(r1)"); return }
        _ = write(fds[1], "abc", 3)
        let r2 = try buf.withUnsafeMutableBytes { p in try syscall("read") { read(fds[0], p.baseAddress, p.count) } }
        guard case .done(let n) = r2 else { Issue.record("expected data"); return }
        #expect(n == 3)
    }

    @Test func otherErrorsThrowWithCallAndErrno() {
        do {
            _ = try syscall("read") { read(-1, nil, 0) }
            Issue.record("expected an error")
        } catch {
            #expect(error.call == "read")
            #expect(error.errno == EBADF)
            #expect(error.description.contains("read: "))
        }
    }
}
