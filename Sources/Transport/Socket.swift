#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// Socket set-up helpers. Every fd they return is non-blocking and close-on-exec.
enum Socket {
    /// Binds and listens on `host:port` (numeric or resolvable host; IPv4 or IPv6; port 0 lets
    /// the OS pick). `SO_REUSEADDR` and `SO_REUSEPORT` are set so several processes or loops
    /// may share a port. Returns the fd and the port actually bound.
    static func listen(host: String, port: Int, backlog: Int32) throws -> (fd: Int32, port: Int) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var res: UnsafeMutablePointer<addrinfo>?
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let rc = getaddrinfo(bare.isEmpty ? nil : bare, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            let msg = String(cString: gai_strerror(rc))
            throw ListenError(address: "\(host):\(port)", reason: "cannot resolve host: \(msg)")
        }
        defer { freeaddrinfo(res) }

        let ai = first.pointee
        let fd = try syscallBlocking("socket") {
            socket(ai.ai_family, ai.ai_socktype | tr_sock_nonblock() | tr_sock_cloexec(), ai.ai_protocol)
        }
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            if ai.ai_family == AF_INET6 {
                // "::" should accept IPv4 too; a specific v6 address stays v6-only by nature.
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 0)
            }
            _ = try syscallBlocking("bind") { bind(fd, ai.ai_addr, ai.ai_addrlen) }
            _ = try syscallBlocking("listen") { Glibc.listen(fd, backlog) }
            let bound = try localPort(fd)
            return (fd, bound)
        } catch {
            Glibc.close(fd)
            throw ListenError(address: "\(host):\(port)", reason: error.description)
        }
    }

    /// Options for an accepted connection: no Nagle delay (responses are small and whole).
    static func configureAccepted(_ fd: Int32) {
        _ = try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemCallError) {
        var v = value
        _ = try syscallBlocking("setsockopt") {
            setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// The socket's pending error (`SO_ERROR`: a failed connect, ECONNRESET after the peer's
    /// RST), 0 if none; `errno` if it cannot be read.
    static func pendingError(_ fd: Int32) -> Int32 {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno
    }

    static func localPort(_ fd: Int32) throws(SystemCallError) -> Int {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { p throws(SystemCallError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SystemCallError) in
                try syscallBlocking("getsockname") { getsockname(fd, sa, &len) }
            }
        }
        return addressString(&storage).port
    }

    /// "ip:port" ("[v6]:port" for IPv6) and the port of a socket address.
    static func addressString(_ storage: inout sockaddr_storage) -> (text: String, port: Int) {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
                    let port = Int(UInt16(bigEndian: sin.pointee.sin_port))
                    return ("\(cString(buf)):\(port)", port)
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count))
                    let port = Int(UInt16(bigEndian: sin6.pointee.sin6_port))
                    return ("[\(cString(buf))]:\(port)", port)
                }
            }
        default:
            return ("unknown", 0)
        }
    }

    enum AcceptResult {
        case accepted(fd: Int32, remote: String)
        case wouldBlock
        /// Out of file descriptors: back off before accepting again.
        case exhausted
        /// The peer went away before we accepted (ECONNABORTED, EPROTO…): try the next one.
        case skipped
    }

    /// One `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`.
    static func accept(_ listenFD: Int32) throws(SystemCallError) -> AcceptResult {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r: IOResult<Int32>
        do {
            r = try withUnsafeMutablePointer(to: &storage) { p throws(SystemCallError) in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SystemCallError) in
                    try syscall("accept4") { tr_accept4_nonblock(listenFD, sa, &len) }
                }
            }
        } catch {
            switch error.errno {
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .exhausted
            case ECONNABORTED, EPROTO, EPERM: return .skipped
            default: throw error
            }
        }
        switch r {
        case .wouldBlock: return .wouldBlock
        case .done(let fd): return .accepted(fd: fd, remote: addressString(&storage).text)
        }
    }
}

/// A listener could not be set up: which address, and why.
public struct ListenError: Error, CustomStringConvertible, Sendable {
    public let address: String
    public let reason: String
    public var description: String { "cannot listen on \(address): \(reason)" }
}

private func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
