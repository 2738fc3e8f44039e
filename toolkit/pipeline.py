"""The stages behind the commands. Each stage hands the next an inspectable object:
Config -> SourceModel -> ExportInfo (verified .onnx) -> Artifact -> TargetResult -> Report."""

from __future__ import annotations

import datetime as _dt
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_distill import __version__
from edge_distill.calibration import Dataset, load_dataset, select_samples
from edge_distill.targets import Artifact, BuildRequest, artifact_size, check_options, check_precision, get_target

from . import measure, metrics
from .budgets import Budget, Check, evaluate
from .config import Config
from .devices import EMULATED_ARM64, Device
from .errors import BadInput, CannotMeasure, MissingDependency
from .exporting import export_to_onnx
from .models import SourceModel, load_model, sha256_path
from .provenance import host_environment
from .report import Report, TargetResult, result_label


class Progress:
    """Progress lines on stderr, so stdout stays clean for the table."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.start = enabled, time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _model_info(model: SourceModel) -> dict:
    return {"reference": model.reference, "kind": model.kind, "fingerprint": model.fingerprint,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs]}


def _data_info(data: Dataset | None) -> dict | None:
    if data is None:
        return None
    return {"source": data.source, "samples": len(data), "labels": data.labels is not None,
            "weights": data.weights is not None, "slices": {k: int(v.sum()) for k, v in data.slices.items()}}


def reference_metrics(data: Dataset, student_out: np.ndarray, teacher_out: np.ndarray | None,
                      task: str = "classification") -> dict:
    refs = {}
    score = metrics.TASK_METRICS[task]
    for name, out in (("float student", student_out), ("teacher", teacher_out)):
        if out is None:
            continue
        kw = dict(labels=data.labels, weights=data.weights, teacher_outputs=teacher_out)
        refs[name] = {"overall": score(out, **kw),
                      "slices": {s: score(out, mask=m, **kw) for s, m in data.slices.items()}}
    return refs


def _estimated_on(device: str, graph: Path | None, precision: str, target: str, how: dict):
    from .profiles import estimate, load_profile
    from .provenance import Provenance, host_cpu

    profile = load_profile(device)
    est = estimate(graph, precision, profile, neural_engine=target == "coreml")
    prov = Provenance(kind="estimated", device=f"{profile.name}@{profile.version}",
                      runtime=f"graph estimate for {how['runtime']}", runtime_version=profile.version,
                      cpu=profile.description, threads=1, os="",
                      method=(f"graph estimate: {est['ops']} ops, {est['flops'] / 1e6:.3g} MFLOP on the "
                              f"{est['compute_unit']}, against the profile's sustained throughput and memory "
                              f"bandwidth (correction {profile.figures['correction']:g}); not run on {host_cpu()}"))
    ms = round(est["latency_ms"], 4)
    lat = measure.Latency(p50_ms=ms, p90_ms=ms, p95_ms=ms, p99_ms=ms, mean_ms=ms, min_ms=ms, runs=0, warmup=0,
                          batch=1, provenance=prov)
    return lat, measure.Memory(round(est["peak_memory_mb"], 4), prov)


def _measured_on_phone(dev: Device, path: Path, how: dict, threads: int, warmup: int, runs: int):
    from . import android
    from .provenance import Provenance

    phone = android.describe(dev.serial)
    bench = android.benchmark(dev.serial, path, dev.tools, threads=threads, warmup=warmup, runs=runs)
    tool = android.TOOL_FOR_SUFFIX[path.suffix]
    prov = Provenance(kind="measured", device=f"adb:{dev.serial} ({phone['model']}, Android {phone['android']})",
                      runtime=tool, runtime_version="as built by the user", cpu=phone["abi"], threads=threads,
                      os=f"Android {phone['android']}",
                      method=f"{tool} on the phone: {bench.runs} timed runs after warm-up, batch 1")
    lat = measure.Latency(**bench.latency, runs=bench.runs, warmup=warmup, batch=1, provenance=prov,
                          missing="; ".join(filter(None, (bench.missing, _other_count(tool, bench.runs, runs)))))
    mem = measure.Memory(bench.peak_memory_mb, Provenance(**{**prov.__dict__, "method": bench.memory_method})
                         if bench.peak_memory_mb is not None else None,
                         None if bench.peak_memory_mb is not None else bench.memory_method)
    return lat, mem


def _other_count(tool: str, reported: int, asked: int) -> str:
    """Said when a device's benchmark ran another number of timed runs than asked: the figures are
    from what it ran, and the report must not pass them off as the requested count."""
    return "" if reported == asked else f"{tool} reported {reported} timed runs where {asked} were asked for"


def _measured_on_iphone(dev: Device, path: Path, runner, warmup: int, runs: int):
    from . import apple
    from .provenance import Provenance

    phone = next(p for p in apple.attached_iphones() if p.udid == dev.serial)
    inputs = [{"name": s.name, "shape": [1 if isinstance(d, str) else int(d) for d in s.shape],
               "dtype": "int32" if s.dtype.startswith("int") else "float32"} for s in runner.input_specs()]
    values = apple.measure(phone, Path(path), inputs, apple.app_folder(dev.tools.get("ios_app")), warmup=warmup,
                           runs=runs)
    prov = Provenance(kind="measured", device=f"iphone:{phone.udid} ({phone.name}, iOS {phone.os})",
                      runtime="Core ML", runtime_version=f"iOS {phone.os}", cpu=phone.name, threads=0,
                      os=f"iOS {phone.os}", method=f"XCTest clock metric in ios-demo's testCandidateLatency: "
                                                 f"{len(values)} predictions, one per iteration, after {warmup} warm-up")
    lat = measure.Latency(**apple.percentiles(values), runs=len(values), warmup=warmup, batch=1, provenance=prov,
                          missing=_other_count("the XCTest run", len(values), runs))
    return lat, measure.Memory(None, None, "the XCTest clock metric times predictions; memory on the iPhone is "
                                           "not measured")


def evaluate_artifact(target_name: str, precision: str, path: Path, *, data: Dataset, float_out, teacher_out,
                      budget: Budget, threads: int, warmup: int, runs: int, float_latency=None,
                      artifact: Artifact | None = None, progress=Progress(False),
                      subject: str = "student", qualified: bool = False, device: Device | None = None,
                      graph: Path | None = None, task: str = "classification",
                      sequence_lengths: list[int] | None = None) -> TargetResult:
    """Measure one artifact (numerics, latency, memory, each where the device says) and check it
    against its budget."""
    dev = device or Device("host")
    target = get_target(target_name)
    runner = target.open_runner(path, threads)
    label = result_label(subject, target_name, precision, qualified)
    how = runner.describe()
    progress(f"  {label}: accuracy on {len(data)} samples ({how['runtime']})")
    out = measure.outputs(runner, data)
    evaluation = {"kind": how.get("kind", "measured"), "runtime": how["runtime"],
                  "runtime_version": how["runtime_version"], "device": "host"}
    details = dict(artifact.details) if artifact else {}
    warnings, why_no_numerics = list(details.get("notes", [])), None
    if dev.numerics == EMULATED_ARM64:
        from .emulation import emulated_outputs

        progress(f"  {label}: accuracy on {len(data)} samples on aarch64 kernels under qemu")
        try:
            arm_out, evaluation = emulated_outputs(target_name, runner, path, data, threads)
        except CannotMeasure as exc:  # this artifact's figures stay unmeasured; the others go on
            why_no_numerics = str(exc)
            evaluation = {"kind": "emulated", "runtime": how["runtime"], "runtime_version": "",
                          "device": "emulated-arm64", "error": why_no_numerics}
            warnings.append(f"{label}: {why_no_numerics}")
        else:
            details["arm64_vs_host"] = metrics.parity(arm_out, out)
            out = arm_out
            if evaluation.get("note"):
                warnings.append(f"{label} on emulated-arm64: {evaluation['note']}")
    kw = dict(labels=data.labels, weights=data.weights, float_outputs=float_out, teacher_outputs=teacher_out,
              same_space_as_teacher=subject != "off-the-shelf")  # a model trained apart: retrieval only
    if why_no_numerics:
        overall = metrics.Metrics(samples=len(data))
        slices = {s: metrics.Metrics(samples=int(m.sum())) for s, m in data.slices.items()}
    else:
        score = metrics.TASK_METRICS[task]
        overall = score(out, **kw)
        slices = {s: score(out, mask=m, **kw) for s, m in data.slices.items()}
    lat = host_lat = None
    mem = measure.Memory(None, None, getattr(runner, "why_no_latency", None))
    if dev.latency == "adb":
        progress(f"  {label}: latency on {dev.name} ({warmup} warm-up + {runs} runs)")
        lat, mem = _measured_on_phone(dev, path, how, threads, warmup, runs)
    elif dev.latency == "iphone":
        progress(f"  {label}: latency on {dev.name} (xcodebuild test, {warmup} warm-up + {runs} runs)")
        lat, mem = _measured_on_iphone(dev, path, runner, warmup, runs)
    elif getattr(runner, "measures_latency", True) and sequence_lengths:
        lat, by_length, length = _latency_by_length(runner, data, sequence_lengths, budget.sequence_length, warmup,
                                                    runs, label, progress)
        host_lat = lat
        details["latency_by_length"] = by_length
        if lat is None:
            mem = measure.Memory(None, None, by_length[str(length)]["why"])
        elif dev.latency == "host":
            progress(f"  {label}: peak memory in a fresh process")
            mem = measure.peak_memory(target_name, path, data, runner.input_names, threads, how)
    elif getattr(runner, "measures_latency", True):
        progress(f"  {label}: latency ({warmup} warm-up + {runs} runs, {threads} thread(s))")
        lat = host_lat = measure.latency(runner, data, warmup=warmup, runs=runs)
        if dev.latency == "host":
            progress(f"  {label}: peak memory in a fresh process")
            mem = measure.peak_memory(target_name, path, data, runner.input_names, threads, how)
    if dev.latency == "estimated":
        lat, mem = _estimated_on(dev.name, graph, precision, target_name, how)
        progress(f"  {label}: on {dev.name}, estimated p50 {lat.p50_ms:.3g} ms")
        warnings.append(f"latency and memory on {dev.name} are estimated from the graph, not measured")
        if host_lat is not None:
            details["host_latency"] = {"p50_ms": host_lat.p50_ms, "p95_ms": host_lat.p95_ms, "kind": "measured",
                                       "device": "host"}
    speedup = None
    if float_latency and lat and precision != "fp32" and float_latency.p50_ms and lat.p50_ms:
        speedup = round(float_latency.p50_ms / lat.p50_ms, 3)
    result = TargetResult(subject=subject, qualified=qualified, target=target_name, precision=precision,
                          artifact=str(path),
                          files=[str(f) for f in (artifact.files if artifact else [path])],
                          size_bytes=artifact_size(path), sha256="", latency=lat, memory=mem,
                          speedup_vs_float=speedup,
                          metrics=overall, slices=slices, details=details, evaluation=evaluation, warnings=warnings)
    if hasattr(runner, "placement"):  # Core ML on macOS: which compute unit runs each op
        result.details["compute_plan"] = runner.placement()
    if lat is None:
        if getattr(runner, "why_no_latency", None):
            result.warnings.append(f"{target_name}: {runner.why_no_latency}")
    elif lat.missing:
        result.warnings.append(f"{label} on {dev.name}: {lat.missing}")
    if speedup is not None and speedup < 1.0:
        where = {"host": "on this host", "adb": f"on {dev.name}", "iphone": f"on {dev.name}"}.get(
            dev.latency, f"on {dev.name} (estimated)")
        result.warnings.append(f"{result.name} is slower than fp32 {where} (speedup {speedup:.2f}x)")
    slice_figures = {s: m.figures() for s, m in slices.items()}
    if why_no_numerics:
        for figures in slice_figures.values():
            figures.update({f"{k}.why": why_no_numerics for k, v in list(figures.items()) if v is None})
    why_no_latency = mem.why_not if lat is None and sequence_lengths else getattr(runner, "why_no_latency", None)
    layer = budget.for_precision(precision)
    if subject == "off-the-shelf" and task == "embedding" and layer.sets("min_teacher_cosine"):
        layer = layer.without("min_teacher_cosine")  # its own embedding space: judged by retrieval agreement
        result.warnings.append(f"{result.name}: min_teacher_cosine does not apply to an off-the-shelf model (its "
                               "embedding space is its own); it is judged by retrieval agreement")
    result.checks = evaluate(layer, _figures(
        result, why_no_latency=why_no_latency, why_no_numerics=why_no_numerics),
        slice_figures, _provenance(result), result.name)
    if hasattr(target, "record"):  # Core ML: the verdict travels inside the package, so hash after it
        target.record(path, {"passed": result.passed, "evaluation": result.evaluation,
                             "checks": [{"name": c.name, "limit": c.limit, "value": c.value, "passed": c.passed}
                                        for c in result.checks]})
    result.sha256 = sha256_path(path)
    return result


def _latency_by_length(runner, data: Dataset, lengths: list[int], budget_length: int | None, warmup: int,
                       runs: int, label: str, progress):
    """Latency at each token count; the result's own latency is the one at the budget's length
    (the longest configured when the budget names none). An artifact built for one fixed length
    (LiteRT, Core ML) is timed at that length only."""
    fixed = [s.shape[1] for s in runner.input_specs() if len(s.shape) > 1 and isinstance(s.shape[1], int)]
    by_length, chosen = {}, budget_length or max(lengths)
    for length in sorted(set(lengths) | {chosen}):
        if fixed and fixed[0] != length:
            by_length[str(length)] = {"why": f"this artifact takes exactly {fixed[0]} tokens (a fixed shape), "
                                             f"not {length}"}
            continue
        progress(f"  {label}: latency at {length} tokens ({warmup} warm-up + {runs} runs)")
        lat = measure.latency(runner, measure.at_length(data, length), warmup=warmup, runs=runs)
        by_length[str(length)] = {"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms,
                                  "latency": lat}
    lat = by_length[str(chosen)].get("latency")
    for entry in by_length.values():
        entry.pop("latency", None)
    return lat, by_length, chosen


def _figures(r: TargetResult, why_no_latency: str | None = None, why_no_numerics: str | None = None) -> dict:
    figures = r.metrics.figures()
    figures["size_mb"] = round(r.size_bytes / 1e6, 6)
    figures["peak_memory_mb"] = r.memory.peak_mb
    if r.memory.peak_mb is None:
        figures["peak_memory_mb.why"] = f"cannot measure peak memory: {r.memory.why_not}"
    for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms"):
        figures[f"latency.{k}"] = getattr(r.latency, k) if r.latency else None
        if r.latency is None:
            figures[f"latency.{k}.why"] = why_no_latency or "latency was not measured"
        elif figures[f"latency.{k}"] is None:
            figures[f"latency.{k}.why"] = r.latency.missing or "latency was not measured"
    figures["speedup_vs_float"] = 1.0 if r.precision == "fp32" else r.speedup_vs_float
    if figures["speedup_vs_float"] is None:
        figures["speedup_vs_float.why"] = why_no_latency or "no fp32 artifact of this target was measured to compare with"
    for key in ("accuracy", "weighted_accuracy", "accuracy_drop"):
        if figures.get(key) is None:
            figures[f"{key}.why"] = "the evaluation data carry no labels" if key != "weighted_accuracy" \
                else "the evaluation data carry no labels or no weights"
    if figures.get("teacher_agreement") is None:
        figures["teacher_agreement.why"] = "no teacher was given"
    if figures.get("float_agreement") is None:
        figures["float_agreement.why"] = "no float student was given"
    if why_no_numerics:
        figures.update({f"{k}.why": why_no_numerics for k in r.metrics.figures()})
    return figures


def _provenance(r: TargetResult) -> dict:
    kind = r.evaluation.get("kind", "measured")
    prov = {k: kind for k in ("accuracy", "weighted_accuracy", "accuracy_drop", "float_agreement",
                              "teacher_agreement")}
    if r.latency:
        prov.update({f"latency.{k}": r.latency.provenance.kind for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")})
        prov["speedup_vs_float"] = r.latency.provenance.kind
    if r.memory.provenance:
        prov["peak_memory_mb"] = r.memory.provenance.kind
    return prov


def plan_targets(cfg: Config, names: list[str] | None = None) -> list[tuple]:
    """(target config, precisions) for each target, validated, fp32 first where a speedup needs it."""
    if not cfg.targets:
        raise BadInput("no [[targets]] configured", path=cfg.path)
    plan = []
    for tc in cfg.targets:
        if names and tc.name not in names:
            continue
        target = get_target(tc.name)
        missing = target.capabilities.missing_packages()
        if missing:
            raise MissingDependency(missing[0], target.capabilities.extra, f"target '{tc.name}'")
        precisions = list(dict.fromkeys(tc.precisions))
        check_options(target.capabilities, tc.options)
        for p in precisions:
            check_precision(target.capabilities, p, tc.calibration_method)
        if "fp32" in precisions:  # measured first: the baseline for every speedup
            precisions.remove("fp32")
            precisions.insert(0, "fp32")
        elif "fp32" in target.capabilities.precisions and any(
                "min_speedup_vs_float" in cfg.budget.for_precision(p).limits for p in precisions):
            precisions.insert(0, "fp32")
        device_for(cfg, tc)  # an unknown or absent device fails now, before any work
        plan.append((tc, precisions))
    if names and not plan:
        raise BadInput(f"no [[targets]] entry named {names[0]!r}; configured: "
                       f"{', '.join(tc.name for tc in cfg.targets)}", path=cfg.path)
    return plan


def device_for(cfg: Config, tc) -> Device:
    from .devices import resolve

    name = tc.device or cfg.device
    if name not in cfg.devices:
        cfg.devices[name] = resolve(name, cfg.device_tools)
    return cfg.devices[name]


@dataclass
class Loaded:
    """The models and data every stage of a run shares."""

    student: SourceModel
    teacher: SourceModel | None
    evaluation: Dataset
    calibration: Dataset | None

    def load_extra(self, cfg: Config, reference: str, weights: str | None = None) -> SourceModel:
        return load_model(cfg.resolve(reference), cfg.resolve(weights), self.student.inputs,
                          trust_pickle=cfg.model.trust_pickle, search_path=cfg.root)


def load_inputs(cfg: Config, progress: Progress) -> Loaded:
    if cfg.evaluation is None:
        raise BadInput("[data] evaluation is required: budgets are checked on it", path=cfg.path)
    m = cfg.model
    progress(f"loading the student {cfg.resolve(m.student) if '{' in m.student else m.student}")
    student = load_model(cfg.resolve(m.student), cfg.resolve(m.weights), m.inputs, trust_pickle=m.trust_pickle,
                         search_path=cfg.root)
    teacher = None
    if m.teacher:
        progress(f"loading the teacher {cfg.resolve(m.teacher) if '{' in m.teacher else m.teacher}")
        teacher = load_model(cfg.resolve(m.teacher), cfg.resolve(m.teacher_weights), m.inputs,
                             trust_pickle=m.trust_pickle, search_path=cfg.root)
    evaluation = load_dataset(cfg.evaluation, student.inputs)
    calibration = None
    if cfg.calibration is not None:
        calibration = select_samples(load_dataset(cfg.calibration, student.inputs), cfg.calibration_samples, cfg.seed)
    return Loaded(student, teacher, evaluation, calibration)


def export_verified(cfg: Config, model: SourceModel, data: Dataset, out: Path, folder: str, progress):
    progress(f"exporting {model.reference} to ONNX and checking it against the source model")
    (out / folder).mkdir(parents=True)
    export = export_to_onnx(model, out / folder / "model.onnx", opset=cfg.opset, samples=data,
                            tolerance=cfg.tolerance)
    export.path = f"{folder}/model.onnx"  # reports name files relative to the output folder
    progress(f"  export parity: max |difference| {export.parity_max_abs_diff:.2e} on {export.parity_samples} "
             f"samples (tolerance {export.parity_tolerance:g})")
    return export


def build_and_measure(cfg: Config, tc, precision: str, model: SourceModel, onnx_path: Path, out: Path,
                      folder: str, work: Path, loaded: Loaded, float_out, teacher_out, float_latency,
                      progress, subject: str = "student", qualified: bool = False) -> TargetResult:
    """Build one artifact of `model` for one target and precision, then measure it on this host."""
    label = result_label(subject, tc.name, precision, qualified)
    progress(f"building {label}")
    start = time.perf_counter()
    scratch = work / label.replace("/", "-")
    scratch.mkdir()
    (out / folder).mkdir(parents=True, exist_ok=True)
    artifact = get_target(tc.name).build(BuildRequest(
        onnx_path=onnx_path, source=model, precision=precision, calibration=loaded.calibration,
        calibration_method=tc.calibration_method, options=tc.options, out_dir=out / folder, work_dir=scratch,
        metadata=artifact_metadata(cfg)))
    seconds = round(time.perf_counter() - start, 3)
    result = evaluate_artifact(tc.name, precision, artifact.path, data=loaded.evaluation, float_out=float_out,
                               teacher_out=teacher_out, budget=cfg.budget, threads=cfg.threads, warmup=cfg.warmup,
                               runs=cfg.runs, float_latency=float_latency, artifact=artifact, progress=progress,
                               subject=subject, qualified=qualified, device=device_for(cfg, tc),
                               graph=_graph_for(artifact.path, str(onnx_path) if onnx_path else None),
                               task=cfg.model.task, sequence_lengths=cfg.sequence_lengths)
    result.build_seconds = seconds
    result.artifact = str(artifact.path.relative_to(out))
    result.files = [str(f.relative_to(out)) for f in artifact.files]
    return result


def artifact_metadata(cfg: Config) -> dict:
    """What travels inside an artifact that can carry it (Core ML) and into the app bundles."""
    m = cfg.model
    return {k: v for k, v in (("task", m.task), ("labels", m.labels), ("normalization", m.normalization),
                              ("teacher_sha256", m.distilled_from)) if v}


def run_check(cfg: Config, out: Path, progress: Progress) -> Report:
    """Export, quantize and verify every configured target and precision; artifacts go to `out`."""
    plan = plan_targets(cfg)
    loaded = load_inputs(cfg, progress)
    student, teacher = loaded.student, loaded.teacher
    export = export_verified(cfg, student, loaded.evaluation, out, "onnx", progress)
    float_out = student.predict(loaded.evaluation)
    teacher_out = teacher.predict(loaded.evaluation) if teacher else None
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-distill-work-") as work:
        for tc, precisions in plan:
            float_latency = None
            for precision in precisions:
                result = build_and_measure(cfg, tc, precision, student, out / "onnx" / "model.onnx", out, tc.name,
                                           Path(work), loaded, float_out, teacher_out, float_latency, progress)
                if precision == "fp32":
                    float_latency = result.latency
                results.append(result)
    return build_report("check", cfg, loaded, export, float_out, teacher_out, results)


def build_report(command: str, cfg: Config, loaded: Loaded, export, float_out, teacher_out, results, **extra) -> Report:
    warnings, gate = stale_teacher(cfg, loaded.teacher)
    return Report(command=command, tool_version=__version__, created=_now(), config=str(cfg.path),
                  student=_model_info(loaded.student),
                  teacher=_model_info(loaded.teacher) if loaded.teacher else None,
                  data={"evaluation": _data_info(loaded.evaluation), "calibration": _data_info(loaded.calibration),
                        "calibration_samples": cfg.calibration_samples, "seed": cfg.seed},
                  environment=host_environment(), export=export,
                  references=reference_metrics(loaded.evaluation, float_out, teacher_out, cfg.model.task),
                  results=results, task=cfg.model.task,
                  warnings=warnings, gate_checks=gate, **extra)


def stale_teacher(cfg: Config, teacher: SourceModel | None) -> tuple[list[str], list[Check]]:
    """A warning when the teacher changed since the student was distilled from it; with
    stale_teacher = "fail", also a broken check."""
    expected = cfg.model.distilled_from
    if not (expected and teacher) or expected == teacher.fingerprint:
        return [], []
    message = (f"stale student: it was distilled from teacher sha256 {expected[:12]}, but the teacher is now "
               f"{teacher.fingerprint[:12]}; re-distill, or record the new teacher with `edge-distill fingerprint`")
    if cfg.model.stale_teacher != "fail":
        return [message], []
    return [message], [Check(name="student/teacher_fingerprint", metric="teacher_fingerprint", comparison="==",
                             limit=0.0, value=None, unit="", passed=False, message=message)]


def run_export(reference: str, target_string: str, out: Path, *, precision: str | None = None,
               weights: str | None = None, cfg: Config | None = None, data_path: Path | None = None,
               calibration_path: Path | None = None, calibration_method: str = "minmax", options: dict | None = None,
               trust_pickle: bool = False, progress: Progress = Progress(False)) -> dict:
    """`edge-distill export`: the verified ONNX export, and the target's artifact when one is asked for."""
    from edge_distill.targets import parse_target_string

    target_name, from_string = ("onnx", None) if target_string == "onnx" else parse_target_string(target_string)
    if from_string and precision and from_string != precision:
        raise BadInput(f"--target {target_string} and --quant {precision} disagree")
    precision = from_string or precision or "fp32"
    if target_name == "onnx" and precision != "fp32":
        raise BadInput("--target onnx writes the fp32 export; quantize with --target ort")
    inputs = cfg.model.inputs if cfg else []
    progress(f"loading {reference}")
    model = load_model(reference, weights, inputs, trust_pickle=trust_pickle,
                       search_path=cfg.root if cfg else Path.cwd())
    samples_path = data_path or calibration_path
    if samples_path is None:
        raise BadInput("export checks ONNX Runtime against the source model on real samples: "
                       "pass --data (or --calibration)")
    samples = load_dataset(samples_path, model.inputs)
    progress("exporting to ONNX and checking it against the source model")
    export = export_to_onnx(model, out / "model.onnx", opset=cfg.opset if cfg else 18, samples=samples,
                            tolerance=cfg.tolerance if cfg else 1e-4)
    summary = {"source": _model_info(model), "export": export.__dict__, "artifact": None}
    if target_name == "onnx":
        return summary
    target = get_target(target_name)
    check_precision(target.capabilities, precision, calibration_method)
    check_options(target.capabilities, options or {})
    calib = None
    if calibration_path is not None:
        calib = select_samples(load_dataset(calibration_path, model.inputs),
                               cfg.calibration_samples if cfg else 256, cfg.seed if cfg else 0)
    (out / target_name).mkdir()
    progress(f"building {target_name}-{precision}")
    with tempfile.TemporaryDirectory(prefix="edge-distill-work-") as work:
        artifact = target.build(BuildRequest(onnx_path=out / "model.onnx", source=model, precision=precision,
                                             calibration=calib, calibration_method=calibration_method,
                                             options=options or {}, out_dir=out / target_name, work_dir=Path(work)))
    summary["artifact"] = {"target": artifact.target, "precision": artifact.precision, "path": str(artifact.path),
                           "size_bytes": artifact.size_bytes, "files": [str(f) for f in artifact.files],
                           "details": artifact.details}
    return summary


def run_verify(artifact: Path, data_path: Path, *, budget: Budget, float_model: str | None = None,
               teacher_model: str | None = None, threads: int = 1, warmup: int = 20, runs: int = 200,
               precision: str | None = None, progress: Progress = Progress(False), device: str = "host",
               device_tools: dict | None = None) -> Report:
    """`edge-distill verify`: measure one artifact against a budget, on this host or a device profile."""
    from edge_distill.targets import target_for_file

    from .devices import resolve

    if not artifact.exists():
        raise BadInput("artifact not found", path=artifact)
    dev = resolve(device, device_tools)
    target_name = target_for_file(artifact)
    if precision is None:  # model.int8.ort -> int8
        tag = artifact.name.split(".")[-2] if artifact.name.count(".") >= 2 else ""
        precision = tag if tag in get_target(target_name).capabilities.precisions else "unknown"
    specs = get_target(target_name).open_runner(artifact, threads).input_specs()
    data = load_dataset(data_path, specs)
    float_out = teacher_out = float_latency = None
    student_info = teacher_info = None
    if float_model:
        progress(f"running the float model {float_model}")
        ref = load_model(float_model, inputs=specs)
        float_out = ref.predict(data)
        student_info = _model_info(ref)
        if ref.onnx_path is not None and target_name == "ort" and dev.latency == "host":  # same device only
            runner = get_target("ort").open_runner(ref.onnx_path, threads)
            float_latency = measure.latency(runner, data, warmup=warmup, runs=runs)
    if teacher_model:
        progress(f"running the teacher {teacher_model}")
        teacher = load_model(teacher_model, inputs=specs)
        teacher_out = teacher.predict(data)
        teacher_info = _model_info(teacher)
    result = evaluate_artifact(target_name, precision, artifact, data=data, float_out=float_out,
                               teacher_out=teacher_out, budget=budget, threads=threads, warmup=warmup, runs=runs,
                               float_latency=float_latency, progress=progress, device=dev,
                               graph=_graph_for(artifact, float_model))
    refs = reference_metrics(data, float_out, teacher_out)
    student_info = student_info or {"reference": str(artifact), "kind": "artifact", "fingerprint": result.sha256}
    return Report(command="verify", tool_version=__version__, created=_now(), config=None, student=student_info,
                  teacher=teacher_info, data={"evaluation": _data_info(data)}, environment=host_environment(),
                  export=None, references=refs, results=[result])


def _graph_for(artifact: Path, float_model: str | None) -> Path | None:
    """The ONNX graph whose work a device estimate counts: the artifact's own, or the float model's.
    `check`, `verify` and `bench` all ask here, so one artifact gets one estimate."""
    for candidate in (artifact if artifact.suffix == ".onnx" else artifact.with_suffix(".onnx"),
                      Path(float_model) if float_model and float_model.endswith(".onnx") else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def run_bench(artifact: Path, *, device: str = "host", data_path: Path | None = None, threads: int = 1,
              warmup: int = 20, runs: int = 200, device_tools: dict | None = None, float_model: str | None = None,
              progress: Progress = Progress(False)) -> tuple[measure.Latency | None, measure.Memory, str]:
    """`edge-distill bench`: latency and memory of one artifact on a device; no accuracy, no budget.
    Inputs are --data samples, or zeros of the model's input shapes (batch 1)."""
    from edge_distill.targets import target_for_file

    from .devices import resolve

    if not artifact.exists():
        raise BadInput("artifact not found", path=artifact)
    dev = resolve(device, device_tools)
    if dev.numerics == EMULATED_ARM64:
        raise CannotMeasure("device 'emulated-arm64' checks numerics, not speed: the emulator's timing is not a "
                            "device figure", hint="`check` or `verify --device emulated-arm64` for its accuracy")
    target_name = target_for_file(artifact)
    runner = get_target(target_name).open_runner(artifact, threads)
    how = runner.describe()
    if dev.latency == "adb":
        progress(f"running {artifact.name} on {dev.name}")
        lat, mem = _measured_on_phone(dev, artifact, how, threads, warmup, runs)
        return lat, mem, target_name
    if dev.latency == "iphone":
        progress(f"running {artifact.name} on {dev.name} (xcodebuild test)")
        lat, mem = _measured_on_iphone(dev, artifact, runner, warmup, runs)
        return lat, mem, target_name
    if dev.latency == "estimated":
        tag = artifact.name.split(".")[-2] if artifact.name.count(".") >= 2 else "fp32"
        lat, mem = _estimated_on(dev.name, _graph_for(artifact, float_model), tag, target_name, how)
        return lat, mem, target_name
    specs = runner.input_specs()
    if data_path is not None:
        data = load_dataset(data_path, specs)
    else:
        shape = lambda s: [d if isinstance(d, int) else 1 for d in s.shape]  # noqa: E731
        data = Dataset(source="zeros", inputs={s.name: np.zeros([32, *shape(s)[1:]], s.dtype) for s in specs})
    if not getattr(runner, "measures_latency", True):
        raise CannotMeasure(f"{target_name}: {runner.why_no_latency}")
    progress(f"timing {artifact.name}: {warmup} warm-up + {runs} runs, {threads} thread(s)")
    lat = measure.latency(runner, data, warmup=warmup, runs=runs)
    mem = measure.peak_memory(target_name, artifact, data, runner.input_names, threads, how)
    return lat, mem, target_name
