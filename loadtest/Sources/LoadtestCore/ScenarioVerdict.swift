import Foundation

/// One sink's part of a verdict.
public struct SinkVerdict: Codable, Sendable, Equatable {
    public var name: String
    public var uniqueSpans: Int
    public var duplicates: Int
    public var failedOnPurpose: Int
    public var deliveryLagMicros: LatencySummary?
}

/// What a scenario proves: every acknowledged span delivered, unaltered, in its region (and,
/// per scenario, that a slow backend did not slow the healthy one).
public struct ScenarioVerdict: Codable, Sendable, Equatable {
    public var scenario: String
    public var sent: Int
    public var accepted: Int
    public var delivered: Int
    /// Acknowledged spans missing at every sink. With `acknowledged` set (the runner's check,
    /// span id by span id) it is exact; otherwise `accepted − delivered`.
    public var lost: Int
    /// Spans delivered that the relay never acknowledged (in flight at a kill, or answered with
    /// an error after being queued): allowed, counted.
    public var deliveredUnacknowledged: Int?
    public var duplicated: Int
    public var altered: Int
    public var unverified: Int
    public var violations: Int
    public var relayCPUSeconds: Double?
    /// Spans delivered per second of relay CPU (per core of relay CPU).
    public var spansPerRelayCoreSecond: Double?
    public var relayRestarts: Int = 0
    public var latencyMicros: LatencySummary
    public var sinks: [SinkVerdict] = []
    /// Scenario-specific checks that held (e.g. isolation), for the table.
    public var notes: [String] = []
    public var passed: Bool
    public var reasons: [String]
    /// The load's own report (for `--html`).
    public var send: SendReport?

    /// - Parameters:
    ///   - acknowledged: the runner's span-by-span check: acknowledged span ids, how many of
    ///     them no sink holds, and how many delivered spans were never acknowledged.
    ///   - failures: scenario-specific violations (they fail the verdict); `notes` say what held.
    public init(scenario: String, send: SendReport, sinks: [SinkStats], sinkNames: [String] = [], relayCPUSeconds: Double?,
                acknowledged: (count: Int, missing: Int, unacknowledgedDelivered: Int)? = nil,
                relayRestarts: Int = 0, failures: [String] = [], notes: [String] = []) {
        self.scenario = scenario
        sent = send.sentSpans
        accepted = send.acceptedSpans
        let delivered = sinks.reduce(0) { $0 + $1.uniqueSpans }
        self.delivered = delivered
        lost = acknowledged?.missing ?? max(0, send.acceptedSpans - delivered)
        deliveredUnacknowledged = acknowledged?.unacknowledgedDelivered
        duplicated = sinks.reduce(0) { $0 + $1.duplicates }
        altered = sinks.reduce(0) { $0 + $1.altered }
        unverified = sinks.reduce(0) { $0 + $1.unverified }
        violations = sinks.reduce(0) { $0 + $1.violations }
        self.relayCPUSeconds = relayCPUSeconds
        spansPerRelayCoreSecond = relayCPUSeconds.flatMap { $0 > 0 ? (Double(delivered) / $0).rounded() : nil }
        self.relayRestarts = relayRestarts
        latencyMicros = send.latencyMicros
        self.sinks = sinks.enumerated().map { i, s in
            SinkVerdict(name: i < sinkNames.count ? sinkNames[i] : "sink\(i)", uniqueSpans: s.uniqueSpans, duplicates: s.duplicates,
                        failedOnPurpose: s.failedOnPurpose, deliveryLagMicros: s.deliveryLagMicros)
        }
        self.notes = notes
        var r: [String] = []
        let lost = self.lost, altered = self.altered, unverified = self.unverified, violations = self.violations
        if send.acceptedSpans == 0 { r.append("the relay accepted nothing") }
        if let a = acknowledged, a.count != send.acceptedSpans {
            r.append("the generator acknowledged \(a.count) span ids but counted \(send.acceptedSpans) accepted spans")
        }
        if lost > 0 { r.append("\(lost) accepted spans were not delivered") }
        if altered > 0 { r.append("\(altered) spans arrived altered") }
        if unverified > 0 { r.append("\(unverified) spans arrived without their checksum") }
        if violations > 0 { r.append("\(violations) spans reached a sink outside their region") }
        reasons = r + failures
        passed = reasons.isEmpty
        self.send = send
    }

    public func table() -> String {
        func ms(_ us: UInt64) -> String { String(format: "%.2f ms", Double(us) / 1000) }
        var lines = [
            "scenario \(scenario): \(passed ? "PASS" : "FAIL")",
            "  sent        \(sent)", "  accepted    \(accepted)", "  delivered   \(delivered)" +
                (deliveredUnacknowledged.map { $0 > 0 ? " (\($0) of them never acknowledged)" : "" } ?? ""),
            "  lost        \(lost)",
            "  duplicated  \(duplicated)", "  altered     \(altered)", "  violations  \(violations)",
        ]
        if relayRestarts > 0 { lines.append("  relay kills \(relayRestarts) (kill -9, restarted on the same spill directory)") }
        if let c = relayCPUSeconds, let per = spansPerRelayCoreSecond {
            lines.append(String(format: "  relay CPU   %.2f s → %.0f spans/s per relay core", c, per))
        }
        lines.append("  latency     p50 \(ms(latencyMicros.p50))  p99 \(ms(latencyMicros.p99))  max \(ms(latencyMicros.max))")
        if sinks.count > 1 || sinks.contains(where: { $0.duplicates > 0 || $0.failedOnPurpose > 0 }) {
            for s in sinks {
                var line = "  sink \(s.name): \(s.uniqueSpans) spans, \(s.duplicates) duplicates"
                if s.failedOnPurpose > 0 { line += ", \(s.failedOnPurpose) requests failed on purpose" }
                if let l = s.deliveryLagMicros { line += ", delivery lag p50 \(ms(l.p50)) p99 \(ms(l.p99))" }
                lines.append(line)
            }
        }
        for n in notes { lines.append("  ✓ \(n)") }
        for reason in reasons { lines.append("  ✗ \(reason)") }
        return lines.joined(separator: "\n")
    }

    public func json() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? e.encode(self)) ?? Data(), as: UTF8.self)
    }
}
