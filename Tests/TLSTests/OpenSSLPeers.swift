import Dispatch
import Foundation
import Synchronization
@testable import TLS
#if canImport(Glibc)
import Glibc
#endif

/// `openssl s_server` on a port the kernel picks (read from its `ACCEPT` line).
final class OpenSSLServer {
    let process = Process()
    let port: UInt16
    private let out = Pipe()
    private var seen = ""

    init(_ arguments: [String]) throws {
        // Line-buffered stdout (stdbuf), or the ACCEPT line stays in s_server's stdio buffer.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stdbuf")
        process.arguments = ["-oL", TestCertificates.openssl, "s_server", "-accept", "127.0.0.1:0"] + arguments
        process.standardOutput = out
        process.standardError = out
        process.standardInput = Pipe() // s_server -www exits on stdin EOF otherwise
        try process.run()
        // Wait for "ACCEPT 127.0.0.1:<port>" (observable readiness, no sleep).
        var port: UInt16?
        while port == nil {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break } // s_server exited
            seen += String(decoding: chunk, as: UTF8.self)
            if let line = seen.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT ") }),
               let p = line.split(separator: ":").last.flatMap({ UInt16($0.trimmingCharacters(in: .whitespaces)) }) {
                port = p
            }
        }
        guard let port else {
            kill(process.processIdentifier, SIGKILL)
            throw Loopback.SocketError("openssl s_server did not start: \(seen)")
        }
        self.port = port
    }

    var output: String { seen }

    /// SIGKILL: s_server started from the test process does not always stop on SIGTERM.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A test-only HTTPS server: accepts one connection on a background thread, drives a server
/// engine over it, answers the first request with a fixed HTTP/1.1 response, sends close_notify
/// and closes. Proves interop; the real server integration lives in Transport.
final class OneShotHTTPSServer: Sendable {
    struct Served: Sendable {
        var handshake: TLSHandshake?
        var events: [TLSEvent]
        var request: String
        var failure: TLSError? { EnginePair.error(in: events) }
    }

    let port: UInt16
    private let listener: Int32
    private let result = Mutex<Result<Served, any Error>?>(nil)
    private let done = DispatchSemaphore(value: 0)

    static let response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok"

    init(context: TLSContext) throws {
        (listener, port) = try Loopback.listen()
        Thread.detachNewThread { [self] in
            let r = Result { try serve(context) }
            result.withLock { $0 = r }
            done.signal()
        }
    }

    deinit { Glibc.close(listener) }

    private func serve(_ context: TLSContext) throws -> Served {
        let d = SocketDriver(fd: try Loopback.accept(listener), engine: try TLSEngine(server: context))
        let headEnd = Array("\r\n\r\n".utf8)
        try d.run { d.failure != nil || d.plaintext.firstRange(of: headEnd) != nil }
        if d.failure == nil, d.handshake != nil {
            try d.engine.write(Array(Self.response.utf8))
            d.engine.close()
            d.flush()
            shutdown(d.fd, Int32(SHUT_WR))
            // Until the client closes too (its close_notify or EOF), so it reads everything.
            try d.run(seconds: 10) { d.eof || d.engine.closeNotifyReceived }
        } else {
            d.flush() // the alert saying why
        }
        return Served(handshake: d.handshake, events: d.events, request: d.plaintextString)
    }

    /// Waits for the connection to be served (at most 30 s).
    func wait() throws -> Served {
        guard done.wait(timeout: .now() + 30) == .success else { throw Loopback.SocketError("the test server served nothing in 30 s") }
        return try result.withLock { $0! }.get()
    }
}
