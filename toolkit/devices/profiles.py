"""Estimated device profiles: a latency from the artifact's graph and a device's sustained figures.

An estimated profile (one TOML per device in
device_profiles/, every figure with its source) turns the artifact's graph into a latency: per-op
work (FLOPs, from the shapes) against the profile's sustained throughput for the precision, and
bytes moved against its memory bandwidth, whichever is slower, plus a per-op and a per-inference
overhead, times the profile's `correction` (measured/estimated, set once a real measurement exists).
Such a figure is always `estimated`, with the profile's name and version; a budget with
`require = "measured"` cannot pass on it. `correct` learns the correction from a report measured
on the real device and keeps it in the user's config folder, never in the shipped profile. (The
word "calibration" is kept for calibration data; a profile gets a correction.)

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
from ..quiet import quiet
from ..result import MB, Latency, Memory
from ..files import working_in, write_atomic
from ..tomlfile import check_keys, read_toml
from .base import Device, Figures, Job
from .host import host_speed

PROFILE_KEYS = {"name", "version", "description", "fp32_gflops", "fp16_gflops", "int8_gops",
                "memory_bandwidth_gbs", "op_overhead_us", "inference_overhead_us", "correction",
                "neural_engine_tops", "neural_engine_overhead_us", "sources", "validation"}
VALIDATION_KEYS = {"against", "runs", "median_error", "within_1_5x", "ratio_low", "ratio_high"}
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

    def validated_error(self) -> str:
        v = self.validation
        if not v:
            return "not validated: no published runs of its core in the corpus"
        return (f"validated: median error {v['median_error']:g}x, {v['within_1_5x']:.0%} within 1.5x, on "
                f"{v['runs']} published runs ({v['against']})")

    def interval(self, ms: float) -> tuple[float, float] | None:
        """Where the true latency lies if this estimate errs as the validated ones did (estimate /
        published ranged over ratio_low..ratio_high)."""
        v = self.validation
        return (round(ms / v["ratio_high"], 4), round(ms / v["ratio_low"], 4)) if v else None

    def throughput(self, precision: Precision) -> float:
        """Operations per second for this precision."""
        f = self.figures
        if precision.compute_unit == "neural engine" and "neural_engine_tops" in f:
            return f["neural_engine_tops"] * 1e12
        return {"int8": f["int8_gops"] * 1e9, "fp16": f["fp16_gflops"] * 1e9}.get(precision.arithmetic,
                                                                                 f["fp32_gflops"] * 1e9)


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
    validation = data.get("validation")
    if validation is not None:
        check_keys(validation, VALIDATION_KEYS, f"device {name} [validation]", path)
        if set(validation) != VALIDATION_KEYS or not 0 < validation["ratio_low"] <= validation["ratio_high"]:
            raise BadInput(f"[validation] needs {', '.join(sorted(VALIDATION_KEYS))}, with 0 < ratio_low <= "
                           "ratio_high", path=path)
    figures.setdefault("correction", 1.0)
    figures.setdefault("inference_overhead_us", 0.0)
    profile = Profile(name=data.get("name", name), version=str(data.get("version", "")),
                      description=data.get("description", ""), figures=figures, sources=data.get("sources", {}),
                      path=str(path), validation=validation)
    stored = correction_file(name)
    if stored.is_file():
        info = json.loads(stored.read_text())
        if info.get("profile_version") == profile.version:  # a correction of an older profile no longer applies
            profile.figures["correction"] = float(info["correction"])
            profile.correction_info = info
    return profile


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


def graph_cost(onnx_path: Path) -> list[tuple[str, float, float, float]]:
    """(op type, FLOPs, weight elements, activation elements) per node of a batch-1 graph."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
                dim.dim_value = 1
    model = _with_shapes(model)
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
        kernel = node.input[_CONV_WEIGHT[node.op_type]] if node.op_type in _CONV_WEIGHT else None
        if kernel in weights:
            flops = 2.0 * out_elems * float(np.prod(weights[kernel][1:]))
        elif node.op_type in _MATMUL_LIKE and node.input[0] in shapes and shapes[node.input[0]]:
            flops = 2.0 * out_elems * float(shapes[node.input[0]][-1])
        elif node.op_type == "MatMulNBits":  # int4 weights packed in blocks: K x N of them, whatever the packing
            attrs = {a.name: a.i for a in node.attribute}
            flops, weight_elems = 2.0 * out_elems * attrs["K"], float(attrs["K"] * attrs["N"])
        cost.append((node.op_type, flops, weight_elems, act_elems))
    return cost


# Where the work is, in float and in quantized graphs (QDQ keeps Conv/MatMul; QOperator, dynamic
# quantization and ORT's fused contrib ops rename them): the weight input of each convolution, and
# the matrix products whose first input's last axis is the reduction.
_CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_LIKE = {"Gemm", "MatMul", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                "DynamicQuantizeMatMul"}


def _with_shapes(model):
    """Every tensor's shape. onnxruntime's symbolic inference knows most contrib ops (QGemm,
    MatMulNBits, ...); where it gives up (QOperator graphs), ONNX's inference is taught the contrib
    ops it stops at, one at a time."""
    import onnx
    from onnx import shape_inference

    import tempfile

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        # Where it gives up it saves the model to the current folder: let that be a scratch one.
        with quiet("", streams=True), tempfile.TemporaryDirectory(prefix="edge-distill-shapes-") as scratch, \
                working_in(Path(scratch)):
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # "Incomplete symbolic shape inference", or no onnxruntime
        pass
    for _ in range(len(model.graph.node) + 1):
        model = shape_inference.infer_shapes(model)
        known = {v.name: v.type.tensor_type for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]
                 if v.type.tensor_type.shape.dim and all(d.dim_value for d in v.type.tensor_type.shape.dim)}
        node = next((n for n in model.graph.node if n.op_type in _CONTRIB_SHAPES and n.output[0] not in known
                     and n.input[0] in known), None)
        if node is None:
            return model
        source = known[node.input[0]]
        weights = {i.name: list(i.dims) for i in model.graph.initializer}
        shape = _CONTRIB_SHAPES[node.op_type]([d.dim_value for d in source.shape.dim], node, weights)
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], source.elem_type, shape))
    return model


def _pooled(shape: list, node, weights: dict) -> list:
    channels_last = any(a.name == "channels_last" and a.i for a in node.attribute)
    return [shape[0], *([1] * (len(shape) - 2)), shape[-1]] if channels_last else [*shape[:2], *([1] * (len(shape) - 2))]


def _qgemm(shape: list, node, weights: dict) -> list:
    b = weights.get(node.input[3], [0, 0])
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return [shape[0], b[0] if trans_b else b[1]]


# Output shapes of ORT's QOperator contrib ops, from their first input's (and QGemm's weight).
_CONTRIB_SHAPES = {**{op: (lambda shape, node, weights: shape) for op in ("QLinearAdd", "QLinearMul", "QLinearSigmoid",
                                                                           "QLinearLeakyRelu", "QLinearSoftmax")},
                   "QLinearGlobalAveragePool": _pooled, "QGemm": _qgemm}


def estimate(onnx_path: Path, precision: Precision, profile: Profile) -> dict:
    """Batch-1 latency (ms) and peak memory (MB) of the graph on the profile's device."""
    if onnx_path is None or not Path(onnx_path).is_file():
        raise CannotMeasure(f"cannot estimate for device '{profile.name}': no ONNX graph of the model to count "
                            "its work", hint="give the float model as ONNX: --float model.onnx")
    f = profile.figures
    throughput = profile.throughput(precision)
    weight_bytes, act_bytes = precision.weight_bits / 8, precision.activation_bits / 8
    bandwidth = f["memory_bandwidth_gbs"] * 1e9
    seconds, peak_act = 0.0, 0.0
    cost = graph_cost(Path(onnx_path))
    for _, flops, weights, acts in cost:
        moved = weights * weight_bytes + acts * act_bytes
        seconds += max(flops / throughput, moved / bandwidth) + f["op_overhead_us"] * 1e-6
        peak_act = max(peak_act, acts * act_bytes)
    neural_engine = precision.compute_unit == "neural engine"
    fixed = f.get("neural_engine_overhead_us", f["inference_overhead_us"]) if neural_engine else \
        f["inference_overhead_us"]
    ms = (seconds + fixed * 1e-6) * 1e3 * f["correction"]
    total_weights = sum(w for _, _, w, _ in cost) * weight_bytes
    return {"latency_ms": ms, "peak_memory_mb": (total_weights + 2 * peak_act) / MB, "ops": len(cost),
            "flops": sum(c[1] for c in cost), "compute_unit": precision.compute_unit}


class EstimatedDevice(Device):
    """A device profile: latency and memory estimated from the artifact's graph; accuracy measured
    here (the host's latency is kept beside the estimate, for reference)."""

    def __init__(self, name: str):
        self.name, self.profile = name, load_profile(name)  # a broken profile fails here, not mid-run

    def measure(self, job: Job) -> Figures:
        host = host_speed(job) if job.numerics else None
        precision = job.precision or FP32
        est = estimate(job.graph, precision, self.profile)
        p = self.profile
        runtime = job.runner.describe()["runtime"]
        prov = Provenance(kind="estimated", device=f"{p.name}@{p.version}", runtime=f"graph estimate for {runtime}",
                          runtime_version=p.version, cpu=p.description, threads=1, os="",
                          method=(f"graph estimate: {est['ops']} ops, {est['flops'] / 1e6:.3g} MFLOP on the "
                                  f"{est['compute_unit']}, against the profile's sustained throughput and memory "
                                  f"bandwidth (correction {p.figures['correction']:g}); not run on {host_cpu()}; "
                                  f"{p.validated_error()}"))
        ms = round(est["latency_ms"], 4)
        low, high = p.interval(ms) or (None, None)
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
