// swift-tools-version:5.9
// The plain-Swift core of the demo (model.json, preprocessing, decoding, latency statistics),
// buildable and testable with `swift test` wherever Swift runs. The app itself is in project.yml.
import PackageDescription

let package = Package(
    name: "EdgeDistillCore",
    products: [.library(name: "EdgeDistillCore", targets: ["EdgeDistillCore"])],
    targets: [
        .target(name: "EdgeDistillCore", path: "EdgeDistillDemo/Core"),
        .testTarget(name: "EdgeDistillCoreTests", dependencies: ["EdgeDistillCore"], path: "EdgeDistillDemoTests",
                    sources: ["CoreTests.swift"]),
    ]
)
