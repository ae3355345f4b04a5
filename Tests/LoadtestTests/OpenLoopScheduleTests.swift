import Testing
@testable import LoadtestCore

@Suite struct OpenLoopScheduleTests {
    @Test func intendedTimesFollowTheRateNotTheAnswers() {
        // 1000 spans/s in requests of 100 spans: one request every 100 ms.
        let s = OpenLoopSchedule(spansPerSecond: 1000, spansPerRequest: 100, startNanos: 5_000)
        #expect(s.intendedNanos(0) == 5_000)
        #expect(s.intendedNanos(1) == 5_000 + 100_000_000)
        #expect(s.intendedNanos(37) == 5_000 + 3_700_000_000)
    }

    @Test func fractionalIntervalsDoNotDrift() {
        // 3 requests per second of 1 span: 333.33… ms apart; request 3000 is due at exactly 1000 s.
        let s = OpenLoopSchedule(spansPerSecond: 3, spansPerRequest: 1, startNanos: 0)
        #expect(s.intendedNanos(3000) == 1_000_000_000_000)
        #expect(s.intendedNanos(1) == 333_333_333)
    }

    @Test func aLateGeneratorCatchesUpInsteadOfSkipping() {
        let s = OpenLoopSchedule(spansPerSecond: 10_000, spansPerRequest: 100, startNanos: 0)  // every 10 ms
        #expect(s.due(from: 0, now: 0) == 0..<1)
        #expect(s.due(from: 1, now: 5_000_000).isEmpty)
        // Stalled for 55 ms: requests 1…5 are all due now, and each keeps its own intended time.
        #expect(s.due(from: 1, now: 55_000_000) == 1..<6)
        #expect(s.intendedNanos(3) == 30_000_000)
    }

    @Test func boundsByRequestsAndDuration() {
        let byCount = OpenLoopSchedule(spansPerSecond: 1000, spansPerRequest: 10, startNanos: 0, maxRequests: 7)
        #expect(byCount.includes(6) && !byCount.includes(7))
        #expect(byCount.totalRequests == 7)
        #expect(byCount.due(from: 0, now: .max / 2) == 0..<7)
        let byTime = OpenLoopSchedule(spansPerSecond: 1000, spansPerRequest: 10, startNanos: 100, durationNanos: 1_000_000_000)
        #expect(byTime.totalRequests == 100)
        #expect(byTime.includes(99) && !byTime.includes(100))
        let unbounded = OpenLoopSchedule(spansPerSecond: 1, spansPerRequest: 1, startNanos: 0)
        #expect(unbounded.totalRequests == nil)
    }
}

@Suite struct LatencyHistogramTests {
    @Test func quantilesWithinThreeSignificantDigits() {
        var h = LatencyHistogram()
        for v in 1...100_000 { h.record(UInt64(v)) }
        #expect(h.count == 100_000)
        for (q, exact) in [(0.5, 50_000.0), (0.9, 90_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = Double(h.quantile(q))
            #expect(abs(got - exact) / exact < 0.001, "q\(q): \(got) vs \(exact)")
        }
        #expect(h.max == 100_000)
        #expect(h.quantile(1.0) == 100_000)
    }

    @Test func smallValuesAreExactAndOutliersShow() {
        var h = LatencyHistogram()
        for _ in 0..<999 { h.record(120) }
        h.record(3_600_000_000)  // one request stuck for an hour
        #expect(h.quantile(0.5) == 120)
        #expect(h.quantile(0.999) == 120)
        #expect(h.quantile(0.9999) >= 3_598_000_000)
        #expect(h.max == 3_600_000_000)
        #expect(LatencyHistogram().quantile(0.99) == 0)
    }

    @Test func mergeAddsCounts() {
        var a = LatencyHistogram(), b = LatencyHistogram()
        a.record(10); b.record(20); b.record(5000)
        a.merge(b)
        #expect(a.count == 3 && a.max == 5000 && a.min == 10)
    }
}
