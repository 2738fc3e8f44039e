import CoreML
import Foundation

/// The thin Core ML layer: loads a bundled .mlpackage (compiled by Xcode into .mlmodelc) and runs
/// one input. What the input means and how to decode the output come from model.json.
final class CoreMLRunner {
    private let model: MLModel
    private let spec: ModelSpec

    init(spec: ModelSpec, computeUnits: MLComputeUnits = .all) throws {
        let name = (spec.file as NSString).deletingPathExtension
        guard let url = Bundle.main.url(forResource: name, withExtension: "mlmodelc") else {
            throw CocoaError(.fileNoSuchFile)
        }
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        self.model = try MLModel(contentsOf: url, configuration: configuration)
        self.spec = spec
    }

    func run(_ input: [Float]) throws -> [Float] {
        let shape = spec.inputs[0].shape.map { dim -> NSNumber in
            if case let .fixed(value) = dim { return NSNumber(value: value) }
            return 1
        }
        let array = try MLMultiArray(shape: shape, dataType: .float32)
        for (i, value) in input.enumerated() { array[i] = NSNumber(value: value) }
        let features = try MLDictionaryFeatureProvider(dictionary: [spec.inputs[0].name: array])
        let result = try model.prediction(from: features)
        guard let output = result.featureValue(for: spec.outputs[0].name)?.multiArrayValue else { return [] }
        return (0..<output.count).map { output[$0].floatValue }
    }
}
