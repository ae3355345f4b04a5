#if canImport(Glibc)
import Glibc
#endif
internal import CShims

/// One TCP address of a backend: the raw `sockaddr` to connect to and its "ip:port" text
/// ("[v6]:port" for IPv6, as the server prints peers).
package struct ResolvedAddress: Sendable, Hashable, CustomStringConvertible {
    package let family: Int32
    /// The bytes of a `sockaddr_in` or `sockaddr_in6`.
    package let sockaddr: [UInt8]
    package let text: String

    package var description: String { text }

    /// From the `sockaddr` of an `addrinfo` (IPv4 and IPv6 only).
    init?(_ sa: UnsafePointer<sockaddr>, length: socklen_t) {
        let family = Int32(sa.pointee.sa_family)
        guard family == AF_INET || family == AF_INET6 else { return nil }
        var storage = sockaddr_storage()
        let n = min(Int(length), MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: n))
        }
        self.family = family
        self.sockaddr = Array(UnsafeRawBufferPointer(start: sa, count: n))
        self.text = Socket.addressString(&storage).text
    }

    /// Resolves a numeric address (no DNS traffic); nil if `host` is a name.
    package static func numeric(host: String, port: Int) -> ResolvedAddress? {
        guard case .success(let list) = Resolver.getaddrinfo(host: host, port: port, numericOnly: true) else { return nil }
        return list.first
    }
}

/// Turns a host name into addresses. `system` calls `getaddrinfo(3)`, which blocks: the client
/// runs it on a global worker queue, never on an event loop. Tests inject fixed answers.
package struct Resolver: Sendable {
    package let resolve: @Sendable (_ host: String, _ port: Int) -> Result<[ResolvedAddress], ClientError>

    package init(_ resolve: @escaping @Sendable (_ host: String, _ port: Int) -> Result<[ResolvedAddress], ClientError>) {
        self.resolve = resolve
    }

    /// `getaddrinfo` for TCP, every address it returns (IPv4 and IPv6, de-duplicated, in its
    /// order). No `AI_ADDRCONFIG`: it would drop `::1` on hosts whose only IPv6 address is
    /// the loopback one; an unreachable address is skipped at connect time instead.
    package static let system = Resolver { host, port in getaddrinfo(host: host, port: port, numericOnly: false) }

    static func getaddrinfo(host: String, port: Int, numericOnly: Bool) -> Result<[ResolvedAddress], ClientError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (numericOnly ? AI_NUMERICHOST : 0)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = Glibc.getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0 else {
            let reason = String(cString: gai_strerror(rc))
            return .failure(ClientError(.resolveFailed, "cannot resolve '\(host)': \(reason)"))
        }
        defer { freeaddrinfo(res) }
        var out: [ResolvedAddress] = []
        var p = res
        while let ai = p {
            if let sa = ai.pointee.ai_addr, let a = ResolvedAddress(sa, length: ai.pointee.ai_addrlen), !out.contains(a) {
                out.append(a)
            }
            p = ai.pointee.ai_next
        }
        guard !out.isEmpty else { return .failure(ClientError(.resolveFailed, "'\(host)' resolved to no TCP address")) }
        return .success(out)
    }
}
