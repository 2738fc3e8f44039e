import CoreML
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

    /// Driven by `edge-distill check --device iphone`: times the candidate model edge-distill put in
    /// the bundle (edge-distill-latency.mlpackage with edge-distill-latency.json), one prediction per
    /// iteration, so the values XCTest prints are per-prediction times for edge-distill's percentiles.
    func testCandidateLatency() throws {
        guard let specURL = Bundle.main.url(forResource: "edge-distill-latency", withExtension: "json") else {
            throw XCTSkip("no candidate model: edge-distill puts one here when it measures on this phone")
        }
        let spec = try JSONDecoder().decode(CandidateSpec.self, from: Data(contentsOf: specURL))
        let compiled = Bundle.main.url(forResource: spec.model, withExtension: "mlmodelc")
        let package = Bundle.main.url(forResource: spec.model, withExtension: "mlpackage")
        guard let modelURL = try compiled ?? package.map({ try MLModel.compileModel(at: $0) }) else {
            return XCTFail("\(spec.model) is not in the app bundle")
        }
        let model = try MLModel(contentsOf: modelURL)
        var features: [String: MLFeatureValue] = [:]
        for input in spec.inputs {
            let array = try MLMultiArray(shape: input.shape.map { NSNumber(value: $0) },
                                         dataType: input.dtype == "int32" ? .int32 : .float32)
            for index in 0..<array.count { array[index] = 0 }
            features[input.name] = MLFeatureValue(multiArray: array)
        }
        let provider = try MLDictionaryFeatureProvider(dictionary: features)
        for _ in 0..<spec.warmup { _ = try model.prediction(from: provider) }
        let options = XCTMeasureOptions()
        options.iterationCount = spec.runs
        measure(metrics: [XCTClockMetric()], options: options) {
            _ = try? model.prediction(from: provider)
        }
    }
}

/// What edge-distill writes beside the candidate model.
struct CandidateSpec: Decodable {
    struct Input: Decodable {
        let name: String
        let shape: [Int]
        let dtype: String
    }
    let model: String
    let inputs: [Input]
    let warmup: Int
    let runs: Int
}
