"""Attached Android phones over adb: push the artifact and the benchmark binary the user provides,
run it, and read its summary into the same latency record, `measured` on the phone.

The binaries are the runtimes' own, built for the phone's ABI (we do not ship them):
- `.tflite`: LiteRT's `benchmark_model` (its `count=... p5=... median=... p95=...` line; builds
  whose Stat has no percentiles print only count/avg, and then no percentile is reported);
- `.onnx` / `.ort`: onnxruntime's `onnxruntime_perf_test` (its `P50 Latency: ... s` lines).
Say where they are with `[measure.adb] benchmark_model = "..."` / `onnxruntime_perf_test = "..."`
or $EDGE_DISTILL_BENCHMARK_MODEL / $EDGE_DISTILL_ORT_PERF_TEST; adb itself is $EDGE_DISTILL_ADB or
`adb` on PATH. Formats were read from the tools' sources (LiteRT benchmark_model.cc and
stats_calculator.h, onnxruntime performance_runner.cc) and from published logs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, CannotMeasure
from ..provenance import Provenance
from ..result import MB, Latency, Memory
from .attached import choose_attached
from .base import Device, Figures, Job, other_count

REMOTE_DIR = "/data/local/tmp/edge-distill"
TOOL_FOR_SUFFIX = {".tflite": "benchmark_model", ".onnx": "onnxruntime_perf_test", ".ort": "onnxruntime_perf_test"}
TOOL_ENV = {"benchmark_model": "EDGE_DISTILL_BENCHMARK_MODEL", "onnxruntime_perf_test": "EDGE_DISTILL_ORT_PERF_TEST"}


@dataclass
class Phone:
    serial: str
    state: str  # device | offline | unauthorized | ...
    model: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "device"

    @property
    def note(self) -> str:
        return f"{self.model or 'Android device'} over adb" + ("" if self.ready else f" ({self.state})")


@dataclass
class BenchmarkResult:
    """What a benchmark binary reported; a figure it does not print stays None."""

    latency: dict  # p50_ms, p90_ms, p95_ms, p99_ms, mean_ms, min_ms: the fields of measure.Latency
    runs: int
    peak_memory_mb: float | None
    memory_method: str
    missing: str = ""  # which figures the binary does not print, and why


def adb_path() -> str | None:
    return os.environ.get("EDGE_DISTILL_ADB") or shutil.which("adb")


def _require_adb() -> str:
    adb = adb_path()
    if adb is None:
        raise CannotMeasure("adb is not installed, so no Android device can be reached",
                            hint="install Android platform-tools (apt-get install adb) or set $EDGE_DISTILL_ADB")
    return adb


def _adb(args: list[str], serial: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [_require_adb(), *(["-s", serial] if serial else []), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CannotMeasure(f"adb {' '.join(args[:2])} on device '{serial}' did not finish in {timeout:g} s") from exc


def attached_devices() -> list[Phone]:
    """Phones `adb devices -l` lists; none when adb is absent."""
    if adb_path() is None:
        return []
    proc = _adb(["devices", "-l"], timeout=30)
    phones = []
    for line in proc.stdout.splitlines()[1:]:  # after "List of devices attached"
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("*"):
            fields = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            phones.append(Phone(parts[0], parts[1], fields.get("model", "").replace("_", " ")))
    return phones


def pick_device(serial: str | None) -> str:
    """The serial to use: the one named, or the only one attached."""
    _require_adb()
    phones = attached_devices()
    phone = choose_attached(phones, [p.serial for p in phones], serial, kind="adb", what="Android device",
                            id_name="SERIAL", listing=[f"{p.serial} ({p.state})" for p in phones],
                            hint="`adb devices` lists them")
    if not phone.ready:
        raise CannotMeasure(f"device 'adb:{phone.serial}' is {phone.state}",
                            hint="unlock the phone and accept the USB debugging prompt" if phone.state ==
                            "unauthorized" else "reconnect it; `adb devices` should say 'device'")
    return phone.serial


def describe(serial: str) -> dict:
    props = {}
    for key, prop in (("model", "ro.product.model"), ("android", "ro.build.version.release"),
                      ("abi", "ro.product.cpu.abi")):
        props[key] = _shell(serial, ["getprop", prop], what=f"reading {prop}").strip()
    return props


def _shell(serial: str, command: list[str], what: str) -> str:
    proc = _adb(["shell", *command], serial)
    gone = re.search(r"(?:adb|error): (device '.*' not found|no devices/emulators found|device offline)",
                     proc.stderr)
    if gone or (proc.returncode == 255 and not proc.stdout.strip()):
        reason = gone.group(1) if gone else "adb lost the connection (exit 255)"
        raise CannotMeasure(f"device 'adb:{serial}' went away while {what}: {reason}; no figure from it is kept")
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise CannotMeasure(f"on device 'adb:{serial}', {what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout + proc.stderr


def _push(serial: str, local: Path, remote: str) -> None:
    proc = _adb(["push", str(local), remote], serial)
    if proc.returncode != 0:
        raise CannotMeasure(f"could not push {local.name} to device 'adb:{serial}': "
                            f"{(proc.stderr or proc.stdout).strip()}")


def tool_path(artifact: Path, tools: dict) -> tuple[str, Path]:
    tool = TOOL_FOR_SUFFIX.get(artifact.suffix)
    if tool is None:
        raise CannotMeasure(f"no benchmark binary runs {artifact.suffix} files on an Android device "
                            f"(known: {', '.join(sorted(TOOL_FOR_SUFFIX))})", path=artifact)
    given = tools.get(tool) or os.environ.get(TOOL_ENV[tool])
    if not given:
        raise CannotMeasure(f"measuring {artifact.name} on an Android device needs {tool} built for the phone",
                            hint=f"set [measure.adb] {tool} = \"path\" in the config, or ${TOOL_ENV[tool]}")
    if not Path(given).is_file():
        raise BadInput(f"{tool} not found", path=given)
    return tool, Path(given)


def benchmark(serial: str, artifact: Path, tools: dict, *, threads: int, warmup: int, runs: int) -> BenchmarkResult:
    tool, binary = tool_path(artifact, tools)
    _shell(serial, ["mkdir", "-p", REMOTE_DIR], what="making its work folder")
    _push(serial, binary, f"{REMOTE_DIR}/{tool}")
    _push(serial, artifact, f"{REMOTE_DIR}/{artifact.name}")
    _shell(serial, ["chmod", "755", f"{REMOTE_DIR}/{tool}"], what=f"making {tool} executable")
    model = f"{REMOTE_DIR}/{artifact.name}"
    if tool == "benchmark_model":
        args = [f"--graph={model}", f"--num_threads={threads}", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
                f"--num_runs={runs}", "--min_secs=0", "--report_peak_memory_footprint=true"]
    else:  # -I: inputs generated from the model's shapes; -s: the latency percentiles
        args = ["-e", "cpu", "-m", "times", "-r", str(runs), "-x", str(threads), "-I", "-s", model]
    # LD_LIBRARY_PATH: a shared-library build of the tool finds its runtime pushed beside it
    output = _shell(serial, ["env", f"LD_LIBRARY_PATH={REMOTE_DIR}", f"{REMOTE_DIR}/{tool}", *args],
                    what=f"running {tool} on {artifact.name}")
    parse = parse_benchmark_model if tool == "benchmark_model" else parse_perf_test
    try:
        return parse(output)
    except ValueError as exc:
        raise CannotMeasure(f"{tool} on device 'adb:{serial}' printed no result this tool can read: {exc}") from exc


_COUNT = re.compile(r"count=(\d+)(?: first=\d+)? curr=\d+(?:\(all same\))?(?: min=(\d+) max=\d+ avg=([\d.e+]+) "
                    r"std=\d+)?(?: p5=\d+ median=(\d+) p95=(\d+))?")


def parse_benchmark_model(text: str) -> BenchmarkResult:
    """The last `count=` line is the timed runs (the first is the warm-up); values are µs."""
    lines = [m for m in _COUNT.finditer(text)]
    if not lines:
        raise ValueError("no 'count=' line")
    m = lines[-1]
    count = int(m.group(1))
    curr = re.search(r"curr=(\d+)", m.group(0))
    assert curr is not None  # _COUNT matched only lines with a curr= field
    same = curr.group(1)
    avg = float(m.group(3)) if m.group(3) else float(same)
    low = float(m.group(2)) if m.group(2) else float(same)
    median, p95 = (float(m.group(4)), float(m.group(5))) if m.group(4) else (None, None)
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.]+)", text)
    delta = re.search(r"Memory footprint delta from the start of the tool \(MB\): init=[\d.]+ overall=([\d.]+)", text)
    memory, method = (float(peak.group(1)), "benchmark_model's peak memory footprint (periodic monitoring)") \
        if peak else (float(delta.group(1)), "benchmark_model's memory footprint growth from its start") \
        if delta else (None, "benchmark_model printed no memory figure")
    if memory is not None:  # its "MB" is KiB / 1024 (LiteRT's memory_info.h); ours is 10^6 bytes
        memory = round(memory * 2**20 / MB, 4)
    ms = lambda us: None if us is None else round(us / 1000.0, 4)  # noqa: E731
    return BenchmarkResult(latency={"p50_ms": ms(median), "p90_ms": None, "p95_ms": ms(p95), "p99_ms": None,
                                    "mean_ms": ms(avg), "min_ms": ms(low)},
                           runs=count, peak_memory_mb=memory, memory_method=method,
                           missing="benchmark_model prints p5/median/p95 only" if median is not None else
                           "this benchmark_model build prints count/avg and no percentiles")


def parse_perf_test(text: str) -> BenchmarkResult:
    def seconds(name: str) -> float | None:
        m = re.search(rf"^{name} Latency: ([\d.e+-]+) s", text, re.MULTILINE)
        return round(float(m.group(1)) * 1000.0, 4) if m else None

    runs = re.search(r"^Total inference requests: (\d+)", text, re.MULTILINE)
    if runs is None:
        raise ValueError("no 'Total inference requests:' line")
    mean = re.search(r"^Average inference time cost(?: total)?: ([\d.e+-]+) ms", text, re.MULTILINE)
    peak = re.search(r"^Peak working set size: (\d+) bytes", text, re.MULTILINE)
    return BenchmarkResult(latency={**{f"p{q}_ms": seconds(f"P{q}") for q in (50, 90, 95, 99)},
                                    "mean_ms": float(mean.group(1)) if mean else None, "min_ms": seconds("Min")},
                           runs=int(runs.group(1)),
                           peak_memory_mb=round(int(peak.group(1)) / MB, 4) if peak else None,
                           memory_method="onnxruntime_perf_test's peak working set of the whole process",
                           missing="" if seconds("P50") is not None else "onnxruntime_perf_test printed no percentiles")


class AdbDevice(Device):
    """An attached Android phone: latency and memory from the runtime's own benchmark binary on it;
    accuracy measured on this host."""

    def __init__(self, name: str, tools: dict | None = None):
        self.name, self.tools = name, tools or {}
        self.serial = pick_device(name.partition(":")[2] or None)

    def measure(self, job: Job) -> Figures:
        s = job.settings
        job.progress(f"  {job.label}: latency on {self.name} ({s.warmup} warm-up + {s.runs} runs)")
        phone = describe(self.serial)
        bench = benchmark(self.serial, job.path, self.tools, threads=s.threads, warmup=s.warmup, runs=s.runs)
        tool = TOOL_FOR_SUFFIX[job.path.suffix]
        prov = Provenance(kind="measured", device=f"adb:{self.serial} ({phone['model']}, Android {phone['android']})",
                          runtime=tool, runtime_version="as built by the user", cpu=phone["abi"], threads=s.threads,
                          os=f"Android {phone['android']}",
                          method=f"{tool} on the phone: {bench.runs} timed runs after warm-up, batch 1")
        missing = "; ".join(filter(None, (bench.missing, other_count(tool, bench.runs, s.runs))))
        lat = Latency(**bench.latency, runs=bench.runs, warmup=s.warmup, batch=1, provenance=prov, missing=missing)
        measured = bench.peak_memory_mb is not None
        mem = Memory(bench.peak_memory_mb, Provenance(**{**prov.__dict__, "method": bench.memory_method})
                     if measured else None, None if measured else bench.memory_method)
        return Figures(lat, mem, f"on {self.name}")

