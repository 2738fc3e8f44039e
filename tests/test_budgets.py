import dataclasses
import re
from pathlib import Path

import pytest

from edge_distill.budgets import SCALAR_CHECKS, Check, check_figures, load_budget_file, parse_budget

from edge_distill.errors import BadInput
from edge_distill.result import Ladder, Report, Rung

P = Path("budget.toml")


def test_layers_resolve_global_then_precision():
    budget = parse_budget({"max_accuracy_drop": 0.01, "min_speedup_vs_float": 1.2,
                           "slices": {"rare": {"min_accuracy": 0.7}},
                           "precisions": {"int4": {"max_accuracy_drop": 0.03, "slices": {"rare": {"min_accuracy": 0.6}}}}},
                          P)
    int4, int8 = (budget.for_precision(p) for p in ("int4", "int8"))
    fp32 = budget.for_precision("fp32", baseline=True)  # the target's float baseline
    assert int4.limits["max_accuracy_drop"] == 0.03 and int4.slices["rare"]["min_accuracy"] == 0.6
    assert int8.limits["max_accuracy_drop"] == 0.01 and int8.slices["rare"]["min_accuracy"] == 0.7
    assert "min_speedup_vs_float" not in fp32.limits and int8.limits["min_speedup_vs_float"] == 1.2


def test_checks_compare_in_the_right_direction():
    budget = parse_budget({"latency_p95_ms": 10, "min_accuracy": 0.9}, P)
    checks = check_figures(budget, {"latency.p95_ms": 10.0, "accuracy": 0.89}, {}, {"latency.p95_ms": "measured"}, "x")
    assert [(c.metric, c.passed) for c in checks] == [("latency.p95_ms", True), ("accuracy", False)]


def test_required_provenance_rejects_an_estimate():
    budget = parse_budget({"latency_p95_ms": 100, "require": "measured"}, P)
    (check,) = check_figures(budget, {"latency.p95_ms": 1.0}, {}, {"latency.p95_ms": "estimated"}, "x")
    assert check.passed is False and "requires a measured figure" in check.message


def report_with(*verdicts, ladder=None) -> Report:
    checks = [Check(f"x/c{i}", "accuracy", ">=", 0.5, None if v is None else 0.6, "", v) for i, v in enumerate(verdicts)]
    return Report(command="check", tool_version="0", created="", config=None, student={}, teacher=None, data={},
                  environment={}, export=None, references={}, results=[], gate_checks=checks, ladder=ladder)


def test_missing_figure_is_unmeasured_and_exit_3():
    budget = parse_budget({"min_teacher_agreement": 0.9, "slices": {"nope": {"min_accuracy": 0.5}}}, P)
    checks = check_figures(budget, {"teacher_agreement": None, "teacher_agreement.why": "no teacher was given"}, {}, {}, "x")
    assert [c.passed for c in checks] == [None, None]
    assert checks[0].message == "no teacher was given" and "no slice 'nope'" in checks[1].message
    report = report_with()
    report.gate_checks = checks
    assert report.exit_code == 3 and report.passed is False


@pytest.mark.parametrize("verdicts, code", [
    ((), 0), ((True, True), 0), ((True, None), 3), ((None, False), 1), ((False, None, True), 1), ((False,), 1)])
def test_exit_code_a_broken_budget_wins_over_unmeasurable(verdicts, code):
    report = report_with(*verdicts)
    assert report.exit_code == code and report.passed is (code == 0)


@pytest.mark.parametrize("rungs, chosen, gate, code", [
    ([True], "a", (), 0),
    ([False, None], None, (), 3),  # nothing met, and one rung could not be judged
    ([False, False], None, (), 1),
    ([True], "a", (False,), 1),  # a stale teacher set to fail breaks even a chosen rung
    ([True], "a", (None,), 0),
])
def test_ladder_exit_codes(rungs, chosen, gate, code):
    steps = [Rung(str(i), measured=True, meets_budget=m) for i, m in enumerate(rungs)]
    ladder = Ladder(order=[r.name for r in steps], rungs=steps, chosen=chosen, whole=False, verdict="")
    assert report_with(*gate, ladder=ladder).exit_code == code


@pytest.mark.parametrize("require, kind, passed", [
    ("measured", "measured", True), ("measured", "emulated", False), ("measured", "reference-mil", False),
    ("measured", "estimated", False), ("emulated", "reference-mil", False), ("reference-mil", "reference-mil", True),
    ("reference-mil", "estimated", False), ("estimated", "estimated", True), ("emulated", "measured", True)])
def test_require_ranks_every_provenance(require, kind, passed):
    budget = parse_budget({"min_accuracy": 0.5, "require": require, "slices": {"rare": {"min_accuracy": 0.5}}}, P)
    overall, in_slice = check_figures(budget, {"accuracy": 0.9}, {"rare": {"accuracy": 0.9}}, {"accuracy": kind}, "x")
    for check in (overall, in_slice):  # a slice's figure has its result's provenance, and the same bar
        assert check.passed is passed and check.provenance == kind
        assert check.message == ("" if passed else f"the budget requires a {require} figure; this one is {kind}")


def test_require_in_a_precision_layer_applies_to_that_precision_only():
    budget = parse_budget({"min_accuracy": 0.5, "precisions": {"int8": {"require": "measured"}}}, P)
    figures, kinds = {"accuracy": 0.9}, {"accuracy": "emulated"}
    assert check_figures(budget.for_precision("int8"), figures, {}, kinds, "x")[0].passed is False
    # Layers are keyed by the exact precision name: `int8` does not reach `int8-dynamic` (README, Budgets).
    assert check_figures(budget.for_precision("int8-dynamic"), figures, {}, kinds, "x")[0].passed is True
    assert check_figures(budget.for_precision("fp32", baseline=True), figures, {}, kinds, "x")[0].passed is True


@pytest.mark.parametrize("table, message", [
    ({"latency_p95": 10}, "unknown key 'latency_p95'"),
    ({"min_accuracy": "high"}, "must be int or float"),
    ({"min_accuracy": -1}, "'min_accuracy' in [budgets] must be a finite number, not negative, got -1"),
    ({"max_size_mb": float("nan")}, "'max_size_mb' in [budgets] must be a finite number, not negative, got nan"),
    ({"latency_p95_ms": float("inf")}, "must be a finite number, not negative, got inf"),
    ({"slices": {"rare": {"min_accuracy": -0.5}}}, "'min_accuracy' in [budgets.slices.rare] must be a finite number"),
    ({"slices": {"rare": {"min_accuracy": float("nan")}}}, "[budgets.slices.rare] must be a finite number, not "
                                                            "negative, got nan"),
    ({"precisions": {"int8": {"min_accuracy": -1}}}, "'min_accuracy' in [budgets.precisions.int8] must be a finite"),
    ({"precisions": {"int8": {"slices": {"r": {"max_accuracy_drop": float("nan")}}}}},
     "[budgets.precisions.int8.slices.r] must be a finite number"),
    ({"require": "guessed"}, "'require'"),
    ({"precisions": {"int8": {"precisions": {}}}}, "unknown key 'precisions'"),
])
def test_invalid_budgets_name_the_key(table, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        parse_budget(table, P)


def test_budget_file_forms(tmp_path):
    bare, wrapped = tmp_path / "bare.toml", tmp_path / "wrapped.toml"
    bare.write_text("max_size_mb = 1\n")
    wrapped.write_text("[budgets]\nmax_size_mb = 2\n")
    assert load_budget_file(bare).limits == {"max_size_mb": 1.0}
    assert load_budget_file(wrapped).limits == {"max_size_mb": 2.0}
    broken = tmp_path / "broken.toml"
    broken.write_text("max_size_mb = \n")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_budget_file(broken)


@pytest.mark.parametrize("key, value, limit, passed", [
    ("latency_p95_ms", 9.0, 10, True), ("latency_p95_ms", 10.0, 10, True), ("latency_p95_ms", 11.0, 10, False),
    ("min_accuracy", 0.91, 0.9, True), ("min_accuracy", 0.9, 0.9, True), ("min_accuracy", 0.89, 0.9, False)])
def test_a_limit_is_inclusive_in_both_directions(key, value, limit, passed):
    (check,) = check_figures(parse_budget({key: limit}, P), {SCALAR_CHECKS[key][0]: value}, {}, {}, "x")
    assert check.passed is passed and check.value == value and check.limit == limit


def test_a_missing_slice_leaves_each_of_its_checks_unmeasured_and_the_others_checked():
    budget = parse_budget({"slices": {"nope": {"min_accuracy": 0.5, "max_accuracy_drop": 0.1},
                                      "rare": {"min_accuracy": 0.5}}}, P)
    checks = check_figures(budget, {}, {"rare": {"accuracy": 0.6}}, {}, "x")
    assert [(c.name, c.metric, c.comparison, c.unit, c.slice, c.passed) for c in checks] == [
        ("x/slice[nope]/min_accuracy", "accuracy", ">=", "", "nope", None),
        ("x/slice[nope]/max_accuracy_drop", "accuracy_drop", "<=", "", "nope", None),
        ("x/slice[rare]/min_accuracy", "accuracy", ">=", "", "rare", True)]


def test_budget_helpers():
    budget = parse_budget({"min_accuracy": 0.5, "min_speedup_vs_float": 1.5, "max_size_mb": 1, "sequence_length": 64,
                           "slices": {"rare": {"min_accuracy": 0.4, "max_accuracy_drop": 0.1}}}, P)
    assert budget.sets("min_accuracy") and budget.sets("max_accuracy_drop") and not budget.sets("latency_p95_ms")
    lean = budget.without("min_accuracy")
    assert lean.limits == {"min_speedup_vs_float": 1.5, "max_size_mb": 1.0}
    assert lean.slices == {"rare": {"max_accuracy_drop": 0.1}}
    assert lean.sequence_length == 64
    # Only fp32, the baseline, loses the speedup limit; fp16 and the int precisions keep it.
    # (which precision is the baseline is the target's to say: its Precision data, not the name)
    assert [("min_speedup_vs_float" in budget.for_precision(p, baseline=p == "fp32").limits)
            for p in ("fp32", "fp16", "int8", "w8a8")] == [False, True, True, True]
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.require = "measured"  # a resolved budget is a value: layers cannot change it behind a check


def test_zero_limits_are_allowed_and_sequence_length_is_a_positive_int():
    assert parse_budget({"max_accuracy_drop": 0}, P).limits == {"max_accuracy_drop": 0.0}
    assert parse_budget({"sequence_length": 1}, P).sequence_length == 1
    for bad in (0, -3, True, 12.5, "128"):
        with pytest.raises(BadInput, match="'sequence_length' in \\[budgets\\] must be a positive int"):
            parse_budget({"sequence_length": bad}, P)


def _estimated(p95_ms: float, high_ms: float | None):
    from edge_distill.metrics import Metrics
    from edge_distill.provenance import Provenance
    from edge_distill.result import Latency, Memory, TargetResult

    prov = Provenance("estimated", "raspberry-pi-5@2026.11", "graph estimate", "2026.11", "Cortex-A76", 1, "", "graph")
    latency = Latency(p95_ms, p95_ms, p95_ms, p95_ms, p95_ms, p95_ms, runs=0, warmup=0, batch=1, provenance=prov,
                      low_ms=None if high_ms is None else high_ms / 4, high_ms=high_ms)
    return TargetResult("student", "ort", "int8", "ort/model.int8.ort", [], 1000, "0" * 64, latency,
                        Memory(None, None, "estimated"), None, Metrics(samples=10), {})


@pytest.mark.parametrize("estimate, high_ms, passed, says", [
    (None, 80.0, False, ""),            # the default judges the estimate itself
    ("point", 80.0, False, ""),
    ("upper", 80.0, True, "judged at the high end of the estimate's validated range (80.0 ms; the estimate is 120.0 ms)"),
    ("upper", 130.0, False, "judged at the high end"),
    ("upper", None, False, ""),         # an unvalidated profile gives no range: the estimate itself
])
def test_an_estimate_is_judged_where_the_budget_says(estimate, high_ms, passed, says):
    from edge_distill.budgets import evaluate

    budget = parse_budget({"latency_p95_ms": 100, **({"estimate": estimate} if estimate else {})}, Path("b.toml"))
    (check,) = evaluate(_estimated(120.0, high_ms), budget)
    assert check.passed is passed and says in check.message


def test_estimate_must_be_point_or_upper():
    with pytest.raises(BadInput, match="'estimate' in \\[budgets\\] must be \"point\" or \"upper\", got 'high'"):
        parse_budget({"estimate": "high"}, Path("b.toml"))
