import Foundation
import TLS
#if canImport(Glibc)
import Glibc
#endif

/// Blocking loopback sockets for the real-peer tests (the engines never touch sockets; this
/// is the smallest loop that puts one on the wire).
enum Loopback {
    struct SocketError: Error, CustomStringConvertible {
        let description: String
        init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
    }

    /// A listening socket on 127.0.0.1 with a port the kernel picked.
    static func listen() throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var addr = address(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            let e = SocketError("bind/listen")
            Glibc.close(fd)
            throw e
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }

    /// Waits up to `seconds` for a connection.
    static func accept(_ listener: Int32, seconds: Double = 20) throws -> Int32 {
        guard try waitReadable(listener, seconds: seconds) else { throw SocketError("no connection within \(seconds) s") }
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw SocketError("accept") }
        return fd
    }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var addr = address(port: port)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else {
            let e = SocketError("connect to 127.0.0.1:\(port)")
            Glibc.close(fd)
            throw e
        }
        return fd
    }

    static func waitReadable(_ fd: Int32, seconds: Double) throws -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = poll(&p, 1, Int32(seconds * 1000))
        guard r >= 0 else { throw SocketError("poll") }
        return r > 0
    }

    private static func address(port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }
}

/// Drives a `TLSEngine` over a blocking socket: sends its ciphertext, feeds it what arrives,
/// collects plaintext and events.
final class SocketDriver {
    let fd: Int32
    let engine: TLSEngine
    private(set) var plaintext: [UInt8] = []
    private(set) var events: [TLSEvent] = []
    private(set) var eof = false

    init(fd: Int32, engine: TLSEngine) {
        self.fd = fd
        self.engine = engine
    }

    deinit { Glibc.close(fd) }

    var failure: TLSError? { EnginePair.error(in: events) }
    var handshake: TLSHandshake? { EnginePair.handshake(in: events) }
    var plaintextString: String { String(decoding: plaintext, as: UTF8.self) }

    /// Sends all pending ciphertext (a peer that already left is not our error).
    func flush() {
        let bytes = engine.drainCiphertext()
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Sends close_notify and shuts the socket down both ways (the fd closes in `deinit`).
    func finish() {
        engine.close()
        flush()
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Reads once (waiting up to `seconds`), feeds the engine and sends what that produced.
    /// Returns false at EOF or on timeout.
    func readOnce(seconds: Double) throws -> Bool {
        guard !eof, try Loopback.waitReadable(fd, seconds: seconds) else { return false }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 {
            eof = true
            events += engine.peerClosed()
            return false
        }
        events += buffer[0..<n].withUnsafeBytes { engine.feed($0, plaintext: &plaintext) }
        flush()
        return true
    }

    /// Reads until `done` holds, the peer closes or `seconds` pass; returns whether `done` held.
    @discardableResult
    func run(seconds: Double = 20, until done: () -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        flush()
        while !done() {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, failure == nil, try readOnce(seconds: left) else { return done() }
        }
        return true
    }
}
