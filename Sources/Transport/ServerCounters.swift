import Synchronization
import TLS

/// Server-wide figures the engines count as they go, read by the relay's metrics at scrape
/// time: answers the server gives itself (framing errors, limits, budgets, timeouts — requests
/// that never reach the handler, which counts the rest), HTTP/2 streams refused with
/// REFUSED_STREAM, and HTTP/2 streams open now. The answer counts are on cold paths only;
/// opening and closing a stream costs one relaxed atomic add each.
public final class ServerCounters: Sendable {
    private let answers = Mutex<[Int: Int]>([:])
    private let refused = Atomic<Int>(0)
    private let streams = Atomic<Int>(0)
    private let refusedConns = Atomic<Int>(0)
    private let handshakes = Atomic<Int>(0)
    private let resumed = Atomic<Int>(0)
    private let tlsFailures = Mutex<[String: Int]>([:])

    public init() {}

    /// The server answered `status` itself (the request did not reach the handler).
    package func answered(_ status: Int) { answers.withLock { $0[status, default: 0] += 1 } }
    /// An HTTP/2 stream was reset with REFUSED_STREAM before it was processed.
    package func refusedStream() { refused.wrappingAdd(1, ordering: .relaxed) }
    @inline(__always) package func streamsOpened(_ n: Int = 1) { streams.wrappingAdd(n, ordering: .relaxed) }
    @inline(__always) package func streamsClosed(_ n: Int = 1) { streams.wrappingSubtract(n, ordering: .relaxed) }

    /// A connection was closed at accept because `maxConnections` were open.
    package func connectionRefused() { refusedConns.wrappingAdd(1, ordering: .relaxed) }
    /// Connections closed at accept since start (the `maxConnections` limit).
    public var refusedConnections: Int { refusedConns.load(ordering: .relaxed) }

    /// A TLS handshake completed (`resumed`: an earlier session was resumed).
    package func tlsHandshake(resumed r: Bool) {
        handshakes.wrappingAdd(1, ordering: .relaxed)
        if r { resumed.wrappingAdd(1, ordering: .relaxed) }
    }
    /// A TLS connection failed (`timedOut`: the handshake did not finish in time).
    package func tlsFailure(_ code: TLSError.Code, timedOut: Bool = false) {
        let reason = timedOut ? "handshake_timeout" : Self.reason(code)
        tlsFailures.withLock { $0[reason, default: 0] += 1 }
    }

    static func reason(_ code: TLSError.Code) -> String {
        switch code {
        case .configuration: "configuration"
        case .peerCertificateRejected: "certificate_rejected"
        case .peerCertificateMissing: "certificate_missing"
        case .alertReceived: "alert_received"
        case .unexpectedEOF: "peer_closed"
        case .handshakeFailed: "handshake_failed"
        case .protocolError: "protocol_error"
        case .closed: "closed"
        }
    }

    /// TLS handshakes completed since start, and how many of them resumed a session.
    public var tlsHandshakes: (total: Int, resumed: Int) {
        (handshakes.load(ordering: .relaxed), resumed.load(ordering: .relaxed))
    }
    /// Failed TLS connections by reason (`certificate_missing`, `handshake_timeout`, …).
    public var tlsFailuresByReason: [String: Int] { tlsFailures.withLock { $0 } }

    /// Answers the server gave itself, by status code.
    public var ownAnswers: [Int: Int] { answers.withLock { $0 } }
    /// HTTP/2 streams refused with REFUSED_STREAM since start.
    public var refusedStreams: Int { refused.load(ordering: .relaxed) }
    /// HTTP/2 streams open now, on every connection.
    public var openStreams: Int { streams.load(ordering: .relaxed) }

    /// For contexts without a server (sans-IO tests).
    package static let detached = ServerCounters()
}
