import Benchmark

/// What the checked-in thresholds (Benchmarks/Thresholds/) hold each benchmark to, and how far
/// it may move. Malloc counts repeat exactly between runs; wall time moves by 2× on this shared
/// 2-core machine when other builds run, so it is recorded (for the figures) but only a change
/// beyond 10× fails a check. `instructions` is recorded where the CPU exposes counters; this
/// machine is a VM without them (the metric stays empty), so the instruction budget here is
/// callgrind's, in Thresholds/instructions.tsv (Benchmarks/instructions.sh check).
public enum Budgets {
    /// Metrics recorded by the budgeted suites (throughput gives the spans/s figures).
    public static let metrics: [BenchmarkMetric] = [.throughput, .wallClock, .instructions, .mallocCountTotal]

    /// Tolerances for `swift package benchmark thresholds check` (p90 against the stored p90).
    /// Improvements beyond them fail too (exit code 4): update the thresholds when a change
    /// makes things faster, so the next regression is caught from the new level.
    public static var tolerances: [BenchmarkMetric: BenchmarkThresholds] { [
        .instructions: .init(relative: [.p90: 3.0]),
        // ±2 % and at least ±2 allocations (a batch of 1,000 spans makes ~10-20).
        .mallocCountTotal: .init(relative: [.p90: 2.0], absolute: [.p90: 2]),
        .wallClock: .init(relative: [.p90: 1000.0]),
        .throughput: .init(relative: [.p90: 1000.0]),
    ] }

    /// One stage over a 1,000-span payload per iteration. With `scalingFactor: .kilo` and
    /// `--scale`, package-benchmark reports per span: spans/s, instructions and mallocs per span.
    public static func perThousandSpans(maxSeconds: Int = 2, maxIterations: Int = 500) -> Benchmark.Configuration {
        .init(metrics: metrics, timeUnits: .microseconds, warmupIterations: 3, scalingFactor: .kilo,
              maxDuration: .seconds(maxSeconds), maxIterations: maxIterations, thresholds: tolerances)
    }
}
