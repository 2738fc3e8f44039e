"""Measuring an artifact on this host: latency percentiles, peak memory, and its outputs.

Latency: batch 1, real samples in turn, warm-up runs first, a fixed thread count, then enough
timed runs for p50/p90/p95/p99. Peak memory: a fresh Python process loads the model and runs
it; its peak RSS (VmHWM) minus its RSS just before loading is the runtime's peak memory, free
of whatever this process already holds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_distill.calibration import Dataset

from .provenance import Provenance, measured_on_host


@dataclass
class Latency:
    p50_ms: float | None  # None only where a device's benchmark binary does not print the percentile
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    min_ms: float | None
    runs: int
    warmup: int
    batch: int
    provenance: Provenance
    missing: str = ""  # which percentiles the source does not give, and why


@dataclass
class Memory:
    peak_mb: float | None
    provenance: Provenance | None
    why_not: str | None = None


def latency(runner, data: Dataset, *, warmup: int, runs: int) -> Latency:
    pool = [{n: data.inputs[n][i: i + 1] for n in runner.input_names} for i in range(min(32, len(data)))]
    for i in range(warmup):
        runner.run(pool[i % len(pool)])
    times = np.empty(runs)
    for i in range(runs):
        feeds = pool[i % len(pool)]
        start = time.perf_counter_ns()
        runner.run(feeds)
        times[i] = (time.perf_counter_ns() - start) / 1e6
    p50, p90, p95, p99 = np.percentile(times, [50, 90, 95, 99])
    prov = measured_on_host(runner.describe(), f"wall time of {runs} runs after {warmup} warm-up runs, batch 1")
    return Latency(p50_ms=_r(p50), p90_ms=_r(p90), p95_ms=_r(p95), p99_ms=_r(p99), mean_ms=_r(times.mean()),
                   min_ms=_r(times.min()), runs=runs, warmup=warmup, batch=1, provenance=prov)


def at_length(data: Dataset, length: int, count: int = 32) -> Dataset:
    """`count` samples at exactly `length` tokens, every token attended: the evaluation texts' own
    token ids, repeated to fill the length (latency depends on the shape, not on the words)."""
    ids = data.inputs["input_ids"][:count]
    mask = data.inputs.get("attention_mask", np.ones_like(ids))[:count]
    rows = []
    for row, keep in zip(ids, mask):
        tokens = row[keep.astype(bool)] if keep.any() else row
        rows.append(np.resize(tokens, length))
    out = np.stack(rows).astype(ids.dtype)
    return Dataset(source=f"{data.source} at {length} tokens", inputs={"input_ids": out,
                                                                     "attention_mask": np.ones_like(out)})


def outputs(runner, data: Dataset, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([runner.run({n: b[n] for n in runner.input_names})[0] for b in data.batches(batch_size)])


_PROBE = r"""
import importlib, json, sys
import numpy as np
from pathlib import Path
from edge_distill.targets import get_target

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
target, model, feeds_path, threads, runs = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
feeds = dict(np.load(feeds_path))
impl = get_target(target)
for module in impl.capabilities.runtime:  # import cost is not the model's
    importlib.import_module(module)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark
before = rss("VmRSS:")
runner = impl.open_runner(model, threads)
for _ in range(runs):
    runner.run(feeds)
print(json.dumps({"before_kb": before, "peak_kb": rss("VmHWM:")}))
"""


def peak_memory(target: str, path: Path, data: Dataset, input_names: list[str], threads: int,
                runner_info: dict, runs: int = 20) -> Memory:
    if not Path("/proc/self/clear_refs").exists():
        return Memory(None, None, "peak memory is measured through /proc (Linux only)")
    with tempfile.TemporaryDirectory(prefix="edge-distill-mem-") as tmp:
        feeds = Path(tmp) / "feeds.npz"
        np.savez(feeds, **{n: data.inputs[n][:1] for n in input_names})
        proc = subprocess.run([sys.executable, "-c", _PROBE, target, str(path), str(feeds), str(threads), str(runs)],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return Memory(None, None, f"the memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    try:
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Memory(None, None, "the memory probe printed no result")
    prov = measured_on_host(runner_info, f"peak RSS growth (VmHWM) of a fresh process loading the model and "
                                         f"running {runs} batch-1 inferences")
    return Memory(peak_mb=_r((probe["peak_kb"] - probe["before_kb"]) / 1024), provenance=prov)


def _r(x: float) -> float:
    return round(float(x), 4)
