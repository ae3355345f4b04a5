#if canImport(Glibc)
import Glibc
#endif

/// Monotonic nanoseconds (CLOCK_MONOTONIC).
@inline(__always) public func monoNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall clock, microseconds since the epoch.
public func wallMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// CPU seconds (user + system) this process used so far.
public func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

/// Sleeps until monotonic time `t` (coarse sleep, then a short spin for the last 100 µs).
public func sleepUntil(_ t: UInt64) {
    while true {
        let now = monoNanos()
        if now >= t { return }
        let left = t - now
        if left > 200_000 {
            var ts = timespec(tv_sec: Int(left - 100_000) / 1_000_000_000, tv_nsec: Int(left - 100_000) % 1_000_000_000)
            nanosleep(&ts, nil)
        } else if left > 20_000 {
            sched_yield()
        }
    }
}

/// Writes `text` to standard error (unbuffered; `stderr` itself is not concurrency-safe in Swift 6).
public func writeStderr(_ text: String) {
    var t = text
    t.withUTF8 { p in _ = write(2, p.baseAddress, p.count) }
}

/// Writes `text` to standard output at once (no buffering: scenario runners read it live).
public func writeStdout(_ text: String) {
    var t = text
    t.withUTF8 { p in _ = write(1, p.baseAddress, p.count) }
}
