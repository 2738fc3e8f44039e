"""This host as a device: latency percentiles and peak memory, measured here.

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
from pathlib import Path
from typing import Any

import numpy as np

from edge_distill.calibration import Dataset

from ..progress import loop
from ..provenance import measured_on_host
from ..result import MB, Latency, Memory
from .base import Device, Figures, Job


def latency(runner, data: Dataset, *, warmup: int, runs: int, advance=lambda n=1: None) -> Latency:
    """`advance(n)` hears of every ten runs (a progress bar)."""
    pool = [{n: data.inputs[n][i: i + 1] for n in runner.input_names} for i in range(min(32, len(data)))]
    for i in range(warmup):
        runner.run(pool[i % len(pool)])
    advance(warmup)
    times, reference = np.empty(runs), []
    for i in range(runs):
        feeds = pool[i % len(pool)]
        start = time.perf_counter_ns()
        runner.run(feeds)
        times[i] = (time.perf_counter_ns() - start) / 1e6
        if i % 10 == 0:
            reference.append(_reference_ms())
        if i % 10 == 9:
            advance(10)
    advance(runs % 10)
    batch = getattr(runner, "fixed_batch", None) or 1
    per = "batch 1" if batch == 1 else f"batch {batch}, the model's fixed batch: one run is {batch} samples"
    prov = measured_on_host(runner.describe(), f"wall time of {runs} runs after {warmup} warm-up runs, {per}")
    return Latency(**percentiles(times), runs=runs, warmup=warmup, batch=batch, provenance=prov,
                   samples_ms=[_r(t) for t in times], reference_ms=_r(float(np.median(reference))))


def side_by_side(runners: list, feeds: dict, *, warmup: int = 20, runs: int = 200) -> np.ndarray:
    """Per-run times (ms, one row per runner) of runners timed in turns on the same feeds, who goes
    first alternating each round: two artifacts compared free of the machine's drift between runs."""
    times = np.empty((len(runners), runs))
    for i in range(warmup + runs):
        for k in (range(len(runners)) if i % 2 else reversed(range(len(runners)))):
            start = time.perf_counter_ns()
            runners[k].run(feeds)
            if i >= warmup:
                times[k, i - warmup] = (time.perf_counter_ns() - start) / 1e6
    return times


_REFERENCE = np.random.default_rng(0).standard_normal((96, 96)).astype(np.float32)


def _reference_ms() -> float:
    """A fixed piece of single-threaded work, timed between the model's runs: how fast this host is
    right now (a shared machine's load and clock move between runs; a baseline comparison divides
    them out)."""
    start = time.perf_counter_ns()
    x = _REFERENCE
    for _ in range(4):
        x = np.tanh(x @ _REFERENCE)
    return (time.perf_counter_ns() - start) / 1e6


def percentiles(values_ms) -> dict:
    """The latency record's statistics of per-run times (ms), rounded to 0.1 µs."""
    p50, p90, p95, p99 = np.percentile(values_ms, [50, 90, 95, 99])
    return {"p50_ms": _r(p50), "p90_ms": _r(p90), "p95_ms": _r(p95), "p99_ms": _r(p99),
            "mean_ms": _r(np.mean(values_ms)), "min_ms": _r(np.min(values_ms))}


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


def peak_memory(target: str, path: Path, feeds: dict, threads: int, runner_info: dict, runs: int = 20) -> Memory:
    """Peak RSS growth of a fresh process loading the model and running it on `feeds` (one sample)."""
    if not Path("/proc/self/clear_refs").exists():
        return Memory(None, None, "peak memory is measured through /proc (Linux only)")
    with tempfile.TemporaryDirectory(prefix="edge-distill-mem-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **feeds)
        proc = subprocess.run([sys.executable, "-c", _PROBE, target, str(path), str(feeds_path), str(threads), str(runs)],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return Memory(None, None, f"the memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    try:
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Memory(None, None, "the memory probe printed no result")
    prov = measured_on_host(runner_info, f"peak RSS growth (VmHWM) of a fresh process loading the model and "
                                         f"running {runs} batch-1 inferences")
    return Memory(peak_mb=_r((probe["peak_kb"] - probe["before_kb"]) * 1024 / MB), provenance=prov)  # /proc: KiB


def _r(x: float) -> float:
    return round(float(x), 4)


class HostDevice(Device):
    """This machine: a proxy for a phone's CPU, not a phone. Also the macOS Core ML device."""

    times_on_this_host = True

    def __init__(self, name: str = "host"):
        self.name = name

    def measure(self, job: Job) -> Figures:
        figures = host_speed(job)
        if figures.latency is not None:
            job.progress(f"  {job.label}: peak memory in a fresh process")
            one = {n: job.data.inputs[n][:1] for n in job.runner.input_names}
            # the probe opens the target's own runner: feeds in the model's layout (a state's batch axis)
            one = job.runner.in_model_layout(one) if hasattr(job.runner, "in_model_layout") else one
            figures.memory = peak_memory(job.target, job.path, one, job.settings.threads, job.runner.describe())
        return figures


def host_speed(job: Job) -> Figures:
    """Latency on this host (at each sequence length for a text model); memory left to the caller."""
    runner, s = job.runner, job.settings
    figures = Figures(None, Memory(None, None, runner.why_no_latency), "on this host", why_no_latency=runner.why_no_latency)
    if not runner.measures_latency:
        return figures
    if s.sequence_lengths:
        figures.latency, by_length, length = latency_by_length(job)
        figures.details["latency_by_length"] = by_length
        if figures.latency is None:
            figures.memory = Memory(None, None, by_length[str(length)]["why"])
            figures.why_no_latency = figures.memory.why_not
        return figures
    job.progress(f"  {job.label}: latency ({s.warmup} warm-up + {s.runs} runs, {s.threads} thread(s))")
    with loop(job.progress, f"{job.label}: timing", s.warmup + s.runs, "runs") as advance:
        figures.latency = latency(runner, job.data, warmup=s.warmup, runs=s.runs, advance=advance)
    return figures


def latency_by_length(job: Job):
    """Latency at each token count; the result's own latency is the one at the budget's length
    (the longest configured when the budget names none). An artifact built for one fixed length
    (LiteRT, Core ML) is timed at that length only."""
    runner, s = job.runner, job.settings
    fixed = [spec.shape[1] for spec in runner.input_specs() if len(spec.shape) > 1 and isinstance(spec.shape[1], int)]
    by_length: dict[str, dict[str, Any]] = {}
    chosen = s.sequence_length or max(s.sequence_lengths)
    for length in sorted(set(s.sequence_lengths) | {chosen}):
        if fixed and fixed[0] != length:
            by_length[str(length)] = {"why": f"this artifact takes exactly {fixed[0]} tokens (a fixed shape), "
                                             f"not {length}"}
            continue
        job.progress(f"  {job.label}: latency at {length} tokens ({s.warmup} warm-up + {s.runs} runs)")
        with loop(job.progress, f"{job.label}: timing at {length} tokens", s.warmup + s.runs, "runs") as advance:
            lat = latency(runner, at_length(job.data, length), warmup=s.warmup, runs=s.runs, advance=advance)
        by_length[str(length)] = {"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms,
                                  "latency": lat}
    at_chosen = by_length[str(chosen)].get("latency")
    for entry in by_length.values():
        entry.pop("latency", None)
    return at_chosen, by_length, chosen
