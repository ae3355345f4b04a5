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
    ]
)
