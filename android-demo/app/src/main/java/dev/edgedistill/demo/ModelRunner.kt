package dev.edgedistill.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import android.content.res.AssetManager
import dev.edgedistill.core.ModelSpec
import org.tensorflow.lite.Interpreter
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.FloatBuffer

/** The thin runtime layer: one input tensor in, the first output out. Everything else
 *  (what the input means, how to decode the output) comes from model.json via the core. */
interface ModelRunner : AutoCloseable {
    fun run(input: FloatArray): FloatArray
}

fun openRunner(
    assets: AssetManager,
    spec: ModelSpec,
    threads: Int = 1,
): ModelRunner {
    val bytes = assets.open("models/${spec.file}").use { it.readBytes() }
    return when (spec.target) {
        "tflite" -> LiteRtRunner(bytes, spec, threads)
        "ort" -> OrtRunner(bytes, spec, threads)
        else -> error("this app runs tflite and ort models, not ${spec.target}")
    }
}

private fun shapeOf(spec: ModelSpec): LongArray =
    spec.inputs
        .first()
        .shape
        .map { if (it < 0) 1L else it.toLong() }
        .toLongArray()

/** LiteRT (the maintained successor of TensorFlow Lite), XNNPACK on the CPU by default. */
class LiteRtRunner(
    model: ByteArray,
    private val spec: ModelSpec,
    threads: Int,
) : ModelRunner {
    private val interpreter =
        Interpreter(
            ByteBuffer
                .allocateDirect(model.size)
                .order(ByteOrder.nativeOrder())
                .put(model)
                .rewind() as ByteBuffer,
            Interpreter.Options().setNumThreads(threads),
        )

    override fun run(input: FloatArray): FloatArray {
        val output =
            Array(1) {
                FloatArray(
                    spec.golden
                        .first()
                        .expectedOutput.size,
                )
            }
        val shape = shapeOf(spec).map { it.toInt() }.toIntArray()
        interpreter.resizeInput(0, shape)
        interpreter.run(FloatBuffer.wrap(input), output)
        return output[0]
    }

    override fun close() = interpreter.close()
}

/** ONNX Runtime Mobile, reading the .ort file (Fixed optimization style). */
class OrtRunner(
    model: ByteArray,
    private val spec: ModelSpec,
    threads: Int,
) : ModelRunner {
    private val env = OrtEnvironment.getEnvironment()
    private val session =
        env.createSession(model, OrtSession.SessionOptions().apply { setIntraOpNumThreads(threads) })

    override fun run(input: FloatArray): FloatArray {
        OnnxTensor.createTensor(env, FloatBuffer.wrap(input), shapeOf(spec)).use { tensor ->
            session.run(mapOf(spec.inputs.first().name to tensor)).use { result ->
                @Suppress("UNCHECKED_CAST")
                return (result[0].value as Array<FloatArray>)[0]
            }
        }
    }

    override fun close() = session.close()
}
