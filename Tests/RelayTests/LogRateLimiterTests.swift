import Logging
import Synchronization
import Testing
import Relay

/// A clock the test moves by hand (monotonic nanoseconds).
final class ManualClock: Sendable {
    private let nanos = Atomic<UInt64>(1_000_000_000)
    var now: UInt64 { nanos.load(ordering: .relaxed) }
    func advance(_ d: Duration) {
        let (s, atto) = d.components
        nanos.add(UInt64(s) * 1_000_000_000 + UInt64(atto / 1_000_000_000), ordering: .relaxed)
    }
    var read: @Sendable () -> UInt64 { { self.now } }
}

@Suite struct LogRateLimiterTests {
    @Test func firstLogsRepeatsAreCountedThenReportedAfterTheWindow() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(window: .seconds(60), now: clock.read)
        #expect(limiter.admit("bad_payload") == 0, "the first occurrence is logged")
        for _ in 0..<1234 {
            clock.advance(.milliseconds(40))  // 1,234 × 40 ms = 49.36 s: all inside the window
            #expect(limiter.admit("bad_payload") == nil)
        }
        clock.advance(.milliseconds(10_640))  // 60.000 s after the logged one: the window is over
        #expect(limiter.admit("bad_payload") == 1234, "the next line carries the count")
        #expect(limiter.admit("bad_payload") == nil, "a new window started with that line")
        clock.advance(.milliseconds(59_999))
        #expect(limiter.admit("bad_payload") == nil)
        clock.advance(.milliseconds(1))
        #expect(limiter.admit("bad_payload") == 2)
        // A quiet period: the next occurrence, much later, reports nothing pending.
        clock.advance(.seconds(3600))
        #expect(limiter.admit("bad_payload") == 0)
    }

    @Test func keysAreIndependent() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(window: .seconds(60), now: clock.read)
        #expect(limiter.admit("bad_payload") == 0)
        #expect(limiter.admit("queue_full") == 0)
        #expect(limiter.admit("bad_payload") == nil)
        #expect(limiter.admit("bad_payload") == nil)
        #expect(limiter.admit("queue_full") == nil)
        clock.advance(.seconds(61))
        #expect(limiter.admit("queue_full") == 1)
        #expect(limiter.admit("bad_payload") == 2)
    }

    @Test func drainReportsWhatWasNeverLoggedOnce() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(now: clock.read)
        _ = limiter.admit("a")
        for _ in 0..<5 { _ = limiter.admit("a") }
        _ = limiter.admit("b")
        #expect(limiter.drain() == ["a": 5], "b had no repeats")
        #expect(limiter.drain() == [:], "drained counts are forgotten")
        clock.advance(.seconds(61))
        #expect(limiter.admit("a") == 0, "what was drained is not reported again")
    }

    @Test func theKeyTableIsBounded() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(now: clock.read)
        for i in 0..<LogRateLimiter.maxKeys { #expect(limiter.admit("k\(i)") == 0) }
        // Full of live keys: a new key is logged (not silently dropped) but not tracked.
        #expect(limiter.admit("extra") == 0)
        #expect(limiter.admit("extra") == 0)
        #expect(limiter.admit("k0") == nil, "tracked keys keep their window")
        // Once the windows are over, expired keys make room.
        clock.advance(.seconds(61))
        #expect(limiter.admit("extra") == 0)
        #expect(limiter.admit("extra") == nil, "tracked now")
    }

    @Test func rateLimitedLoggerWritesTheCountIntoTheNextLine() throws {
        let file = LogFile()
        let clock = ManualClock()
        let log = RateLimitedLogger(logger: file.logger("tracerelay.ingest", format: .json, level: .info),
                                    limiter: LogRateLimiter(window: .seconds(60), now: clock.read))
        let built = Atomic<Int>(0)
        func metadata() -> Logger.Metadata {
            built.add(1, ordering: .relaxed)
            return ["code": "bad_payload"]
        }
        for _ in 0..<1235 { log.log(.warning, key: "bad_payload", "ingest request refused", metadata: metadata()) }
        #expect(built.load(ordering: .relaxed) == 1, "suppressed lines build no metadata")
        clock.advance(.seconds(60))
        log.log(.warning, key: "bad_payload", "ingest request refused", metadata: metadata())
        let objects = file.objects
        try #require(objects.count == 2, "\(file.text)")
        #expect(objects[0]?["message"] as? String == "ingest request refused")
        #expect(objects[0]?["log.repeated"] == nil)
        #expect(objects[1]?["message"] as? String == "ingest request refused (repeated 1,234 times in 60 s)")
        #expect(objects[1]?["log.repeated"] as? String == "1234")
        #expect(objects[1]?["code"] as? String == "bad_payload")
    }

    @Test func levelsTheLoggerDropsAreNotCounted() throws {
        let file = LogFile()
        let clock = ManualClock()
        var logger = file.logger(format: .json)
        logger.logLevel = .warning
        let log = RateLimitedLogger(logger: logger, limiter: LogRateLimiter(now: clock.read))
        for _ in 0..<10 { log.log(.info, key: "k", "quiet") }
        log.log(.warning, key: "k", "loud")
        #expect(file.objects.map { $0?["message"] as? String } == ["loud"], "no count of lines nobody would see")
    }

    @Test func flushWritesPendingCounts() throws {
        let file = LogFile()
        let clock = ManualClock()
        let log = RateLimitedLogger(logger: file.logger(format: .json), limiter: LogRateLimiter(now: clock.read))
        for _ in 0..<3 { log.log(.warning, key: "queue_full", "refused") }
        log.flush(.warning, "ingest requests refused")
        let objects = file.objects
        try #require(objects.count == 2, "\(file.text)")
        #expect(objects[1]?["message"] as? String == "ingest requests refused (queue_full: repeated 2 times, not logged)")
        #expect(objects[1]?["log.repeated"] as? String == "2")
    }

    @Test func thousandsAreGrouped() {
        #expect(groupedThousands(0) == "0")
        #expect(groupedThousands(999) == "999")
        #expect(groupedThousands(1000) == "1,000")
        #expect(groupedThousands(1234) == "1,234")
        #expect(groupedThousands(1_234_567) == "1,234,567")
        #expect(groupedThousands(-12345) == "-12,345")
    }
}
