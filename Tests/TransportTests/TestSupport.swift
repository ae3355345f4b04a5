import Dispatch
import Synchronization
@testable import Transport
#if canImport(Glibc)
import Glibc
#endif

/// A `ConnectionContext` over plain buffers for sans-IO engine tests. Every engine call goes
/// through `run`, which executes on the context's queue as the protocol requires.
final class TestContext: ConnectionContext, @unchecked Sendable {
    let queue = DispatchQueue(label: "test.connection")
    var outputSignals = 0
    let remoteAddress = "127.0.0.1:4242"
    let listener = "test"
    func outputAvailable() { outputSignals += 1 }

    func run<T>(_ body: () -> T) -> T { queue.sync(execute: body) }
}

/// Records requests; answers each with 202 and the body length, synchronously.
final class RecordingHandler: HTTPHandler {
    let requests = Mutex<[HTTPRequest]>([])
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        requests.withLock { $0.append(request) }
        respond(.json(202, "{\"bytes\":\(request.body.count)}"))
    }
    var all: [HTTPRequest] { requests.withLock { $0 } }
}

/// Keeps the respond closures so a test decides when (and in which order) to answer.
final class DeferredHandler: HTTPHandler {
    let waiting = Mutex<[(HTTPRequest, @Sendable (HTTPResponse) -> Void)]>([])
    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        waiting.withLock { $0.append((request, respond)) }
    }
    var count: Int { waiting.withLock { $0.count } }
    func answer(_ index: Int, _ response: HTTPResponse) {
        let r = waiting.withLock { $0[index].1 }
        r(response)
    }
}

/// Drives an `HTTP1Engine` with strings and collects its output.
final class EngineHarness {
    let context = TestContext()
    let engine: HTTP1Engine

    init(handler: any HTTPHandler, configure: (inout HTTPServerConfiguration) -> Void = { _ in }) {
        var c = HTTPServerConfiguration()
        // The harness has no event loop to give the engine new turns: tests of the per-turn
        // limit set it themselves.
        c.maxRequestsPerTurn = 1_000
        configure(&c)
        let ctx = context
        engine = ctx.run { HTTP1Engine(context: ctx, handler: handler, configuration: c) }
    }

    @discardableResult
    func feed(_ s: String) -> EngineDisposition { feed(Array(s.utf8)) }

    @discardableResult
    func feed(_ bytes: [UInt8]) -> EngineDisposition {
        context.run { bytes.withUnsafeBytes { engine.receive($0) } }
    }

    /// Everything the engine has queued, as text.
    func output() -> String {
        context.run {
            var out: [UInt8] = []
            while engine.hasPendingOutput { engine.drainOutput(into: &out, limit: 1 << 20) }
            return String(decoding: out, as: UTF8.self)
        }
    }

    var disposition: EngineDisposition { context.run { engine.disposition } }

    /// Waits until blocks already queued on the connection queue (late responses) ran.
    func sync() { context.run {} }
}

/// Status codes of every response in a byte stream (HTTP/1.1 status lines).
func statuses(_ text: String) -> [Int] {
    var result: [Int] = []
    var rest = Substring(text)
    while let r = rest.range(of: "HTTP/1.1 ") {
        let code = rest[r.upperBound...].prefix(3)
        if let c = Int(code) { result.append(c) }
        rest = rest[r.upperBound...]
    }
    return result
}

extension Substring {
    func range(of needle: String) -> Range<Substring.Index>? {
        let n = Array(needle.utf8)
        var i = startIndex
        while i < endIndex {
            if self[i...].utf8.starts(with: n) {
                return i..<self.utf8.index(i, offsetBy: n.count)
            }
            i = index(after: i)
        }
        return nil
    }
}

/// A tiny blocking TCP client for socket tests.
final class TestClient {
    let fd: Int32

    init(port: Int, timeoutSeconds: Int = 5) throws {
        fd = try Self.connectLoopback(port: port)
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { Glibc.close(fd) }

    /// A blocking TCP socket connected to 127.0.0.1:`port`; `receiveBuffer` sets SO_RCVBUF first.
    static func connectLoopback(port: Int, receiveBuffer: Int32? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { Glibc.close(fd); throw SystemCallError(call: "connect", errno: errno) }
        return fd
    }

    func send(_ s: String) { send(Array(s.utf8)) }

    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until `count` complete responses arrived, EOF, or timeout. Understands
    /// Content-Length framing only (what our server sends).
    func readResponses(_ count: Int) -> [ParsedResponse] {
        var responses: [ParsedResponse] = []
        while responses.count < count {
            guard let r = readResponse() else { break }
            responses.append(r)
        }
        return responses
    }

    private var buffer: [UInt8] = []

    func readResponse() -> ParsedResponse? {
        while true {
            if let r = ParsedResponse.parse(&buffer) { return r }
            guard fill() else { return nil }
        }
    }

    /// True if the server closed the connection (EOF) within the timeout.
    func readEOF() -> Bool {
        while true {
            var tmp = [UInt8](repeating: 0, count: 4096)
            let n = tmp.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
            buffer += tmp[0..<n]
        }
    }

    private func fill() -> Bool {
        var tmp = [UInt8](repeating: 0, count: 65536)
        let n = tmp.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
        if n <= 0 { return false }
        buffer += tmp[0..<n]
        return true
    }
}

struct ParsedResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    var bodyText: String { String(decoding: body, as: UTF8.self) }

    static func parse(_ buf: inout [UInt8]) -> ParsedResponse? {
        guard let end = findHeadEnd(buf) else { return nil }
        let head = String(decoding: buf[0..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: true).map(String.init)
        guard !lines.isEmpty else { return nil }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        let headers = lines.compactMap { line -> (String, String)? in
            guard let c = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<c]), String(line[line.index(after: c)...]).trimmingCharacters())
        }
        let length = status < 200 ? 0 : Int(headers.first { $0.0.lowercased() == "content-length" }?.1 ?? "0") ?? 0
        guard buf.count >= end + length else { return nil }
        let body = Array(buf[end..<(end + length)])
        buf.removeFirst(end + length)
        return ParsedResponse(status: status, headers: headers, body: body)
    }

    private static func findHeadEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i + 4 }
        return nil
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// FNV-1a over every byte: the tests' checksum of a body.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf29ce484222325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
    return h
}

extension HTTPServerConfiguration {
    /// Defaults with the given event mode (socket tests run in every mode).
    static func testing(_ mode: HTTPEventMode) -> HTTPServerConfiguration {
        var c = HTTPServerConfiguration()
        c.eventMode = mode
        return c
    }
}
