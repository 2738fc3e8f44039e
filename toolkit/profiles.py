"""Estimated device profiles: a latency from the artifact's graph and a device's sustained figures.

An estimated profile (one TOML per device in
device_profiles/, every figure with its source) turns the artifact's graph into a latency: per-op
work (FLOPs, from the shapes) against the profile's sustained throughput for the precision, and
bytes moved against its memory bandwidth, whichever is slower, plus a per-op and a per-inference
overhead, times the profile's `correction` (measured/estimated, set once a real measurement exists).
Such a figure is always `estimated`, with the profile's name and version; a budget with
`require = "measured"` cannot pass on it. `calibrate` learns the correction from a report measured
on the real device and keeps it in the user's config folder, never in the shipped profile.
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .errors import BadInput, CannotMeasure
from .places import config_home
from .tomlfile import check_keys, read_toml

PROFILE_KEYS = {"name", "version", "description", "fp32_gflops", "fp16_gflops", "int8_gops",
                "memory_bandwidth_gbs", "op_overhead_us", "inference_overhead_us", "correction",
                "neural_engine_tops", "neural_engine_overhead_us", "sources"}
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int8-dynamic": 1.0, "w8a8": 1.0, "int4": 0.5,
                    "palettize4": 0.5}


@dataclass
class Profile:
    name: str
    version: str
    description: str
    figures: dict[str, float]
    sources: dict[str, str]
    path: str = ""
    calibration: dict | None = None  # the stored measured/estimated ratio and where it came from

    def throughput(self, precision: str, neural_engine: bool) -> float:
        """Operations per second for this precision."""
        f = self.figures
        if neural_engine and "neural_engine_tops" in f and precision != "fp32":
            return f["neural_engine_tops"] * 1e12
        if precision in ("int8", "int8-dynamic", "w8a8", "int4"):
            return f["int8_gops"] * 1e9
        if precision in ("fp16", "palettize4"):
            return f["fp16_gflops"] * 1e9
        return f["fp32_gflops"] * 1e9


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
    missing = [k for k in ("fp32_gflops", "fp16_gflops", "int8_gops", "memory_bandwidth_gbs", "op_overhead_us")
               if not isinstance(data.get(k), (int, float)) or data[k] <= 0]
    if missing:
        raise BadInput(f"device profile needs positive {', '.join(missing)}", path=path)
    figures = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    figures.setdefault("correction", 1.0)
    figures.setdefault("inference_overhead_us", 0.0)
    profile = Profile(name=data.get("name", name), version=str(data.get("version", "")),
                      description=data.get("description", ""), figures=figures, sources=data.get("sources", {}),
                      path=str(path))
    stored = calibration_file(name)
    if stored.is_file():
        cal = json.loads(stored.read_text())
        if cal.get("profile_version") == profile.version:  # a calibration of an older profile no longer applies
            profile.figures["correction"] = float(cal["correction"])
            profile.calibration = cal
    return profile


def calibration_file(name: str) -> Path:
    return config_home() / "calibrations" / f"{name}.json"


def calibrate(name: str, report_path: Path) -> dict:
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
        estimated = estimate(graph, r["precision"], profile, neural_engine=r["target"] == "coreml")["latency_ms"]
        ratios.append(r["latency"]["p50_ms"] / estimated)
        seen.add(prov["device"])
    if not ratios:
        raise BadInput("the report holds no latency measured on a device (host figures cannot calibrate a "
                       "device profile)", path=report_path,
                       hint="run `edge-distill check --device adb` with the phone attached first")
    cal = {"profile": name, "profile_version": profile.version, "correction": round(statistics.median(ratios), 4),
           "ratios": [round(x, 4) for x in ratios], "measured_on": sorted(seen), "report": str(report_path.resolve()),
           "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    target = calibration_file(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal, indent=2) + "\n")
    tmp.replace(target)
    return cal


def _graph_of(folder: Path, report: dict, result: dict) -> Path | None:
    """The ONNX graph an estimate of this result counts: the artifact's own .onnx, or the export's."""
    artifact = Path(result["artifact"])
    for candidate in (artifact.with_suffix(".onnx"), folder / artifact.with_suffix(".onnx"),
                      folder / (report.get("export") or {}).get("path", "-")):
        if candidate.is_file():
            return candidate
    return None


def graph_cost(onnx_path: Path) -> list[tuple[str, float, float, float]]:
    """(op type, FLOPs, weight elements, activation elements) per node of a batch-1 graph."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
                dim.dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    # A quantized graph's weights come through DequantizeLinear (QDQ): on the device that node is
    # folded into the Conv/MatMul that consumes it, so its output counts as that op's weight, and the
    # node itself as no work. Without this an int8 graph's convolutions cost nothing.
    folded = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    weights.update({n.output[0]: weights[n.input[0]] for n in model.graph.node if n.output[0] in folded})
    shapes.update({k: list(v) for k, v in weights.items()})
    cost = []
    for node in model.graph.node:
        if node.output[0] in folded:
            continue
        out = shapes.get(node.output[0], [])
        out_elems = float(np.prod(out)) if out and all(out) else 0.0
        weight_elems = float(sum(np.prod(weights[i]) for i in node.input if i in weights))
        act_elems = out_elems + float(sum(np.prod(shapes[i]) for i in node.input
                                          if i in shapes and i not in weights and all(shapes[i])))
        flops = out_elems
        if node.op_type == "Conv" and node.input[1] in weights:
            w = weights[node.input[1]]
            flops = 2.0 * out_elems * float(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul") and node.input[0] in shapes and shapes[node.input[0]]:
            flops = 2.0 * out_elems * float(shapes[node.input[0]][-1])
        elif node.op_type == "MatMulNBits":  # int4 weights packed in blocks: K x N of them, whatever the packing
            attrs = {a.name: a.i for a in node.attribute}
            flops, weight_elems = 2.0 * out_elems * attrs["K"], float(attrs["K"] * attrs["N"])
        cost.append((node.op_type, flops, weight_elems, act_elems))
    return cost


def estimate(onnx_path: Path, precision: str, profile: Profile, neural_engine: bool = False) -> dict:
    """Batch-1 latency (ms) and peak memory (MB) of the graph on the profile's device."""
    if onnx_path is None or not Path(onnx_path).is_file():
        raise CannotMeasure(f"cannot estimate for device '{profile.name}': no ONNX graph of the model to count "
                            "its work", hint="give the float model as ONNX: --float model.onnx")
    f = profile.figures
    throughput = profile.throughput(precision, neural_engine)
    weight_bytes = BYTES_PER_WEIGHT.get(precision, 4.0)
    act_bytes = 1.0 if precision in ("int8", "w8a8") else 2.0 if precision in ("fp16", "palettize4") else 4.0
    bandwidth = f["memory_bandwidth_gbs"] * 1e9
    seconds, peak_act = 0.0, 0.0
    cost = graph_cost(Path(onnx_path))
    for _, flops, weights, acts in cost:
        moved = weights * weight_bytes + acts * act_bytes
        seconds += max(flops / throughput, moved / bandwidth) + f["op_overhead_us"] * 1e-6
        peak_act = max(peak_act, acts * act_bytes)
    fixed = f.get("neural_engine_overhead_us", f["inference_overhead_us"]) if neural_engine else \
        f["inference_overhead_us"]
    ms = (seconds + fixed * 1e-6) * 1e3 * f["correction"]
    total_weights = sum(w for _, _, w, _ in cost) * weight_bytes
    return {"latency_ms": ms, "peak_memory_mb": (total_weights + 2 * peak_act) / 1e6, "ops": len(cost),
            "flops": sum(c[1] for c in cost), "compute_unit": "neural engine" if neural_engine else "cpu"}
