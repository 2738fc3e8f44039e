"""How often `check --baseline` calls a latency regression when nothing changed (the false-alarm rate).

    python benchmarks/regression_noise.py [--pairs 20]

runs the example's ORT targets (fp32, int8, int4) `pairs + 1` times in a row, each compared with the
run before it, and prints how many of the latency comparisons were flagged, with the largest growth
seen. Nothing changes between the runs, so every flag is a false alarm. On a shared machine the
runs' p50 moves by tens of percent; the comparison divides it by the host's reference time and only
flags growth beyond the bootstrap's noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "fashion-mnist" / "mixed-precision-ort.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    args = parser.parse_args()
    flagged, compared, growths = 0, 0, []
    with tempfile.TemporaryDirectory() as work:
        previous = None
        for i in range(args.pairs + 1):
            out = Path(work) / f"run{i}"
            command = [sys.executable, "-m", "edge_distill", "check", str(CONFIG), "--out", str(out), "-q"]
            subprocess.run(command + (["--baseline", str(previous)] if previous else []), capture_output=True)
            report = json.loads((out / "report.json").read_text())
            for r in report["results"]:
                for c in r["checks"]:
                    if c["name"].endswith("/regression/latency.p50"):
                        compared += 1
                        growths.append(c["value"])
                        flagged += c["passed"] is False
            previous = out / "report.json"
            print(f"run {i}: {flagged} flagged of {compared} comparisons so far", file=sys.stderr)
    print(f"false alarms: {flagged} of {compared} latency comparisons ({args.pairs} pairs x {compared // max(args.pairs, 1)} "
          f"artifacts); p50 growth between identical runs ranged {min(growths):+.1%} .. {max(growths):+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
