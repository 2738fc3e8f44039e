import XCTest
@testable import EdgeDistillDemo

/// On-device performance test (Xcode, a real iPhone): prediction latency of each bundled model.
/// Run it from Xcode's test navigator or `xcodebuild test -destination 'platform=iOS,name=...'`.
final class LatencyTests: XCTestCase {
    func testPredictionLatency() throws {
        let urls = Bundle.main.urls(forResourcesWithExtension: "json", subdirectory: nil) ?? []
        guard let url = urls.first(where: { $0.lastPathComponent.hasSuffix(".model.json") }) else {
            throw XCTSkip("no model bundled: run edge-distill bundle --app ios-demo")
        }
        let spec = try ModelSpec.parse(try Data(contentsOf: url))
        let runner = try CoreMLRunner(spec: spec)
        let input = Preprocess.normalize(spec.golden.samples[0].inputs[spec.inputs[0].name] ?? [], spec.inputs[0])
        _ = try runner.run(input)
        measure(metrics: [XCTClockMetric()]) {
            for _ in 0..<50 { _ = try? runner.run(input) }
        }
    }
}
