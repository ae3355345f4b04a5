import Basics
import Logging
import Synchronization

/// Keeps a repeated error from flooding the log: per message key, the first occurrence is
/// logged, the ones within the next `window` (default 60 s) are only counted, and the first
/// occurrence after the window is logged again carrying that count — so a key logs at most one
/// line per window however often it fires, and no occurrence goes unaccounted once the next
/// line is written.
///
/// Keys name a kind of event (`bad_payload`, `queue_full`), chosen by the code, not taken from
/// the wire: the table holds at most `maxKeys` of them (expired ones are dropped to make room;
/// past that, new keys are logged without limiting rather than forgotten).
public final class LogRateLimiter: Sendable {
    public let windowNanos: UInt64
    public static let maxKeys = 1024
    private let now: @Sendable () -> UInt64
    private let state = Mutex<[String: Entry]>([:])

    private struct Entry {
        var windowStart: UInt64
        var suppressed: Int
    }

    /// - Parameters:
    ///   - window: how long after a logged occurrence repeats are only counted.
    ///   - now: monotonic nanoseconds (tests inject their own clock).
    public init(window: Duration = .seconds(60), now: @escaping @Sendable () -> UInt64 = { Clock.monotonicNanos() }) {
        let (s, atto) = window.components
        self.windowNanos = UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, atto) / 1_000_000_000)
        self.now = now
    }

    /// Whole seconds of the window, for the "(repeated N times in 60 s)" suffix.
    public var windowSeconds: UInt64 { (windowNanos + 500_000_000) / 1_000_000_000 }

    /// Records one occurrence of `key`. nil: inside the window of a logged one, counted — do not
    /// log. Otherwise log it; the value is how many occurrences were counted, not logged, since
    /// the previous line of this key (0 for the first).
    public func admit(_ key: String) -> Int? {
        let t = now()
        return state.withLock { table -> Int? in
            if let e = table[key] {
                if t &- e.windowStart < windowNanos {
                    table[key]!.suppressed += 1
                    return nil
                }
                table[key] = Entry(windowStart: t, suppressed: 0)
                return e.suppressed
            }
            if table.count >= Self.maxKeys {
                table = table.filter { t &- $0.value.windowStart < windowNanos }
                if table.count >= Self.maxKeys { return 0 }
            }
            table[key] = Entry(windowStart: t, suppressed: 0)
            return 0
        }
    }

    /// Occurrences counted and not yet logged, by key (nonzero only), and forgets them: for a
    /// last word at shutdown, so a burst that ended is still reported.
    public func drain() -> [String: Int] {
        state.withLock { table in
            var out: [String: Int] = [:]
            for (k, e) in table where e.suppressed > 0 {
                out[k] = e.suppressed
                table[k]!.suppressed = 0
            }
            return out
        }
    }
}

/// A `Logger` whose lines pass through a `LogRateLimiter`, one key per kind of event: the first
/// is logged, repeats within the window are counted, and the next line says
/// "… (repeated 1,234 times in 60 s)" (and carries `log.repeated` for machines). Meant for
/// errors that can fire per request or per batch.
public struct RateLimitedLogger: Sendable {
    public var logger: Logger
    public let limiter: LogRateLimiter

    public init(logger: Logger, limiter: LogRateLimiter = LogRateLimiter()) {
        self.logger = logger
        self.limiter = limiter
    }

    /// Logs `message` at `level` unless an occurrence of `key` was logged within the window
    /// (then it is only counted). Message and metadata are built only when the line is written.
    public func log(_ level: Logger.Level, key: String, _ message: @autoclosure () -> String,
                    metadata: @autoclosure () -> Logger.Metadata = [:]) {
        // A level the logger drops is not counted either: nothing would ever report the count.
        guard logger.logLevel <= level, let repeated = limiter.admit(key) else { return }
        var text = message()
        var m = metadata()
        if repeated > 0 {
            text += " (repeated \(times(repeated)) in \(limiter.windowSeconds) s)"
            m["log.repeated"] = "\(repeated)"
        }
        logger.log(level: level, "\(text)", metadata: m)
    }

    /// Logs what `drain` finds: one line per key whose repeats were counted and never reported.
    public func flush(_ level: Logger.Level, _ message: String) {
        for (key, n) in limiter.drain().sorted(by: { $0.key < $1.key }) {
            logger.log(level: level, "\(message) (\(key): repeated \(times(n)), not logged)",
                       metadata: ["log.key": "\(key)", "log.repeated": "\(n)"])
        }
    }
}

/// `1 time`, `1,234 times`.
func times(_ n: Int) -> String { n == 1 ? "1 time" : groupedThousands(n) + " times" }

/// `1234567` → `1,234,567`.
public func groupedThousands(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}
