"""How good the progress display's ETA of a silent stage is: the duration the same stage took before
(the median of its last five runs, for the same model, on this machine) against the one it takes now.

    python benchmarks/progress_eta.py [CONFIG] [--runs 2]

runs `check CONFIG` (default: the Fashion-MNIST example) `runs` times with a private stage-times
file, reads the plain progress lines (each stage's start, `(took about N s before)` when remembered)
and prints, for every stage of 5 s or more, the remembered and the real duration and their ratio.
Goal: within 2x.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\[ *(\d+\.\d)s\] (.*?)(?: \(took about (\d+) s before\))?$")


def _stages(stderr: str) -> list[tuple[str, float, float | None]]:
    """(stage, real duration, remembered duration) from one run's plain progress lines."""
    marks = [(float(m[1]), m[2], float(m[3]) if m[3] else None) for m in map(LINE.match, stderr.splitlines()) if m
             and not m[2].startswith("   ")]  # a loop's count line is not a stage
    return [(name, later - at, last) for (at, name, last), (later, _, _) in zip(marks, marks[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "examples" / "fashion-mnist" / "edge-distill.toml"))
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as work:
        for run in range(args.runs):
            proc = subprocess.run([sys.executable, "-m", "edge_distill", "check", args.config, "--out",
                                   f"{work}/out{run}"], capture_output=True, text=True,
                                  env={**os.environ, "EDGE_DISTILL_STAGE_TIMES": f"{work}/stage-times.json"})
            for name, real, last in _stages(proc.stderr):
                if last is not None and max(real, last) >= 5:
                    ratios.append(max(real, last) / min(real, last))
                    print(f"run {run + 1}: {name.strip()[:70]:70}  last {last:6.1f} s  now {real:6.1f} s  "
                          f"ratio {ratios[-1]:.2f}")
    if ratios:
        print(f"{len(ratios)} stages of 5 s or more; worst ratio {max(ratios):.2f}; within 2x: "
              f"{sum(r <= 2 for r in ratios)}/{len(ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
