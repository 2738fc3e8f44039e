"""mixed.py's figures on results each test fixes: how far broken checks are from their limits
(`shortfall`), which budgets float layers can mend, the sensitivity figures and their standard errors,
both views of `edge-distill sensitivity`, and what a search reports. Fast: they run once per mutant of
toolkit/mixed.py (benchmarks/mutation.py), with tests/test_mixed.py's search tests."""

from __future__ import annotations

import time

import pytest

from edge_distill.metrics import Metrics
from edge_distill.mixed import (FLOAT, LayerSensitivity, Search, _best, _done, _walk, figures, mendable, search,
                                sensitivity, shortfall)
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
    assert calls[2:] == [] and state.layers == [] and state.stopped == "trials"


def test_a_search_whose_budget_ends_before_any_layer_says_the_trials_ran_out():
    # max_trials=1: the full precision's trial spends it; no layer is measured or raised, so the search
    # ended on its trial budget, not after trying every layer (it read 'every layer tried' before).
    failing = _result([_check("accuracy", ">=", 0.75, 0.70, False)], Metrics(samples=10, accuracy=0.70))
    _, state = search("int4", lambda raised: failing, lambda full: [Layer("a", "Gemm", 10), Layer("b", "Gemm", 10)],
                      max_trials=1)
    assert state.layers == [] and state.trials == 1 and state.stopped == "trials" and not state.met


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


# ---- each decision of the search, on stand-in trials: the outcome worked out by hand in each comment ----

def test_shortfall_counts_a_broken_check_after_a_held_one_and_nothing_for_a_failure_on_the_passing_side():
    held, broken = _check("accuracy", ">=", 0.8, 0.9, True), _check("float_agreement", ">=", 0.5, 0.4, False)
    assert shortfall(_result([held, broken])) == pytest.approx(0.1 / 0.5 + 1e-6, abs=1e-12)
    beyond = _check("accuracy", ">=", 0.8, 0.9, False)  # marked broken, 0.1 above its limit: no distance
    assert shortfall(_result([beyond])) == pytest.approx(1e-6, abs=1e-12)


def test_a_search_and_a_layer_start_from_nothing_raised_everything_quantized_and_no_time():
    state = Search("int4", 0.5, 32)
    assert (state.steps, state.baseline_shortfall, state.layers, state.raised, state.quantized_share,
            state.base_share, state.trials, state.seconds, state.stopped, state.met, state.activation_error) == (
        (FLOAT,), 0.0, [], {}, 1.0, 1.0, 0, 0.0, "", False, None)
    layer = LayerSensitivity("fc1", "Gemm", 10, 1.0, 0.0, 0.0)
    assert (layer.figures, layer.raised_to, layer.int8) == ({}, FLOAT, True)


def test_a_reports_sensitivity_rounds_share_to_4_places_and_gain_and_shortfall_to_6():
    layer = LayerSensitivity("fc1", "Gemm", 300, 0.123456789, 0.0123456789, 0.1234567891, {"accuracy": 0.74}, "int8")
    assert Search("int4", 0.5, 32, layers=[layer]).to_dict()["sensitivity"] == [
        {"layer": "fc1", "op": "Gemm", "weights": 300, "weight_share": 0.1235, "gain": 0.123457, "raised_to": "int8",
         "shortfall_when_raised": 0.012346, "accuracy": 0.74}]


def test_a_standard_error_is_rounded_to_6_places():
    # 0.5 on 3 samples: sqrt(0.25 / 3) = sqrt(1/12) = 0.28867513...
    assert figures(_result([], Metrics(samples=3, accuracy=0.5)))["accuracy_se"] == 0.288675


def test_the_options_of_sensitivity_and_search_are_keyword_only():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70)
    with pytest.raises(TypeError):
        sensitivity(trial, LAYERS, Search("int4", 0.5, 10), {}, True)
    with pytest.raises(TypeError):
        search("int4", trial, lambda full: LAYERS, (FLOAT,))
    assert calls == []


THREE = [Layer("a", "Gemm", 300), Layer("b", "Gemm", 100), Layer("c", "Conv", 100)]


def test_sensitivity_by_default_raises_each_layer_alone_and_counts_the_full_trial_in_its_plan():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70)
    state, messages = Search("int4", 0.5, 10, trials=1), []  # the full precision's trial is done
    sensitivity(trial, THREE, state, {}, progress=messages.append)
    assert calls == [{"a": FLOAT}, {"b": FLOAT}, {"c": FLOAT}] and state.trials == 4
    assert messages == ["  sensitivity: a in float (2/4)", "  sensitivity: b in float (3/4)",
                        "  sensitivity: c in float (4/4)"]  # planned: 1 + 3 layers


def test_sensitivity_with_both_views_skips_the_second_view_when_the_first_spends_the_last_trial():
    trial, calls = _trial_by_float_layers(lambda keep: 0.70)
    state = Search("int4", 0.5, 2, trials=1)
    sensitivity(trial, LAYERS, state, {}, both_views=True)
    assert calls == [{"big": FLOAT}] and state.trials == 2
    assert [s.name for s in state.layers] == ["big"] and "quantized alone: accuracy" not in state.layers[0].figures


def _stepped(passes):
    """A stand-in trial: passes (accuracy 0.80 against 0.75) when `passes(raised)`, else 0.70 plus the
    `extra` the test gives; records each call and each progress message."""
    calls: list[dict] = []

    def trial(raised):
        calls.append(dict(raised))
        accuracy = passes(raised)
        return _result([_check("accuracy", ">=", 0.75, accuracy, accuracy >= 0.75)], Metrics(samples=10, accuracy=accuracy))
    return trial, calls


def test_with_no_trials_left_after_the_full_one_no_layer_is_measured():
    trial, calls = _stepped(lambda raised: 0.70)
    _, state = search("int4", trial, lambda full: LAYERS, max_trials=0)
    assert calls == [{}] and state.trials == 1 and state.layers == [] and state.raised == {}


def test_the_default_trial_budget_is_32():
    # 40 layers, none helps: the full trial and 31 sensitivity trials spend all 32; the walk's first
    # combination (the top two layers) finds none left.
    many = [Layer(f"l{i}", "Gemm", 10) for i in range(40)]
    trial, calls = _stepped(lambda raised: 0.70)
    _, state = search("int4", trial, lambda full: many)
    assert len(calls) == 32 and state.trials == 32 and len(state.layers) == 31
    assert (state.stopped, state.met, state.max_trials, state.raised) == ("trials", False, 32, {})


def test_the_default_floor_lets_exactly_half_the_weights_go_to_float():
    # "a" alone meets the budget and is half the weights: 0.5 of them stays quantized, the default floor.
    halves = [Layer("a", "Gemm", 500), Layer("b", "Gemm", 500)]
    trial, calls = _stepped(lambda raised: 0.80 if "a" in raised else 0.70)
    best, state = search("int4", trial, lambda full: halves)
    assert calls == [{}, {"a": FLOAT}, {"b": FLOAT}] and best is not None and best.passed
    assert (state.raised, state.met, state.stopped, state.quantized_share) == ({"a": FLOAT}, True, "met", 0.5)


def test_the_default_floor_keeps_a_layer_of_more_than_half_the_weights_quantized():
    # "a" (51%) alone would meet it; the floor passes it over, "b" alone (tried) does not help. Of the
    # allowed trials (nothing raised, "b" in float) both fall 0.05 short: the more quantized one wins.
    trial, calls = _stepped(lambda raised: 0.80 if "a" in raised else 0.70)
    best, state = search("int4", trial, lambda full: [Layer("a", "Gemm", 510), Layer("b", "Gemm", 490)])
    assert calls == [{}, {"a": FLOAT}, {"b": FLOAT}] and not best.passed
    assert (state.raised, state.met, state.stopped, state.quantized_share) == ({}, False, "floor", 1.0)


def test_the_floor_counts_the_float_layers_weights_added():
    # floor 0.62: at most 38% in float. "a" (30%) goes; "a" + "b" is 40%: over; "c" (60%) too.
    layers = [Layer("a", "Gemm", 300), Layer("b", "Gemm", 100), Layer("c", "Gemm", 600)]
    trial, calls = _stepped(lambda raised: 0.80 if {"a", "b"} <= set(raised)
                            else 0.70 + 0.02 * ("a" in raised) + 0.01 * ("b" in raised))
    _, state = search("int4", trial, lambda full: layers, floor=0.62)
    assert calls == [{}, {"a": FLOAT}, {"b": FLOAT}, {"c": FLOAT}]  # the walk's first step is "a", tried
    assert (state.raised, state.met, state.stopped) == ({"a": FLOAT}, False, "floor")  # the closest: 0.72


def test_an_int8_trial_that_meets_the_budget_skips_the_every_layer_in_int8_trial():
    layers = [Layer("a", "Gemm", 100), Layer("b", "Gemm", 100), Layer("d", "Gemm", 100)]
    trial, calls = _stepped(lambda raised: 0.80 if "a" in raised else 0.70)
    _, state = search("int4", trial, lambda full: layers, steps=("int8", FLOAT))
    assert calls == [{}, {"a": "int8"}, {"b": "int8"}, {"d": "int8"}] and state.trials == 4
    assert (state.raised, state.met, state.stopped, state.base_share) == ({"a": "int8"}, True, "met", pytest.approx(2 / 3))


FOUR = [Layer("a", "Gemm", 100), Layer("b", "Gemm", 100), Layer("c", "Conv", 100, int8=False), Layer("d", "Gemm", 100)]


def test_a_float_trial_that_meets_the_budget_does_not_skip_the_every_layer_in_int8_trial():
    # Only "c" (no int8) in float meets it. int8: every int8-able layer at once fails; float: "c", the
    # largest gain, added to that meets it; the best is "c" alone in float (more weights at int4).
    trial, calls = _stepped(lambda raised: 0.80 if raised.get("c") == FLOAT else 0.70)
    messages: list[str] = []
    _, state = search("int4", trial, lambda full: FOUR, steps=("int8", FLOAT), progress=messages.append)
    every = {"a": "int8", "b": "int8", "d": "int8"}
    assert calls == [{}, {"a": "int8"}, {"b": "int8"}, {"c": FLOAT}, {"d": "int8"}, every, {**every, "c": FLOAT}]
    assert messages[-2:] == ["  mixed precision: every layer in int8", "  mixed precision: 1 layer(s) in float"]
    assert (state.raised, state.met, state.stopped, state.quantized_share, state.base_share) == (
        {"c": FLOAT}, True, "met", 0.75, 0.75)


def test_the_int8_walk_passes_over_a_layer_without_int8_and_goes_on():
    # "a" and "b" together meet it; "c" (no int8) gains most alone. Every layer in int8 meets it, so the
    # int8 walk runs: "c" skipped, "a" (tried), "a" + "b" meets it.
    trial, calls = _stepped(lambda raised: 0.80 if {"a", "b"} <= set(raised) else
                            0.70 + 0.04 * ("c" in raised) + 0.02 * ("a" in raised) + 0.01 * ("b" in raised))
    messages: list[str] = []
    _, state = search("int4", trial, lambda full: FOUR, steps=("int8", FLOAT), progress=messages.append)
    assert calls == [{}, {"a": "int8"}, {"b": "int8"}, {"c": FLOAT}, {"d": "int8"},
                     {"a": "int8", "b": "int8", "d": "int8"}, {"a": "int8", "b": "int8"}]
    assert messages[-1] == "  mixed precision: 2 layer(s) in int8" and state.trials == 7
    assert (state.raised, state.met, state.stopped, state.quantized_share, state.base_share) == (
        {"a": "int8", "b": "int8"}, True, "met", 1.0, 0.5)


def test_the_floor_binds_float_only_a_heavy_layer_may_go_to_int8():
    trial, calls = _stepped(lambda raised: 0.80 if "big" in raised else 0.70)
    layers = [Layer("big", "Gemm", 900), Layer("small", "Gemm", 100)]
    _, state = search("int4", trial, lambda full: layers, steps=("int8", FLOAT), floor=0.5)
    assert calls == [{}, {"big": "int8"}, {"small": "int8"}]
    assert (state.raised, state.met, state.stopped) == ({"big": "int8"}, True, "met")


def test_layers_of_no_weights_divide_by_nothing():
    trial, calls = _stepped(lambda raised: 0.80 if "z1" in raised else 0.70)
    _, state = search("int4", trial, lambda full: [Layer("z1", "Gemm", 0), Layer("z2", "Gemm", 0)])
    assert (state.raised, state.met, state.quantized_share, state.base_share) == ({"z1": FLOAT}, True, 1.0, 1.0)
    assert [s.weight_share for s in state.layers] == [0.0, 0.0]


def _ranked(*names_weights):
    return [LayerSensitivity(name, "Gemm", weights, 0.0, 0.0, 0.1) for name, weights in names_weights]


def test_the_walk_records_a_met_budget_and_counts_its_trials():
    trial, calls = _stepped(lambda raised: 0.80 if "a" in raised else 0.70)
    state = Search("int4", 0.5, 10, trials=1)
    _walk(_ranked(("a", 100), ("b", 100)), state, {(): trial({})}, trial, lambda message: None)
    assert calls == [{}, {"a": FLOAT}] and (state.stopped, state.met, state.trials) == ("met", True, 2)


def test_the_walk_tries_nothing_once_the_trials_are_spent():
    for trials in (3, 5):  # at the budget, and past it
        trial, calls = _stepped(lambda raised: 0.80)
        state = Search("int4", 0.5, 3, trials=trials)
        _walk(_ranked(("a", 100), ("b", 900)), state, {}, trial, lambda message: None)
        assert calls == [] and (state.stopped, state.met, state.trials) == ("trials", False, trials)


def _failing(accuracy: float = 0.70) -> TargetResult:
    return _result([_check("accuracy", ">=", 0.75, accuracy, accuracy >= 0.75)])


def test_best_among_equals_prefers_fewer_raised_layers():
    # "z" weighs nothing: both keys keep every weight quantized and at the base precision.
    tried = {(("a", "int8"), ("z", "int8")): _failing(0.80), (("a", "int8"),): _failing(0.80)}
    state = Search("int4", 0.0, 10, steps=("int8", FLOAT))
    assert _best(tried, state, {"a": 0, "z": 0, "b": 100}) == (("a", "int8"),) and state.met


def test_best_among_equally_short_trials_prefers_the_most_quantized_then_the_most_at_base():
    weights = {"a": 100, "b": 100, "c": 100}
    state = Search("int4", 0.0, 10, steps=("int8", FLOAT))
    in_float, in_int8 = (("a", FLOAT),), (("a", "int8"),)  # quantized 2/3 and 1 (at int4: 2/3 both)
    assert _best({in_float: _failing(), in_int8: _failing()}, state, weights) == in_int8 and not state.met
    two_int8 = (("a", "int8"), ("b", "int8"))  # at int4: 1/3
    assert _best({two_int8: _failing(), in_int8: _failing()}, state, weights) == in_int8


def test_best_counts_a_layer_it_has_no_weight_for_as_weighing_nothing():
    state = Search("int4", 0.0, 10)
    # "ghost" weighs 0: every weight stays quantized, more than with "a" (1 of 1001) in float
    assert _best({(("a", FLOAT),): _failing(0.8), (("ghost", FLOAT),): _failing(0.8)}, state,
                 {"a": 1, "b": 1000}) == (("ghost", FLOAT),)
    # ... and as many as with nothing raised, which has fewer layers raised
    assert _best({(): _failing(0.8), (("ghost", FLOAT),): _failing(0.8)}, state, {"a": 1, "b": 1000}) == ()


def test_done_records_the_seconds_since_the_start():
    state = Search("int4", 0.5, 10)
    assert _done(state, time.perf_counter() - 5.0) is state and state.seconds == pytest.approx(5.0, abs=0.5)
