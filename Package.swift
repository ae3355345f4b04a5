// swift-tools-version:6.1
import PackageDescription

// tracerelay: a trace collector/relay for service meshes.
// Layering (see ../shared/DESIGN.md): Spans ← Codecs, Routing; Buffering and Transport stand alone;
// Relay wires them together; the `tracerelay` command sits on top.
let package = Package(
    name: "tracerelay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tracerelay", targets: ["tracerelay"]),
        // Libraries so Benchmarks/ and loadtest/ can link the stages they measure.
        .library(name: "Spans", targets: ["Spans"]),
        .library(name: "Codecs", targets: ["Codecs"]),
        .library(name: "Routing", targets: ["Routing"]),
        .library(name: "Buffering", targets: ["Buffering"]),
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "TLS", targets: ["TLS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The admin listener's `/metrics` exposition (issue 12).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages, wrapped thinly.
        .systemLibrary(name: "CNghttp2", path: "Sources/CNghttp2", pkgConfig: "libnghttp2",
                       providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "CShims", path: "Sources/CShims"),
        // The TLS engine's two OpenSSL BIOs: ciphertext in without a copy, ciphertext out as a queue.
        .target(name: "CTLSBIO", dependencies: ["COpenSSL"], path: "Sources/CTLSBIO"),
        // One of each small helper every module needs: clocks, OWS trimming, cold-path JSON quoting.
        .target(name: "Basics"),

        .target(name: "Spans"),
        .target(name: "Codecs", dependencies: [
            "Basics", "Spans", "CZlib", "CZstd",
        ]),
        .target(name: "Routing", dependencies: [
            "Basics", "Spans",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Buffering", dependencies: [
            "Basics", "CZstd", "CShims",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        // Sans-IO TLS (OpenSSL 3 with memory BIOs) between the sockets and the HTTP engines (docs/tls.md).
        .target(name: "TLS", dependencies: ["Basics", "COpenSSL", "CTLSBIO"]),
        .target(name: "Transport", dependencies: [
            "Basics", "CNghttp2", "CShims", "TLS",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        .target(name: "Relay", dependencies: [
            "Basics", "CShims", "Spans", "Codecs", "Routing", "Buffering", "Transport", "TLS", "COpenSSL",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "tracerelay", dependencies: [
            "Basics", "Relay", "Routing", "Buffering", "Transport", "Codecs",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Test harness for the kill -9 test of the wal-mode queue (BufferingTests).
        .executableTarget(name: "buffering-harness", dependencies: [
            "Buffering",
            .product(name: "Logging", package: "swift-log"),
        ]),

        // The load rig (loadtest/): generator, counting sink, scenarios. Its core is a library so
        // LoadtestTests can reach the scheduler, payload patching and accounting without sockets.
        .target(name: "LoadtestCore", dependencies: [
            "Spans", "Codecs", "Transport",
            .product(name: "Logging", package: "swift-log"),
        ], path: "loadtest/Sources/LoadtestCore"),
        .executableTarget(name: "loadtest", dependencies: [
            "LoadtestCore", "Transport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "loadtest/Sources/loadtest"),

        // Helpers the test targets share (seeded generator, waits on observable state).
        .target(name: "TestSupport", dependencies: ["Basics"], path: "Tests/TestSupport"),
        .testTarget(name: "BasicsTests", dependencies: ["Basics"]),
        .testTarget(name: "SpansTests", dependencies: ["Spans"]),
        .testTarget(name: "CodecsTests", dependencies: ["TestSupport", "Codecs", "Spans"], resources: [.copy("Fixtures")]),
        .testTarget(name: "RoutingTests", dependencies: ["TestSupport", "Routing", "Spans"]),
        .testTarget(name: "BufferingTests", dependencies: ["TestSupport", "Buffering", "buffering-harness"]),
        .testTarget(name: "TLSTests", dependencies: ["TestSupport", "TLS"]),
        .testTarget(name: "TransportTests", dependencies: ["TestSupport", "Transport", "TLS", "CNghttp2"]),
        .testTarget(name: "LoadtestTests", dependencies: ["LoadtestCore", "Spans", "Codecs", "tracerelay"]),
        .testTarget(name: "RelayTests", dependencies: ["TestSupport", "Relay", "Transport", "Spans", "Codecs", "Routing", "Buffering",
                                                  .product(name: "Prometheus", package: "swift-prometheus")]),
    ],
    swiftLanguageModes: [.v6]
)
