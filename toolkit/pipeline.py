"""The commands behind the CLI, top down. Each stage hands the next an inspectable object:

    Config -> Loaded (models, data) -> ExportInfo (verified .onnx) -> Artifact (built by a target)
    -> TargetResult (evaluate.py: outputs, device figures, metrics, checks) -> Report

`run_check`, `run_verify`, `run_bench` and the ladder share that path; none of them tests a target's
or a device's name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from edge_distill.calibration import Dataset, check_labels, load_dataset, on_each_chunk, select_samples, zeros
from edge_distill.targets import BuildRequest, check_precision, get_target, parse_target_string, target_for_file

from . import kinds, metrics
from .auto_precision import Where, build_auto, check_auto
from .budgets import Budget, unanswerable
from .cache import artifact_key, cached_artifact, cached_export, cached_outputs
from .config import Config, TargetConfig
from .devices import Device, Job, RunSettings, resolve
from .errors import BadInput, CannotMeasure, MissingDependency
from .evaluate import Candidate, OutputRef, References, evaluate_artifact
from .exporting import export_to_onnx
from .html_report import warm_up
from .files import package_files, sha256_path
from .precision import auto_of, base_of, is_auto
from .models import SourceModel, load_model
from .progress import Progress, loop
from .recipes import build_best_recipe
from .streaming import ModelIO, model_io
from .provenance import host_environment
from .result import Check, Latency, Memory, Report, TargetResult, result_label
from .shards import Shard, share, stamp
from .version import __version__

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def student_reference(cfg: Config) -> str:
    """How a report names the config's student (what the results store finds its runs by)."""
    return cfg.resolve(cfg.model.student)


def _model_info(model: SourceModel) -> dict:
    return {"reference": model.reference, "kind": model.kind, "fingerprint": model.fingerprint,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs]}


def _data_info(data: Dataset | None) -> dict | None:
    if data is None:
        return None
    # the file's hash: `bundle` later reads its golden samples from it, and must know it is the same file
    digest = sha256_path(Path(data.source)) if data.source != "zeros" else None
    return {"source": data.source, "sha256": digest, "samples": len(data), "labels": data.labels is not None,
            "weights": data.weights is not None, "slices": {k: int(v.sum()) for k, v in data.slices.items()}}


def reference_metrics(data: Dataset, student_out: np.ndarray | None, teacher_out: np.ndarray | None,
                      task: str = "classification") -> dict:
    refs = {}
    score = metrics.TASK_METRICS[task]
    for name, out in (("float student", student_out), ("teacher", teacher_out)):
        if out is None:
            continue
        kw: dict[str, Any] = dict(labels=data.labels, weights=data.weights, teacher_outputs=teacher_out)
        refs[name] = {"overall": score(out, **kw),
                      "slices": {s: score(out, mask=m, **kw) for s, m in data.slices.items()}}
    return refs


@dataclass
class PlannedTarget:
    """One [[targets]] entry, checked: the precisions to build (the float baseline first) and the
    device its figures come from."""

    config: TargetConfig
    precisions: list[str]
    device: Device

    def settings(self, cfg: Config) -> RunSettings:
        caps = get_target(self.config.name).capabilities
        # plan_targets refused a runtime_version for a target without an app runtime package
        runtime = ((caps.app_runtime_package, self.config.runtime_version)
                   if self.config.runtime_version and caps.app_runtime_package else None)
        return RunSettings(device=self.device, threads=cfg.threads, warmup=cfg.warmup, runs=cfg.runs,
                           sequence_lengths=tuple(cfg.sequence_lengths), sequence_length=cfg.budget.sequence_length,
                           options=caps.options_with_defaults(self.config.options), app_runtime=runtime)


def plan_targets(cfg: Config, names: list[str] | None = None, device: str | None = None) -> list[PlannedTarget]:
    """Every configured target (or those named), validated before any work: the target is installed,
    its precisions and options exist, its device answers. `device` overrides every configured one."""
    if not cfg.targets:
        raise BadInput("no [[targets]] configured", path=cfg.path)
    plan, devices = [], {}
    for tc in cfg.targets:
        if names and tc.name not in names:
            continue
        caps = _checked_capabilities(cfg, tc)
        precisions = list(dict.fromkeys(tc.precisions))
        baseline = caps.float_baseline()
        if baseline in precisions:  # measured first: the baseline for every speedup
            precisions.remove(baseline)
            precisions.insert(0, baseline)
        elif baseline and any("min_speedup_vs_float" in cfg.budget.for_precision(p).limits for p in precisions):
            precisions.insert(0, baseline)
        name = device or tc.device or cfg.device
        if name not in devices:  # an unknown or absent device fails now, before any work
            devices[name] = resolve(name, cfg.device_tools)
        plan.append(PlannedTarget(tc, precisions, devices[name]))
    if names and not plan:
        raise BadInput(f"no [[targets]] entry named {names[0]!r}; configured: "
                       f"{', '.join(tc.name for tc in cfg.targets)}", path=cfg.path)
    return plan


def _checked_capabilities(cfg: Config, tc: TargetConfig):
    """The target's capabilities, once its package, precisions and options are known to be good; a
    bad name is the config's fault, and the message names the file."""
    try:
        caps = get_target(tc.name).capabilities
        if not tc.precisions:  # none listed: the target's float baseline, else its first (Core ML's fp16)
            tc.precisions = [caps.float_baseline() or caps.precision_names[0]]
        caps.options_with_defaults(tc.options_for(tc.recipe_precision))
        for p in tc.precisions:
            check_auto(tc.name, p, tc.options)
            check_precision(caps, base_of(p), tc.calibration_method)
            if is_auto(p) and searched_recipe(tc, p):  # refused now: the build would refuse it after the work
                raise BadInput(f"[[targets]] {tc.name}: {p} searches which layers to leave in float with one recipe; "
                               f"{searched_recipe(tc, p)} = \"auto\" searches recipes, and the two do not nest",
                               hint=f"list {base_of(p)} with the \"auto\" option to choose the recipe (the report's "
                                    f"int8_recipes.rebuild names it), then name that recipe for {p}")
        if tc.runtime_version and not caps.app_runtime_package:
            raise BadInput(f"target '{tc.name}' runs on the phone's own runtime (the OS's): runtime_version does "
                           "not apply to it")
    except BadInput as exc:
        exc.path = exc.path or str(cfg.path)
        raise
    missing = caps.missing_packages()
    if missing:
        raise MissingDependency(missing[0], caps.extra, f"target '{tc.name}'")
    return caps


@dataclass
class Loaded:
    """The models and data every stage of a run shares."""

    student: SourceModel
    teacher: SourceModel | None
    evaluation: Dataset
    calibration: Dataset | None
    io: ModelIO = ModelIO(())  # the model's layout and state (streaming.py); batch first and stateless by default
    references_reused: str | None = None  # set by reference_outputs: "reused from cache <key>"

    def outputs_of(self, model: SourceModel) -> list[np.ndarray]:
        """Every output of `model` on the evaluation data (a streaming model: over its sequences)."""
        return self.io.run(lambda feeds: model.predict_all(Dataset(self.evaluation.source, feeds)), self.evaluation)

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
    if isinstance(progress, Progress):  # a stage's remembered duration is this student's
        progress.context = student.fingerprint[:16]
    # An ONNX model names its outputs itself: a kind declared for one of them leaves the others (a state) in
    # place. A torch model's names are the config's, in output order.
    names = student.output_names if set(m.outputs) <= set(student.output_names) else list(m.outputs)
    io = model_io(student.inputs, names, m.batch_axes, m.state, cfg.path)
    for model in (student, teacher):
        if model is not None:
            model.inputs, model.output_axes = list(io.specs), io.output_axes()
    evaluation = load_dataset(cfg.evaluation, io.data_specs())
    io.check(evaluation, cfg.evaluation)
    calibration = None
    if cfg.calibration is not None:
        calibration = select_samples(load_dataset(cfg.calibration, io.data_specs()), cfg.calibration_samples, cfg.seed)
    return Loaded(student, teacher, evaluation, calibration, io)


def export_verified(cfg: Config, model: SourceModel, data: Dataset, out: Path, folder: str, progress):
    progress(f"exporting {model.reference} to ONNX and checking it against the source model")
    (out / folder).mkdir(parents=True)
    export = cached_export(model, data, out / folder / "model.onnx", partial(
        export_to_onnx, model, out / folder / "model.onnx", opset=cfg.opset, samples=data, tolerance=cfg.tolerance),
        opset=cfg.opset, tolerance=cfg.tolerance)
    export.path = f"{folder}/model.onnx"  # reports name files relative to the output folder
    if export.reused:
        progress(f"  {export.reused}")
    progress(f"  export parity: max |difference| {export.parity_max_abs_diff:.2e} on {export.parity_samples} "
             f"samples (tolerance {export.parity_tolerance:g})")
    return export


@dataclass
class Run:
    """What every build and measurement of one run shares: the config, the models and data, the output
    folder being written, the scratch folder inside it, and the progress."""

    cfg: Config
    loaded: Loaded
    out: Path
    work: Path
    progress: Any = Progress(False)


@dataclass(frozen=True)
class Subject:
    """The model artifacts are built from, its verified ONNX export, the folder (under the output folder)
    its artifacts go to, and how its rows are named (`qualified`: "student/ort-int8", as the ladder's)."""

    model: SourceModel
    onnx_path: Path
    folder: str
    name: str = "student"
    qualified: bool = False


def build_and_measure(run: Run, planned: PlannedTarget, precision: str, subject: Subject,
                      refs: References) -> TargetResult:
    """Build one artifact of the subject for one target and precision, then evaluate it on the target's device."""
    return measure_built(run, planned, precision, build_one(run, planned, precision, subject), subject, refs)


def build_one(run: Run, planned: PlannedTarget, precision: str, subject: Subject) -> tuple:
    """One artifact of the subject for one target and precision, the seconds its build took (a cache
    copy's, when reused) and the reuse note ("reused from cache <key>") or None."""
    tc, loaded, out = planned.config, run.loaded, run.out
    label = result_label(subject.name, tc.name, precision, subject.qualified)
    run.progress(f"building {label}")
    start = time.perf_counter()
    scratch = run.work / label.replace("/", "-")
    scratch.mkdir()
    (out / subject.folder).mkdir(parents=True, exist_ok=True)
    target = get_target(tc.name)
    capabilities = target.capabilities
    if not loaded.io.plain and capabilities.precision(precision).calibrated:
        weight_only = [p for p in tc.precisions if p in capabilities.precision_names
                       and not capabilities.precision(p).calibrated]
        weight_only += [p for p in ("int8-dynamic",) if p not in weight_only and p in capabilities.precision_names]
        raise BadInput(f"{precision} is calibrated, and calibration feeds samples batch first: a model whose inputs "
                       "take their batch elsewhere or carry a state gets weight-only precisions (int8-dynamic, int4)",
                       hint=f'[[targets]] name = "{tc.name}": precisions = {json.dumps(weight_only)}')
    calibration = loaded.io.chunks(loaded.calibration) if loaded.calibration is not None else None
    request = BuildRequest(
        onnx_path=subject.onnx_path, source=subject.model, precision=precision, calibration=calibration,
        calibration_method=tc.calibration_method, options=tc.options_for(precision), out_dir=out / subject.folder,
        work_dir=scratch, metadata=artifact_metadata(run.cfg), tolerance=run.cfg.tolerance)
    selection = {"samples": run.cfg.calibration_samples, "seed": run.cfg.seed}  # how calibration was chosen
    key = artifact_key(tc.name, request, selection, implementation=type(target).__module__)
    artifact, reused = cached_artifact(key, request.out_dir, partial(target.build, request))
    if reused:
        run.progress(f"  {reused}")
    return artifact, round(time.perf_counter() - start, 3), reused


def measure_built(run: Run, planned: PlannedTarget, precision: str, built: tuple, subject: Subject,
                  refs: References) -> TargetResult:
    """A built artifact (build_one's) evaluated on the target's device."""
    artifact, seconds, reused = built
    onnx_path = subject.onnx_path
    candidate = Candidate(planned.config.name, precision, artifact.path, built=artifact, subject=subject.name,
                          qualified=subject.qualified,
                          graph=graph_for(artifact.path, str(onnx_path) if onnx_path else None))
    result = evaluate_artifact(candidate, run.loaded.evaluation, planned.settings(run.cfg), refs, run.cfg.budget,
                               task=run.cfg.model.task, progress=run.progress, io=run.loaded.io)
    result.build_seconds, result.reused = seconds, reused
    result.artifact = str(artifact.path.relative_to(run.out))
    result.files = [str(f.relative_to(run.out)) for f in artifact.files]
    return result


Built = TypeVar("Built")


def attempted(measure: Callable[[], Built], out: Path, folder: str, subject: str, target: str,
              precision: str, qualified: bool = False) -> Built | TargetResult:
    """One artifact built and measured; a refusal (exit 2) or a failure (exit 3) becomes that artifact's
    own row, with its reason, and the run goes on with the others. What the failed build left in the
    output folder is removed (a half-written file must not look like an artifact)."""
    before = set((out / folder).rglob("*")) if (out / folder).is_dir() else set()
    try:
        return measure()
    except (BadInput, CannotMeasure) as exc:
        for leftover in sorted(set((out / folder).rglob("*")) - before, reverse=True):
            shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
        return failed_result(exc, out, subject, target, precision, qualified)


def failed_result(exc: BadInput | CannotMeasure, out: Path, subject: str, target: str, precision: str,
                  qualified: bool) -> TargetResult:
    """The row of an artifact that could not be built or measured. Paths are named relative to the output
    folder: the folder being written is renamed when the run ends."""
    reason = str(exc).replace(f"{out}{os.sep}", "").replace(str(out), "the output folder")
    label = result_label(subject, target, precision, qualified)
    refused = exc.exit_code == 2
    check = Check(f"{label}/built", "built", "==", 1.0, None, "", None,
                  message=("refused: " if refused else "could not be built or measured: ") + reason)
    return TargetResult(subject, target, precision, "", [], 0, "", None, Memory(None, None, reason), None,
                        metrics.Metrics(samples=0), {}, checks=[check], qualified=qualified,
                        failure={"exit_code": exc.exit_code, "reason": reason})


def trial_builder(run: Run, subject: Subject, refs: References) -> Callable:
    """build_and_measure for one trial of a mixed-precision search (auto_precision.build_auto calls it
    with the trial's target entry, the base precision and where the trial's files go)."""
    def build(planned: PlannedTarget, precision: str, out: Path, folder: str, work: Path,
              samples: np.ndarray | None = None) -> TargetResult:
        """`samples`: evaluate on these samples only (a search's stratified subset), references alike."""
        loaded, references = run.loaded, refs
        if samples is not None:
            loaded = dataclasses.replace(loaded, evaluation=loaded.evaluation.subset(samples))
            references = dataclasses.replace(refs, float_outputs=_pick(refs.float_outputs, samples),
                                             teacher_outputs=_pick(refs.teacher_outputs, samples),
                                             outputs=[o.picked(samples) for o in refs.outputs])
        trial = dataclasses.replace(run, loaded=loaded, out=out, work=work)
        return build_and_measure(trial, planned, precision, dataclasses.replace(subject, folder=folder), references)
    return build


def _pick(outputs, samples: np.ndarray):
    return None if outputs is None else outputs[samples]


def artifact_metadata(cfg: Config) -> dict:
    """What travels inside an artifact that can carry it (Core ML) and into the app bundles."""
    m = cfg.model
    return {k: v for k, v in (("task", m.task), ("labels", m.labels), ("normalization", m.normalization),
                              ("teacher_sha256", m.distilled_from)) if v}


def reference_outputs(loaded: Loaded, progress, task: str) -> tuple[list, np.ndarray | None]:
    """The float student's outputs (every output) and the teacher's on the evaluation data: what each
    artifact is compared with. Labels that lie about the classes are refused here, before any build."""
    n = len(loaded.evaluation)
    progress(f"running the float student{' and the teacher' if loaded.teacher else ''} on the {n} evaluation samples")

    def compute() -> tuple[list, np.ndarray | None]:
        with loop(progress, "float student", n, "samples") as advance, on_each_chunk(advance):
            float_all = loaded.outputs_of(loaded.student)
        if loaded.teacher is None:
            return float_all, None
        with loop(progress, "teacher", n, "samples") as advance, on_each_chunk(advance):
            return float_all, loaded.outputs_of(loaded.teacher)[0]

    float_all, teacher_out, loaded.references_reused = cached_outputs(loaded.student, loaded.teacher,
                                                                      loaded.evaluation, repr(loaded.io), compute)
    if loaded.references_reused:
        progress(f"  {loaded.references_reused}")
    labels_match(loaded, float_all[0], task)
    return float_all, teacher_out


def labels_match(loaded: Loaded, outputs: np.ndarray, task: str) -> None:
    """The data's labels index the classes of the output they label: a classification's first output of
    class scores [B, C] (a per-position or streaming output's labels are not one per sample's classes)."""
    if task == "classification" and outputs.ndim == 2 and not loaded.io.state:
        for data in (loaded.evaluation, loaded.calibration):
            if data is not None:
                check_labels(data, outputs.shape[1])


def run_check(cfg: Config, out: Path, progress: Progress = Progress(False), *, device: str | None = None,
              command: str = "check", shard: Shard | None = None) -> Report:
    """Export, quantize and verify every configured target and precision; artifacts go to `out`.
    `device` overrides [measure] device and every target's own; `command` names the report's; `shard`
    runs its share of the cells alone (shards.py)."""
    plan = plan_targets(cfg, device=device)
    baselines = [get_target(p.config.name).capabilities.float_baseline() for p in plan]
    mine, runs, order = share(plan, baselines, shard)
    loaded = load_inputs(cfg, progress)
    export = export_verified(cfg, loaded.student, loaded.io.chunks(loaded.evaluation), out, "onnx", progress)
    float_all, teacher_out = reference_outputs(loaded, progress, cfg.model.task)
    float_out = float_all[0]
    output_refs, kind_warnings = output_references(cfg.model.outputs, loaded.student, float_all, cfg.model.task,
                                                   loaded.io)
    refuse_unanswerable(cfg, output_refs)
    warm_up()  # report.html's plotting library loads while the artifacts build
    why_no_task = why_no_task_metric(output_refs, cfg.model.task, loaded.io)
    progress("outputs: " + ", ".join(f"{o.name} {o.spec['kind']}" + (" (inferred)" if o.spec["inferred"] else "")
                                     for o in output_refs))
    results = []
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as work:  # inside out: one folder to clean
        run = Run(cfg, loaded, out, Path(work), progress)
        for k, planned in enumerate(plan):
            refs = References(float_out, teacher_out, outputs=output_refs, why_no_task=why_no_task)
            todo = [p for p in planned.precisions if (k, p) in runs]
            for precision, result in _target_results(run, planned, todo, baselines[k], refs):
                if (k, precision) in mine:  # a baseline measured only as this shard's reference is not its row
                    results.append(result)
    report = build_report(command, cfg, loaded, export, References(float_out, teacher_out, why_no_task=why_no_task),
                          results, kind_warnings=kind_warnings)
    if shard is not None:
        stamp(report, shard, cfg.path, [r.name for r in results], order)
    return report


def _target_results(run: Run, planned: PlannedTarget, precisions: list[str], baseline: str | None,
                    refs: References):
    """(precision, result) of one [[targets]] entry, the float baseline first. On a device that starts ahead
    (a device cloud), every artifact is built and sent off first, and then collected in order."""
    name, out, loaded, progress = planned.config.name, run.out, run.loaded, run.progress
    subject = Subject(loaded.student, out / "onnx" / "model.onnx", name)
    candidates = {p: recipe_candidates(planned, p) for p in precisions}
    ahead = {}
    for precision in precisions if planned.device.starts_ahead else ():
        if not is_auto(precision) and not candidates[precision]:
            ahead[precision] = sent = attempted(partial(build_one, run, planned, precision, subject),
                                                 out, name, "student", name, precision)
            if not isinstance(sent, TargetResult):
                planned.device.start(sent[0].path, loaded.io.chunks(loaded.evaluation),
                                     result_label("student", name, precision), progress)
    for precision in precisions:
        if is_auto(precision):
            build = trial_builder(run, subject, refs)
            yield precision, attempted(partial(build_auto, planned, precision, Where(out, run.work), build, progress,
                                               data=loaded.evaluation), out, name, "student", name, precision)
            continue
        if candidates[precision]:  # an option set to "auto": every candidate recipe built, the best kept
            build = trial_builder(run, subject, refs)
            yield precision, attempted(partial(build_best_recipe, planned, precision, candidates[precision], out,
                                               run.work, build, progress), out, name, "student", name, precision)
            continue
        built = ahead.get(precision)
        if isinstance(built, TargetResult):  # its build failed: that is its row
            yield precision, built
            continue
        measure = (partial(measure_built, run, planned, precision, built, subject, refs)
                   if built else partial(build_and_measure, run, planned, precision, subject, refs))
        result = attempted(measure, out, name, "student", name, precision)
        if built and result.failure:  # as when one attempt builds and measures: no artifact without its figures
            for made in built[0].files:
                shutil.rmtree(made) if made.is_dir() else made.unlink(missing_ok=True)
        if precision == baseline:
            refs.float_latency, refs.float_size = result.latency, result.size_bytes
        yield precision, result


def searched_recipe(tc: TargetConfig, precision: str) -> str | None:
    """The option set to "auto" whose recipes the target would search at this precision's base, if any."""
    asked = getattr(get_target(tc.name), "recipe_candidates", None)
    if asked is None or not asked(base_of(precision), tc.options_for(precision)):
        return None
    return next(name for name, value in tc.options_for(precision).items() if value == "auto")


def recipe_candidates(planned: PlannedTarget, precision: str) -> tuple[str, ...]:
    """The recipes a target builds and ranks for this precision (an option set to "auto"), or none."""
    target = get_target(planned.config.name)
    asked = getattr(target, "recipe_candidates", None)
    return asked(precision, planned.config.options_for(precision)) if asked and not is_auto(precision) else ()


def run_sensitivity(cfg: Config, out: Path, target: str, precision: str, progress: Progress = Progress(False), *,
                    device: str | None = None) -> Report:
    """How much each layer of one target's precision costs the budgets: the precision as asked, then
    each quantized layer left in float alone and quantized alone (mixed.sensitivity)."""
    (planned,) = plan_targets(cfg, names=[target], device=device)
    check_precision(get_target(target).capabilities, precision, planned.config.calibration_method)
    check_auto(target, auto_of(precision), planned.config.options)
    loaded = load_inputs(cfg, progress)
    export = export_verified(cfg, loaded.student, loaded.io.chunks(loaded.evaluation), out, "onnx", progress)
    float_all, teacher_out = reference_outputs(loaded, progress, cfg.model.task)
    output_refs, kind_warnings = output_references(cfg.model.outputs, loaded.student, float_all, cfg.model.task,
                                                   loaded.io)
    why_no_task = why_no_task_metric(output_refs, cfg.model.task, loaded.io)
    refs = References(float_all[0], teacher_out, outputs=output_refs, why_no_task=why_no_task)
    subject, results = Subject(loaded.student, out / "onnx" / "model.onnx", target), []
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as work:
        run = Run(cfg, loaded, out, Path(work), progress)
        baseline = get_target(target).capabilities.float_baseline()
        if baseline and baseline != precision:  # the speedup's reference
            results.append(build_and_measure(run, planned, baseline, subject, refs))
            refs.float_latency, refs.float_size = results[0].latency, results[0].size_bytes
        build = trial_builder(run, subject, refs)
        results.append(build_auto(planned, precision, Where(out, Path(work)), build, progress, sensitivity_only=True,
                                  data=loaded.evaluation))
    return build_report("sensitivity", cfg, loaded, export, refs, results, kind_warnings=kind_warnings)


def refuse_unanswerable(cfg: Config, output_refs: list[OutputRef]) -> None:
    """A budget key an output's kind cannot answer is the config's fault: exit 2 before any build."""
    found = unanswerable(cfg.budget, {o.name: o.spec["kind"] for o in output_refs})
    if found:
        raise BadInput("; ".join(found), path=cfg.path,
                       hint="use the output's own keys, or declare its kind: [model.outputs.NAME] kind = ...")


def why_no_task_metric(output_refs: list[OutputRef], task: str, io: ModelIO) -> str:
    """Why the task metric (accuracy, agreement, per slice) is not computed; "" where it is."""
    if io.state:
        return ("a streaming model is judged chunk by chunk, by its outputs' kinds ([budgets.outputs.NAME]); "
                "its labels and slices hold per sequence")
    return metrics.why_not_task_metric(output_refs[0].name, output_refs[0].spec, task)


def output_references(declared: dict[str, dict], model: SourceModel, float_all: list, task: str,
                      io: ModelIO = ModelIO(())) -> tuple[list[OutputRef], list[str]]:
    """Every output of the model, named and kinded, with the float student's values of it, and warnings
    for shapes that admit another reading. Names: the declared ones, in output order, then the model's
    own (an .onnx keeps its names), then output_N."""
    own = model.output_names if len(model.output_names) == len(float_all) else []
    if own and set(declared) <= set(own):
        names = list(own)  # declared by the model's own names
    else:
        names = [list(declared)[i] if i < len(declared) else own[i] if own else "output" if len(float_all) == 1
                 else f"output_{i}" for i in range(len(float_all))]
    declared = {**{name: {"kind": "state"} for name in io.state}, **declared}  # a fed-back output is a state
    specs, warnings = kinds.resolve_kinds(declared, names, float_all, task)
    return [OutputRef(name, spec, values) for name, spec, values in zip(names, specs, float_all)], warnings


def build_report(command: str, cfg: Config, loaded: Loaded, export, refs: References, results, *,
                 kind_warnings: Sequence[str] = (), **extra) -> Report:
    """The reference rows from `refs` (the float student's and the teacher's first outputs); its
    `why_no_task`: why the task metric does not read the first output (the reference rows too)."""
    float_out, teacher_out, why_no_task = refs.float_outputs, refs.teacher_outputs, refs.why_no_task
    warnings, gate = stale_teacher(cfg, loaded.teacher)
    warnings += padding_warnings(loaded.student.inputs, {"evaluation": loaded.evaluation,
                                                        "calibration": loaded.calibration})
    warnings += calibration_warnings(cfg, loaded.calibration) + list(kind_warnings)
    if why_no_task:
        float_out = teacher_out = None  # no task figures for the float student and the teacher either
    return Report(command=command, tool_version=__version__, created=_now(), config=str(cfg.path),
                  student=_model_info(loaded.student),
                  teacher=_model_info(loaded.teacher) if loaded.teacher else None,
                  data={"evaluation": _data_info(loaded.evaluation), "calibration": _data_info(loaded.calibration),
                        "calibration_samples": cfg.calibration_samples, "seed": cfg.seed},
                  environment=host_environment(), export=export,
                  references=reference_metrics(loaded.evaluation, float_out, teacher_out, cfg.model.task),
                  results=results, task=cfg.model.task,
                  warnings=warnings, gate_checks=gate, references_reused=loaded.references_reused, **extra)


def calibration_warnings(cfg: Config, calibration: Dataset | None) -> list[str]:
    """Fewer calibration samples than [data] calibration_samples asks for: ranges drawn from few samples
    clip inputs they never saw, so the report says so."""
    if calibration is None or len(calibration) >= cfg.calibration_samples:
        return []
    return [f"{calibration.source}: the calibration data hold {len(calibration)} samples, fewer than "
            f"calibration_samples = {cfg.calibration_samples}; quantization ranges drawn from so few may clip "
            "real inputs"]


def padding_warnings(specs, datasets: dict[str, Dataset | None]) -> list[str]:
    """A model with an attention mask judged only on unpadded data says nothing of padded inputs, where
    static int8 is known to collapse: say so (check and verify alike)."""
    warnings = []
    for spec in specs:
        if "mask" not in spec.name.lower() or not spec.dtype.startswith(("int", "bool")):
            continue
        for what, data in datasets.items():
            if data is not None and spec.name in data.inputs and data.inputs[spec.name].all():
                warnings.append(f"the {what} data never pads ({spec.name} is 1 everywhere): how the artifacts behave "
                                "on padded inputs is not judged; add padded samples")
    return warnings


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


@dataclass(frozen=True)
class ExportRequest:
    """What `edge-distill export` is asked: the model (module:factory, .pt2, .onnx) and its weights, the
    target (optionally with its precision: "ort-int8"), real samples for the parity check, calibration
    samples and method, the target's options, and whether a pickled .pt may be loaded."""

    model: str
    target: str = "onnx"
    precision: str | None = None
    weights: str | None = None
    data_path: Path | None = None
    calibration_path: Path | None = None
    calibration_method: str = "minmax"
    options: dict = dataclasses.field(default_factory=dict)
    trust_pickle: bool = False


def run_export(request: ExportRequest, out: Path, cfg: Config | None = None,
               progress: Progress = Progress(False)) -> dict:
    """`edge-distill export`: the verified ONNX export, and the target's artifact when one is asked for.
    Writes `export.json` (the summary returned, paths relative to `out`) beside them. `cfg`: an
    edge-distill.toml giving the inputs and the export settings."""
    reference, options = request.model, request.options
    data_path, calibration_path, calibration_method = (request.data_path, request.calibration_path,
                                                       request.calibration_method)
    target_name, precision = _export_target(request.target, request.precision)
    if is_auto(precision):
        raise BadInput(f"{precision} is a search against a config's budgets, not one build",
                       hint=f"edge-distill export {reference} --auto --config edge-distill.toml --target "
                            f"{target_name}-{base_of(precision)}")
    progress(f"loading {reference}")
    model = load_model(reference, request.weights, cfg.model.inputs if cfg else [], trust_pickle=request.trust_pickle,
                       search_path=cfg.root if cfg else Path.cwd())
    samples_path = data_path or calibration_path
    if samples_path is None:
        raise BadInput("export checks ONNX Runtime against the source model on real samples: "
                       "pass --data (or --calibration)")
    if target_name != "onnx":  # everything the target needs is checked before the export's work
        caps = get_target(target_name).capabilities
        missing = caps.missing_packages()
        if missing:
            raise MissingDependency(missing[0], caps.extra, f"target '{target_name}'")
        check_precision(caps, precision, calibration_method)
        caps.options_with_defaults(options)
    samples = load_dataset(samples_path, model.inputs)
    progress("exporting to ONNX and checking it against the source model")
    opset, tolerance = (cfg.opset, cfg.tolerance) if cfg else (18, 1e-4)
    export = cached_export(model, samples, out / "model.onnx", partial(
        export_to_onnx, model, out / "model.onnx", opset=opset, samples=samples, tolerance=tolerance),
        opset=opset, tolerance=tolerance)
    export.path = "model.onnx"
    summary = {"source": _model_info(model), "export": export.__dict__, "artifact": None}
    if target_name != "onnx":
        calib = None
        if calibration_path is not None:
            calib = select_samples(load_dataset(calibration_path, model.inputs),
                                   cfg.calibration_samples if cfg else 256, cfg.seed if cfg else 0)
        summary["artifact"] = _export_artifact(model, request, (target_name, precision), calib, out, progress,
                                               tolerance=cfg.tolerance if cfg else 1e-4)
    (out / "export.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def auto_export_config(cfg: Config, request: ExportRequest) -> Config:
    """`export --auto`: the config's data and budgets, the request's model as the student, and one target
    entry at the -auto precision (the config's own entry for that target, if any, gives its other settings)."""
    reference, weights, options, precision = request.model, request.weights, request.options, request.precision
    target_name, precision = _export_target(request.target, precision and base_of(precision))
    precision = base_of(precision)
    caps = None if target_name == "onnx" else get_target(target_name).capabilities
    if caps is None or caps.precision(precision).weight_bits >= 16:
        raise BadInput(f"export --auto searches a quantized precision (int8, int4), not {target_name} {precision}",
                       hint="e.g. --target ort-int4")
    entry = next((t for t in cfg.targets if t.name == target_name), TargetConfig(target_name, []))
    entry = dataclasses.replace(entry, precisions=[auto_of(precision)], options={**entry.options, **options})
    model = cfg.model
    if reference != model.student:  # another student than the config's, on its data and budgets
        given = lambda ref: str(Path(ref).resolve()) if ref and Path(ref).exists() else ref  # noqa: E731
        model = dataclasses.replace(model, student=given(reference), weights=given(weights))
    elif weights:
        model = dataclasses.replace(model, weights=str(Path(weights).resolve()))
    return dataclasses.replace(cfg, model=model, targets=[entry])


def _export_target(target_string: str, precision: str | None) -> tuple[str, str]:
    target_name, from_string = ("onnx", None) if target_string == "onnx" else parse_target_string(target_string)
    if from_string and precision and from_string != precision:
        raise BadInput(f"--target {target_string} and --quant {precision} disagree")
    precision = from_string or precision or "fp32"
    if target_name == "onnx" and precision != "fp32":
        raise BadInput("--target onnx writes the fp32 export; quantize with --target ort")
    return target_name, precision


def _export_artifact(model: SourceModel, request: ExportRequest, target: tuple[str, str], calib, out: Path,
                     progress, tolerance: float = 1e-4) -> dict:
    target_name, precision = target
    (out / target_name).mkdir()
    progress(f"building {target_name}-{precision}")
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as work:  # inside out: one folder to clean
        artifact = get_target(target_name).build(BuildRequest(
            onnx_path=out / "model.onnx", source=model, precision=precision, calibration=calib,
            calibration_method=request.calibration_method, options=request.options, out_dir=out / target_name,
            work_dir=Path(work), tolerance=tolerance))
    return {"target": artifact.target, "precision": artifact.precision, "path": str(artifact.path.relative_to(out)),
            "size_bytes": artifact.size_bytes, "files": [str(f.relative_to(out)) for f in artifact.files],
            "details": artifact.details}


@dataclass
class OneArtifact:
    """What `verify` and `bench` start from: an artifact file, the target that runs it, a device."""

    path: Path
    target: str
    device: Device
    precision: str

    @classmethod
    def open(cls, path: Path, device: str, tools: dict | None, precision: str | None, default: str) -> OneArtifact:
        if not path.exists():
            raise BadInput("artifact not found", path=path)
        package_files(path)  # a package with a link inside would have the runtime read outside it
        dev = resolve(device, tools)
        target = target_for_file(path)
        if precision is None:  # model.int8.ort -> int8
            tag = path.name.split(".")[-2] if path.name.count(".") >= 2 else ""
            precision = tag if tag in get_target(target).capabilities.precision_names else default
        return cls(path, target, dev, precision)

    def settings(self, timing: Timing) -> RunSettings:
        return RunSettings(device=self.device, threads=timing.threads, warmup=timing.warmup, runs=timing.runs)


@dataclass(frozen=True)
class Timing:
    """Where and how an artifact is timed: the device by name (and its tools' settings, as a config's
    [devices]), threads, warm-up runs and timed runs."""

    device: str = "host"
    device_tools: dict | None = None
    threads: int = 1
    warmup: int = 20
    runs: int = 200


@dataclass(frozen=True)
class Verification:
    """What `edge-distill verify` is asked: an artifact, evaluation data, a budget, the float student and
    the teacher to compare with (.onnx or .pt2), the artifact's precision (else read from its name), the
    outputs' declared kinds ({"out": {"kind": "detection", ...}}), and where it is timed."""

    artifact: Path
    data_path: Path
    budget: Budget = dataclasses.field(default_factory=Budget)
    float_model: str | None = None
    teacher_model: str | None = None
    precision: str | None = None
    kinds: dict | None = None
    timing: Timing = Timing()


def run_verify(request: Verification, progress: Progress = Progress(False)) -> Report:
    """`edge-distill verify`: measure one artifact against a budget, on this host or a device."""
    artifact, timing, float_model, teacher_model = (request.artifact, request.timing, request.float_model,
                                                    request.teacher_model)
    one = OneArtifact.open(artifact, timing.device, timing.device_tools, request.precision, "unknown")
    settings = one.settings(timing)
    specs = get_target(one.target).open_runner(artifact, timing.threads).input_specs()
    data = load_dataset(request.data_path, specs)
    refs, student_info, reused = References(), None, None
    kind_warnings: list[str] = []
    teacher = load_model(teacher_model, inputs=specs) if teacher_model else None
    if float_model:
        ref = load_model(float_model, inputs=specs)
        progress(f"running the float model {float_model}" + (f" and the teacher {teacher_model}" if teacher else ""))
        # the same models on the same data: an earlier verify's outputs (a layout of verify's own: samples first)
        float_all, refs.teacher_outputs, reused = cached_outputs(ref, teacher, data, "verify: samples first", lambda: (
            ref.predict_all(data), teacher.predict(data) if teacher is not None else None))
        if reused:
            progress(f"  {reused}")
        student_info, refs.float_outputs = _model_info(ref), float_all[0]
        refs.outputs, kind_warnings = output_references(request.kinds or {}, ref, float_all, "classification")
        refs.why_no_task = why_no_task_metric(refs.outputs, "classification", ModelIO(()))
        refs.float_latency = _float_latency_here(one, ref, data, settings)
    elif teacher is not None:
        progress(f"running the teacher {teacher_model}")
        refs.teacher_outputs = teacher.predict(data)
    teacher_info = _model_info(teacher) if teacher is not None else None
    candidate = Candidate(one.target, one.precision, artifact, graph=graph_for(artifact, float_model))
    result = evaluate_artifact(candidate, data, settings, refs, request.budget, progress=progress)
    student_info = student_info or {"reference": str(artifact), "kind": "artifact", "fingerprint": result.sha256}
    return Report(command="verify", tool_version=__version__, created=_now(), config=None, student=student_info,
                  teacher=teacher_info, data={"evaluation": _data_info(data)}, environment=host_environment(),
                  export=None, references=reference_metrics(data, refs.float_outputs, refs.teacher_outputs),
                  results=[result], warnings=padding_warnings(specs, {"evaluation": data}) + kind_warnings,
                  references_reused=reused)


def _float_latency_here(one: OneArtifact, ref: SourceModel, data: Dataset, settings: RunSettings) -> Latency | None:
    """The float model's latency, when it is an ONNX file the artifact's own target runs and the
    device times on this host: only then is a speedup a like-for-like comparison."""
    from .devices.host import latency

    if ref.onnx_path is None or not one.device.times_on_this_host or \
            ".onnx" not in get_target(one.target).capabilities.suffixes:
        return None
    runner = get_target(one.target).open_runner(ref.onnx_path, settings.threads)
    return latency(runner, data, warmup=settings.warmup, runs=settings.runs)


def graph_for(artifact: Path, float_model: str | None) -> Path | None:
    """The ONNX graph whose work a device estimate counts: the artifact's own, or the float model's.
    `check`, `verify` and `bench` all ask here, so one artifact gets one estimate."""
    for candidate in (artifact if artifact.suffix == ".onnx" else artifact.with_suffix(".onnx"),
                      Path(float_model) if float_model and float_model.endswith(".onnx") else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def run_bench(artifact: Path, *, timing: Timing = Timing(), data_path: Path | None = None,
              float_model: str | None = None, progress: Progress = Progress(False)) -> tuple[Latency, Memory, str]:
    """`edge-distill bench`: latency and memory of one artifact on a device; no accuracy, no budget.
    Inputs are --data samples, or zeros of the model's input shapes (batch 1)."""
    threads, warmup, runs = timing.threads, timing.warmup, timing.runs
    one = OneArtifact.open(artifact, timing.device, timing.device_tools, None, "fp32")
    runner = get_target(one.target).open_runner(artifact, threads)
    specs = runner.input_specs()
    if data_path is not None:
        data = load_dataset(data_path, specs)
    else:
        data = zeros(specs, 32)
    progress(f"measuring {artifact.name} on {one.device.name}: {warmup} warm-up + {runs} runs, {threads} thread(s)")
    candidate = Candidate(one.target, one.precision, artifact)
    figures = one.device.measure(Job(
        target=one.target, path=artifact, runner=runner, data=data, settings=one.settings(timing),
        label=artifact.name, precision=candidate.precision_data(), graph=graph_for(artifact, float_model),
        numerics=False, progress=progress))
    if figures.latency is None:
        raise CannotMeasure(f"{one.target}: {figures.why_no_latency}")
    return figures.latency, figures.memory, one.target
