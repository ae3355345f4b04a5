import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The memory budget for request bodies buffered by a server, shared by all its connections
/// and both protocol engines (HTTP/1.1 and HTTP/2). One hostile client declaring large bodies
/// and sending them slowly (or not at all) on many connections would otherwise hold memory
/// that every other client needs.
///
/// Engines reserve bytes as a body's buffer grows (never from a declared length) and release
/// them when the request is handed to its handler (the handler then owns the body) or the
/// stream/connection ends. When `tryReserve` fails, a new body is refused (HTTP/1.1: 503 with
/// `Retry-After`, then close; HTTP/2: `REFUSED_STREAM`). Lock-free; safe from any thread.
///
/// Small bodies keep getting in while large ones fill the budget: a reservation of at most
/// `smallReservationBytes` may use a headroom of `limit / 16` above the limit. A client that
/// stalls many large bodies therefore cannot lock out clients posting small batches (the
/// hostile-mix probe "stall-h2" refused 80 % of a well-behaved client's 26-byte posts before);
/// small stalled bodies are bounded by the headroom and timed out by the minimum body rate.
public final class BodyBudget: Sendable {
    /// Most bytes that may be reserved at once by large reservations.
    public let limit: Int
    /// Extra bytes only small reservations may use.
    public let headroom: Int
    /// What counts as a small reservation (the first reservation of a small body).
    public static let smallReservationBytes = 64 << 10
    private let reserved = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = max(0, limit)
        let (h, overflow) = self.limit.dividedReportingOverflow(by: 16)
        self.headroom = overflow || self.limit == Int.max ? 0 : h
    }

    /// Bytes reserved now (a snapshot, for metrics and tests).
    public var used: Int { reserved.load(ordering: .relaxed) }

    /// Reserves `n` bytes if that keeps the total within `limit` (within `limit + headroom` for a
    /// small reservation). `n <= 0` always succeeds.
    public func tryReserve(_ n: Int) -> Bool {
        guard n > 0 else { return true }
        let cap = n <= Self.smallReservationBytes ? limit + headroom : limit
        var current = reserved.load(ordering: .relaxed)
        while true {
            guard n <= cap - current else { return false }
            let (exchanged, original) = reserved.compareExchange(expected: current, desired: current + n,
                                                                 successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Returns `n` bytes reserved earlier.
    public func release(_ n: Int) {
        guard n > 0 else { return }
        reserved.subtract(n, ordering: .relaxed)
    }

    /// The default `HTTPServerConfiguration.maxBufferedBodyBytes`: a quarter of physical
    /// memory, at most 1 GiB (256 MiB if the memory size cannot be read).
    public static let defaultLimit: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 256 << 20 }
        let (total, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? 1 << 30 : min(total / 4, 1 << 30)
    }()

    /// A budget that never refuses, for engines driven without a server (sans-IO tests).
    package static let unlimited = BodyBudget(limit: Int.max)
}
