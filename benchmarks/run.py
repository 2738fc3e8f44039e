"""Speed and size goals, reported as ratios against a baseline measured in the same run.

    python benchmarks/run.py            # writes benchmarks/results/latest.json and prints a table

1. `edge-distill --help` wall time (goal < 0.5 s), against `python -c pass`.
2. `check` on the example (ORT fp32 + int8 + int4) against the bare calls it makes: the same
   export, quantizers, .ort conversion, evaluation runs and latency loops, called directly
   (goal: at most 1.3x).
3. int8 and int4 against fp32: size ratio, and latency ratio from interleaved batch-1 runs.

The machine is shared and noisy: every timing is a median over repeats, and each ratio compares
two figures taken side by side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fashion-mnist"
RESULTS = ROOT / "benchmarks" / "results"


def wall(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_help() -> dict:
    python = wall([sys.executable, "-c", "pass"])
    help_s = wall([sys.executable, "-m", "edge_distill", "--help"])
    return {"help_s": round(help_s, 3), "python_startup_s": round(python, 3), "ratio": round(help_s / python, 2),
            "goal": "help_s < 0.5"}


def bench_check_overhead(repeats: int = 3) -> dict:
    check_times, bare_times = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edge_distill", "check", str(EXAMPLE / "edge-distill.toml"),
                            "--out", f"{tmp}/out", "-q"], check=True, capture_output=True)
            check_times.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).with_name("bare_calls.py")), tmp], check=True,
                           capture_output=True)
            bare_times.append(time.perf_counter() - start)
    check_s, bare_s = statistics.median(check_times), statistics.median(bare_times)
    return {"check_s": round(check_s, 2), "bare_calls_s": round(bare_s, 2), "ratio": round(check_s / bare_s, 3),
            "goal": "ratio <= 1.3"}


def bench_quantized_vs_fp32(runs: int = 3000) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "edge_distill", "check", str(EXAMPLE / "edge-distill.toml"), "--out",
                        f"{tmp}/out", "-q"], capture_output=True)
        folder = Path(tmp) / "out" / "ort"
        x = np.load(EXAMPLE / "eval.npz")["image"][:64]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sessions = {p: ort.InferenceSession(str(folder / f"model.{p}.ort"), options) for p in ("fp32", "int8", "int4")}
        sizes = {p: (folder / f"model.{p}.ort").stat().st_size for p in sessions}
        times = {p: [] for p in sessions}
        for i in range(runs):  # interleaved, so machine noise hits every variant alike
            for p, s in sessions.items():
                feeds = {"image": x[i % 64: i % 64 + 1]}
                start = time.perf_counter_ns()
                s.run(None, feeds)
                times[p].append((time.perf_counter_ns() - start) / 1e6)
    p50 = {p: float(np.median(t)) for p, t in times.items()}
    return {p: {"size_bytes": sizes[p], "size_ratio": round(sizes[p] / sizes["fp32"], 3),
                "p50_ms": round(p50[p], 4), "latency_ratio": round(p50[p] / p50["fp32"], 3)} for p in sessions}


def main() -> None:
    results = {"help": bench_help(), "check_overhead": bench_check_overhead(), "quantized_vs_fp32": bench_quantized_vs_fp32()}
    from edge_distill.provenance import host_environment

    results["environment"] = host_environment()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    h, c = results["help"], results["check_overhead"]
    print(f"--help: {h['help_s']} s (python startup {h['python_startup_s']} s, ratio {h['ratio']}x); goal < 0.5 s")
    print(f"check: {c['check_s']} s vs bare calls {c['bare_calls_s']} s: ratio {c['ratio']}x; goal <= 1.3x")
    for p, r in results["quantized_vs_fp32"].items():
        print(f"{p}: size {r['size_bytes']} B (x{r['size_ratio']} of fp32), p50 {r['p50_ms']} ms "
              f"(x{r['latency_ratio']} of fp32)")


if __name__ == "__main__":
    main()
