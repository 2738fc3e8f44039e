"""mixed.py's figures on results each test fixes: how far broken checks are from their limits
(`shortfall`), which budgets float layers can mend, the sensitivity figures and their standard errors,
both views of `edge-distill sensitivity`, and what a search reports. Fast: they run once per mutant of
toolkit/mixed.py (benchmarks/mutation.py), with tests/test_mixed.py's search tests."""

from __future__ import annotations

import pytest

from edge_distill.metrics import Metrics
from edge_distill.mixed import FLOAT, Search, figures, mendable, search, sensitivity, shortfall
from edge_distill.result import Check, Memory, TargetResult
from edge_distill.targets import Layer


def _result(checks: list[Check], metrics: Metrics | None = None, slices: dict | None = None) -> TargetResult:
    return TargetResult("student", "ort", "int4", "a", [], 1, "0" * 64, None, Memory(None, None, "measured"), None,
                        metrics or Metrics(samples=10), slices or {}, checks=checks)


def _check(metric: str, comparison: str, limit: float, value: float | None, passed: bool | None) -> Check:
    return Check(f"ort-int4/{metric}", metric, comparison, limit, value, "", passed)


def test_shortfall_is_each_broken_checks_relative_distance_from_its_limit():
    below = _check("accuracy", ">=", 0.8, 0.6, False)  # 0.2 under a limit of 0.8: 0.25
    above = _check("latency_p95_ms", "<=", 10.0, 15.0, False)  # 5 over a limit of 10: 0.5
    strict = _check("float_cosine", ">", 0.5, 0.4, False)  # 0.1 under 0.5: 0.2
    assert shortfall(_result([below])) == pytest.approx(0.25 + 1e-6, abs=1e-12)
    assert shortfall(_result([below, above, strict])) == pytest.approx(0.25 + 0.5 + 0.2 + 3e-6, abs=1e-12)
    held, unmeasured = _check("accuracy", ">=", 0.8, 0.9, True), _check("accuracy", ">=", 0.8, None, False)
    unknown = _check("accuracy", ">=", 0.8, 0.1, None)
    assert shortfall(_result([held, unmeasured, unknown])) == 0.0
    at_zero = _check("max_accuracy_drop", "<=", 0.0, 0.01, False)  # a zero limit is scaled by 1e-9, not divided by 0
    assert shortfall(_result([at_zero])) == pytest.approx(0.01 / 1e-9 + 1e-6)
    rounding = _check("accuracy", ">=", 0.8, 0.8, False)  # fails by less than shows: still counts
    assert shortfall(_result([rounding])) == pytest.approx(1e-6, abs=1e-12)
    negative = _check("delta", "<=", -2.0, -1.0, False)  # the scale is the limit's size
    assert shortfall(_result([negative])) == pytest.approx(0.5 + 1e-6)


def test_float_layers_mend_accuracy_and_agreement_but_not_size_memory_or_speed():
    for metric in ("accuracy", "float_agreement", "slice_accuracy", "outputs.out.float_cosine"):
        assert mendable(_result([_check(metric, ">=", 0.8, 0.7, False)])), metric
    for metric in ("size_mb", "peak_memory_mb", "speedup_vs_float", "quantized_fraction", "latency_p95_ms"):
        assert not mendable(_result([_check(metric, "<=", 1.0, 2.0, False)])), metric
    assert not mendable(_result([_check("accuracy", ">=", 0.8, 0.9, True)]))
    assert not mendable(_result([_check("accuracy", ">=", 0.8, None, None)]))
    assert mendable(_result([_check("size_mb", "<=", 1, 2, False), _check("accuracy", ">=", 0.8, 0.7, False)]))


def test_sensitivity_figures_carry_a_binomial_standard_error_for_shares():
    overall = Metrics(samples=100, accuracy=0.9, float_cosine=0.99)
    rare = Metrics(samples=25, accuracy=0.6, teacher_agreement=0.5)
    empty = Metrics(samples=0, accuracy=0.5)
    found = figures(_result([], overall, {"rare": rare, "empty": empty}))
    assert found == {"accuracy": 0.9, "accuracy_se": pytest.approx((0.9 * 0.1 / 100) ** 0.5, abs=1e-6),
                     "float_cosine": 0.99,  # not a share of samples: no standard error
                     "rare.accuracy": 0.6, "rare.accuracy_se": pytest.approx((0.6 * 0.4 / 25) ** 0.5, abs=1e-6),
                     "rare.teacher_agreement": 0.5, "rare.teacher_agreement_se": 0.1}


def _trial_by_float_layers(accuracy_of):
    calls = []

    def trial(raised):
        calls.append(dict(raised))
        accuracy = accuracy_of(frozenset(raised))
        return _result([_check("accuracy", ">=", 0.75, accuracy, accuracy >= 0.75)],
                       Metrics(samples=10, accuracy=accuracy))
    return trial, calls


LAYERS = [Layer("big", "Gemm", 300), Layer("small", "Gemm", 100)]


def test_sensitivity_both_views_each_layer_in_float_alone_and_quantized_alone():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70 + 0.04 * ("big" in keep) + 0.02 * ("small" in keep))
    state = Search("int4", 0.5, 10, baseline_shortfall=0.1)
    tried: dict = {}
    messages: list[str] = []
    sensitivity(trial, LAYERS, state, tried, both_views=True, progress=messages.append)
    assert calls == [{"big": FLOAT}, {"small": FLOAT}, {"small": FLOAT}, {"big": FLOAT}]
    assert state.trials == 4 and list(tried) == [(("big", FLOAT),), (("small", FLOAT),)]
    big, small = state.layers
    assert (big.weight_share, small.weight_share) == (0.75, 0.25)
    assert big.shortfall_when_raised == pytest.approx(0.01 / 0.75 + 1e-6)
    assert big.gain == pytest.approx(0.1 - big.shortfall_when_raised)
    assert big.figures["accuracy"] == pytest.approx(0.74)
    assert big.figures["quantized alone: accuracy"] == pytest.approx(0.72)  # "small" in float, "big" quantized
    assert messages == ["  sensitivity: big in float (1/5)", "  sensitivity: big quantized alone (2/5)",
                        "  sensitivity: small in float (3/5)", "  sensitivity: small quantized alone (4/5)"]


def test_sensitivity_stops_when_the_trials_run_out():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70)
    state = Search("int4", 0.5, 3, trials=1)
    sensitivity(trial, LAYERS, state, {}, both_views=True)
    assert state.trials == 3 and len(calls) == 2 and [s.name for s in state.layers] == ["big"]
    state = Search("int4", 0.5, 1, trials=1)
    sensitivity(trial, LAYERS, state, {})
    assert calls[2:] == [] and state.layers == []


def test_sensitivity_only_runs_no_search_and_reports_the_precision_as_asked():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70 + 0.1 * ("big" in keep))
    best, state = search("int4", trial, lambda full: LAYERS, sensitivity_only=True)
    assert best.precision == "int4" and calls[0] == {} and len(calls) == 5
    assert (state.stopped, state.met, state.raised, state.steps) == ("sensitivity only", False, {}, (FLOAT,))
    passing, _ = _trial_by_float_layers(lambda keep: 0.80)
    _, state = search("int4", passing, lambda full: LAYERS, sensitivity_only=True)
    assert (state.stopped, state.met, len(state.layers)) == ("sensitivity only", True, 2)


def test_a_searchs_report_rounds_its_figures_and_names_the_float_layers():
    state = Search("int4", 0.5, 32, steps=("int8", FLOAT), raised={"a": "int8", "b": FLOAT, "c": FLOAT},
                   quantized_share=0.123456, base_share=0.654321, trials=7, seconds=1.234, stopped="met", met=True,
                   baseline_shortfall=0.1234567891)
    assert state.keep_float == ["b", "c"]
    report = state.to_dict()
    assert report == {"precision": "int4", "met": True, "stopped": "met", "steps": ["int8", "float"],
                      "keep_float": ["b", "c"], "raised": {"a": "int8", "b": "float", "c": "float"},
                      "quantized_share": 0.1235, "base_share": 0.6543, "floor": 0.5, "trials": 7, "max_trials": 32,
                      "seconds": 1.23, "baseline_shortfall": 0.123457, "sensitivity": []}
    state.activation_error = {"method": "m", "samples": 64}
    assert state.to_dict()["activation_error"] == {"method": "m", "samples": 64}


def test_the_best_trial_keeps_the_most_weights_quantized_among_those_that_meet():
    # both "big" and "small" in float meet it; "small" alone does too and keeps more quantized
    trial, calls = _trial_by_float_layers(lambda keep: 0.80 if "small" in keep or "big" in keep else 0.70)
    best, state = search("int4", trial, lambda full: LAYERS, floor=0.2)
    assert state.raised == {"small": FLOAT} and state.met and state.stopped == "met"
    assert state.quantized_share == pytest.approx(0.75) and state.base_share == pytest.approx(0.75)
    assert best.passed and state.seconds >= 0
