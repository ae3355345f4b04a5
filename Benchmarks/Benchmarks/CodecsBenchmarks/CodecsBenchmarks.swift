import Benchmark

// Each format's suite lives in its own file (ZipkinBenchmarks.swift, DatadogBenchmarks.swift).
let benchmarks: @Sendable () -> Void = {
    zipkinBenchmarks()
    datadogBenchmarks()
}
