"""Budgets: what a result must satisfy, and the checks that compare them with measurements.

A budget table (in `edge-distill.toml` under [budgets], or a budget file given to `verify`):

    latency_p95_ms = 100          # max; also latency_p50_ms, latency_p90_ms, latency_p99_ms
    min_accuracy = 0.80           # against the labels
    min_weighted_accuracy = 0.80  # with the per-sample weights of the data
    max_accuracy_drop = 0.01      # float student's accuracy minus this artifact's
    min_float_agreement = 0.98    # same top-1 as the float student
    min_teacher_agreement = 0.90  # same top-1 as the teacher
    max_size_mb = 1.0
    max_peak_memory_mb = 50
    min_speedup_vs_float = 1.0    # float p50 / this p50, for quantized artifacts
    min_teacher_cosine = 0.95     # embedding: mean cosine similarity to the teacher's (also min_float_cosine)
    min_retrieval_agreement = 0.9 # embedding: same nearest neighbour as the teacher (min_float_retrieval_agreement)
    min_quantized_fraction = 0.9  # quantized precisions: share of the weights really stored in int8/int4
    sequence_length = 128         # text: the token count the latency limits hold at
    require = "measured"          # the weakest provenance a figure may have, overall and in slices:
                                  # measured > emulated > reference-mil > estimated
    estimate = "upper"            # an estimated latency is judged at the high end of the range its
                                  # profile's validation gives (latency.high_ms); "point" (the default)
                                  # judges the estimate itself

    [budgets.slices.high_risk]    # per slice: min_accuracy, max_accuracy_drop,
    min_accuracy = 0.70           #            min_float_agreement, min_teacher_agreement

    [budgets.outputs.text]        # any output, the first included, by its kind's keys (edge_distill.kinds):
    max_cer = 0.02                # a sequence's CER; min_psnr_db for a map, min_mean_iou, min_exact_match...

    [budgets.precisions.int4]     # layered: overrides the keys above for one precision
    max_accuracy_drop = 0.03

    [budgets.regression]          # against a baseline report (check --baseline REPORT.json); defaults:
    max_latency_increase = 0.10   # p50 growth, and only beyond the runs' noise (regression.py)
    max_p95_increase = 0.20       # p95 growth, likewise
    max_memory_increase = 0.10    # peak memory growth
    max_accuracy_decrease = 0.005 # accuracy and agreement drops, overall and per slice
    max_size_increase = 0.05
    [budgets.regression.slices.high_risk]  # a slice's own limit
    max_accuracy_decrease = 0.002

Layers resolve as coremltools' do: global, then per precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput
from .kinds import all_budget_keys, get_kind
from .provenance import RANK as PROVENANCE_RANK
from .result import MB, Check, TargetResult
from .tomlfile import check_keys, expect, read_toml


# key -> (metric it reads, comparison, unit). "<=" means the value must not exceed the limit.
SCALAR_CHECKS = {
    "latency_p50_ms": ("latency.p50_ms", "<=", "ms"),
    "latency_p90_ms": ("latency.p90_ms", "<=", "ms"),
    "latency_p95_ms": ("latency.p95_ms", "<=", "ms"),
    "latency_p99_ms": ("latency.p99_ms", "<=", "ms"),
    "min_accuracy": ("accuracy", ">=", ""),
    "min_weighted_accuracy": ("weighted_accuracy", ">=", ""),
    "max_accuracy_drop": ("accuracy_drop", "<=", ""),
    "min_float_agreement": ("float_agreement", ">=", ""),
    "min_teacher_agreement": ("teacher_agreement", ">=", ""),
    "max_size_mb": ("size_mb", "<=", "MB"),
    "max_peak_memory_mb": ("peak_memory_mb", "<=", "MB"),
    "min_speedup_vs_float": ("speedup_vs_float", ">=", "x"),
    "min_teacher_cosine": ("teacher_cosine", ">=", ""),
    "min_float_cosine": ("float_cosine", ">=", ""),
    "min_retrieval_agreement": ("teacher_retrieval_agreement", ">=", ""),
    "min_float_retrieval_agreement": ("float_retrieval_agreement", ">=", ""),
    "min_quantized_fraction": ("quantized_fraction", ">=", ""),  # of the weights, in int8/int4: quantized precisions
}
# [budgets.outputs.NAME]: any output, the first included, against the float student's same output; each
# output kind answers its own keys (edge_distill.kinds: min_position_agreement, max_cer, min_psnr_db, ...)
OUTPUT_CHECKS = all_budget_keys()
SLICE_CHECKS = {k: SCALAR_CHECKS[k] for k in
                ("min_accuracy", "max_accuracy_drop", "min_float_agreement", "min_teacher_agreement",
                 "min_teacher_cosine", "min_float_cosine", "min_retrieval_agreement", "min_float_retrieval_agreement")}


MAX_SLICES = 1000  # a budget's slice tables: beyond this a file is not a budget (each would be checked per artifact)

REGRESSION_LIMITS = {  # [budgets.regression]: how much worse than a baseline report a figure may get
    "max_latency_increase": 0.10,  # relative growth of p50, beyond the run-to-run noise
    "max_p95_increase": 0.20,  # relative growth of p95 (the tail moves more with load), beyond the noise
    "max_memory_increase": 0.10,  # relative growth of peak memory
    "max_accuracy_decrease": 0.005,  # absolute drop of accuracy and agreement, overall and per slice
    "max_size_increase": 0.05,  # relative growth of the artifact's size
}


@dataclass(frozen=True)
class Budget:
    limits: dict[str, float] = field(default_factory=dict)
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    require: str | None = None
    precisions: dict[str, Budget] = field(default_factory=dict)
    sequence_length: int | None = None  # text models: the token count the latency limits hold at
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # output name -> OUTPUT_CHECKS limits
    estimate: str | None = None  # "upper": estimated latencies judged at latency.high_ms; None or "point": as estimated
    regression: dict = field(default_factory=dict)  # [budgets.regression]: limits against a baseline (and per slice)

    def sets(self, key: str) -> bool:
        return key in self.limits or any(key in limits for limits in self.slices.values())

    def without(self, key: str) -> Budget:
        """This (resolved) budget with one limit removed, overall and in every slice."""
        return Budget(limits={k: v for k, v in self.limits.items() if k != key},
                      slices={n: {k: v for k, v in lim.items() if k != key} for n, lim in self.slices.items()},
                      require=self.require, sequence_length=self.sequence_length, outputs=self.outputs,
                      estimate=self.estimate)

    def for_precision(self, precision: str, baseline: bool = False) -> Budget:
        """This budget with the [precisions.<precision>] layer applied. The float baseline (the
        target's fp32) is not compared with itself, so it carries no speedup limit."""
        layer = self.precisions.get(precision, Budget())
        slices = {k: dict(v) for k, v in self.slices.items()}
        for name, limits in layer.slices.items():
            slices.setdefault(name, {}).update(limits)
        limits = {**self.limits, **layer.limits}
        if baseline:
            limits.pop("min_speedup_vs_float", None)
        outputs = {k: dict(v) for k, v in self.outputs.items()}
        for name, output_limits in layer.outputs.items():
            outputs.setdefault(name, {}).update(output_limits)
        return Budget(limits=limits, slices=slices, require=layer.require or self.require,
                      sequence_length=self.sequence_length, outputs=outputs, estimate=layer.estimate or self.estimate)


def _regression(table, where: str, path: Path) -> dict:
    """[budgets.regression]: limits against a baseline, and [budgets.regression.slices.NAME] a slice's own
    max_accuracy_decrease (the others' is the table's)."""
    table = dict(expect(table, dict, "regression", where.rpartition(".")[0], path))
    slices = expect(table.pop("slices", {}), dict, "slices", where, path)
    check_keys(table, set(REGRESSION_LIMITS), where, path)
    limits: dict = {k: _limit(v, k, where, path) for k, v in table.items()}
    for name, sl in slices.items():
        check_keys(expect(sl, dict, name, f"{where}.slices", path), {"max_accuracy_decrease"}, f"{where}.slices.{name}",
                   path)
        limits.setdefault("slices", {})[name] = {k: _limit(v, k, f"{where}.slices.{name}", path) for k, v in sl.items()}
    return limits


def parse_budget(table: dict, path: Path, where: str = "budgets", allow_layers: bool = True) -> Budget:
    allowed = set(SCALAR_CHECKS) | {"slices", "require", "outputs", "estimate"} | (
        {"precisions", "sequence_length", "regression"} if allow_layers else set())
    check_keys(table, allowed, where, path)
    limits = {key: _limit(table[key], key, where, path) for key in SCALAR_CHECKS if key in table}
    require = table.get("require")
    if require is not None and require not in PROVENANCE_RANK:
        raise BadInput(f"'require' in [{where}] must be one of {sorted(PROVENANCE_RANK)}, got {require!r}", path=path)
    estimate = table.get("estimate")
    if estimate is not None and estimate not in ("point", "upper"):
        raise BadInput(f"'estimate' in [{where}] must be \"point\" or \"upper\", got {estimate!r}", path=path)
    slices = {}
    tables = expect(table.get("slices", {}), dict, "slices", where, path)
    if len(tables) > MAX_SLICES:
        raise BadInput(f"[{where}.slices] holds {len(tables):,} slice tables, more than the {MAX_SLICES:,} a budget "
                       "may have", path=path)
    for name, sl in tables.items():
        sub = f"{where}.slices.{name}"
        check_keys(expect(sl, dict, name, f"{where}.slices", path), set(SLICE_CHECKS), sub, path)
        slices[name] = {k: _limit(v, k, sub, path) for k, v in sl.items()}
    outputs = {}
    for name, output_table in expect(table.get("outputs", {}), dict, "outputs", where, path).items():
        sub = f"{where}.outputs.{name}"
        check_keys(expect(output_table, dict, name, f"{where}.outputs", path), set(OUTPUT_CHECKS), sub, path)
        outputs[name] = {k: _limit(v, k, sub, path) for k, v in output_table.items()}
    precisions = {}
    for name, layer in expect(table.get("precisions", {}), dict, "precisions", where, path).items():
        precisions[name] = parse_budget(expect(layer, dict, name, f"{where}.precisions", path), path,
                                        f"{where}.precisions.{name}", allow_layers=False)
    regression = _regression(table.get("regression", {}), f"{where}.regression", path)
    length = table.get("sequence_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise BadInput(f"'sequence_length' in [{where}] must be a positive int (tokens), got {length!r}", path=path)
    return Budget(limits=limits, slices=slices, require=require, precisions=precisions, sequence_length=length,
                  outputs=outputs, estimate=estimate, regression=regression)


def _limit(value, key: str, where: str, path: Path) -> float:
    """One limit, checked the same way at every level: a finite, non-negative number (a negative
    limit would silently disable its gate; NaN compares false with everything and is not JSON)."""
    value = expect(value, (int, float), key, where, path)
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"'{key}' in [{where}] must be a finite number, not negative, got {value}", path=path)
    return float(value)


def load_budget_file(path: str | Path) -> Budget:
    """A budget file is either a bare budget table or a file with a [budgets] table."""
    path = Path(path)
    data = read_toml(path)
    if "budgets" in data:
        check_keys(data, {"budgets"}, "top level", path)
        return parse_budget(data["budgets"], path)
    return parse_budget(data, path, where="top level")


def evaluate(result: TargetResult, budget: Budget, precision=None) -> list[Check]:
    """The checks of one result against the budget (resolved for its precision here): a pure
    function of the two, and of what the target declares of the precision (a `targets.Precision`:
    the float baseline carries no speedup limit, a float precision no quantized-fraction limit)."""
    layer, _ = applicable(result, budget, precision)
    baseline = bool(precision and precision.is_float_baseline)
    why_no_numerics = result.evaluation.get("error") or result.details.get("task_metric")
    slice_figures = {s: m.figures() for s, m in result.slices.items()}
    if why_no_numerics:
        for figures in slice_figures.values():
            figures.update({f"{k}.why": why_no_numerics for k, v in list(figures.items()) if v is None})
    figures = figures_of(result, baseline)
    upper = _upper_latency(result) if layer.estimate == "upper" else {}
    checks = check_figures(layer, {**figures, **upper}, slice_figures, provenance_of(result), result.name)
    for check in checks:
        if check.metric in upper and check.passed is not None:
            check.message = check.message or (f"judged at the high end of the estimate's validated range "
                                               f"({upper[check.metric]} ms; the estimate is {figures[check.metric]} ms)")
    return checks + _output_checks(result, layer)


def _upper_latency(r: TargetResult) -> dict:
    """An estimated latency at the high end of the range its profile's validation gives (only
    estimates carry a range)."""
    lat = r.latency
    if lat is None or lat.high_ms is None:
        return {}
    return {f"latency.{k}": lat.high_ms for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")}


def _output_checks(result: TargetResult, layer: Budget) -> list[Check]:
    """[budgets.outputs.NAME] against the figures of that output, judged by its kind."""
    checks = []
    for name, limits in layer.outputs.items():
        figures = result.outputs.get(name)
        for key, limit in limits.items():
            metric, comparison, unit = OUTPUT_CHECKS[key]
            check = Check(f"{result.name}/output[{name}]/{key}", metric, comparison, limit, None, unit, None)
            kind = get_kind(figures["kind"]) if figures is not None else None
            if figures is None or kind is None:
                check.message = f"the artifact has no output '{name}' (its outputs: {', '.join(result.outputs) or 'none'})"
            elif key not in kind.budget_keys:
                check.message = (f"output '{name}' is a {kind.name} output ({'inferred' if figures['inferred'] else 'declared'}"
                                 f"): {key} does not apply to it; its keys: {', '.join(kind.budget_keys)}")
            else:
                why = figures.get(f"{metric}.why") or f"no {metric} for output '{name}' (no float student to compare with)"
                check = _check(check.name, key, limit, {**figures, f"{metric}.why": why},
                               {metric: figures.get("provenance", "measured")}, layer.require, OUTPUT_CHECKS)
            checks.append(check)
    return checks


def unanswerable(budget: Budget, kinds: dict[str, str]) -> list[str]:
    """[budgets.outputs.NAME] keys the named output's kind has no figure for, each with its table: known
    once the outputs are kinded (declared or inferred), so a run refuses them before it builds anything
    rather than reporting them unmeasured at its end. An output the model lacks is left to the checks."""
    layers = [("budgets", budget), *((f"budgets.precisions.{p}", layer) for p, layer in budget.precisions.items())]
    found = []
    for where, layer in layers:
        for name, limits in layer.outputs.items():
            kind = get_kind(kinds[name]) if name in kinds else None
            for key in limits:
                if kind is not None and key not in kind.budget_keys:
                    found.append(f"[{where}.outputs.{name}] {key}: output '{name}' is a {kind.name} output, which "
                                 f"has no such figure (its keys: {', '.join(kind.budget_keys)})")
    return found


def applicable(result: TargetResult, budget: Budget, precision=None) -> tuple[Budget, list[str]]:
    """The budget layer that applies to this result, and notes on the limits that do not."""
    layer = budget.for_precision(result.precision, bool(precision and precision.is_float_baseline))
    if precision is not None and precision.weight_bits > 8 and layer.sets("min_quantized_fraction"):
        layer = layer.without("min_quantized_fraction")  # nothing to quantize in a float artifact
    if result.subject == "off-the-shelf" and layer.sets("min_teacher_cosine"):
        return layer.without("min_teacher_cosine"), [
            f"{result.name}: min_teacher_cosine does not apply to an off-the-shelf model (its embedding space "
            "is its own); it is judged by retrieval agreement"]
    return layer, []


def figures_of(r: TargetResult, baseline: bool = False) -> dict:
    """A result as the metric paths budgets read ("latency.p95_ms", "accuracy"), each missing figure
    with the reason it is missing ("<path>.why")."""
    figures = r.metrics.figures()
    figures["size_mb"] = round(r.size_bytes / MB, 6)
    figures["peak_memory_mb"] = r.memory.peak_mb
    why_no_latency = r.memory.why_not if r.latency is None else None
    if r.memory.peak_mb is None:
        figures["peak_memory_mb.why"] = f"cannot measure peak memory: {r.memory.why_not}"
    for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms"):
        figures[f"latency.{k}"] = getattr(r.latency, k) if r.latency else None
        if r.latency is None:
            figures[f"latency.{k}.why"] = why_no_latency or "latency was not measured"
        elif figures[f"latency.{k}"] is None:
            figures[f"latency.{k}.why"] = r.latency.missing or "latency was not measured"
    figures["speedup_vs_float"] = 1.0 if baseline else r.speedup_vs_float
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
    figures["quantized_fraction"] = (r.coverage or {}).get("quantized_weight_fraction")
    if figures["quantized_fraction"] is None:
        figures["quantized_fraction.why"] = f"the {r.target} target cannot read what share of this artifact is quantized"
    why_not_task = r.evaluation.get("error") or r.details.get("task_metric")
    if why_not_task:
        figures.update({f"{k}.why": why_not_task for k in r.metrics.figures()})
    return figures


def provenance_of(r: TargetResult) -> dict:
    """Metric path -> how that figure was obtained (measured, emulated, reference-mil, estimated)."""
    kind = r.evaluation.get("kind", "measured")
    prov = {k: kind for k in ("accuracy", "weighted_accuracy", "accuracy_drop", "float_agreement",
                              "teacher_agreement")}
    if r.latency:
        prov.update({f"latency.{k}": r.latency.provenance.kind for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")})
        prov["speedup_vs_float"] = r.latency.provenance.kind
    if r.memory.provenance:
        prov["peak_memory_mb"] = r.memory.provenance.kind
    return prov


def check_figures(budget: Budget, figures: dict, slice_figures: dict[str, dict], provenance: dict[str, str],
                  prefix: str) -> list[Check]:
    """Compare a resolved budget with figures.

    `figures` maps metric paths (e.g. "latency.p95_ms", "accuracy") to values or None;
    `provenance` maps a metric path to its provenance kind where one applies.
    """
    checks = [_check(f"{prefix}/{key}", key, budget.limits[key], figures, provenance, budget.require)
              for key in SCALAR_CHECKS if key in budget.limits]
    for name, limits in budget.slices.items():
        for key, limit in limits.items():
            label = f"{prefix}/slice[{name}]/{key}"
            if name not in slice_figures:
                checks.append(Check(label, SLICE_CHECKS[key][0], SLICE_CHECKS[key][1], limit, None,
                                    SLICE_CHECKS[key][2], None, slice=name,
                                    message=f"the evaluation data have no slice '{name}'"))
                continue
            check = _check(label, key, limit, slice_figures[name], provenance, budget.require)
            check.slice = name
            checks.append(check)
    return checks


def _check(label, key, limit, figures, provenance, require, table=SCALAR_CHECKS) -> Check:
    metric, comparison, unit = table[key]
    value = figures.get(metric)
    kind = provenance.get(metric)
    check = Check(label, metric, comparison, limit, value, unit, None, provenance=kind)
    if value is None:
        check.message = figures.get(f"{metric}.why", f"{metric} was not measured")
        return check
    check.passed = value <= limit if comparison == "<=" else value >= limit
    if require and kind is not None and PROVENANCE_RANK[kind] < PROVENANCE_RANK[require]:
        check.passed = False
        check.message = f"the budget requires a {require} figure; this one is {kind}"
    return check
