// swift-tools-version:6.1
import PackageDescription

// libFuzzer harness for every parser, kept out of the main build. Build and run one parser with
//   Fuzz/run.sh zipkin-v2-json [SECONDS]     one target
//   Fuzz/ci.sh [SECONDS_EACH]                every target briefly (CI); Fuzz/all.sh MINUTES by hand
// (swift build -Xswiftc -sanitize=fuzzer,address; see run.sh). Crashing inputs land in
// Fuzz/Regressions/<parser>/ and are kept as regression cases.
let package = Package(
    name: "tracerelay-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "tracerelay", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"), // Corpus.swift's spill queue
    ],
    targets: [
        .executableTarget(name: "FuzzParsers", dependencies: [
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
            .product(name: "Routing", package: "tracerelay"),
            // Engines and the spill format, through their @_spi(Fuzzing) entry points.
            .product(name: "Transport", package: "tracerelay"),
            .product(name: "Buffering", package: "tracerelay"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ]
)
