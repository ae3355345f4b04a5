// swift-tools-version:6.1
import PackageDescription

// Performance budgets, kept out of the main build. Commands, what they measure and the latest
// figures: Benchmarks/README.md. Run:
//   swift package --package-path Benchmarks --scratch-path Benchmarks/.build benchmark
let suite: [PackageDescription.Target.PluginUsage] = [.plugin(name: "BenchmarkPlugin", package: "benchmark")]

let package = Package(
    name: "tracerelay-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tracerelay", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Payloads and the in-process pipeline shared by the suites and tools below.
        .target(name: "BenchFixtures", dependencies: [
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Routing", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Sources/BenchFixtures"),
        // The tolerances the checked-in thresholds are held to (kept apart from BenchFixtures so the
        // tools do not link package-benchmark's malloc interposer).
        .target(name: "BenchBudgets", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
        ], path: "Sources/BenchBudgets"),
        // simdjson (Debian libsimdjson-dev 3.0.1) behind a C header: the Zipkin JSON reference.
        // The library was built with threads enabled, which changes the parser's layout.
        .target(name: "CSimdjsonRef", path: "Sources/CSimdjsonRef",
                cxxSettings: [.define("SIMDJSON_THREADS_ENABLED", to: "1")],
                linkerSettings: [.linkedLibrary("simdjson")]),

        .executableTarget(name: "CodecsBenchmarks", dependencies: [
            "BenchFixtures",
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Benchmarks/CodecsBenchmarks", plugins: suite),
        .executableTarget(name: "RoutingBenchmarks", dependencies: [
            "BenchBudgets",
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Routing", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Benchmarks/RoutingBenchmarks", plugins: suite),
        .executableTarget(name: "BufferingBenchmarks", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Buffering", package: "tracerelay"),
        ], path: "Benchmarks/BufferingBenchmarks", plugins: suite),
        // Every stage over the same 1,000 spans, with budgets in Thresholds/.
        .executableTarget(name: "StagesBenchmarks", dependencies: [
            "BenchFixtures", "BenchBudgets", "CSimdjsonRef",
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Routing", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Benchmarks/StagesBenchmarks", plugins: suite),

        // Tools (not suites): see Benchmarks/README.md.
        // A bare HTTPServer for http-vs-nginx.sh.
        .executableTarget(name: "transport-echo", dependencies: [
            .product(name: "Transport", package: "tracerelay"),
            .product(name: "TLS", package: "tracerelay"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/transport-echo"),
        // One hot path M times, for callgrind (instructions.sh).
        .executableTarget(name: "hotpath", dependencies: [
            "BenchFixtures", "CSimdjsonRef",
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Routing", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
            .product(name: "TLS", package: "tracerelay"),
        ], path: "Sources/hotpath"),
        // Our Zipkin JSON decoder vs simdjson, same bytes, same run: prints the ratio.
        .executableTarget(name: "json-reference", dependencies: [
            "BenchFixtures", "CSimdjsonRef",
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Sources/json-reference"),
    ],
    cxxLanguageStandard: .cxx17
)
