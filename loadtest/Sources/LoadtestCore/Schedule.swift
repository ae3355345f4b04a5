/// When each request is *meant* to go out in an open-loop run.
///
/// Request `k` is due at `k × spansPerRequest / rate` seconds after the start, whatever
/// happened to earlier requests: a slow answer never delays the schedule, and latency is
/// measured from this intended time, so a stalled server shows up as latency instead of
/// being hidden by a generator that waited for it (coordinated omission).
public struct OpenLoopSchedule: Sendable, Hashable {
    /// Nanoseconds between two intended sends.
    public let intervalNanos: Double
    public let startNanos: UInt64
    /// Stop after this many requests (nil: unbounded).
    public let maxRequests: Int?
    /// Stop once intended times reach this many ns after the start (nil: unbounded).
    public let durationNanos: UInt64?

    public init(spansPerSecond: Double, spansPerRequest: Int, startNanos: UInt64,
                maxRequests: Int? = nil, durationNanos: UInt64? = nil) {
        precondition(spansPerSecond > 0 && spansPerRequest > 0)
        intervalNanos = Double(spansPerRequest) / spansPerSecond * 1e9
        self.startNanos = startNanos
        self.maxRequests = maxRequests
        self.durationNanos = durationNanos
    }

    /// Intended send time of request `k` (monotonic ns).
    @inline(__always) public func intendedNanos(_ k: Int) -> UInt64 {
        startNanos &+ UInt64((Double(k) * intervalNanos).rounded())
    }

    /// Whether request `k` belongs to the run at all.
    public func includes(_ k: Int) -> Bool {
        if let maxRequests, k >= maxRequests { return false }
        if let durationNanos, intendedNanos(k) &- startNanos >= durationNanos { return false }
        return true
    }

    /// The requests from `next` on that are due at `now`: `next..<end` (empty when none is).
    public func due(from next: Int, now: UInt64) -> Range<Int> {
        var end = next
        while includes(end) && intendedNanos(end) <= now { end += 1 }
        return next..<end
    }

    /// Total requests of a bounded run (nil when unbounded).
    public var totalRequests: Int? {
        var n: Int? = maxRequests
        if let durationNanos {
            let byTime = Int((Double(durationNanos) / intervalNanos).rounded(.up))
            n = min(n ?? byTime, byTime)
        }
        return n
    }
}
