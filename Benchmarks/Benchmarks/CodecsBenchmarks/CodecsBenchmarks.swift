import Benchmark

let benchmarks: @Sendable () -> Void = {
    Benchmark("Codecs placeholder") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(1) }
    }
}
