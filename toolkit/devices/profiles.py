"""Estimated device profiles: a latency from the artifact's graph and a device's core.

An estimated profile (one TOML per device in device_profiles/, every figure with its source) names
the device's core, its clock and the threads a run uses; the cost model (cost_model.py, fitted on
published runs of standard networks) turns the graph's work, op class by op class, into a latency
on that core. A Neural Engine precision is estimated against the profile's Neural Engine
throughput instead. The result is times the profile's `correction` (measured/estimated, set once a real measurement exists).
Such a figure is always `estimated`, with the profile's name and version, its validated error and
an interval from it; a budget with `require = "measured"` cannot pass on it. `correct` learns the
correction from a report measured on the real device and keeps it in the user's config folder,
never in the shipped profile. (The word "calibration" is kept for calibration data; a profile gets
a correction.)

What an estimate needs of a precision (bits of weights and activations, its arithmetic, the compute
unit) comes from the target's `Precision` declaration, never from the precision's name.
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from edge_distill.targets import Precision

from ..errors import BadInput, CannotMeasure
from ..places import config_home
from ..provenance import Provenance, host_cpu
from ..result import MB, Latency, Memory
from ..files import write_atomic
from ..tomlfile import check_keys, read_toml
from .base import Device, Figures, Job
from .cost_model import (GEMM_KERNELS, Core, Workload, core_of, families_said, family_said, load_coefficients,
                         network_family, neural_engine_seconds, seconds, unfitted_core_said)
from .graph_work import graph_work
from .host import host_speed

PROFILE_KEYS = {"name", "version", "description", "core", "clock_ghz", "threads", "correction",
                "neural_engine_fp16_tops", "neural_engine_int8_tops", "sources", "validation",
                "neural_engine_validation"}
VALIDATION_KEYS = {"against", "runs", "median_error", "within_1_5x", "ratio_low", "ratio_high", "interval_coverage",
                   "interval_claim"}
FP32 = Precision("fp32", 32, 32, "fp32")  # what an artifact of unknown precision is estimated as


@dataclass
class Profile:
    name: str
    version: str
    description: str
    figures: dict[str, float]
    sources: dict[str, str]
    path: str = ""
    correction_info: dict | None = None  # the stored measured/estimated ratio and where it came from
    validation: dict | None = None  # how far its estimates were from published runs (benchmarks/estimates.py)
    core_kind: str = ""
    neural_engine_validation: dict | None = None  # the same, for Core ML on the Neural Engine

    def on_neural_engine(self, precision: Precision) -> bool:
        return precision.compute_unit == "neural engine" and "neural_engine_fp16_tops" in self.figures

    def validation_for(self, precision: Precision | None) -> dict | None:
        return self.neural_engine_validation if precision and self.on_neural_engine(precision) else self.validation

    def validated_error(self, precision: Precision | None = None) -> str:
        return _said(self.validation_for(precision))

    def validated_errors(self) -> str:
        """Every validated error the profile has: its CPU's, and its Neural Engine's."""
        ne = self.neural_engine_validation
        families = f"; {families_said(load_coefficients())}" if self.validation else ""
        unfitted = unfitted_core_said(self.core_kind, load_coefficients())
        return (f"CPU {_said(self.validation)}{families}" + (f"; {unfitted}" if unfitted else "")
                + (f"; Neural Engine {_said(ne)}" if ne else ""))

    def interval(self, ms: float, precision: Precision | None = None) -> tuple[float, float] | None:
        """Where the true latency lies if this estimate errs as the cross-validated ones did (estimate /
        published within ratio_low..ratio_high for interval_claim of them, benchmarks/estimates.py's
        conformal interval; interval_coverage says how many sealed runs it held)."""
        v = self.validation_for(precision)
        return (round(ms / v["ratio_high"], 4), round(ms / v["ratio_low"], 4)) if v else None

    @property
    def core(self) -> Core:
        return core_of(self.core_kind, self.figures["clock_ghz"])


def builtin_profiles() -> dict[str, Path]:
    folder = files("edge_distill") / "device_profiles"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".toml")}


def load_profile(name: str) -> Profile:
    builtin = builtin_profiles()
    path = builtin.get(name)
    if path is None:
        raise BadInput(f"unknown device '{name}'; available: host, {', '.join(sorted(builtin))}",
                       hint="`edge-distill devices` lists them with what each can measure")
    data = read_toml(path)
    check_keys(data, PROFILE_KEYS, f"device {name}", path)
    missing = [k for k in ("clock_ghz", "threads") if not isinstance(data.get(k), (int, float)) or data[k] <= 0]
    if missing or not isinstance(data.get("core"), str):
        raise BadInput(f"device profile needs a core and positive {', '.join(missing or ['clock_ghz', 'threads'])}",
                       path=path)
    core_of(data["core"], data["clock_ghz"])  # an unknown core fails here, naming the known ones
    figures = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    validation, ne_validation = (_validation(data.get(k), k, name, path) for k in ("validation", "neural_engine_validation"))
    figures.setdefault("correction", 1.0)
    profile = Profile(name=data.get("name", name), version=str(data.get("version", "")),
                      description=data.get("description", ""), figures=figures, sources=data.get("sources", {}),
                      path=str(path), validation=validation, core_kind=data["core"],
                      neural_engine_validation=ne_validation)
    stored = correction_file(name)
    if stored.is_file():
        info = json.loads(stored.read_text())
        if info.get("profile_version") == profile.version:  # a correction of an older profile no longer applies
            profile.figures["correction"] = float(info["correction"])
            profile.correction_info = info
    return profile


def _said(v: dict | None) -> str:
    if not v:
        return "not validated: no published runs of its core in the corpus"
    return (f"validated: median error {v['median_error']:g}x, {v['within_1_5x']:.0%} within 1.5x, on "
            f"{v['runs']} published runs ({v['against']}); its {v['interval_claim']:.0%} interval held "
            f"{v['interval_coverage']:.0%} of them")


def _validation(table: dict | None, key: str, name: str, path: Path) -> dict | None:
    if table is not None:
        check_keys(table, VALIDATION_KEYS, f"device {name} [{key}]", path)
        if set(table) != VALIDATION_KEYS or not 0 < table["ratio_low"] <= table["ratio_high"] \
                or not 0 < table["interval_claim"] < 1:
            raise BadInput(f"[{key}] needs {', '.join(sorted(VALIDATION_KEYS))}, with 0 < ratio_low <= ratio_high "
                           "and 0 < interval_claim < 1", path=path)
    return table


def correction_file(name: str) -> Path:
    return config_home() / "corrections" / f"{name}.json"


def correct(name: str, report_path: Path) -> dict:
    """Store measured/estimated for a profile from a report whose latencies were measured on that
    kind of device (not on the host): the median ratio over its results."""
    profile = load_profile(name)
    profile.figures["correction"] = 1.0  # the ratio is against the bare estimate
    try:
        report = json.loads(report_path.read_text())
        results = report["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"not an edge-distill report ({exc})", path=report_path) from exc
    ratios, seen = [], set()
    for r in results:
        prov = (r.get("latency") or {}).get("provenance") or {}
        graph = _graph_of(report_path.parent, report, r)
        if prov.get("kind") != "measured" or prov.get("device") == "host" or not r["latency"].get("p50_ms") \
                or graph is None:
            continue
        estimated = estimate(graph, _precision_of(r["target"], r["precision"]), profile)["latency_ms"]
        ratios.append(r["latency"]["p50_ms"] / estimated)
        seen.add(prov["device"])
    if not ratios:
        raise BadInput("the report holds no latency measured on a device (host figures cannot correct a "
                       "device profile)", path=report_path,
                       hint="run `edge-distill check --device adb` with the phone attached first")
    info = {"profile": name, "profile_version": profile.version, "correction": round(statistics.median(ratios), 4),
           "ratios": [round(x, 4) for x in ratios], "measured_on": sorted(seen), "report": str(report_path.resolve()),
           "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    target = correction_file(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, json.dumps(info, indent=2) + "\n")
    return info


def _precision_of(target: str, name: str) -> Precision:
    from edge_distill.targets import get_target

    try:
        return get_target(target).capabilities.precision(name)
    except BadInput:  # a report of a target or precision this installation does not have
        return FP32


def _graph_of(folder: Path, report: dict, result: dict) -> Path | None:
    """The ONNX graph an estimate of this result counts: the artifact's own .onnx, or the export's."""
    artifact = Path(result["artifact"])
    for candidate in (artifact.with_suffix(".onnx"), folder / artifact.with_suffix(".onnx"),
                      folder / (report.get("export") or {}).get("path", "-")):
        if candidate.is_file():
            return candidate
    return None


def estimate(onnx_path: Path | None, precision: Precision, profile: Profile, kernels: str = GEMM_KERNELS) -> dict:
    """Batch-1 latency (ms) and peak memory (MB) of the graph on the profile's device, its runtime
    computing convolutions as `kernels` says (cost_model: "gemm" for XNNPACK, MLAS, Core ML's CPU)."""
    if onnx_path is None or not Path(onnx_path).is_file():
        raise CannotMeasure(f"cannot estimate for device '{profile.name}': no ONNX graph of the model to count "
                            "its work", hint="give the float model as ONNX: --float model.onnx")
    f = profile.figures
    load = Workload.of(graph_work(Path(onnx_path)))
    model = load_coefficients()
    if profile.on_neural_engine(precision):
        tops = f["neural_engine_int8_tops" if precision.activation_bits <= 8 else "neural_engine_fp16_tops"]
        time, unit = neural_engine_seconds(load, precision, tops, model), "Neural Engine"
    else:
        time = seconds(load, profile.core, precision, kernels, int(f["threads"]), model)
        unit = f"{profile.core.kind} at {profile.core.clock_ghz:g} GHz, {int(f['threads'])} thread(s)"
    weight_bytes, act_bytes = precision.weight_bits / 8, precision.activation_bits / 8
    return {"latency_ms": time * 1e3 * f["correction"], "ops": load.ops, "flops": load.total_flops,
            "network_family": network_family(load),
            "peak_memory_mb": (load.weights * weight_bytes + 2 * load.peak_activations * act_bytes) / MB,
            "compute_unit": unit}


class EstimatedDevice(Device):
    """A device profile: latency and memory estimated from the artifact's graph; accuracy measured
    here (the host's latency is kept beside the estimate, for reference)."""

    def __init__(self, name: str):
        self.name, self.profile = name, load_profile(name)  # a broken profile fails here, not mid-run

    def measure(self, job: Job) -> Figures:
        from edge_distill.targets import get_target

        host = host_speed(job) if job.numerics else None
        precision = job.precision or FP32
        kernels = get_target(job.target).capabilities.kernels
        est = estimate(job.graph, precision, self.profile, kernels)
        p = self.profile
        runtime = job.runner.describe()["runtime"]
        unfitted = unfitted_core_said(p.core_kind, load_coefficients())
        prov = Provenance(kind="estimated", device=f"{p.name}@{p.version}", runtime=f"graph estimate for {runtime}",
                          runtime_version=p.version, cpu=p.description, threads=int(p.figures["threads"]), os="",
                          method=(f"graph estimate: {est['ops']} ops, {est['flops'] / 1e6:.3g} MFLOP on the "
                                  f"{est['compute_unit']} ({kernels} kernels), by the cost model fitted on "
                                  f"{load_coefficients().fitted_on} (correction {p.figures['correction']:g}); "
                                  f"not run on {host_cpu()}; "
                                  f"{p.validated_error(precision)}"
                                  + ("" if p.on_neural_engine(precision) else
                                     f"; {family_said(est['network_family'], load_coefficients())}"
                                     + (f"; {unfitted}" if unfitted else ""))))
        ms = round(est["latency_ms"], 4)
        low, high = p.interval(ms, precision) or (None, None)
        figures = Figures(Latency(p50_ms=ms, p90_ms=ms, p95_ms=ms, p99_ms=ms, mean_ms=ms, min_ms=ms, runs=0,
                                  warmup=0, batch=1, provenance=prov, low_ms=low, high_ms=high),
                          Memory(round(est["peak_memory_mb"], 4), prov), f"on {self.name} (estimated)",
                          details=dict(host.details) if host else {})
        job.progress(f"  {job.label}: on {self.name}, estimated p50 {ms:.3g} ms")
        figures.warnings.append(f"latency and memory on {self.name} are estimated from the graph, not measured")
        if host and host.latency is not None:
            figures.details["host_latency"] = {"p50_ms": host.latency.p50_ms, "p95_ms": host.latency.p95_ms,
                                               "kind": "measured", "device": "host"}
        return figures
