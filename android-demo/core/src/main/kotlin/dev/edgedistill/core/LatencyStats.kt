package dev.edgedistill.core

/** Latency percentiles of on-device runs, the way edge-distill reports them (nearest-rank). */
class LatencyStats {
    private val samples = ArrayList<Double>()

    fun add(milliseconds: Double) {
        require(milliseconds >= 0) { "a latency cannot be negative" }
        samples.add(milliseconds)
    }

    val count get() = samples.size

    fun percentile(p: Double): Double {
        require(samples.isNotEmpty()) { "no latency recorded" }
        require(p in 0.0..100.0) { "percentile must be within 0..100" }
        val sorted = samples.sorted()
        val rank = (p / 100.0 * (sorted.size - 1))
        val low = rank.toInt()
        val high = minOf(low + 1, sorted.size - 1)
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - low)
    }

    fun summary(): String =
        "p50 %.2f ms, p95 %.2f ms, p99 %.2f ms over %d runs".format(percentile(50.0), percentile(95.0), percentile(99.0), count)
}
