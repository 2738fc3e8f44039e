"""More of toolkit/regression.py on hand-made results (no model): the side-by-side latency judgement on
given per-run times, when side-by-side timing is not possible, the bootstrap's draws against
probabilities worked out by hand, and the edges of a plausible baseline (issue 31, mutation scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_distill.errors import BadInput
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance, host_cpu
from edge_distill.regression import _latency, _p_within_limit, _side_by_side, baseline_of, compare
from edge_distill.result import Latency, Memory, Report

from test_regression_unit import _before, _checks, _compare, _result

LIMITS = {"max_latency_increase": 0.1, "max_p95_increase": 0.2}


def test_side_by_side_times_judge_the_growth_of_each_percentile():
    old = np.linspace(1.0, 4.0, 31)  # 31 rounds; the new artifact takes 1.5x every round: p = 0 it grew <= 10%
    (check, why_not) = _latency(_result(), _before(), LIMITS, (old * 1.5, old), 50)
    assert why_not == "" and check.passed is False and check.value == pytest.approx(0.5)
    assert check.message == ("side by side with the baseline's artifact on this host, 31 interleaved runs each: "
                             "p50 2.5 -> 3.75 ms (+50.0%); paired bootstrap of the ratio of medians, 2000 resamples: "
                             "p = 0 that it grew no more than 10%")
    (check, _) = _latency(_result(), _before(), LIMITS, (old * 1.15, old), 95)  # p95 +15%, its limit 20%
    assert check.passed is True and check.value == pytest.approx(0.15) and check.limit == 0.2
    assert "p95 3.85 -> 4.428 ms (+15.0%); paired bootstrap of the ratio of 95th percentiles" in check.message
    assert check.message.endswith("p = 1 that it grew no more than 20%")


def test_side_by_side_growth_beyond_the_limit_but_within_the_noise_passes():
    # half the rounds 1.3x, half 0.9x: the median's ratio grows ~ +10..30%, but the resamples often stay within
    old = np.ones(20)
    new = np.array([1.3, 0.9] * 10)
    (check, _) = _latency(_result(), _before(), LIMITS, (new, old), 50)
    p = float(check.message.split("p = ")[1].split()[0])
    assert check.value == pytest.approx(0.1) and p > 0.05 and check.passed is True


def test_side_by_side_on_this_host_is_not_forced_across_cpus():
    now = _result()
    now.latency.provenance = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU B", 1, "Linux", "wall")
    old = np.ones(10)
    check, why_not = _latency(now, _before(), LIMITS, (old, old), 50, any_cpu=True)
    assert check is None and why_not == "different provenance (cpu: CPU A -> CPU B)"


def test_compare_compares_across_cpus_only_when_asked():
    now = _result(p50=5.0)
    now.latency.provenance = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU B", 1, "Linux", "wall")
    report = Report("check", "0", "2026-12-05", None, {}, None, {}, {}, None, {}, [now])
    compare(report, baseline_of({"results": [_before()]}, Path("base/report.json")))  # any_cpu left out
    assert "latency.p50" not in _checks(now)
    assert now.warnings == ["ort-int8: latency not compared with the baseline: different provenance "
                            "(cpu: CPU A -> CPU B)"]


def _prov(kind="measured", cpu=None) -> Provenance:
    return Provenance(kind, "host", "onnxruntime", "1.22.0", cpu or host_cpu(), 1, "Linux", "wall time")


def test_side_by_side_is_not_tried_where_it_cannot_be_done(tmp_path):
    run, base = tmp_path / "run", tmp_path / "base"
    for folder in (run, base):
        (folder / "ort").mkdir(parents=True)
        (folder / "ort" / "model.int8.ort").write_bytes(b"x")
    result, before = _result(), _before()
    result.latency.provenance = _prov("estimated")
    assert _side_by_side(result, before, run, base) is None  # an estimate is not timed again
    result.latency.provenance = _prov(cpu="another CPU")
    assert _side_by_side(result, before, run, base) is None  # measured on another CPU
    result.latency = None
    assert _side_by_side(result, before, run, base) is None
    result = _result()
    result.latency.provenance = _prov()
    assert _side_by_side(result, {**before, "artifact": "ort/gone.ort"}, run, base) is None  # the baseline's is gone
    (run / "ort" / "model.int8.ort").unlink()
    assert _side_by_side(result, before, run, base) is None  # this run's is gone


def test_the_bootstrap_draws_every_old_and_every_new_run():
    # 3 runs: the median of 3 draws is the fast run only when 2 or 3 draws are it: P = 3 (1/3)^2 (2/3) + (1/3)^3
    fast = 3 * (1 / 3) ** 2 * (2 / 3) + (1 / 3) ** 3  # 7 / 27
    old, flat = np.array([1.0, 10.0, 10.0]), np.full(3, 5.0)
    assert _p_within_limit(old, flat, 0.1) == pytest.approx(1 - fast, abs=0.03)  # 5 / 1 grows; 5 / 10 does not
    assert _p_within_limit(flat, old, 0.1) == pytest.approx(fast, abs=0.03)  # 1 / 5 is within; 10 / 5 is not


def test_a_ratio_exactly_at_the_limit_is_within_it():
    assert _p_within_limit(np.full(5, 1.0), np.full(5, 1.1), 0.1) == 1.0
    assert _p_within_limit(np.full(5, 1.0), np.full(5, 1.1), 0.1, paired=True) == 1.0


def test_figures_are_rounded_to_six_decimals():
    (r,) = _compare([_result(size=4)], [_before(size=3)]).results
    assert _checks(r)["size"] == (False, 0.333333)  # 4 / 3 - 1


def test_an_accuracy_figure_only_one_run_has_is_skipped_and_the_next_compared():
    now = _result()
    now.metrics = Metrics(100, accuracy=0.9, float_agreement=0.95)
    before = {**_before(), "metrics": {"float_agreement": 0.97}}  # the baseline has no accuracy
    (r,) = _compare([now], [before]).results
    assert {k: v for k, v in _checks(r).items() if k in ("accuracy", "float_agreement")} == {
        "float_agreement": (False, 0.02)}


def test_outputs_figures_that_only_rise_are_compared_and_the_psnr_and_errors_are_not():
    outputs = {"a": {"topk_overlap": 0.8, "psnr_db": 20.0, "mean_abs_error": 0.5},
               "b": {"position_agreement": 0.9}}
    before = _before(outputs={"a": {"topk_overlap": 0.9, "psnr_db": 40.0, "mean_abs_error": 0.1},
                              "b": {"position_agreement": 0.9}})
    (r,) = _compare([_result(outputs=outputs)], [before]).results
    assert {k: v for k, v in _checks(r).items() if k.startswith("output")} == {
        "output[a]/topk_overlap": (False, 0.1), "output[b]/position_agreement": (True, 0.0)}


def test_memory_is_compared_only_when_both_runs_measured_it_the_same_way():
    now = _result(peak=20.0)
    now.memory = Memory(20.0, _prov("measured"))
    (r,) = _compare([now], [{**_before(), "memory": {"peak_mb": 10.0, "provenance": {"kind": "estimated"}}}]).results
    assert "peak_memory" not in _checks(r)
    (r,) = _compare([_result(peak=20.0)], [{**_before(), "memory": {"provenance": {"kind": "measured"}}}]).results
    assert "peak_memory" not in _checks(r)


def test_a_labelled_baseline_is_named_by_its_label():
    with pytest.raises(BadInput) as err:
        baseline_of({"runs": []}, Path("store/run-7/report.json"), label="run 7")
    assert str(err.value) == "run 7: not an edge-distill report to compare with (no 'results')"
    with pytest.raises(BadInput) as err:
        baseline_of({"results": [{**_before(), "size_bytes": -5}]}, Path("store/run-7/report.json"), label="run 7")
    assert str(err.value) == ("run 7: result 'ort-int8' of the baseline is not one a run writes: "
                              "size_bytes -5 is not a size in bytes")
    assert baseline_of({"results": [_before()]}, Path("p/report.json"), label="run 7")["label"] == "run 7"


@pytest.mark.parametrize("change, ok", [
    ({"size_bytes": 10 ** 13 - 1}, True), ({"size_bytes": 5 * 10 ** 13}, False), ({"size_bytes": 10 ** 12}, True),
    ({"latency": {"p50_ms": 2e7}}, False), ({"latency": {"p50_ms": 1e-3}}, True),
    ({"latency": {"p50_ms": -1.0}}, False),
])
def test_the_edges_of_a_plausible_baseline(change, ok):
    data = {"results": [{**_before(), **change}]}
    if ok:
        assert list(baseline_of(data, Path("b.json"))["results"]) == ["ort-int8"]
    else:
        with pytest.raises(BadInput, match="result 'ort-int8' of the baseline is not one a run writes"):
            baseline_of(data, Path("b.json"))


def test_a_p50_warning_is_given_once_for_both_percentiles():
    now = _result()
    now.latency = Latency(1.0, 1.0, None, 1.0, 1.0, 1.0, 15, 0, 1, _prov())
    (r,) = _compare([now], [_before()]).results  # no p95 in this run, the baseline's provenance differs
    assert len(r.warnings) == 1 and r.warnings[0].startswith("ort-int8: latency not compared with the baseline:")

