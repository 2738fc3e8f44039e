import Foundation

/// Raw app values (e.g. grayscale pixels 0...255) to model input, as model.json prescribes:
/// x = (raw * scale - mean) / std.
public enum Preprocess {
    public static func normalize(_ raw: [Float], _ input: ModelSpec.Input) -> [Float] {
        let n = input.normalization
        return raw.map { Float((Double($0) * n.scale - n.mean) / n.std) }
    }
}
