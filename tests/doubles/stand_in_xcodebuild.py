#!/usr/bin/env python3
"""TEST DOUBLE: a stand-in for `xcodebuild test` on an attached iPhone (see README.md beside it).
It checks what edge-distill prepared (the candidate model and its JSON inside the app, the
destination, the test), then prints the XCTest log lines the real run prints, with one value per
iteration. It runs no model: the values are fixed. $STAND_IN_XCODE_SCENARIO: ok, gone."""

import json
import os
import sys
from pathlib import Path

args = sys.argv[1:]
scenario = os.environ.get("STAND_IN_XCODE_SCENARIO", "ok")
project = Path(args[args.index("-project") + 1])
destination = args[args.index("-destination") + 1]
if scenario == "gone":
    print("xcodebuild: error: Unable to find a destination matching the provided destination specifier:\n"
          f"\t\t{{ {destination.replace(',', ', ').replace('=', ':')} }}", file=sys.stderr)
    sys.exit(70)
models = project.parent / "EdgeDistillDemo" / "Models"
spec = json.loads((models / "edge-distill-latency.json").read_text())
assert (models / "edge-distill-latency.mlpackage" / "Manifest.json").is_file(), "no candidate package"
assert "-only-testing:EdgeDistillDemoTests/LatencyTests/testCandidateLatency" in args
runs = spec["runs"]
values = [0.0031 + 0.0001 * (i % 7) + (0.0009 if i % 20 == 19 else 0.0) for i in range(runs)]
average = sum(values) / runs
test = "-[EdgeDistillDemoTests.LatencyTests testCandidateLatency]"
print(f"Test Case '{test}' started.")
print(f"/Users/dev/ios-demo/EdgeDistillDemoTests/LatencyTests.swift:52: Test Case '{test}' measured [Clock Monotonic "
      f"Time, s] average: {average:.3f}, relative standard deviation: 9.874%, values: "
      f"[{', '.join(f'{v:.6f}' for v in values)}], performanceMetricID:com.apple.dt.XCTMetric_Clock.time.monotonic, "
      "baselineName: \"\", baselineAverage: , polarity: prefers smaller, maxPercentRegression: 10.000%, "
      "maxPercentRelativeStandardDeviation: 10.000%, maxRegression: 0.000, maxStandardDeviation: 0.000")
print(f"Test Case '{test}' passed (4.812 seconds).")
print("** TEST SUCCEEDED **")
