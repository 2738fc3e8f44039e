import XCTest
@testable import EdgeDistillCore

/// Tests of the plain-Swift core; `swift test` runs them on macOS (and on Linux with Swift).
final class CoreTests: XCTestCase {
    func testSoftmaxAndTop() {
        let probabilities = Decode.softmax([1, 2, 3])
        XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(Decode.top([0.1, 5, 1], labels: ["a", "b", "c"])?.label, "b")
    }

    func testPercentiles() {
        var stats = LatencyStats()
        for i in 1...100 { stats.add(milliseconds: Double(i)) }
        XCTAssertEqual(stats.percentile(50), 50.5, accuracy: 1e-9)
    }

    func testBundledModelJSON() throws {
        // Set EDGE_DISTILL_MODEL_JSON to a bundled model.json to check its golden decoding.
        guard let path = ProcessInfo.processInfo.environment["EDGE_DISTILL_MODEL_JSON"] else {
            throw XCTSkip("EDGE_DISTILL_MODEL_JSON not set")
        }
        let spec = try ModelSpec.parse(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertTrue(spec.budgets.passed)
        for sample in spec.golden.samples {
            XCTAssertEqual(Decode.top(sample.expectedOutput, labels: spec.outputs[0].labels)?.index, sample.expectedTop1)
        }
    }
}
