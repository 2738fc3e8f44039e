"""One artifact, measured and judged, in stages:

    outputs (this host) -> device figures (latency, memory, a device's own numerics)
    -> metrics (overall and per slice) -> TargetResult -> checks (budgets.evaluate)

`check`, `verify`, the ladder and `bench` all come through here; a device is asked once, and the
figures it returns already say how they were obtained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_distill.calibration import Dataset, check_labels, on_each_chunk
from edge_distill.targets import Artifact, artifact_size, get_target

from . import budgets, metrics
from .budgets import Budget
from .devices import Figures, Job, RunSettings
from .errors import BadInput, CannotMeasure
from .files import sha256_path
from .progress import loop
from .result import Check, Latency, TargetResult, result_label
from .streaming import ModelIO, SampleMajorRunner


@dataclass
class References:
    """What an artifact's outputs are compared with: the float student's and the teacher's outputs on
    the same samples, and the float artifact's latency on the same device (for the speedup)."""

    float_outputs: np.ndarray | None = None
    teacher_outputs: np.ndarray | None = None
    float_latency: Latency | None = None
    float_size: int | None = None  # bytes of the target's fp32 artifact: a quantized one must be smaller
    # every output, the first included: what it is (its kind) and the float student's values of it
    outputs: list[OutputRef] = field(default_factory=list)
    why_no_task: str = ""  # why the task metric does not read the first output ("" where it does)


@dataclass
class OutputRef:
    name: str
    spec: dict  # {"kind", the kind's settings, "index": its position, "inferred": not declared}
    float_values: np.ndarray | None = None

    def picked(self, samples: np.ndarray) -> OutputRef:
        return OutputRef(self.name, self.spec, None if self.float_values is None else self.float_values[samples])


@dataclass
class Candidate:
    """An artifact to evaluate, and whose it is."""

    target: str
    precision: str
    path: Path
    built: Artifact | None = None  # as the target built it (details, files); None for `verify`
    subject: str = "student"  # "student", "teacher" or "off-the-shelf"
    qualified: bool = False  # name the subject even for the student (the ladder mixes subjects)
    graph: Path | None = None  # the ONNX graph a device estimate counts

    @property
    def label(self) -> str:
        return result_label(self.subject, self.target, self.precision, self.qualified)

    def precision_data(self):
        """The target's declaration of this precision; None for one it does not know ("unknown")."""
        try:
            return get_target(self.target).capabilities.precision(self.precision)
        except BadInput:
            return None


def evaluate_artifact(candidate: Candidate, data: Dataset, settings: RunSettings, refs: References,
                      budget: Budget, *, task: str = "classification", progress=lambda message: None,
                      io: ModelIO = ModelIO(())) -> TargetResult:
    """Measure one artifact (numerics, latency, memory, each where the device says) and check it
    against its budget. `io`: the model's layout and state; a streaming model runs over its sequences,
    and its latency is one chunk's."""
    target = get_target(candidate.target)
    runner = target.open_runner(candidate.path, settings.threads, settings.options)
    runner = runner if io.plain else SampleMajorRunner(runner, io)
    how = runner.describe()
    progress(f"  {candidate.label}: accuracy on {len(data)} samples ({how['runtime']})")
    every_output: Sequence[np.ndarray | None]
    try:
        with loop(progress, f"{candidate.label}: evaluating", len(data), "samples") as advance, on_each_chunk(advance):
            every_output = io.run(lambda feeds: host_outputs(runner, Dataset(data.source, feeds)), data)
            why_no_outputs = None
    except CannotMeasure as exc:  # this artifact's accuracy stays unmeasured; its other figures go on
        every_output, why_no_outputs = [None], str(exc)
    outputs = every_output[0]  # the task metric's; the others are compared output by output below
    # `verify`'s first sight of the classes, before any timing (a model trained apart may count its own)
    if task == "classification" and outputs is not None and outputs.ndim >= 2 and candidate.subject != "off-the-shelf":
        check_labels(data, outputs.shape[1])
    precision = candidate.precision_data()
    figures = settings.device.measure(Job(
        target=candidate.target, path=candidate.path, runner=runner, data=io.chunks(data), settings=settings,
        label=candidate.label, precision=precision, graph=candidate.graph, host_outputs=outputs, progress=progress))
    if why_no_outputs:
        figures.why_no_numerics = figures.why_no_numerics or why_no_outputs
        figures.evaluation = {"kind": how.get("kind", "measured"), "runtime": how["runtime"],
                              "runtime_version": how["runtime_version"], "device": "host", "error": why_no_outputs}
        figures.warnings.append(f"{candidate.label}: {why_no_outputs}")
    result = assemble(candidate, how, outputs, figures, data, refs, task, bool(precision and precision.is_float_baseline))
    result.warnings += _speed_warnings(result, figures, runner, settings.device.name)
    result.outputs = output_figures(refs.outputs, every_output, how.get("kind", "measured"),
                                    sequences=len(data) if io.state else None)
    if precision is not None and precision.weight_bits <= 8:
        result.coverage = _coverage(target, candidate.path)
        result.warnings += quantization_warnings(result, refs)
    _, notes = budgets.applicable(result, budget, precision)
    result.warnings += notes
    result.checks = budgets.evaluate(result, budget, precision)
    if settings.app_runtime and outputs is not None:  # nothing to compare when this host could not run it
        tolerance = 1e-3 if precision and precision.weight_bits == 32 else 0.05  # as the bundle's goldens
        result.checks.append(_loads_in_app_runtime(result, candidate.path, runner, data, outputs, settings.app_runtime,
                                                   tolerance, progress))
    if hasattr(runner, "placement"):  # Core ML on macOS: which compute unit runs each op
        result.details["compute_plan"] = runner.placement()
    # Core ML: the verdict travels inside the package, so hash after it. Only into an artifact this run
    # built in its output folder: `verify`'s is the user's own file, never written into.
    if candidate.built is not None and hasattr(target, "record"):
        target.record(candidate.path, {"passed": result.passed, "evaluation": result.evaluation,
                                       "checks": [{"name": c.name, "limit": c.limit, "value": c.value,
                                                   "passed": c.passed} for c in result.checks]})
    result.sha256 = sha256_path(candidate.path)
    return result


def output_figures(refs: list[OutputRef], every_output: list, provenance: str, sequences: int | None = None) -> dict:
    """Each output judged by its kind against the float student's same output (computed on this host).
    A streaming model's (`sequences` of as many chunks each) is judged over every chunk, and again over
    each sequence's last chunk: where a state's drift has had the longest to grow."""
    from .kinds import get_kind

    found = {}
    for ref in refs:
        index = ref.spec["index"]
        values = every_output[index] if index < len(every_output) and every_output[0] is not None else None
        figures = {"kind": ref.spec["kind"], "inferred": bool(ref.spec.get("inferred")), "provenance": provenance,
                   "shape": None if values is None else list(values.shape[1:])}
        if values is not None and ref.float_values is not None:
            kind = get_kind(ref.spec["kind"])
            figures.update(kind.figures(values, ref.float_values, ref.spec))
            if sequences:
                last = np.arange(len(values) // sequences - 1, len(values), len(values) // sequences)
                figures["last_chunk"] = kind.figures(values[last], ref.float_values[last], ref.spec)
        found[ref.name] = figures
    return found


def _coverage(target, path: Path) -> dict | None:
    """What share of the artifact is really quantized, as its target reads it from the file."""
    if not hasattr(target, "coverage"):
        return None
    found = target.coverage(path)
    return found.to_dict() if found is not None else None


def quantization_warnings(result: TargetResult, refs: References) -> list[str]:
    """A quantized artifact that quantized little, or saved nothing, is reported, never hidden."""
    warnings, cov = [], result.coverage or {}
    weights, macs = cov.get("quantized_weight_fraction"), cov.get("quantized_mac_fraction")
    left = "; left in float: " + ", ".join(cov["float_ops"][:3]) if cov.get("float_ops") else ""
    if weights is not None and weights < 0.5:
        warnings.append(f"{result.name} stores only {weights:.0%} of its weights in int8/int4 "
                        f"({cov['quantized_weights']:,} of {cov['quantized_weights'] + cov['float_weights']:,}){left}")
    elif macs is not None and macs < 0.5:
        warnings.append(f"{result.name} quantized {weights:.0%} of its weights but only {macs:.0%} of its "
                        f"multiply-accumulates: most of the compute still runs in float{left}")
    if refs.float_size is not None and result.size_bytes >= refs.float_size:
        warnings.append(f"{result.name} is no smaller than its fp32: {result.size_bytes:,} bytes against "
                        f"{refs.float_size:,}")
    return warnings


APP_RUNTIME_SAMPLES = 16  # a few samples: enough to show the artifact loads there and agrees


def _loads_in_app_runtime(result: TargetResult, path: Path, runner, data: Dataset, outputs: np.ndarray, runtime,
                          tolerance: float, progress) -> Check:
    """A check that the artifact loads, and gives this host's outputs, in the runtime version an app
    ships ([[targets]] runtime_version): found at export time rather than as a crash in the app."""
    from .runtimes import prove

    package, version = runtime
    progress(f"  {result.name}: loading it in {package} {version} (the app's runtime)")
    feeds = {n: data.inputs[n][:APP_RUNTIME_SAMPLES] for n in runner.input_names}
    proof = prove(runner, path, package, version, feeds, outputs[:APP_RUNTIME_SAMPLES], tolerance, progress)
    result.details["app_runtime"] = {"package": package, "version": version, "loads": proof.loaded,
                                     "max_abs_diff": proof.max_abs_diff, "error": proof.error}
    return Check(name=f"{result.name}/loads_in_app_runtime", metric="loads_in_app_runtime", comparison="==",
                 limit=1.0, value=1.0 if proof.ok else 0.0, unit="", passed=proof.ok, provenance="measured",
                 message="" if proof.ok else f"in {proof.runtime}: {proof.error.splitlines()[0][:300]}")


def host_outputs(runner, data: Dataset, batch_size: int = 256) -> list[np.ndarray]:
    """Every output of the artifact on every sample, run on this host."""
    parts = [runner.run({n: b[n] for n in runner.input_names}) for b in data.batches(batch_size)]
    return [np.concatenate(p) for p in zip(*parts)]


def score(outputs: np.ndarray | None, data: Dataset, refs: References, task: str, subject: str):
    """Task metrics overall and per slice; empty (samples only) when there are no outputs to score."""
    if outputs is None:
        return (metrics.Metrics(samples=len(data)),
                {s: metrics.Metrics(samples=int(m.sum())) for s, m in data.slices.items()})
    kw: dict[str, Any] = dict(labels=data.labels, weights=data.weights, float_outputs=refs.float_outputs,
              teacher_outputs=refs.teacher_outputs, axis=refs.outputs[0].spec.get("axis", -1) if refs.outputs else -1,
              same_space_as_teacher=subject != "off-the-shelf")  # a model trained apart: retrieval only
    task_score = metrics.TASK_METRICS[task]
    return task_score(outputs, **kw), {s: task_score(outputs, mask=m, **kw) for s, m in data.slices.items()}


def assemble(candidate: Candidate, how: dict, outputs: np.ndarray | None, figures: Figures, data: Dataset,
             refs: References, task: str, baseline: bool) -> TargetResult:
    """The result record: the device's figures, the metrics of whichever outputs count, the speedup."""
    built = candidate.built
    details = {**(built.details if built else {}), **figures.details}
    evaluation = figures.evaluation or {"kind": how.get("kind", "measured"), "runtime": how["runtime"],
                                        "runtime_version": how["runtime_version"], "device": "host"}
    not_task = refs.why_no_task
    if figures.why_no_numerics or not_task:
        counted = None
    else:
        counted = figures.outputs if figures.outputs is not None else outputs
    overall, slices = score(counted, data, refs, task, candidate.subject)
    if not_task:
        details["task_metric"] = not_task  # what budgets say for a task figure that is not there
    lat, float_lat = figures.latency, refs.float_latency
    speedup = None
    if float_lat and lat and not baseline and float_lat.p50_ms and lat.p50_ms:
        speedup = round(float_lat.p50_ms / lat.p50_ms, 3)
    return TargetResult(subject=candidate.subject, qualified=candidate.qualified, target=candidate.target,
                        precision=candidate.precision, artifact=str(candidate.path),
                        files=[str(f) for f in (built.files if built else [candidate.path])],
                        size_bytes=artifact_size(candidate.path), sha256="", latency=lat, memory=figures.memory,
                        speedup_vs_float=speedup, metrics=overall, slices=slices, details=details,
                        evaluation=evaluation,
                        warnings=list(details.get("notes", [])) + figures.warnings)


def _speed_warnings(result: TargetResult, figures: Figures, runner, device: str) -> list[str]:
    """What the report must say about speed: why there is none, what a device did not give, and a
    quantized artifact slower than its fp32 (reported, never hidden)."""
    warnings = []
    if result.latency is None:
        if runner.why_no_latency:
            warnings.append(f"{result.target}: {runner.why_no_latency}")
    elif result.latency.missing:
        warnings.append(f"{result.name} on {device}: {result.latency.missing}")
    if result.speedup_vs_float is not None and result.speedup_vs_float < 1.0:
        warnings.append(f"{result.name} is slower than fp32 {figures.where} (speedup {result.speedup_vs_float:.2f}x)")
    return warnings
