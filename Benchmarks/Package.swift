// swift-tools-version:6.1
import PackageDescription

// Performance budgets, kept out of the main build. Run:
//   swift package --package-path Benchmarks benchmark
let package = Package(
    name: "tracerelay-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tracerelay", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(name: "CodecsBenchmarks", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Benchmarks/CodecsBenchmarks", plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(name: "RoutingBenchmarks", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Routing", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Benchmarks/RoutingBenchmarks", plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(name: "BufferingBenchmarks", dependencies: [
            .product(name: "Benchmark", package: "benchmark"),
            .product(name: "Buffering", package: "tracerelay"),
        ], path: "Benchmarks/BufferingBenchmarks", plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        // A bare HTTPServer for http-vs-nginx.sh (not a benchmark suite).
        .executableTarget(name: "transport-echo", dependencies: [
            .product(name: "Transport", package: "tracerelay"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/transport-echo"),
    ]
)
