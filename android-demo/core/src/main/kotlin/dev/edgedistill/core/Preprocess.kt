package dev.edgedistill.core

/** Raw app values (e.g. grayscale pixels 0..255) to model input, as model.json prescribes:
 *  x = (raw * scale - mean) / std, in the model's layout. */
object Preprocess {
    fun normalize(
        raw: FloatArray,
        spec: InputSpec,
    ): FloatArray {
        val n = spec.normalization
        return FloatArray(raw.size) { i -> ((raw[i] * n.scale - n.mean) / n.std).toFloat() }
    }

    /** NCHW (as the data arrive) to NHWC, for a model that asks for channels-last input. */
    fun toLayout(
        chw: FloatArray,
        spec: InputSpec,
    ): FloatArray {
        if (spec.layout != "NHWC") return chw
        val (c, h, w) = Triple(spec.shape[3], spec.shape[1], spec.shape[2])
        val out = FloatArray(chw.size)
        for (ci in 0 until c) {
            for (y in 0 until h) {
                for (x in 0 until w) {
                    out[(y * w + x) * c + ci] = chw[(ci * h + y) * w + x]
                }
            }
        }
        return out
    }
}
