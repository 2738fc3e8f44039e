"""`edge-distill slices discover`: the I/O around slicefind.py. Runs the references (the float student,
the teacher) and the subject (an artifact file, or the float student) on the evaluation data, takes the
output kind's per-sample error, hands the search its evidence (metadata columns of the data file, the
reference's outputs, its class probabilities, the labels), and writes what it found into the output
folder: the data again with the proposed slices as `slice_<name>` masks beside the user's arrays (the
user's file is read, never written), a budget stanza per slice, discovery.json, report.md, report.html.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np

from edge_distill.calibration import read_arrays
from edge_distill.targets import get_target, target_for_file

from . import kinds, metrics
from .config import Config
from .errors import BadInput, MissingDependency
from .files import save_arrays
from .evaluate import host_outputs
from .pipeline import Loaded, load_inputs, output_references, reference_outputs, why_no_task_metric
from .progress import Progress
from .result import SliceDiscovery
from .slicefind import Evidence, Settings, discover, null_rate

AGAINST = ("teacher", "float")
DATA_FILE, BUDGET_FILE = "slices.npz", "slices-budget.toml"


@dataclasses.dataclass
class Compared:
    """The subject's and the reference's values of one output, and what that output is."""

    subject: np.ndarray
    reference: np.ndarray
    name: str
    spec: dict
    subject_label: str
    first: bool  # the first output: the one the task metric (and so a slice budget) reads


@dataclasses.dataclass(frozen=True)
class Question:
    """What `slices discover` is asked: the reference each sample is compared with ("teacher" or "float"),
    the artifact judged (none: the float student), which output (none: the first), the margin a proposed
    budget leaves under the float student's figure, the search's settings, and `null_checks`: the search
    run again on that many shuffles of the errors (its false-positive rate here)."""

    against: str = "teacher"
    artifact: Path | None = None
    output: str | None = None
    margin: float = 0.03
    settings: Settings = dataclasses.field(default_factory=Settings)
    null_checks: int = 0


def run_discover(cfg: Config, out: Path, question: Question = Question(),
                 progress: Progress = Progress(False)) -> SliceDiscovery:
    """Discover the slices where the subject fails against the reference; write the files into `out`."""
    against, artifact, margin, settings = question.against, question.artifact, question.margin, question.settings
    null_checks = question.null_checks
    if against not in AGAINST:
        raise BadInput(f"--against is one of {', '.join(AGAINST)}, not {against!r}")
    if against == "float" and artifact is None:
        raise BadInput("--against float compares an artifact with the float student: name it with --artifact")
    if artifact is not None and not Path(artifact).is_file():
        raise BadInput("artifact not found", path=artifact)
    require_packages()
    loaded = load_inputs(cfg, progress)
    if not loaded.io.plain:
        raise BadInput("slice discovery compares samples one by one: a streaming model's chunks are not samples")
    if against == "teacher" and loaded.teacher is None:
        raise BadInput("--against teacher needs [model] teacher", path=cfg.path)
    float_all, teacher_out = reference_outputs(loaded, progress, cfg.model.task)
    refs, warnings = output_references(cfg.model.outputs, loaded.student, float_all, cfg.model.task, loaded.io)
    compared = _compared(loaded, refs, (float_all, teacher_out), question, cfg.threads, progress)
    progress(f"searching slices where {compared.subject_label} fails against the "
             f"{'teacher' if against == 'teacher' else 'float student'}")
    evidence = _evidence(cfg, loaded, compared)
    found, masks = discover(evidence, settings, subject=compared.subject_label,
                            reference="teacher" if against == "teacher" else "float student",
                            output=compared.name, kind=compared.spec["kind"])
    found.margin, found.warnings = margin, list(warnings)
    if null_checks:
        progress(f"searching {null_checks} shuffles of the errors (the null check)")
        hits, smallest = null_rate(evidence, settings, null_checks)
        found.null_check = {"shuffles": null_checks, "with_a_slice": hits, "smallest_p_adjusted": smallest}
    task_readable = compared.first and not why_no_task_metric(refs, cfg.model.task, loaded.io)
    for row in found.proposed:
        row.budget = proposed_budget(cfg.model.task, against, loaded, float_all[0], teacher_out, masks[row.name],
                                     margin) if task_readable else {}
    if found.proposed and not task_readable:
        found.warnings.append(f"output '{compared.name}' is not the one the task metric reads: [budgets.slices] has "
                              "no key for it, so no budget is proposed (the slices are still written)")
    assert cfg.evaluation is not None  # load_inputs refused a config without [data] evaluation
    write_discovery(out, found, masks, cfg.evaluation, cfg.model.task, against)
    return found


def require_packages() -> None:
    """The search's packages, checked before any work (exit 3 with the pip line)."""
    import importlib.util

    for package, module in (("sliceline", "sliceline"), ("scikit-learn", "sklearn"), ("scipy", "scipy")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(package, "slices", "slice discovery")


def _compared(loaded: Loaded, refs, outputs: tuple, question: Question, threads: int, progress) -> Compared:
    """`outputs`: the float student's (every output) and the teacher's (its first)."""
    (float_all, teacher_out), against, artifact, output = outputs, question.against, question.artifact, question.output
    names = [r.name for r in refs]
    if output is not None and output not in names:
        raise BadInput(f"no output named {output!r}; the model's outputs: {', '.join(names)}")
    index = names.index(output) if output else 0
    if against == "teacher" and index != 0:
        raise BadInput("the teacher is compared on the first output only: --against float for the others")
    if artifact is None:
        subject, label = float_all[index], "float student"
    else:
        target = target_for_file(Path(artifact))
        runner = get_target(target).open_runner(Path(artifact), threads)
        progress(f"running {Path(artifact).name} ({target}) on the {len(loaded.evaluation)} evaluation samples")
        every = host_outputs(runner, loaded.evaluation)
        if len(every) != len(float_all):
            raise BadInput(f"the artifact has {len(every)} output(s), the student {len(float_all)}", path=artifact)
        subject, label = every[index], Path(artifact).name
    reference = teacher_out if against == "teacher" else float_all[index]
    if np.shape(subject) != np.shape(reference):
        raise BadInput(f"output '{names[index]}': the subject's shape {list(np.shape(subject))} is not the "
                       f"reference's {list(np.shape(reference))}")
    return Compared(subject, reference, names[index], refs[index].spec, label, index == 0)


def metadata_columns(arrays: dict[str, np.ndarray], inputs: set[str], n: int) -> dict[str, np.ndarray]:
    """The data file's per-sample columns that are neither inputs nor labels, weights or masks."""
    return {k: v for k, v in arrays.items() if k not in inputs and k not in ("labels", "weights")
            and not k.startswith("slice_") and v.ndim == 1 and len(v) == n and v.dtype.kind in "biufUS"}


def _evidence(cfg: Config, loaded: Loaded, compared: Compared) -> Evidence:
    kind = kinds.get_kind(compared.spec["kind"])
    if kind.per_sample is None:
        raise BadInput(f"output '{compared.name}' is a {kind.name} output, which has no per-sample error to search "
                       "for failing slices; name another output")
    errors = kind.per_sample(compared.subject, compared.reference, compared.spec)
    data = loaded.evaluation
    assert cfg.evaluation is not None  # load_inputs refused a config without [data] evaluation
    arrays = read_arrays(cfg.evaluation)
    columns = metadata_columns(arrays, set(data.inputs), len(data))
    reference = np.asarray(compared.reference)
    probabilities = predicted = None
    if kind.name == "classification" and reference.ndim == 2:
        scores = np.moveaxis(reference, compared.spec.get("axis", -1), -1).astype(np.float64)
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        probabilities = exp / exp.sum(axis=1, keepdims=True)
        predicted = probabilities.argmax(axis=1)
    return Evidence(errors, reference.reshape(len(reference), -1), probabilities, data.labels, predicted, columns,
                    list(cfg.model.labels) if cfg.model.labels else None, cosine=kind.name == "embedding")


# (task, against) -> the [budgets.slices] keys a proposal sets, each from the float student's figure
BUDGET_KEYS = {("classification", "teacher"): ("min_teacher_agreement", "teacher_agreement"),
               ("classification", "float"): ("min_float_agreement", "float_agreement"),
               ("embedding", "teacher"): ("min_teacher_cosine", "teacher_cosine"),
               ("embedding", "float"): ("min_float_cosine", "float_cosine")}


def proposed_budget(task: str, against: str, loaded: Loaded, float_out: np.ndarray, teacher_out, mask: np.ndarray,
                    margin: float) -> dict:
    """[budgets.slices.NAME]: the float student's figure on the slice minus `margin` (its agreement with
    itself is 1, its cosine with itself 1), and its accuracy minus `margin` where the data have labels."""
    data = loaded.evaluation
    figures = metrics.TASK_METRICS[task](float_out, labels=data.labels, weights=data.weights, float_outputs=float_out,
                                         teacher_outputs=teacher_out, mask=mask).figures()
    limits = {}
    key, figure = BUDGET_KEYS[(task, against)]
    if figures.get(figure) is not None:
        limits[key] = round(max(0.0, figures[figure] - margin), 4)
    if figures.get("accuracy") is not None:
        limits["min_accuracy"] = round(max(0.0, figures["accuracy"] - margin), 4)
    return limits


def budget_toml(found: SliceDiscovery) -> str:
    lines = [f"# Proposed by `edge-distill slices discover`: {found.subject} against the {found.reference}, seed "
             f"{found.seed}.", f"# Each limit is the float student's figure on the slice minus {found.margin:g}. The "
             f"slices are masks in {DATA_FILE}:", "# set [data] evaluation to it, and paste these tables under your "
             "[budgets].", ""]
    for c in found.proposed:
        lines += [f"# {c.description}", f"# {c.size} samples, {c.error_rate:.1%} fail against {c.rest_error_rate:.1%} "
                  f"elsewhere; p = {c.p_adjusted:.2g} (Holm, {found.hypotheses} hypotheses)",
                  f"[budgets.slices.{c.name}]"]
        lines += [f"{k} = {v}" for k, v in c.budget.items()] or ["# no per-slice key for this output's kind"]
        lines.append("")
    return "\n".join(lines)


def _atomic_write(path: Path, data: bytes) -> None:
    """Written beside its final name, then renamed: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_discovery(out: Path, found: SliceDiscovery, masks: dict[str, np.ndarray], source: Path, task: str,
                    against: str) -> None:
    """The data again, with the proposed masks beside the user's arrays (a name the file already uses
    gets a suffix), the budget stanzas and the reports, each into `out`."""
    from .html_report import discovery_html
    from .report import discovery_markdown

    arrays = read_arrays(source)
    for row in found.proposed:
        mask, name = masks[row.name], row.name
        while f"slice_{name}" in arrays:
            name += "_found"
        row.name = name
        arrays[f"slice_{name}"] = mask
    buffer = io.BytesIO()
    save_arrays(buffer, arrays)
    _atomic_write(out / DATA_FILE, buffer.getvalue())
    found.data_file, found.budget_file = DATA_FILE, BUDGET_FILE
    _atomic_write(out / BUDGET_FILE, budget_toml(found).encode())
    _atomic_write(out / "discovery.json", (json.dumps(found.to_dict(), indent=1) + "\n").encode())
    _atomic_write(out / "report.md", discovery_markdown(found).encode())
    _atomic_write(out / "report.html", discovery_html(found).encode())


def check_step(cfg: Config, out: Path, report, progress: Progress = Progress(False)) -> None:
    """[slices.discover] after `check`: each artifact it built against the float student, its files in
    slices/<artifact>/ of the output folder, its result in the report (a section of report.md and
    report.html, `discoveries` in report.json); a line per artifact among the report's warnings, and with
    fail_on_found a broken gate check per artifact where a slice is proposed."""
    from .errors import CannotMeasure
    from .result import Check

    s = cfg.slices_discover
    assert s is not None  # the caller runs this step for [slices.discover] only
    settings = Settings(seed=cfg.seed, alpha=s["alpha"], min_size=s["min_size"], sources=tuple(s["sources"]))
    for result in report.results:
        if result.failure or not result.artifact:
            continue
        folder = out / "slices" / result.name.replace("/", "-")
        folder.mkdir(parents=True)
        try:
            found = run_discover(cfg, folder, Question(against="float", artifact=out / result.artifact,
                                                       margin=s["margin"], settings=settings), progress)
        except (BadInput, CannotMeasure) as exc:
            report.warnings.append(f"slice discovery of {result.name}: not run ({exc})")
            continue
        report.discoveries[result.name] = found
        names = ", ".join(f"{c.name} ({c.size} samples, {c.error_rate:.0%} fail against {c.rest_error_rate:.0%}, "
                          f"p {c.p_adjusted:.2g})" for c in found.proposed)
        where = f"slices/{folder.name}/report.md"
        report.warnings.append(f"slice discovery of {result.name} against the float student: "
                               f"{names or 'no significant slice'}; see {where}")
        if s["fail_on_found"] and found.proposed:
            report.gate_checks.append(Check(f"{result.name}/slices_found", "slices_found", "==", 0.0,
                                            float(len(found.proposed)), "", False,
                                            message=f"slice discovery proposes {names}; see {where}"))
