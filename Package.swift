// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "fwd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "fwd", targets: ["fwd"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        .executableTarget(
            name: "fwd",
            dependencies: ["FwdCLI"]
        ),
        .target(
            name: "FwdCLI",
            dependencies: [
                "FwdCore",
                "FwdLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "FwdCore",
            dependencies: [
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        /// The demo's private sshd and web server: used by `fwd demo` and by the tests, not by the engine.
        .target(
            name: "FwdLab",
            dependencies: ["FwdCore"]
        ),
        /// What the test targets share: the fixture core (running the built binary in a test's world, config,
        /// status, waiting, fetching, finding its processes) and the TCP test listener.
        .target(
            name: "FwdTestSupport",
            dependencies: ["FwdCore", "FwdLab"],
            path: "Tests/FwdTestSupport"
        ),
        .testTarget(
            name: "FwdCoreTests",
            dependencies: ["FwdCore", "FwdLab", "FwdTestSupport"]
        ),
        /// The CLI's pure pieces (layout, keys), without a terminal; what people see is tested end to end in
        /// FwdIntegrationTests.
        .testTarget(
            name: "FwdCLITests",
            dependencies: ["FwdCLI", "FwdCore"]
        ),
        .testTarget(
            name: "FwdIntegrationTests",
            dependencies: ["FwdCore", "FwdLab", "FwdTestSupport"]
        ),
        .testTarget(
            name: "FwdFaultTests",
            dependencies: ["FwdCore", "FwdLab", "FwdTestSupport"]
        ),
    ]
)
