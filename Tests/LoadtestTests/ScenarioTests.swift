import Foundation
import Testing
@testable import LoadtestCore

@Suite struct ScenarioVerdictTests {
    func report(sent: Int, accepted: Int) -> SendReport {
        SendReport(format: "zipkin-json", http: "http/1.1", target: "t", connections: 1, streams: 1, batchSpans: 10,
                   rateSpansPerSecond: nil, elapsedSeconds: 1, sentRequests: sent / 10, sentSpans: sent, sentBytes: 0,
                   acceptedRequests: accepted / 10, acceptedSpans: accepted, failedRequests: 0, statusCodes: [:],
                   spansPerSecond: 0, requestsPerSecond: 0, cpuSeconds: 0, spansPerCPUSecond: 0, maxSendLagMicros: 0,
                   latencyMicros: LatencySummary(LatencyHistogram()))
    }

    @Test func passesOnlyWhenEveryAcceptedSpanArrivedOnceUnalteredInRegion() {
        var a = SinkStats(); a.uniqueSpans = 600; a.duplicates = 4
        var b = SinkStats(); b.uniqueSpans = 400
        let ok = ScenarioVerdict(scenario: "x", send: report(sent: 1100, accepted: 1000), sinks: [a, b], relayCPUSeconds: 0.5)
        #expect(ok.passed && ok.delivered == 1000 && ok.lost == 0 && ok.duplicated == 4)
        #expect(ok.spansPerRelayCoreSecond == 2000)

        b.uniqueSpans = 390
        let lost = ScenarioVerdict(scenario: "x", send: report(sent: 1000, accepted: 1000), sinks: [a, b], relayCPUSeconds: nil)
        #expect(!lost.passed && lost.lost == 10)
        #expect(lost.table().contains("FAIL"))

        b.uniqueSpans = 400; b.altered = 1
        #expect(!ScenarioVerdict(scenario: "x", send: report(sent: 1000, accepted: 1000), sinks: [a, b], relayCPUSeconds: nil).passed)
        b.altered = 0; b.violations = 2
        let v = ScenarioVerdict(scenario: "x", send: report(sent: 1000, accepted: 1000), sinks: [a, b], relayCPUSeconds: nil)
        #expect(!v.passed && v.reasons.contains { $0.contains("region") })
        #expect(!ScenarioVerdict(scenario: "x", send: report(sent: 1000, accepted: 0), sinks: [], relayCPUSeconds: nil).passed)
    }

    @Test func theAcknowledgedCheckDecidesLossWhenGiven() {
        var a = SinkStats(); a.uniqueSpans = 1000
        // Counts agree, but 3 acknowledged ids are missing (3 unacknowledged ones arrived instead).
        let v = ScenarioVerdict(scenario: "k", send: report(sent: 1100, accepted: 1000), sinks: [a], relayCPUSeconds: nil,
                                acknowledged: (count: 1000, missing: 3, unacknowledgedDelivered: 3), relayRestarts: 1)
        #expect(!v.passed && v.lost == 3 && v.deliveredUnacknowledged == 3)
        #expect(v.table().contains("relay kills 1"))
        let ok = ScenarioVerdict(scenario: "k", send: report(sent: 1100, accepted: 1000), sinks: [a], relayCPUSeconds: nil,
                                 acknowledged: (count: 1000, missing: 0, unacknowledgedDelivered: 0))
        #expect(ok.passed)
        let mismatch = ScenarioVerdict(scenario: "k", send: report(sent: 1100, accepted: 1000), sinks: [a], relayCPUSeconds: nil,
                                       acknowledged: (count: 990, missing: 0, unacknowledgedDelivered: 10))
        #expect(!mismatch.passed, "acknowledged ids must match the accepted count")
    }

    @Test func isolationFailsOnALateHealthySinkOrASlowSinkThatWasNotSlow() throws {
        let plan = ScenarioPlan(description: "", sinks: [.init(name: "fast"), .init(name: "slow", delaySeconds: 0.5, failRatio: 0.2)],
                                send: .init(format: "zipkin-json", durationSeconds: 1), drainSeconds: 1)
        let iso = ScenarioPlan.Isolation(healthy: "fast", slow: "slow", maxHealthyLagP99Seconds: 1)
        func sink(lagMillis: UInt64, failed: Int) -> SinkStats {
            var h = LatencyHistogram()
            for _ in 0..<100 { h.record(lagMillis * 1000) }
            var s = SinkStats(); s.uniqueSpans = 100; s.failedOnPurpose = failed; s.deliveryLagMicros = LatencySummary(h)
            return s
        }
        var failures: [String] = [], notes: [String] = []
        ScenarioRunner.judgeIsolation(iso, plan: plan, stats: [sink(lagMillis: 50, failed: 0), sink(lagMillis: 3000, failed: 5)],
                                      ingestP99Micros: 20_000, failures: &failures, notes: &notes)
        #expect(failures.isEmpty && notes.count == 1)
        failures = []; notes = []
        // A healthy sink late only as much as every answer of a starved relay: not the slow backend's doing.
        ScenarioRunner.judgeIsolation(iso, plan: plan, stats: [sink(lagMillis: 2500, failed: 0), sink(lagMillis: 3000, failed: 5)],
                                      ingestP99Micros: 2_000_000, failures: &failures, notes: &notes)
        #expect(failures.isEmpty)
        failures = []; notes = []
        ScenarioRunner.judgeIsolation(iso, plan: plan, stats: [sink(lagMillis: 2500, failed: 0), sink(lagMillis: 3000, failed: 5)],
                                      ingestP99Micros: 20_000, failures: &failures, notes: &notes)
        #expect(failures.count == 1 && failures[0].contains("exceeds"))
        failures = []; notes = []
        ScenarioRunner.judgeIsolation(iso, plan: plan, stats: [sink(lagMillis: 50, failed: 0), sink(lagMillis: 40, failed: 0)],
                                      ingestP99Micros: 20_000, failures: &failures, notes: &notes)
        #expect(failures.count == 1 && failures[0].contains("proves nothing"))
    }

    @Test func placeholdersAreReplacedAndUnknownOnesRefused() throws {
        #expect(try ScenarioPlan.substitute("url: http://127.0.0.1:${SINK_zipkin}/x", ports: ["zipkin": 4242]) == "url: http://127.0.0.1:4242/x")
        #expect(throws: LoadtestError.self) { try ScenarioPlan.substitute("${SINK_other}", ports: ["zipkin": 1]) }
        #expect(try ScenarioPlan.substitute("${SINK_a}/${RELAY_central}", ports: ["a": 1], relayPorts: ["central": 2]) == "1/2")
    }
}

/// `steady-zipkin` end to end against the real relay (the built `tracerelay`), ~3 s at a low rate.
@Suite struct SteadyZipkinScenarioTests {
    static func productsDirectory() -> URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir.deleteLastPathComponent() }
        return dir
    }
    static func scenarioDirectory(_ name: String) -> String {
        // Tests/LoadtestTests/ScenarioTests.swift → repository root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("loadtest/scenarios/\(name)").path
    }

    @Test(.timeLimit(.minutes(1))) func steadyZipkinLosesNothing() throws {
        let plan = try ScenarioPlan.load(directory: Self.scenarioDirectory("steady-zipkin"))
        #expect(plan.sinks.map(\.name) == ["zipkin"])
        var runner = ScenarioRunner(directory: Self.scenarioDirectory("steady-zipkin"),
                                    relayBinary: Self.productsDirectory().appendingPathComponent("tracerelay").path)
        runner.rate = 5000
        runner.durationSeconds = 3
        runner.log = { _ in }
        let v = try runner.run()
        #expect(v.sent >= 14_000 && v.sent <= 15_500)
        #expect(v.accepted == v.sent)
        #expect(v.delivered == v.accepted && v.lost == 0)
        #expect(v.altered == 0 && v.unverified == 0 && v.violations == 0 && v.duplicated == 0)
        #expect(v.passed, "\(v.table())")
        #expect(v.relayCPUSeconds != nil)
    }
}

/// `two-regions` end to end against the real relay, ~3 s at a low rate: eu and us sinks, no span
/// in the wrong region, none lost.
@Suite struct TwoRegionsScenarioTests {
    @Test(.timeLimit(.minutes(1))) func twoRegionsKeepsResidencyAndLosesNothing() throws {
        let dir = SteadyZipkinScenarioTests.scenarioDirectory("two-regions")
        let plan = try ScenarioPlan.load(directory: dir)
        #expect(plan.sinks.map(\.region) == ["eu-west-1", "us-east-1"])
        var runner = ScenarioRunner(directory: dir,
                                    relayBinary: SteadyZipkinScenarioTests.productsDirectory().appendingPathComponent("tracerelay").path)
        runner.rate = 5000
        runner.durationSeconds = 3
        runner.log = { _ in }
        let v = try runner.run()
        #expect(v.accepted == v.sent && v.sent >= 14_000)
        #expect(v.delivered == v.accepted && v.lost == 0)
        #expect(v.violations == 0 && v.altered == 0 && v.unverified == 0)
        #expect(v.passed, "\(v.table())")
    }
}
