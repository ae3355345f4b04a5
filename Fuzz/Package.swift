// swift-tools-version:6.1
import PackageDescription

// libFuzzer harness for every parser, kept out of the main build. Build and run one parser with
//   Fuzz/run.sh zipkin-v2-json [SECONDS]
// (swift build -Xswiftc -sanitize=fuzzer,address; see run.sh). Crashing inputs land in
// Fuzz/Regressions/<parser>/ and are kept as regression cases.
let package = Package(
    name: "tracerelay-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "tracerelay", path: "..")],
    targets: [
        .executableTarget(name: "FuzzParsers", dependencies: [
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
            .product(name: "Routing", package: "tracerelay"),
        ], swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ]
)
