package dev.edgedistill.core

/** model.json, as written by `edge-distill bundle`: everything the app needs to run the model. */
data class Normalization(
    val scale: Double,
    val mean: Double,
    val std: Double,
)

data class InputSpec(
    val name: String,
    val shape: List<Int>,
    val layout: String,
    val normalization: Normalization,
)

data class GoldenSample(
    val inputs: Map<String, FloatArray>,
    val expectedOutput: FloatArray,
    val expectedTop1: Int,
    val expectedLabel: String?,
)

data class ModelSpec(
    val name: String,
    val target: String,
    val precision: String,
    val file: String,
    val inputs: List<InputSpec>,
    val labels: List<String>,
    val budgetsPassed: Boolean,
    val goldenTolerance: Double,
    val golden: List<GoldenSample>,
) {
    companion object {
        const val SCHEMA_VERSION = "1"

        @Suppress("UNCHECKED_CAST")
        fun parse(text: String): ModelSpec {
            val root = Json.parse(text) as? Map<String, Any?> ?: error("model.json is not an object")
            val version = root["schema_version"]
            require(version == SCHEMA_VERSION) { "model.json schema $version, this app reads $SCHEMA_VERSION" }
            val inputs =
                (root["inputs"] as List<Map<String, Any?>>).map { input ->
                    val norm = input["normalization"] as Map<String, Any?>
                    InputSpec(
                        name = input["name"] as String,
                        shape = (input["shape"] as List<Any?>).map { (it as? Double)?.toInt() ?: -1 },
                        layout = input["layout"] as String,
                        normalization =
                            Normalization(
                                scale = norm["scale"] as Double,
                                mean = norm["mean"] as? Double ?: 0.0,
                                std = norm["std"] as? Double ?: 1.0,
                            ),
                    )
                }
            val output = (root["outputs"] as List<Map<String, Any?>>).first()
            val golden = root["golden"] as Map<String, Any?>
            val samples =
                (golden["samples"] as List<Map<String, Any?>>).map { sample ->
                    GoldenSample(
                        inputs =
                            (sample["inputs"] as Map<String, List<Double>>).mapValues { (_, values) ->
                                FloatArray(values.size) { values[it].toFloat() }
                            },
                        expectedOutput = (sample["expected_output"] as List<Double>).map { it.toFloat() }.toFloatArray(),
                        expectedTop1 = (sample["expected_top1"] as Double).toInt(),
                        expectedLabel = sample["expected_label"] as String?,
                    )
                }
            return ModelSpec(
                name = root["name"] as String,
                target = root["target"] as String,
                precision = root["precision"] as String,
                file = root["file"] as String,
                inputs = inputs,
                labels = (output["labels"] as List<String>),
                budgetsPassed = (root["budgets"] as Map<String, Any?>)["passed"] as Boolean,
                goldenTolerance = golden["tolerance"] as Double,
                golden = samples,
            )
        }
    }
}
