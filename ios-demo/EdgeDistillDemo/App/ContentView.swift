import SwiftUI

/// Loads every bundled model, checks it on its golden inputs (first run), and shows the prediction
/// and the measured on-device latency. No model-specific code: model.json drives it.
struct ContentView: View {
    @State private var lines: [String] = []

    var body: some View {
        List(lines, id: \.self) { Text($0).font(.system(.body, design: .monospaced)) }
            .task { lines = report() }
    }

    private func report() -> [String] {
        let urls = Bundle.main.urls(forResourcesWithExtension: "json", subdirectory: nil) ?? []
        let specs = urls.filter { $0.lastPathComponent.hasSuffix(".model.json") }
        if specs.isEmpty { return ["No models bundled. Run: edge-distill bundle --app ios-demo"] }
        var out: [String] = []
        for url in specs {
            do {
                let spec = try ModelSpec.parse(try Data(contentsOf: url))
                let runner = try CoreMLRunner(spec: spec)
                out.append("\(spec.name) (\(spec.precision))")
                let input = spec.inputs[0]
                for (i, sample) in spec.golden.samples.enumerated() {
                    let output = try runner.run(Preprocess.normalize(sample.inputs[input.name] ?? [], input))
                    let ok = Decode.matchesGolden(output, sample, tolerance: spec.golden.tolerance)
                    let top = Decode.top(output, labels: spec.outputs[0].labels)
                    out.append("golden \(i): \(top?.label ?? "?") \(ok ? "as verified" : "DIFFERS")")
                }
                var stats = LatencyStats()
                let x = Preprocess.normalize(spec.golden.samples[0].inputs[input.name] ?? [], input)
                for _ in 0..<20 { _ = try runner.run(x) }
                for _ in 0..<200 {
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = try runner.run(x)
                    stats.add(milliseconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                }
                out.append("latency (measured on this device): \(stats.summary)")
            } catch {
                out.append("\(url.lastPathComponent): \(error)")
            }
        }
        return out
    }
}
