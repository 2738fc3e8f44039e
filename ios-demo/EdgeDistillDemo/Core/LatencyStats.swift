import Foundation

/// Latency percentiles of on-device runs, the way edge-distill reports them (linear interpolation).
public struct LatencyStats {
    private(set) var samples: [Double] = []

    public init() {}

    public mutating func add(milliseconds: Double) {
        precondition(milliseconds >= 0, "a latency cannot be negative")
        samples.append(milliseconds)
    }

    public func percentile(_ p: Double) -> Double {
        precondition(!samples.isEmpty, "no latency recorded")
        let sorted = samples.sorted()
        let rank = p / 100 * Double(sorted.count - 1)
        let low = Int(rank)
        let high = min(low + 1, sorted.count - 1)
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - Double(low))
    }

    public var summary: String {
        String(format: "p50 %.2f ms, p95 %.2f ms over %d runs", percentile(50), percentile(95), samples.count)
    }
}
