// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets, one per parser, kept out of the main build. Build and run with
//   Fuzz/run.sh TARGET [SECONDS]
// (swift build -Xswiftc -sanitize=fuzzer,address; see run.sh). Crashing inputs found are kept
// in Fuzz/Regressions/TARGET/ and replayed by the codec tests.
let targets = ["FuzzZipkinJSONV2", "FuzzZipkinProto3", "FuzzZipkinJSONV1", "FuzzDatadogV04", "FuzzDatadogV05",
               "FuzzDatadogV03JSON", "FuzzContentDecoding"]

let package = Package(
    name: "tracerelay-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "tracerelay", path: "..")],
    targets: targets.map { name in
        .executableTarget(name: name, dependencies: [
            .product(name: "Codecs", package: "tracerelay"),
            .product(name: "Spans", package: "tracerelay"),
        ], path: "Sources/\(name)", swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    }
)
