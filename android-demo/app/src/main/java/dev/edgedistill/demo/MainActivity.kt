package dev.edgedistill.demo

import android.app.Activity
import android.os.Bundle
import android.widget.ScrollView
import android.widget.TextView
import dev.edgedistill.core.Decode
import dev.edgedistill.core.LatencyStats
import dev.edgedistill.core.ModelSpec
import dev.edgedistill.core.Preprocess

/** Loads every bundled model, checks it on its golden inputs (first run), and shows the
 *  prediction and the measured on-device latency. No model-specific code: model.json drives it. */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this).apply { setPadding(32, 32, 32, 32) }
        setContentView(ScrollView(this).apply { addView(text) })
        text.text = report()
    }

    private fun report(): String {
        val specs = assets.list("models").orEmpty().filter { it.endsWith(".model.json") }
        if (specs.isEmpty()) return "No models bundled. Run: edge-distill bundle --app android-demo"
        return specs.joinToString("\n\n") { file ->
            val spec = ModelSpec.parse(assets.open("models/$file").bufferedReader().readText())
            openRunner(assets, spec).use { runner -> describe(spec, runner) }
        }
    }

    private fun describe(
        spec: ModelSpec,
        runner: ModelRunner,
    ): String {
        val input = spec.inputs.first()
        val lines = mutableListOf("${spec.name} (${spec.target}, ${spec.precision})")
        for ((i, sample) in spec.golden.withIndex()) {
            val x = Preprocess.toLayout(Preprocess.normalize(sample.inputs.getValue(input.name), input), input)
            val output = runner.run(x)
            val ok = Decode.matchesGolden(output, sample, spec.goldenTolerance)
            val top = Decode.top(output, spec.labels).first()
            lines += "golden $i: ${top.label} (%.2f) %s".format(top.probability, if (ok) "as verified" else "DIFFERS")
        }
        val stats = LatencyStats()
        val x =
            Preprocess.toLayout(
                Preprocess.normalize(
                    spec.golden
                        .first()
                        .inputs
                        .getValue(input.name),
                    input,
                ),
                input,
            )
        repeat(20) { runner.run(x) }
        repeat(200) {
            val start = System.nanoTime()
            runner.run(x)
            stats.add((System.nanoTime() - start) / 1e6)
        }
        lines += "latency (measured on this device): ${stats.summary()}"
        return lines.joinToString("\n")
    }
}
