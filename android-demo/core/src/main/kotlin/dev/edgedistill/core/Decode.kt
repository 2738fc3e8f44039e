package dev.edgedistill.core

import kotlin.math.exp

data class Prediction(
    val index: Int,
    val label: String,
    val probability: Float,
)

/** Logits to a prediction: softmax, then the label at the top index (model.json's decoding). */
object Decode {
    fun softmax(logits: FloatArray): FloatArray {
        val max = logits.maxOrNull() ?: return logits
        val exps = logits.map { exp((it - max).toDouble()) }
        val sum = exps.sum()
        return FloatArray(logits.size) { (exps[it] / sum).toFloat() }
    }

    fun top(
        logits: FloatArray,
        labels: List<String>,
        k: Int = 1,
    ): List<Prediction> {
        val probabilities = softmax(logits)
        return probabilities.indices.sortedByDescending { probabilities[it] }.take(k).map {
            Prediction(it, labels.getOrElse(it) { "class $it" }, probabilities[it])
        }
    }

    /** Does the model's answer on a golden input match what edge-distill measured for it? */
    fun matchesGolden(
        output: FloatArray,
        sample: GoldenSample,
        tolerance: Double,
    ): Boolean {
        if (output.size != sample.expectedOutput.size) return false
        val top = output.indices.maxByOrNull { output[it] } ?: return false
        val worst = output.indices.maxOf { kotlin.math.abs(output[it] - sample.expectedOutput[it]) }
        return top == sample.expectedTop1 && worst <= tolerance * (1.0 + sample.expectedOutput.maxOf { kotlin.math.abs(it) })
    }
}
