from pathlib import Path

import pytest

from edge_distill.budgets import evaluate, load_budget_file, parse_budget
from edge_distill.errors import BadInput
from edge_distill.report import Report

P = Path("budget.toml")


def test_layers_resolve_global_then_precision():
    budget = parse_budget({"max_accuracy_drop": 0.01, "min_speedup_vs_float": 1.2,
                           "slices": {"rare": {"min_accuracy": 0.7}},
                           "precisions": {"int4": {"max_accuracy_drop": 0.03, "slices": {"rare": {"min_accuracy": 0.6}}}}},
                          P)
    int4, int8, fp32 = (budget.for_precision(p) for p in ("int4", "int8", "fp32"))
    assert int4.limits["max_accuracy_drop"] == 0.03 and int4.slices["rare"]["min_accuracy"] == 0.6
    assert int8.limits["max_accuracy_drop"] == 0.01 and int8.slices["rare"]["min_accuracy"] == 0.7
    assert "min_speedup_vs_float" not in fp32.limits and int8.limits["min_speedup_vs_float"] == 1.2


def test_checks_compare_in_the_right_direction():
    budget = parse_budget({"latency_p95_ms": 10, "min_accuracy": 0.9}, P)
    checks = evaluate(budget, {"latency.p95_ms": 10.0, "accuracy": 0.89}, {}, {"latency.p95_ms": "measured"}, "x")
    assert [(c.metric, c.passed) for c in checks] == [("latency.p95_ms", True), ("accuracy", False)]


def test_required_provenance_rejects_an_estimate():
    budget = parse_budget({"latency_p95_ms": 100, "require": "measured"}, P)
    (check,) = evaluate(budget, {"latency.p95_ms": 1.0}, {}, {"latency.p95_ms": "estimated"}, "x")
    assert check.passed is False and "requires a measured figure" in check.message


def test_missing_figure_is_unmeasured_and_exit_3():
    budget = parse_budget({"min_teacher_agreement": 0.9, "slices": {"nope": {"min_accuracy": 0.5}}}, P)
    checks = evaluate(budget, {"teacher_agreement": None, "teacher_agreement.why": "no teacher was given"}, {}, {}, "x")
    assert [c.passed for c in checks] == [None, None]
    assert checks[0].message == "no teacher was given" and "no slice 'nope'" in checks[1].message
    report = Report(command="check", tool_version="0", created="", config=None, student={}, teacher=None, data={},
                    environment={}, export=None, references={}, results=[])
    assert report.exit_code == 0  # no checks at all: nothing broken, nothing unmeasured


@pytest.mark.parametrize("table, message", [
    ({"latency_p95": 10}, "unknown key 'latency_p95'"),
    ({"min_accuracy": "high"}, "must be int or float"),
    ({"min_accuracy": -1}, "must not be negative"),
    ({"require": "guessed"}, "'require'"),
    ({"precisions": {"int8": {"precisions": {}}}}, "unknown key 'precisions'"),
])
def test_invalid_budgets_name_the_key(table, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
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
