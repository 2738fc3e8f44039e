"""The ladder's cost model ([cost] in edge-distill.toml, toolkit/cost.py) on hand-made tables and results: the
one-off cost and a rung's price per call, each worked out by hand, and every refusal's exact message.
Fast: the mutation run of toolkit/cost.py runs this file once per mutant."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_distill.cost import COST_KEYS, CostModel, parse_cost
from edge_distill.errors import BadInput
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.result import Latency, Memory, TargetResult

PATH = Path("edge-distill.toml")
FIXED = {"teacher_cost_per_1k": 2.5, "label_corpus_size": 40_000, "training_hours": 4, "training_price_per_hour": 1.5,
         "evaluation_cost": 7, "upkeep_per_month": 20}
PROV = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU", 1, "Linux", "wall time")


def _result(p50) -> TargetResult:  # p50 "none": no latency at all
    latency = None if p50 == "none" else Latency(p50, p50, p50, p50, p50, p50, 20, 1, 1, PROV)
    return TargetResult("student", "ort", "int8", "a.onnx", [], 1, "", latency, Memory(None, None), None, Metrics(1), {})


def test_every_figure_is_kept_as_a_float_with_twelve_months_by_default():
    cost = parse_cost(FIXED, PATH)
    assert cost.values == {**{k: float(v) for k, v in FIXED.items()}, "amortize_months": 12.0}
    assert all(type(v) is float for v in cost.values.values())
    assert cost.per_call == {}
    assert parse_cost(None, PATH) is None


def test_the_one_off_cost_worked_by_hand():
    # 40,000 labels at 2.5 per 1,000 = 100; 4 hours at 1.5 = 6; evaluation 7: 113 (upkeep is monthly, apart)
    assert parse_cost(FIXED, PATH).fixed == 113.0
    assert parse_cost({**FIXED, "teacher_cost_per_1k": 0, "evaluation_cost": 0}, PATH).fixed == 6.0


def test_a_rungs_price_per_call():
    cost = parse_cost({**FIXED, "price_per_device_second": 0.002, "amortize_months": 6,
                       "price_per_call": {"teacher": 0.01, "cloud": 1}}, PATH)
    assert cost.values["amortize_months"] == 6.0
    assert parse_cost({**FIXED, "amortize_months": 1}, PATH).values["amortize_months"] == 1.0  # a month is enough
    assert cost.per_call == {"teacher": 0.01, "cloud": 1.0} and type(cost.per_call["cloud"]) is float
    assert cost.cost_per_call("teacher", None) == 0.01  # an explicit price needs no latency
    assert cost.cost_per_call("teacher", _result(500.0)) == 0.01  # and wins over the device-second price
    assert cost.cost_per_call("ort-int8", _result(250.0)) == pytest.approx(0.25 * 0.002)  # 250 ms at 0.002 per s
    assert cost.cost_per_call("ort-int8", None) is None
    assert cost.cost_per_call("ort-int8", _result("none")) is None
    assert cost.cost_per_call("ort-int8", _result(None)) is None


def test_a_rung_with_a_latency_and_no_price_is_refused_naming_both_fixes():
    with pytest.raises(BadInput) as caught:
        parse_cost(FIXED, PATH).cost_per_call("ort-int8", _result(250.0))
    assert str(caught.value) == ("no price for rung 'ort-int8': set [cost] price_per_device_second, "
                                 "or price_per_call.\"ort-int8\"")
    assert CostModel({}, {}).cost_per_call("ort-int8", _result(None)) is None  # nothing to price


def test_zero_prices_are_prices():
    cost = parse_cost({k: 0 for k in FIXED} | {"price_per_device_second": 0}, PATH)
    assert cost.fixed == 0.0
    assert cost.cost_per_call("ort-int8", _result(100.0)) == 0.0


@pytest.mark.parametrize(("table", "message"), [
    ({**FIXED, "teacher_cost": 1}, "unknown key 'teacher_cost' in [cost]\n  hint: did you mean 'teacher_cost_per_1k'?"),
    ({**FIXED, "training_hours": "3"}, "'training_hours' in [cost] must be int or float, got '3'"),
    ({**FIXED, "training_hours": True}, "'training_hours' in [cost] must be int or float, got True"),
    ({**FIXED, "evaluation_cost": -0.01}, "'evaluation_cost' in [cost] must not be negative, got -0.01"),
    ({**FIXED, "price_per_device_second": -1}, "'price_per_device_second' in [cost] must not be negative, got -1"),
    ({**FIXED, "amortize_months": 0}, "'amortize_months' in [cost] must be positive"),
    ({**FIXED, "amortize_months": -2}, "'amortize_months' in [cost] must not be negative, got -2"),
    ({**FIXED, "price_per_call": 3}, "'price_per_call' in [cost] must be dict, got 3"),
    ({**FIXED, "price_per_call": {"teacher": "cheap"}}, "'teacher' in [cost.price_per_call] must be int or float, "
                                                       "got 'cheap'"),
    ({k: v for k, v in FIXED.items() if k != "upkeep_per_month"},
     "[cost] is missing upkeep_per_month (a missing price is not a zero): upkeep_per_month: monthly cost of keeping "
     "the student current (re-distilling when the teacher moves)"),
    ({"training_hours": 1, "training_price_per_hour": 1, "evaluation_cost": 0},
     "[cost] is missing teacher_cost_per_1k, label_corpus_size, upkeep_per_month (a missing price is not a zero): "
     "teacher_cost_per_1k: price of 1,000 teacher inferences, to label the distillation corpus; label_corpus_size: "
     "inputs labelled by the teacher for distillation; upkeep_per_month: monthly cost of keeping the student current "
     "(re-distilling when the teacher moves)"),
])
def test_a_bad_cost_table_is_refused_naming_the_key_and_the_file(table, message):
    with pytest.raises(BadInput) as caught:
        parse_cost(table, PATH)
    assert str(caught.value) == f"{PATH}: {message}"


def test_every_key_is_described():
    assert set(FIXED) < set(COST_KEYS)
    assert set(COST_KEYS) - set(FIXED) == {"price_per_device_second", "amortize_months"}
