import Foundation

/// model.json, as written by `edge-distill bundle`: everything the app needs to run the model.
/// Plain Swift (Foundation only), so it builds and tests anywhere Swift does.
public struct ModelSpec: Decodable {
    public static let schemaVersion = "1"

    public struct Normalization: Decodable {
        public let scale: Double
        public let mean: Double
        public let std: Double
    }

    public struct Input: Decodable {
        public let name: String
        public let shape: [ShapeDim]
        public let layout: String
        public let normalization: Normalization
    }

    /// A dimension is a number, or a name such as "batch" for a dynamic axis.
    public enum ShapeDim: Decodable {
        case fixed(Int)
        case dynamic(String)

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Int.self) {
                self = .fixed(value)
            } else {
                self = .dynamic(try container.decode(String.self))
            }
        }
    }

    public struct Output: Decodable {
        public let name: String
        public let labels: [String]
        public let decoding: String
    }

    public struct Budgets: Decodable {
        public let passed: Bool
        public let broken: [String]
    }

    public struct GoldenSample: Decodable {
        public let inputs: [String: [Float]]
        public let expectedOutput: [Float]
        public let expectedTop1: Int
        public let expectedLabel: String?

        enum CodingKeys: String, CodingKey {
            case inputs
            case expectedOutput = "expected_output"
            case expectedTop1 = "expected_top1"
            case expectedLabel = "expected_label"
        }
    }

    public struct Golden: Decodable {
        public let tolerance: Double
        public let samples: [GoldenSample]
    }

    public let schemaVersion: String
    public let name: String
    public let target: String
    public let precision: String
    public let file: String
    public let inputs: [Input]
    public let outputs: [Output]
    public let budgets: Budgets
    public let golden: Golden

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case name, target, precision, file, inputs, outputs, budgets, golden
    }

    public static func parse(_ data: Data) throws -> ModelSpec {
        let spec = try JSONDecoder().decode(ModelSpec.self, from: data)
        guard spec.schemaVersion == schemaVersion else {
            throw ModelSpecError.unsupportedSchema(spec.schemaVersion)
        }
        return spec
    }
}

public enum ModelSpecError: Error, Equatable {
    case unsupportedSchema(String)
}
