import Basics
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
///
/// A full budget also times out stalled bodies: a body that spans more than one read registers
/// a `Holder` (`register`), reports progress as bytes arrive (`Holder.progressed`) and
/// unregisters when it is handed over or dropped. When a reservation fails, the holder that
/// has made no progress for the longest time — and for at least `stallTimeout` — is aborted:
/// its `abort` closure runs (on the failing caller's thread; it must hop to its owner's queue),
/// and the owner answers (HTTP/1.1: 408 and close) and releases its bytes, so the next
/// reservation of a well-behaved client gets in.
public final class BodyBudget: Sendable {
    /// Most bytes that may be reserved at once by large reservations.
    public let limit: Int
    /// Extra bytes only small reservations may use.
    public let headroom: Int
    /// What counts as a small reservation (the first reservation of a small body).
    public static let smallReservationBytes = 64 << 10
    private let reserved = Atomic<Int>(0)
    /// A body with no progress for this long may be aborted when the budget is full.
    public let stallTimeoutNanos: UInt64
    private let holders = Mutex<[ObjectIdentifier: Holder]>([:])

    /// One body holding part of the budget, as seen by `abortOldestStalled`.
    public final class Holder: Sendable {
        /// Monotonic time of the last progress (bytes arrived).
        let lastProgress: Atomic<UInt64>
        let abort: @Sendable (Holder) -> Void

        init(now: UInt64, abort: @escaping @Sendable (Holder) -> Void) {
            lastProgress = Atomic(now)
            self.abort = abort
        }

        /// Bytes of this body arrived (`now`: `Clock.monotonicNanos()`).
        @inline(__always)
        public func progressed(now: UInt64) { lastProgress.store(now, ordering: .relaxed) }
    }

    /// - Parameters:
    ///   - limit: most bytes reserved at once by large reservations.
    ///   - stallTimeout: seconds without progress after which a body may be aborted to make
    ///     room when a reservation fails.
    public init(limit: Int, stallTimeout: Double = 5) {
        self.stallTimeoutNanos = UInt64(max(0, stallTimeout) * 1e9)
        self.limit = max(0, limit)
        let (h, overflow) = self.limit.dividedReportingOverflow(by: 16)
        self.headroom = overflow || self.limit == Int.max ? 0 : h
    }

    /// Bytes reserved now (a snapshot, for metrics and tests).
    public var used: Int { reserved.load(ordering: .relaxed) }

    /// Reserves `n` bytes if that keeps the total within `limit` (within `limit + headroom` for a
    /// small reservation). `n <= 0` always succeeds. On failure the oldest stalled body, if
    /// any, is aborted (`abortOldestStalled`) so a later reservation can succeed.
    public func tryReserve(_ n: Int) -> Bool {
        guard n > 0 else { return true }
        let cap = n <= Self.smallReservationBytes ? limit + headroom : limit
        var current = reserved.load(ordering: .relaxed)
        while true {
            guard n <= cap - current else {
                abortOldestStalled(now: Clock.monotonicNanos())
                return false
            }
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

    /// Registers a body that holds (or will hold) part of the budget. `abort` is called at
    /// most once, from any thread, if the body is chosen as the oldest stalled one; the holder
    /// is unregistered by then.
    public func register(now: UInt64, abort: @escaping @Sendable (Holder) -> Void) -> Holder {
        let h = Holder(now: now, abort: abort)
        holders.withLock { $0[ObjectIdentifier(h)] = h }
        return h
    }

    /// The body was handed over or dropped.
    public func unregister(_ holder: Holder) {
        _ = holders.withLock { $0.removeValue(forKey: ObjectIdentifier(holder)) }
    }

    /// Bodies registered now (for tests).
    public var registeredBodies: Int { holders.withLock { $0.count } }

    /// Aborts the registered body with the oldest progress, if it made none for
    /// `stallTimeoutNanos`. Returns whether one was aborted.
    @discardableResult
    public func abortOldestStalled(now: UInt64) -> Bool {
        let victim: Holder? = holders.withLock { table in
            var oldest: Holder?
            var oldestTime = UInt64.max
            for h in table.values {
                let t = h.lastProgress.load(ordering: .relaxed)
                if t < oldestTime { oldest = h; oldestTime = t }
            }
            guard let h = oldest, now >= oldestTime, now - oldestTime >= stallTimeoutNanos else { return nil }
            table.removeValue(forKey: ObjectIdentifier(h))
            return h
        }
        guard let victim else { return false }
        victim.abort(victim)
        return true
    }

    /// The default `HTTPServerConfiguration.maxBufferedBodyBytes`: an eighth of physical
    /// memory, at most 128 MiB. A body is held only while it arrives (the handler takes it at
    /// once), so 128 MiB is a hundred full 1 MiB batches arriving at the same moment; more only
    /// lets stalling clients hold more (the hostile mix's stalled h2 streams: +1.4 GB RSS with a
    /// 1 GiB cap, +370 MB with 256 MiB, +185 MB with 128 MiB).
    public static let defaultLimit: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 128 << 20 }
        let (total, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? 128 << 20 : min(total / 8, 128 << 20)
    }()

    /// A budget that never refuses, for engines driven without a server (sans-IO tests).
    package static let unlimited = BodyBudget(limit: Int.max)
}
