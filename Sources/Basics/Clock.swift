#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The relay's clocks. Every module reads time through these two functions, so there is one
/// definition of "now" (monotonic for durations and deadlines, wall for timestamps people read).
public enum Clock {
    /// Monotonic nanoseconds (vDSO on Linux: no system call). For durations, deadlines, rates.
    @inline(__always)
    public static func monotonicNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Wall-clock nanoseconds since the Unix epoch. For timestamps in files, logs and answers.
    @inline(__always)
    public static func wallNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// Wall-clock milliseconds since the Unix epoch.
    @inline(__always)
    public static func wallMillis() -> UInt64 { UInt64(wallNanos() / 1_000_000) }

    /// Wall-clock whole seconds since the Unix epoch.
    @inline(__always)
    public static func wallSeconds() -> Int { Int(wallNanos() / 1_000_000_000) }
}
