import Basics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The outcome of a non-blocking system call: a value, or "would block" (`EAGAIN`).
enum IOResult<T> {
    case done(T)
    case wouldBlock
}

/// A failed system call: which call, and `errno`. `description` reads like `read: Connection reset by peer (errno 104)`.
public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        let text = strerror(errno).map { String(cString: $0) } ?? "unknown error"
        return "\(call): \(text) (errno \(errno))"
    }
}

/// Runs one system call: retries `EINTR`, turns `EAGAIN`/`EWOULDBLOCK` into `.wouldBlock`
/// and any other failure into a `SystemCallError`. Every socket call goes through here.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(SystemCallError) -> IOResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .done(r) }
        let e = errno
        if e == EINTR { continue }
        if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
        throw SystemCallError(call: "\(name)", errno: e)
    }
}

/// Like `syscall` for calls that never return `EAGAIN` (setsockopt, bind, listen…).
@inline(__always)
func syscallBlocking<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = errno
        if e == EINTR { continue }
        throw SystemCallError(call: "\(name)", errno: e)
    }
}

