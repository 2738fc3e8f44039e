package dev.edgedistill.core

import java.io.File
import kotlin.system.exitProcess

/** Tests of the pure-Kotlin core, run with plain `java` (JUnit cannot be fetched on every CI):
 *  java -jar core-tests.jar path/to/some.model.json [more.model.json ...] */
private var failures = 0
private var passes = 0

private fun check(
    name: String,
    condition: Boolean,
) {
    if (condition) passes++ else failures++
    println((if (condition) "PASS " else "FAIL ") + name)
}

private fun unitTests() {
    val parsed = Json.parse("""{"a": [1, 2.5, -3e2], "b": {"c": "x\"y\u00e9"}, "d": true, "e": null}""") as Map<*, *>
    check("json numbers", parsed["a"] == listOf(1.0, 2.5, -300.0))
    check("json strings", (parsed["b"] as Map<*, *>)["c"] == "x\"yé")
    check("json literals", parsed["d"] == true && parsed.containsKey("e") && parsed["e"] == null)
    check("json rejects trailing text", runCatching { Json.parse("{} x") }.isFailure)

    val probabilities = Decode.softmax(floatArrayOf(1f, 2f, 3f))
    check("softmax sums to 1", kotlin.math.abs(probabilities.sum() - 1f) < 1e-6f)
    check("top-1 label", Decode.top(floatArrayOf(0.1f, 5f, 1f), listOf("a", "b", "c")).first().label == "b")

    val spec = InputSpec("image", listOf(1, 2, 2, 1), "NHWC", Normalization(1.0 / 255, 0.0, 1.0))
    check("normalize pixels", Preprocess.normalize(floatArrayOf(0f, 255f), spec).toList() == listOf(0f, 1f))
    val chw = floatArrayOf(1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f) // C=2, H=2, W=2
    val nhwc = Preprocess.toLayout(chw, InputSpec("x", listOf(1, 2, 2, 2), "NHWC", spec.normalization))
    check("NCHW to NHWC", nhwc.toList() == listOf(1f, 5f, 2f, 6f, 3f, 7f, 4f, 8f))

    val stats = LatencyStats()
    (1..100).forEach { stats.add(it.toDouble()) }
    check("p50 of 1..100", kotlin.math.abs(stats.percentile(50.0) - 50.5) < 1e-9)
    check("p99 of 1..100", kotlin.math.abs(stats.percentile(99.0) - 99.01) < 1e-9)
    check("negative latency refused", runCatching { stats.add(-1.0) }.isFailure)
}

private fun bundledModelTests(path: String) {
    val model = ModelSpec.parse(File(path).readText())
    check("$path: parses (${model.name}, ${model.precision})", model.file.isNotEmpty() && model.inputs.isNotEmpty())
    check("$path: only models that passed their budgets", model.budgetsPassed)
    check("$path: golden inputs present", model.golden.isNotEmpty())
    val input = model.inputs.first()
    for ((i, sample) in model.golden.withIndex()) {
        val raw = sample.inputs.getValue(input.name)
        val x = Preprocess.toLayout(Preprocess.normalize(raw, input), input)
        check("$path: golden $i preprocessed into [0, 1]", x.all { it in 0f..1f } && x.size == raw.size)
        val decoded = Decode.top(sample.expectedOutput, model.labels).first()
        check("$path: golden $i decodes to its expected top-1", decoded.index == sample.expectedTop1)
        if (sample.expectedLabel != null) check("$path: golden $i label ${sample.expectedLabel}", decoded.label == sample.expectedLabel)
        check("$path: golden $i matches itself", Decode.matchesGolden(sample.expectedOutput, sample, model.goldenTolerance))
        val wrong = sample.expectedOutput.copyOf().also { it[sample.expectedTop1] = -1e9f }
        check("$path: golden $i rejects a different answer", !Decode.matchesGolden(wrong, sample, model.goldenTolerance))
    }
}

fun main(args: Array<String>) {
    unitTests()
    args.forEach { bundledModelTests(it) }
    println("$passes passed, $failures failed")
    if (failures > 0 || passes == 0) exitProcess(1)
}
