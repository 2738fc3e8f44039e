import Foundation

public struct Prediction: Equatable {
    public let index: Int
    public let label: String
    public let probability: Float
}

/// Logits to a prediction: softmax, then the label at the top index (model.json's decoding).
public enum Decode {
    public static func softmax(_ logits: [Float]) -> [Float] {
        guard let maxValue = logits.max() else { return logits }
        let exps = logits.map { exp(Double($0 - maxValue)) }
        let sum = exps.reduce(0, +)
        return exps.map { Float($0 / sum) }
    }

    public static func top(_ logits: [Float], labels: [String]) -> Prediction? {
        let probabilities = softmax(logits)
        guard let best = probabilities.indices.max(by: { probabilities[$0] < probabilities[$1] }) else { return nil }
        let label = best < labels.count ? labels[best] : "class \(best)"
        return Prediction(index: best, label: label, probability: probabilities[best])
    }

    /// Does the model's answer on a golden input match what edge-distill measured for it?
    public static func matchesGolden(_ output: [Float], _ sample: ModelSpec.GoldenSample, tolerance: Double) -> Bool {
        guard output.count == sample.expectedOutput.count,
              let top = output.indices.max(by: { output[$0] < output[$1] }) else { return false }
        let scale = 1.0 + Double(sample.expectedOutput.map { abs($0) }.max() ?? 0)
        let worst = zip(output, sample.expectedOutput).map { Double(abs($0 - $1)) }.max() ?? 0
        return top == sample.expectedTop1 && worst <= tolerance * scale
    }
}
