"""The result of a run, as data: one `Report` from which every renderer (JSON, JUnit, Markdown, the
terminal table) draws. Field for field it mirrors schemas/report.schema.json; `report.to_json`
writes it. The exit-code policy lives here too, next to the data it reads.

Imports only metrics and provenance: anything may import this module.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from .metrics import Metrics
from .provenance import Provenance

SCHEMA_VERSION = "1"
# 2 (bad input) is an error's (errors.py), and a run's when one of its artifacts was refused
EXIT_PASSED, EXIT_BUDGET_BROKEN, EXIT_BAD_INPUT, EXIT_CANNOT_MEASURE = 0, 1, 2, 3
KB, MB = 1_000, 1_000_000  # one definition everywhere: sizes, memory, budgets, tables (decimal, as phones show)


def result_label(subject: str, target: str, precision: str, qualified: bool = False) -> str:
    """"ort-int8" for the student; "teacher/ort-int8" for another subject, or when a report mixes them."""
    return f"{subject}/{target}-{precision}" if qualified or subject != "student" else f"{target}-{precision}"


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
    # A fixed-batch model's run is `batch` samples: the same figures per sample, beside the per-run ones.
    per_sample_p50_ms: float | None = None
    per_sample_p95_ms: float | None = None
    # An estimate's range: where the true latency lies if it errs as the profile's validated ones did.
    low_ms: float | None = None
    high_ms: float | None = None
    samples_ms: list[float] | None = None  # each timed run, in order (host runs): a baseline comparison's noise
    reference_ms: float | None = None  # a fixed numpy workload timed between the runs: the host's speed then

    def __post_init__(self):
        if self.batch > 1:
            self.per_sample_p50_ms = None if self.p50_ms is None else round(self.p50_ms / self.batch, 4)
            self.per_sample_p95_ms = None if self.p95_ms is None else round(self.p95_ms / self.batch, 4)


@dataclass
class Memory:
    peak_mb: float | None
    provenance: Provenance | None
    why_not: str | None = None


@dataclass
class ExportInfo:
    path: str
    opset: int
    exporter: str
    dynamic_axes: dict[str, list[str]]
    parity_max_abs_diff: float
    parity_tolerance: float
    parity_samples: int
    seconds: float
    reused: str | None = None  # "reused from cache <key>": the file and figures of an earlier, identical export


@dataclass
class Check:
    """One budget compared with one figure. `passed` is None when the figure could not be measured."""

    name: str
    metric: str
    comparison: str
    limit: float
    value: float | None
    unit: str
    passed: bool | None
    slice: str | None = None
    provenance: str | None = None
    message: str = ""


@dataclass
class TargetResult:
    subject: str  # "student", "teacher" or "off-the-shelf": which model the artifact was built from
    target: str
    precision: str
    artifact: str
    files: list[str]
    size_bytes: int
    sha256: str  # of the artifact (a package folder: its files' paths and contents); bundle checks it
    latency: Latency | None
    memory: Memory
    speedup_vs_float: float | None
    metrics: Metrics
    slices: dict[str, Metrics]
    checks: list[Check] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    build_seconds: float = 0.0  # a reused artifact's: the seconds its files took to copy from the cache
    warnings: list[str] = field(default_factory=list)
    qualified: bool = False  # name the subject even for the student (the ladder mixes subjects)
    evaluation: dict = field(default_factory=dict)  # how the outputs were computed: kind, runtime, device
    coverage: dict | None = None  # of a quantized artifact: what share of weights and MACs is int8/int4
    outputs: dict = field(default_factory=dict)  # a multi-output model's other outputs: name -> figures
    # An artifact that could not be built or measured: {"stage", "exit_code" (2 refused, 3 failed), "reason"}.
    # Its row stays in the report; the other artifacts keep their figures.
    failure: dict | None = None
    # "reused from cache <key>": the artifact's files and build-time details are an earlier, identical
    # build's (every figure is still measured in this run)
    reused: str | None = None

    @property
    def name(self) -> str:
        return result_label(self.subject, self.target, self.precision, self.qualified)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def outputs_beyond_the_task(self) -> dict:
        """The outputs whose figures the task metric does not already say: all of them for a model of
        several outputs, or whose first output is not what the task metric reads; none otherwise."""
        return self.outputs if len(self.outputs) > 1 or "task_metric" in self.details else {}


@dataclass
class Rung:
    """One step of the ladder: a subject at one precision on one target."""

    name: str
    measured: bool
    meets_budget: bool | None  # None: a figure a budget needs could not be measured
    broken: list[str] = field(default_factory=list)
    cost_per_call: float | None = None
    size_bytes: int | None = None
    p50_ms: float | None = None
    note: str = ""  # why it was not measured, or what the precision saved nothing in


@dataclass
class Ladder:
    order: list[str]
    rungs: list[Rung]
    chosen: str | None
    whole: bool
    verdict: str
    cost: dict | None = None


@dataclass
class Report:
    command: str
    tool_version: str
    created: str
    config: str | None
    student: dict
    teacher: dict | None
    data: dict
    environment: dict
    export: ExportInfo | None
    references: dict[str, dict]  # "float student" / "teacher" -> {"overall": Metrics, "slices": {...}}
    results: list[TargetResult]
    warnings: list[str] = field(default_factory=list)
    gate_checks: list[Check] = field(default_factory=list)  # checks of the run itself (a stale teacher)
    ladder: Ladder | None = None
    task: str = "classification"
    schema_version: str = SCHEMA_VERSION
    # [slices.discover] in `check`: each artifact's search against the float student, by result name
    discoveries: dict[str, SliceDiscovery] = field(default_factory=dict)
    # "reused from cache <key>": the float student's and teacher's outputs are an earlier run's, unchanged
    references_reused: str | None = None

    @property
    def checks(self) -> list[Check]:
        return self.gate_checks + [c for r in self.results for c in r.checks]

    @property
    def exit_code(self) -> int:
        """1 if any budget is broken (a sure failure wins), else 2 if a target refused an artifact, else 3
        if any figure (or a whole artifact) could not be measured.
        A ladder passes when one rung meets every budget: the rungs below it are findings, not failures."""
        if self.ladder is not None:
            if any(c.passed is False for c in self.gate_checks):
                return EXIT_BUDGET_BROKEN
            if self.ladder.chosen:
                return EXIT_PASSED
            return EXIT_CANNOT_MEASURE if any(r.meets_budget is None for r in self.ladder.rungs) \
                else EXIT_BUDGET_BROKEN
        if any(c.passed is False for c in self.checks):
            return EXIT_BUDGET_BROKEN
        if any(r.failure and r.failure["exit_code"] == EXIT_BAD_INPUT for r in self.results):
            return EXIT_BAD_INPUT  # an artifact the target refused: the user's configuration asks what cannot be
        if any(c.passed is None for c in self.checks):
            return EXIT_CANNOT_MEASURE
        return EXIT_PASSED

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_PASSED

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["passed"] = self.passed
        out["exit_code"] = self.exit_code
        for res, obj in zip(out["results"], self.results):
            res["name"] = obj.name
            res["passed"] = obj.passed
        out["discoveries"] = {name: d.to_dict() for name, d in self.discoveries.items()}
        return out



@dataclass
class FoundSlice:
    """One group slice discovery tested (slicefind.py): where the error concentrates, or not."""

    name: str  # its mask in the written data file is slice_<name>; its budget [budgets.slices.<name>]
    source: str  # metadata | cluster | confidence | label
    description: str
    size: int
    failures: int
    error_rate: float  # share of the slice's samples that fail
    rest_error_rate: float  # the same share over every other sample
    mean_error: float  # the kind's per-sample error, averaged over the slice
    rest_mean_error: float
    p_value: float  # one-sided Fisher exact test: more failures in the slice than the rest predicts
    p_adjusted: float  # Holm over every hypothesis the search looked at
    significant: bool
    rank: int = 0
    typical: list[int] = field(default_factory=list)  # a cluster's samples nearest its centre (indices)
    same_as: str = ""  # a higher-ranked proposal holding mostly the same samples (Jaccard >= 0.5)
    proposed: bool = False
    budget: dict = field(default_factory=dict)  # the proposed [budgets.slices.NAME] limits


@dataclass
class SliceDiscovery:
    """`edge-distill slices discover`: what was compared, how failures were counted, what was searched
    and what was found; report.py and html_report.py render it."""

    subject: str  # the artifact (or "float student")
    reference: str  # "teacher" or "float student"
    output: str
    kind: str
    samples: int
    failure_rule: str
    failures: int
    alpha: float
    correction: str
    hypotheses: int  # everything searched, the count the correction divides by
    min_size: int
    seed: int
    seconds: float
    searched: dict  # source -> what it searched (or why it did not)
    candidates: list[FoundSlice] = field(default_factory=list)  # ranked, best first
    margin: float = 0.0
    data_file: str = ""
    budget_file: str = ""
    warnings: list[str] = field(default_factory=list)
    # the search run again on shuffled errors: {"shuffles", "with_a_slice", "smallest_p_adjusted"}
    null_check: dict = field(default_factory=dict)

    @property
    def proposed(self) -> list[FoundSlice]:
        return [c for c in self.candidates if c.proposed]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["proposed"] = [c.name for c in self.proposed]
        return out


def report_from_dict(data: dict) -> Report:
    """A report read back from its JSON (the results store, `edge-distill report`): the same objects,
    so every renderer draws it as it drew the original. Keys a newer version added are ignored.
    Raises ValueError for data that are not a report."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError("no 'results' list at the top level")
    try:
        report = _build(Report, data)
        report.references = {name: {"overall": _build(Metrics, ref["overall"]),
                                    "slices": {k: _build(Metrics, v) for k, v in ref.get("slices", {}).items()}}
                             for name, ref in report.references.items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    return report


def _build(cls, data):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: _value(hints[k], v) for k, v in data.items() if k in known})


def _value(hint, value):
    """`value` as `hint` says: a dataclass, an optional one, or a list or dict of them."""
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if dataclasses.is_dataclass(a)]
        return _build(inner[0], value) if inner and isinstance(value, dict) else value
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [_build(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return {k: _build(args[1], v) for k, v in value.items()}
    return value
