"""A result as the figures a budget reads, and the checks `budgets.evaluate` makes of them: each missing
figure with its reason, which limits apply to which artifact, per-output checks, precision layers with
their own slices and outputs, and the parser's bounds. Hand-made results, every expected value written
out. Fast: the mutation run of toolkit/budgets.py runs this file once per mutant."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from edge_distill.budgets import MAX_SLICES, Budget, evaluate, figures_of, parse_budget, provenance_of
from edge_distill.errors import BadInput
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.result import Latency, Memory, TargetResult

P = Path("b.toml")
HOST = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU", 1, "Linux", "wall time")
FLOAT, INT8 = NS(is_float_baseline=True, weight_bits=32), NS(is_float_baseline=False, weight_bits=8)
FP16 = NS(is_float_baseline=False, weight_bits=16)


def _result(precision="int8", metrics=None, latency=True, memory=(12.5, HOST, None), speedup=2.0, size=2_500_000,
            coverage=None, outputs=None, subject="student", evaluation=None, details=None, slices=None):
    lat = Latency(1.0, 2.0, 3.0, 4.0, 1.5, 0.5, 10, 1, 1, HOST) if latency else None
    return TargetResult(subject, "ort", precision, "a", [], size, "ab" * 32, lat, Memory(*memory), speedup,
                        metrics or Metrics(10, accuracy=0.9), slices or {}, evaluation=evaluation or {},
                        details=details or {}, coverage=coverage, outputs=outputs or {})


def _by_name(checks) -> dict:
    return {re.sub(r"^(off-the-shelf/)?ort-\w+/", "", c.name): (c.passed, c.value, c.message) for c in checks}


def test_figures_of_a_full_result():
    f = figures_of(_result(coverage={"quantized_weight_fraction": 0.97}))
    assert (f["size_mb"], f["peak_memory_mb"], f["latency.p50_ms"], f["latency.p90_ms"], f["latency.p95_ms"],
            f["latency.p99_ms"], f["speedup_vs_float"], f["quantized_fraction"], f["accuracy"]) == (
        2.5, 12.5, 1.0, 2.0, 3.0, 4.0, 2.0, 0.97, 0.9)
    assert {k for k in f if k.endswith(".why")} == {
        "weighted_accuracy.why", "accuracy_drop.why", "teacher_agreement.why", "float_agreement.why"}
    assert f["weighted_accuracy.why"] == "the evaluation data carry no labels or no weights"
    assert f["accuracy_drop.why"] == "the evaluation data carry no labels"
    assert f["teacher_agreement.why"] == "no teacher was given"
    assert f["float_agreement.why"] == "no float student was given"
    assert figures_of(_result(), baseline=True)["speedup_vs_float"] == 1.0  # the float baseline against itself


def test_figures_of_a_result_missing_its_measurements():
    f = figures_of(_result(metrics=Metrics(10), latency=False, memory=(None, None, "no /proc here"), speedup=None))
    assert [f[f"latency.{k}"] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms")] == [None] * 4
    assert f["latency.p95_ms.why"] == "no /proc here"  # the run's reason, where memory gives one
    assert f["peak_memory_mb.why"] == "cannot measure peak memory: no /proc here"
    assert f["speedup_vs_float.why"] == "no /proc here"
    assert f["accuracy.why"] == "the evaluation data carry no labels"
    assert f["quantized_fraction.why"] == "the ort target cannot read what share of this artifact is quantized"
    f = figures_of(_result(latency=False, speedup=None))
    assert f["latency.p50_ms.why"] == "latency was not measured" and "peak_memory_mb.why" not in f
    assert f["speedup_vs_float.why"] == "no fp32 artifact of this target was measured to compare with"
    r = _result()
    r.latency.p99_ms, r.latency.missing = None, "the benchmark prints no p99"
    f = figures_of(r)
    assert f["latency.p99_ms.why"] == "the benchmark prints no p99" and "latency.p95_ms.why" not in f
    r.latency.missing = ""
    assert figures_of(r)["latency.p99_ms.why"] == "latency was not measured"


def test_a_task_metric_that_was_not_computed_says_why_for_every_metric():
    f = figures_of(_result(details={"task_metric": "the first output is a map"}))
    assert f["accuracy.why"] == f["teacher_cosine.why"] == "the first output is a map"
    f = figures_of(_result(evaluation={"error": "the runtime failed"}))
    assert f["float_agreement.why"] == "the runtime failed"


def test_provenance_of_each_figure():
    est = Provenance("estimated", "pixel", "-", "-", "-", 1, "-", "-")
    r = _result(evaluation={"kind": "emulated"}, memory=(1.0, est, None))
    p = provenance_of(r)
    assert p["accuracy"] == p["teacher_agreement"] == "emulated"
    assert p["latency.p95_ms"] == p["speedup_vs_float"] == "measured" and p["peak_memory_mb"] == "estimated"
    p = provenance_of(_result(latency=False, memory=(None, None, "x")))
    assert "latency.p95_ms" not in p and "speedup_vs_float" not in p and "peak_memory_mb" not in p
    assert p["accuracy"] == "measured"


def test_evaluate_applies_the_precision_layer_and_says_why_a_figure_is_missing():
    budget = parse_budget({"max_size_mb": 3, "min_teacher_agreement": 0.5, "min_quantized_fraction": 0.9,
                           "min_speedup_vs_float": 1.5, "precisions": {"int8": {"max_size_mb": 2}}}, P)
    checks = _by_name(evaluate(_result(coverage={"quantized_weight_fraction": 0.95}), budget, INT8))
    assert checks == {"max_size_mb": (False, 2.5, ""), "min_teacher_agreement": (None, None, "no teacher was given"),
                      "min_speedup_vs_float": (True, 2.0, ""), "min_quantized_fraction": (True, 0.95, "")}
    # the float baseline: no speedup limit (not compared with itself), nothing quantized to ask about
    checks = _by_name(evaluate(_result("fp32"), budget, FLOAT))
    assert set(checks) == {"max_size_mb", "min_teacher_agreement"} and checks["max_size_mb"][0] is True
    # a float precision that is not the baseline (fp16): no quantized-fraction limit, the speedup one stays
    assert set(_by_name(evaluate(_result("fp16"), budget, FP16))) == {"max_size_mb", "min_teacher_agreement",
                                                                       "min_speedup_vs_float"}
    # no precision given: every limit applies
    assert len(evaluate(_result("fp16"), budget)) == 4


def test_evaluate_reasons_in_slices_when_no_task_metric_was_computed():
    budget = parse_budget({"slices": {"rare": {"min_accuracy": 0.5}}}, P)
    r = _result(slices={"rare": Metrics(3)}, details={"task_metric": "the first output is a map"})
    (check,) = evaluate(r, budget, INT8)
    assert (check.passed, check.message, check.slice) == (None, "the first output is a map", "rare")
    (check,) = evaluate(_result(slices={"rare": Metrics(3)}), budget, INT8)
    assert check.message == "accuracy was not measured"
    (check,) = evaluate(_result(slices={"rare": Metrics(3, accuracy=0.4)}), budget, INT8)
    assert (check.passed, check.value) == (False, 0.4)


def test_an_off_the_shelf_model_is_not_held_to_teacher_cosine():
    budget = parse_budget({"min_teacher_cosine": 0.9, "slices": {"s": {"min_teacher_cosine": 0.9}},
                           "min_retrieval_agreement": 0.8}, P)
    m = Metrics(10, teacher_cosine=0.1, teacher_retrieval_agreement=0.85)
    shelf = _result(subject="off-the-shelf", metrics=m, slices={"s": Metrics(3, teacher_cosine=0.1)})
    assert _by_name(evaluate(shelf, budget, INT8)) == {"min_retrieval_agreement": (True, 0.85, "")}
    student = _result(metrics=m, slices={"s": Metrics(3, teacher_cosine=0.1)})
    assert {k: v[0] for k, v in _by_name(evaluate(student, budget, INT8)).items()} == {
        "min_teacher_cosine": False, "min_retrieval_agreement": True, "slice[s]/min_teacher_cosine": False}


def test_a_quantized_fraction_limit_only_in_a_slice_is_dropped_for_a_float_artifact():
    # min_quantized_fraction is no slice key; `sets` looks at the global limits too
    budget = Budget(limits={"min_quantized_fraction": 0.9})
    assert evaluate(_result("fp16"), budget, FP16) == []
    assert len(evaluate(_result("int8"), budget, INT8)) == 1


def test_output_checks_by_kind():
    budget = parse_budget({"outputs": {"text": {"max_cer": 0.1}, "boxes": {"max_cer": 0.1},
                                       "gone": {"max_cer": 0.1}, "map": {"min_psnr_db": 30}}}, P)
    outputs = {"text": {"kind": "sequence", "inferred": True, "cer": 0.05},
               "boxes": {"kind": "detection", "inferred": False, "map_agreement": 0.9},
               "map": {"kind": "dense", "inferred": True, "psnr_db": None}}
    checks = _by_name(evaluate(_result(outputs=outputs), budget, INT8))
    assert checks["output[text]/max_cer"] == (True, 0.05, "")
    assert checks["output[boxes]/max_cer"] == (
        None, None, "output 'boxes' is a detection output (declared): max_cer does not apply to it; its keys: "
                    "min_map_agreement, min_map50_agreement")
    assert checks["output[gone]/max_cer"] == (None, None, "the artifact has no output 'gone' (its outputs: text, "
                                                          "boxes, map)")
    assert checks["output[map]/min_psnr_db"] == (None, None, "no psnr_db for output 'map' (no float student to "
                                                             "compare with)")
    (check,) = evaluate(_result(), parse_budget({"outputs": {"x": {"max_cer": 0.1}}}, P), INT8)
    assert check.message == "the artifact has no output 'x' (its outputs: none)"
    inferred = {"boxes": {"kind": "detection", "inferred": True, "map_agreement": 0.9}}
    (check,) = evaluate(_result(outputs=inferred), parse_budget({"outputs": {"boxes": {"max_cer": 0.1}}}, P), INT8)
    assert "a detection output (inferred)" in check.message
    why = {"map": {"kind": "dense", "inferred": True, "psnr_db": None, "psnr_db.why": "the map is constant"}}
    (check,) = evaluate(_result(outputs=why), parse_budget({"outputs": {"map": {"min_psnr_db": 30}}}, P), INT8)
    assert check.message == "the map is constant"


def test_output_checks_hold_their_provenance_and_the_required_one():
    outputs = {"text": {"kind": "sequence", "inferred": True, "cer": 0.05, "provenance": "estimated"}}
    budget = parse_budget({"require": "measured", "outputs": {"text": {"max_cer": 0.1}}}, P)
    (check,) = evaluate(_result(outputs=outputs), budget, INT8)
    assert (check.passed, check.provenance) == (False, "estimated")
    del outputs["text"]["provenance"]
    (check,) = evaluate(_result(outputs=outputs), budget, INT8)
    assert (check.passed, check.provenance) == (True, "measured")


def test_a_precision_layer_adds_slices_and_outputs_of_its_own():
    budget = parse_budget({"slices": {"a": {"min_accuracy": 0.5}}, "outputs": {"t": {"max_cer": 0.2}},
                           "precisions": {"int4": {"slices": {"a": {"max_accuracy_drop": 0.1},
                                                              "b": {"min_accuracy": 0.6}},
                                                   "outputs": {"t": {"max_cer": 0.3}, "u": {"max_cer": 0.4}}}}}, P)
    layer = budget.for_precision("int4")
    assert layer.slices == {"a": {"min_accuracy": 0.5, "max_accuracy_drop": 0.1}, "b": {"min_accuracy": 0.6}}
    assert layer.outputs == {"t": {"max_cer": 0.3}, "u": {"max_cer": 0.4}}
    assert budget.for_precision("int8").slices == {"a": {"min_accuracy": 0.5}}
    assert budget.slices == {"a": {"min_accuracy": 0.5}} and budget.outputs == {"t": {"max_cer": 0.2}}


def test_without_removes_one_key_everywhere_and_keeps_the_others():
    budget = Budget(limits={"a": 1.0, "m": 2.0, "z": 3.0}, slices={"s": {"a": 1.0, "m": 2.0, "z": 3.0}},
                    require="measured", sequence_length=8, estimate="upper")
    less = budget.without("m")
    assert less.limits == {"a": 1.0, "z": 3.0} and less.slices == {"s": {"a": 1.0, "z": 3.0}}
    assert (less.require, less.sequence_length, less.estimate) == ("measured", 8, "upper")


def test_slice_tables_up_to_the_maximum():
    assert len(parse_budget({"slices": {f"s{i}": {"min_accuracy": 0.5} for i in range(MAX_SLICES)}}, P).slices) \
        == 1000
    with pytest.raises(BadInput, match=r"\[budgets.slices\] holds 1,001 slice tables, more than the 1,000"):
        parse_budget({"slices": {f"s{i}": {"min_accuracy": 0.5} for i in range(MAX_SLICES + 1)}}, P)


def test_regression_limits_and_a_regression_that_is_no_table():
    budget = parse_budget({"regression": {"max_size_increase": 0.1, "slices": {"r": {"max_accuracy_decrease": 0}}}},
                          P)
    assert budget.regression == {"max_size_increase": 0.1, "slices": {"r": {"max_accuracy_decrease": 0.0}}}
    with pytest.raises(BadInput, match=r"'regression' in \[budgets\] must be"):
        parse_budget({"regression": 3}, P)
    with pytest.raises(BadInput, match=r"'regression' in \[budgets.precisions.int8\] must be"):
        parse_budget({"precisions": {"int8": {"max_size_mb": 1}}, "regression": 3}, P, "budgets.precisions.int8")


def test_keys_an_outputs_kind_has_no_figure_for_are_named_with_their_table():
    from edge_distill.budgets import unanswerable
    from edge_distill.kinds import get_kind

    budget = parse_budget({"outputs": {"text": {"max_cer": 0.1, "min_float_agreement": 0.9}},
                           "precisions": {"int8": {"outputs": {"text": {"max_cer": 0.2}, "gone": {"max_cer": 0.1}}}}},
                          Path("b.toml"))
    sequence_keys = ", ".join(get_kind("sequence").budget_keys)
    classification_keys = ", ".join(get_kind("classification").budget_keys)
    # a sequence answers max_cer, not min_float_agreement; an output the model lacks is left to the checks
    assert unanswerable(budget, {"text": "sequence"}) == [
        f"[budgets.outputs.text] min_float_agreement: output 'text' is a sequence output, which has no such figure "
        f"(its keys: {sequence_keys})"]
    assert unanswerable(budget, {"text": "classification"}) == [
        f"[budgets.outputs.text] max_cer: output 'text' is a classification output, which has no such figure "
        f"(its keys: {classification_keys})",
        f"[budgets.precisions.int8.outputs.text] max_cer: output 'text' is a classification output, which has no "
        f"such figure (its keys: {classification_keys})"]
    assert unanswerable(Budget(), {"text": "sequence"}) == []
