"""How often `check --baseline` calls a latency regression when nothing changed (the false-alarm rate).

    python benchmarks/regression_noise.py [--pairs 20]

runs the example's ORT targets (fp32, int8, int4) `pairs + 1` times in a row, each compared with the
run before it, and prints, per figure (p50, p95, peak memory, size, accuracy), how many comparisons
were flagged and the range of changes seen. Nothing changes between the runs, so every flag is a false alarm. On a shared machine the
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
    flagged, compared, growths = {}, {}, {}  # per figure: p50, p95, peak memory, size, accuracy
    with tempfile.TemporaryDirectory() as work:
        previous = None
        for i in range(args.pairs + 1):
            out = Path(work) / f"run{i}"
            command = [sys.executable, "-m", "edge_distill", "check", str(CONFIG), "--out", str(out), "-q"]
            subprocess.run(command + (["--baseline", str(previous)] if previous else []), capture_output=True)
            report = json.loads((out / "report.json").read_text())
            for c in (c for r in report["results"] for c in r["checks"] if "/regression/" in c["name"]):
                figure = c["name"].split("/regression/", 1)[1]
                figure = figure if figure.startswith(("latency", "peak_memory", "size")) else "accuracy and agreement"
                compared[figure] = compared.get(figure, 0) + 1
                flagged[figure] = flagged.get(figure, 0) + (c["passed"] is False)
                growths.setdefault(figure, []).append(c["value"])
            previous = out / "report.json"
            print(f"run {i}: {sum(flagged.values())} flagged of {sum(compared.values())} comparisons so far",
                  file=sys.stderr)
    for figure in sorted(compared):
        values = growths[figure]
        print(f"{figure}: {flagged[figure]} false alarms in {compared[figure]} comparisons ({args.pairs} pairs); "
              f"change between identical runs {min(values):+.4g} .. {max(values):+.4g}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
