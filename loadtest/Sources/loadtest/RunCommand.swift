import ArgumentParser
import Foundation
import LoadtestCore

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a scenario (loadtest/scenarios/<name>/: plan.json + relay config) and print its verdict.",
        discussion: """
        Starts the plan's sinks in this process and the built tracerelay as a child (free ports,
        a temporary spill directory), sends the plan's load, injects its faults (sink outages,
        kill -9 and restart of a relay), waits for delivery, stops the relay and prints: sent,
        accepted, delivered, lost, duplicated, altered, violations, spans/s per relay core (CPU
        from /proc), latency, per-sink delivery lag. Exits 1 on any acknowledged span missing at
        the sinks (checked id by id), altered span, residency or isolation violation.
        """)

    @Argument(help: "Scenario name (a folder under --scenarios) or a path to a scenario folder.") var scenario: String
    @Option(help: "Folder of scenarios.") var scenarios = "loadtest/scenarios"
    @Option(help: "The tracerelay binary (default: next to this loadtest binary).") var relay: String?
    @Option(help: "Override the plan's rate (spans/s).") var rate: Double?
    @Option(help: "Override the plan's duration (seconds).") var duration: Double?
    @Option(help: "Override the length of the plan's backend outages (seconds).") var outage: Double?
    @Option(help: "Write the verdict as JSON here.") var report: String?
    @Option(help: "Write a self-contained HTML report here (verdict, throughput and latency over time).") var html: String?

    func run() throws {
        let dir = FileManager.default.fileExists(atPath: scenario + "/plan.json") ? scenario : scenarios + "/" + scenario
        guard FileManager.default.fileExists(atPath: dir + "/plan.json") else {
            throw ValidationError("no scenario at \(dir) (expected \(dir)/plan.json)")
        }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let bin = relay ?? URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("tracerelay").path
        var runner = ScenarioRunner(directory: dir, relayBinary: bin)
        runner.rate = rate
        runner.durationSeconds = duration
        runner.outageSeconds = outage
        runner.progress = isatty(2) != 0
        let verdict = try runner.run()
        writeStdout(verdict.table() + "\n")
        if let report { try writeFile(report, verdict.json() + "\n") }
        if let html, let send = verdict.send { try writeFile(html, verdict.html(send: send)) }
        if !verdict.passed { throw ExitCode(1) }
    }
}
