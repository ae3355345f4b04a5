import Synchronization

/// Server-wide figures the engines count as they go, read by the relay's metrics at scrape
/// time: answers the server gives itself (framing errors, limits, budgets, timeouts — requests
/// that never reach the handler, which counts the rest), HTTP/2 streams refused with
/// REFUSED_STREAM, and HTTP/2 streams open now. The answer counts are on cold paths only;
/// opening and closing a stream costs one relaxed atomic add each.
public final class ServerCounters: Sendable {
    private let answers = Mutex<[Int: Int]>([:])
    private let refused = Atomic<Int>(0)
    private let streams = Atomic<Int>(0)

    public init() {}

    /// The server answered `status` itself (the request did not reach the handler).
    package func answered(_ status: Int) { answers.withLock { $0[status, default: 0] += 1 } }
    /// An HTTP/2 stream was reset with REFUSED_STREAM before it was processed.
    package func refusedStream() { refused.wrappingAdd(1, ordering: .relaxed) }
    @inline(__always) package func streamsOpened(_ n: Int = 1) { streams.wrappingAdd(n, ordering: .relaxed) }
    @inline(__always) package func streamsClosed(_ n: Int = 1) { streams.wrappingSubtract(n, ordering: .relaxed) }

    /// Answers the server gave itself, by status code.
    public var ownAnswers: [Int: Int] { answers.withLock { $0 } }
    /// HTTP/2 streams refused with REFUSED_STREAM since start.
    public var refusedStreams: Int { refused.load(ordering: .relaxed) }
    /// HTTP/2 streams open now, on every connection.
    public var openStreams: Int { streams.load(ordering: .relaxed) }

    /// For contexts without a server (sans-IO tests).
    package static let detached = ServerCounters()
}
