#!/usr/bin/env python3
"""TEST DOUBLE: a stand-in for `xcodebuild test` on an attached iPhone (see README.md beside it).
It checks what edge-distill prepared (the candidate model and its JSON inside the app, the
destination, the test), then replays replays/xcodebuild-test-latency.txt: XCTest's log lines with
40 per-iteration values, whatever number of runs was asked for (edge-distill must notice). It runs
no model. $STAND_IN_XCODE_SCENARIO: ok, gone."""

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
assert json.loads((models / "edge-distill-latency.json").read_text())["runs"] > 0, "no run count"
assert (models / "edge-distill-latency.mlpackage" / "Manifest.json").is_file(), "no candidate package"
assert "-only-testing:EdgeDistillDemoTests/LatencyTests/testCandidateLatency" in args
sys.stdout.write((Path(__file__).parent / "replays" / "xcodebuild-test-latency.txt").read_text())
