"""A second `check` of the example with nothing changed, against the first (issue 34).

    OMP_NUM_THREADS=1 python benchmarks/second_check.py [--limit 0.7] [--config FILE]

runs `edge-distill check` on the bundled example twice in a row, in a fresh cache folder (so the first
run computes and stores the ONNX export, the float student's and teacher's outputs and every built
artifact, and the second reuses them; every figure is measured again), each into a fresh --out folder.
Prints both wall times, the processes' CPU times, the ratios and what the second run reused; exits 1
when the wall-time ratio is above --limit, 2 when a run did not pass. On a shared machine a
neighbour's load moves the wall time; the CPU-time ratio is printed beside it for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "fashion-mnist" / "edge-distill.toml"


def timed_check(config: Path, out: Path, env: dict) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (the child and everything it waited for) and the report."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edge_distill", "check", str(config), "--out", str(out), "-q"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        print(f"check exited {done.returncode}:\n{done.stderr[-2000:]}", file=sys.stderr)
        raise SystemExit(2)
    return wall, cpu, json.loads((out / "report.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=0.7, help="the largest second/first wall-time ratio")
    parser.add_argument("--config", type=Path, default=CONFIG)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="second-check-") as work:
        env = {**os.environ, "EDGE_DISTILL_CACHE": str(Path(work) / "cache"), "EDGE_DISTILL_NO_CACHE": "0"}
        first = timed_check(args.config, Path(work) / "first", env)
        second = timed_check(args.config, Path(work) / "second", env)
    reused = [what for what, note in (("export", second[2]["export"]["reused"]),
                                      ("reference outputs", second[2]["references_reused"]),
                                      *((r["name"], r.get("reused")) for r in second[2]["results"])) if note]
    built = [r["name"] for r in second[2]["results"] if not r.get("reused")]
    wall, cpu = second[0] / first[0], second[1] / first[1]
    print(f"first check:  {first[0]:.1f} s wall, {first[1]:.1f} s CPU")
    print(f"second check: {second[0]:.1f} s wall, {second[1]:.1f} s CPU (reused: {', '.join(reused) or 'nothing'}; "
          f"built again: {', '.join(built) or 'nothing'})")
    print(f"ratio: {wall:.2f} wall, {cpu:.2f} CPU (limit {args.limit:g}, on wall time)")
    return 0 if wall <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
