"""The gate's invariant, as a property: adding or tightening any limit, at any level of a budget
(global, per precision, per slice, per output, the provenance it requires, against a baseline), never
turns a failing verdict into a passing one, and never clears a failing check. Read backwards, the
same property says loosening never turns a pass into a fail.

Budgets are generated as the TOML tables a user writes and go through `parse_budget`, so a parser that
drops a level (a [budgets.outputs.NAME] table once deleted every global limit) breaks the property.
Results are generated with any figure present or missing, from any provenance."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_distill import budgets, regression
from edge_distill.kinds import KINDS
from edge_distill.budgets import OUTPUT_CHECKS, REGRESSION_LIMITS, SCALAR_CHECKS, SLICE_CHECKS, parse_budget
from edge_distill.metrics import Metrics
from edge_distill.provenance import RANK, Provenance
from edge_distill.result import Latency, Memory, Report, TargetResult
from edge_distill.targets import Precision

P = Path("edge-distill.toml")
SLICES, OUTPUTS = ("rare", "night"), ("box", "score")
INT8 = Precision("int8", 8, 8, "int8", calibrated=True)
FP32 = Precision("fp32", 32, 32, "fp32")
METRIC_FIELDS = [k for k in Metrics.__dataclass_fields__ if k != "samples"]

fraction = st.floats(0, 1, allow_nan=False)
maybe = lambda s: st.none() | s  # noqa: E731 - a figure that may be missing
kinds = st.sampled_from(sorted(RANK))


@st.composite
def metrics(draw) -> Metrics:
    return Metrics(samples=draw(st.integers(1, 500)), **{k: draw(maybe(fraction)) for k in METRIC_FIELDS})


@st.composite
def latencies(draw) -> Latency | None:
    if draw(st.booleans()):
        return None
    kind = draw(kinds)
    prov = Provenance(kind, "host", "onnxruntime", "1", "cpu", 1, "Linux", "wall time")
    samples = draw(maybe(st.lists(st.floats(0.01, 100), min_size=3, max_size=8)))
    p = sorted(draw(st.lists(st.floats(0.01, 100), min_size=4, max_size=4)))
    high = draw(maybe(st.floats(0.01, 200)))
    return Latency(*p, p[0], p[0], runs=len(samples or []) or 10, warmup=1, batch=1, provenance=prov,
                   high_ms=high, low_ms=None if high is None else high / 2, samples_ms=samples)


@st.composite
def results(draw, precision: str) -> TargetResult:
    latency = draw(latencies())
    peak = draw(maybe(st.floats(1, 100)))
    memory = Memory(peak, None if peak is None else latency.provenance if latency else None, "not measured")
    outputs = {name: {**{OUTPUT_CHECKS[k][0]: draw(maybe(st.floats(0, 2))) for k in OUTPUT_CHECKS},
                      "provenance": draw(kinds), "kind": draw(st.sampled_from(sorted(KINDS))),
                      "inferred": draw(st.booleans())}
               for name in draw(st.sets(st.sampled_from(OUTPUTS)))}
    return TargetResult(
        "student", "ort", precision, f"ort/model.{precision}.onnx", [], draw(st.integers(1, 5_000_000)), "0" * 64,
        latency, memory, draw(maybe(st.floats(0.1, 5))), draw(metrics()),
        {name: draw(metrics()) for name in draw(st.sets(st.sampled_from(SLICES)))},
        evaluation={"kind": draw(kinds)}, coverage={"quantized_weight_fraction": draw(fraction)}, outputs=outputs)


def limit_value(key: str) -> st.SearchStrategy:
    unit = (SCALAR_CHECKS.get(key) or OUTPUT_CHECKS.get(key) or ("", "<=", ""))[2]
    return st.floats(0, 200 if unit in ("ms", "MB") else 2, allow_nan=False)


def limit_tables(keys) -> st.SearchStrategy:
    return st.dictionaries(st.sampled_from(sorted(keys)), st.just(None)).flatmap(
        lambda chosen: st.fixed_dictionaries({k: limit_value(k) for k in chosen}))


def layer_tables(top: bool) -> st.SearchStrategy:
    """A budget table as a user writes it: limits, slices, outputs, a required provenance; at the
    top, precision layers and the regression table too."""
    parts = {"limits": limit_tables(SCALAR_CHECKS),
             "slices": st.dictionaries(st.sampled_from(SLICES), limit_tables(SLICE_CHECKS), max_size=2),
             "outputs": st.dictionaries(st.sampled_from(OUTPUTS), limit_tables(OUTPUT_CHECKS), max_size=2),
             "require": maybe(kinds)}
    if top:
        parts["precisions"] = st.dictionaries(st.sampled_from(("int8", "fp32")), layer_tables(False), max_size=2)
        parts["regression"] = limit_tables(REGRESSION_LIMITS)
        parts["regression_slices"] = st.dictionaries(st.sampled_from(SLICES),
                                                     limit_tables({"max_accuracy_decrease"}), max_size=2)

    def assemble(p):
        table = {**p["limits"]}
        for key in ("slices", "outputs", "precisions"):
            if p.get(key):
                table[key] = p[key]
        if p["require"]:
            table["require"] = p["require"]
        if p.get("regression") or p.get("regression_slices"):
            table["regression"] = {**p["regression"], **({"slices": p["regression_slices"]}
                                                          if p["regression_slices"] else {})}
        return table
    return st.fixed_dictionaries(parts).map(assemble)


def stricter(comparison: str, a: float, b: float | None) -> float:
    return a if b is None else (min(a, b) if comparison == "<=" else max(a, b))


def tighten(table: dict, precision: str, edit) -> dict:
    """`table` with one limit added or tightened where `edit` says, never looser than the limit it
    overrides (a precision layer's limit overrides the global one: a looser one there is loosening)."""
    level, key, value, name = edit
    table = copy.deepcopy(table)
    layer = table.setdefault("precisions", {}).setdefault(precision, {}) if level.startswith("precision") else table
    if level in ("global", "precision"):
        inherited = layer.get(key, table.get(key))
        layer[key] = stricter(SCALAR_CHECKS[key][1], value, inherited)
    elif level in ("slice", "precision.slice"):
        inherited = layer.get("slices", {}).get(name, {}).get(key, table.get("slices", {}).get(name, {}).get(key))
        layer.setdefault("slices", {}).setdefault(name, {})[key] = stricter(SLICE_CHECKS[key][1], value, inherited)
    elif level in ("output", "precision.output"):
        inherited = layer.get("outputs", {}).get(name, {}).get(key, table.get("outputs", {}).get(name, {}).get(key))
        layer.setdefault("outputs", {}).setdefault(name, {})[key] = stricter(OUTPUT_CHECKS[key][1], value, inherited)
    elif level in ("require", "precision.require"):
        inherited = layer.get("require", table.get("require"))
        layer["require"] = max(key, inherited or "estimated", key=RANK.get)
    elif level == "regression":
        reg = table.setdefault("regression", {})
        reg[key] = stricter("<=", value, reg.get(key, REGRESSION_LIMITS[key]))
    elif level == "regression.slice":
        reg = table.setdefault("regression", {})
        inherited = reg.get("slices", {}).get(name, {}).get(
            "max_accuracy_decrease", reg.get("max_accuracy_decrease", REGRESSION_LIMITS["max_accuracy_decrease"]))
        reg.setdefault("slices", {}).setdefault(name, {})["max_accuracy_decrease"] = stricter("<=", value, inherited)
    if not table.get("precisions", True):
        del table["precisions"]
    return table


edits = st.one_of(
    st.tuples(st.sampled_from(("global", "precision")), st.sampled_from(sorted(SCALAR_CHECKS)),
              st.floats(0, 200), st.none()),
    st.tuples(st.sampled_from(("slice", "precision.slice")), st.sampled_from(sorted(SLICE_CHECKS)),
              fraction, st.sampled_from(SLICES)),
    st.tuples(st.sampled_from(("output", "precision.output")), st.sampled_from(sorted(OUTPUT_CHECKS)),
              st.floats(0, 2), st.sampled_from(OUTPUTS)),
    st.tuples(st.sampled_from(("require", "precision.require")), kinds, st.none(), st.none()),
    st.tuples(st.just("regression"), st.sampled_from(sorted(REGRESSION_LIMITS)), st.floats(0, 1), st.none()),
    st.tuples(st.just("regression.slice"), st.none(), st.floats(0, 1), st.sampled_from(SLICES)))


def verdict(table: dict, result: TargetResult, precision: Precision, baseline: TargetResult) -> tuple[int, set]:
    """The run's exit code and its failing checks, as `check --baseline` gets them."""
    budget = parse_budget(table, P)
    result = copy.deepcopy(result)
    result.checks = budgets.evaluate(result, budget, precision)
    report = Report("check", "0", "", None, {}, None, {}, {}, None, {}, [result])
    before = Report("check", "0", "", None, {}, None, {}, {}, None, {}, [baseline]).to_dict()
    regression.compare(report, regression.baseline_of(before, P), budget.regression)
    return report.exit_code, {c.name for c in report.checks if c.passed is False}


SEVERITY = {0: 0, 3: 1, 1: 2}  # pass < cannot measure < broken


@settings(max_examples=400, deadline=None)
@given(data=st.data(), table=layer_tables(top=True), precision=st.sampled_from((INT8, FP32)), edit=edits)
def test_adding_or_tightening_a_limit_never_turns_a_fail_into_a_pass(data, table, precision, edit):
    result = data.draw(results(precision.name))
    baseline = data.draw(results(precision.name))
    code, failing = verdict(table, result, precision, baseline)
    tighter = tighten(table, precision.name, edit)
    tighter_code, tighter_failing = verdict(tighter, result, precision, baseline)
    assert failing <= tighter_failing, (tighter, failing - tighter_failing)
    assert SEVERITY[tighter_code] >= SEVERITY[code]


@settings(max_examples=200, deadline=None)
@given(table=layer_tables(top=True), extra=layer_tables(top=True))
def test_every_level_of_a_table_is_kept_whatever_else_it_holds(table, extra):
    """Giving a table more levels (slices, outputs, precisions, regression) never loses the limits it
    had: no level's parsing may overwrite another's."""
    alone = parse_budget(table, P)
    more = {**table, **{k: v for k, v in extra.items() if k in ("slices", "outputs", "precisions", "regression")
                        and k not in table}}
    merged = parse_budget(more, P)
    assert merged.limits == alone.limits and merged.require == alone.require
    for level in ("slices", "outputs", "precisions"):
        assert getattr(merged, level).items() >= getattr(alone, level).items()


def test_an_outputs_table_keeps_the_global_limits():
    """The bug this file was written for: with [budgets.outputs.box], latency, size and accuracy-drop
    limits vanished and a two-output int4 artifact with accuracy drop 0.0625 passed 0.05."""
    table = {"latency_p95_ms": 0.001, "max_size_mb": 0.001, "max_accuracy_drop": 0.05,
             "outputs": {"box": {"max_mean_abs_error": 0.5}}}
    budget = parse_budget(table, P)
    assert budget.limits == {"latency_p95_ms": 0.001, "max_size_mb": 0.001, "max_accuracy_drop": 0.05}
    prov = Provenance("measured", "host", "onnxruntime", "1", "cpu", 1, "Linux", "wall time")
    result = TargetResult("student", "ort", "int4", "ort/model.int4.onnx", [], 50_000, "0" * 64,
                          Latency(1.0, 1.1, 1.2, 1.3, 1.0, 0.9, 10, 1, 1, prov), Memory(10.0, prov), 1.0,
                          Metrics(samples=80, accuracy=0.8, accuracy_drop=0.0625), {},
                          outputs={"box": {"kind": "dense", "inferred": False, "mean_abs_error": 0.1}})
    checks = {c.name: c.passed for c in budgets.evaluate(result, budget, INT8)}
    assert checks == {"ort-int4/latency_p95_ms": False, "ort-int4/max_accuracy_drop": False,
                      "ort-int4/max_size_mb": False, "ort-int4/output[box]/max_mean_abs_error": True}


@settings(max_examples=300, deadline=None)
@given(verdicts=st.lists(st.lists(st.sampled_from((True, False, None)), max_size=4), max_size=4),
       failures=st.lists(st.sampled_from((None, 2, 3)), max_size=4))
def test_the_run_exits_with_its_worst_artifact_a_broken_budget_first_then_a_refusal_then_the_unmeasured(
        verdicts, failures):
    from edge_distill.result import Check

    results = []
    for i, (checks, failure) in enumerate(zip(verdicts + [[]] * len(failures), failures + [None] * len(verdicts))):
        result = TargetResult("student", "ort", f"p{i}", "", [], 0, "", None, Memory(None, None), None, Metrics(1), {},
                              checks=[Check(f"c{j}", "accuracy", ">=", 0.5, None, "", v) for j, v in enumerate(checks)])
        if failure:
            result.failure = {"exit_code": failure, "reason": "refused"}
            result.checks.append(Check("built", "built", "==", 1.0, None, "", None))
        results.append(result)
    report = Report("check", "0", "", None, {}, None, {}, {}, None, {}, results)
    every = [c.passed for r in results for c in r.checks]
    refused = any(r.failure and r.failure["exit_code"] == 2 for r in results)
    expected = 1 if False in every else 2 if refused else 3 if None in every else 0
    assert report.exit_code == expected and report.passed is (expected == 0)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), precision=st.sampled_from((INT8, FP32)))
def test_a_report_read_back_from_its_json_renders_the_same_json(data, precision):
    import json

    from edge_distill.report import to_json
    from edge_distill.result import report_from_dict

    result = data.draw(results(precision.name))
    result.checks = budgets.evaluate(result, parse_budget(data.draw(layer_tables(top=True)), P), precision)
    if data.draw(st.booleans()):
        result.failure = {"exit_code": 2, "reason": "refused: no MatMul to pack in 4 bits"}
    report = Report("check", "0", "2026-12-05T00:00:00+00:00", None, {}, None, {}, {}, None, {}, [result])
    text = to_json(report)
    assert to_json(report_from_dict(json.loads(text))) == text


scores = st.integers(2, 6).flatmap(lambda classes: st.integers(4, 40).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.floats(-5, 5), min_size=classes, max_size=classes), min_size=n, max_size=n),
    st.lists(st.lists(st.floats(-5, 5), min_size=classes, max_size=classes), min_size=n, max_size=n),
    st.lists(st.integers(0, classes - 1), min_size=n, max_size=n),
    st.lists(st.floats(0.01, 10), min_size=n, max_size=n),
    st.permutations(range(n)))))


@settings(max_examples=200, deadline=None)
@given(drawn=scores)
def test_classification_metrics_hold_their_invariants(drawn):
    """Invariant under a permutation of the samples; unit weights give the unweighted figure; an output
    identical to the float student's agrees fully and drops nothing; the drop is float minus artifact."""
    import numpy as np

    from edge_distill.metrics import classification

    out, ref, labels, weights, order = (np.array(x) for x in drawn)
    m = classification(out, labels=labels, weights=weights, float_outputs=ref, teacher_outputs=ref)
    shuffled = classification(out[order], labels=labels[order], weights=weights[order], float_outputs=ref[order],
                              teacher_outputs=ref[order])
    assert shuffled == m
    unit = classification(out, labels=labels, weights=np.ones(len(out)), float_outputs=ref)
    assert unit.weighted_accuracy == unit.accuracy
    same = classification(ref, labels=labels, float_outputs=ref, teacher_outputs=ref)
    assert (same.float_agreement, same.teacher_agreement, same.accuracy_drop) == (1.0, 1.0, 0.0)
    hand = np.mean(ref.argmax(1) == labels) - np.mean(out.argmax(1) == labels)
    assert abs(m.accuracy_drop - hand) < 1e-6  # positive when the artifact is worse
