"""Regression checks against a baseline, on hand-made results (no model, no CLI): each limit at its edge,
what is skipped and why, and the latency bootstrap's p against the binomial probability it estimates.
Fast: the mutation run of toolkit/regression.py runs this file once per mutant."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest

from edge_distill.errors import BadInput
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.regression import baseline_of, compare, load_baseline
from edge_distill.result import Latency, Memory, Report, TargetResult

PROV = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU A", 1, "Linux", "wall time")
BASE_PROV = {"kind": "measured", "device": "host", "runtime": "onnxruntime", "runtime_version": "1.22.0",
             "cpu": "CPU A", "threads": 1}


def _result(precision="int8", size=1000, accuracy=0.9, slices=None, p50=1.0, p95=1.0, samples=None,
            reference=None, peak=10.0, outputs=None) -> TargetResult:
    latency = Latency(p50, 1.0, p95, 1.0, 1.0, 1.0, 15, 0, 1, PROV, samples_ms=samples, reference_ms=reference)
    return TargetResult("student", "ort", precision, f"ort/model.{precision}.ort", [], size, "ab" * 32, latency,
                        Memory(peak, PROV), None, Metrics(100, accuracy=accuracy),
                        {k: Metrics(10, accuracy=v) for k, v in (slices or {}).items()}, outputs=outputs or {})


def _before(precision="int8", size=1000, accuracy=0.9, slices=None, p50=1.0, p95=1.0, samples=None, reference=None,
            peak=10.0, **extra) -> dict:
    return {"name": f"ort-{precision}", "size_bytes": size, "artifact": f"ort/model.{precision}.ort",
            "metrics": {"accuracy": accuracy}, "slices": {k: {"accuracy": v} for k, v in (slices or {}).items()},
            "latency": {"p50_ms": p50, "p95_ms": p95, "samples_ms": samples, "reference_ms": reference,
                        "provenance": BASE_PROV},
            "memory": {"peak_mb": peak, "provenance": {"kind": "measured"}}, **extra}


def _compare(results, befores, limits=None, any_cpu=False) -> Report:
    report = Report("check", "0", "2026-12-05", None, {}, None, {}, {}, None, {}, results)
    baseline = baseline_of({"results": befores}, Path("base/report.json"))
    compare(report, baseline, limits, any_cpu=any_cpu)
    return report


def _checks(result) -> dict:
    return {c.name.split("/regression/")[1]: (c.passed, c.value) for c in result.checks}


def test_each_deterministic_figure_at_its_limit():
    # size +6% (limit 5%), accuracy -0.006 overall (limit 0.005), slice -0.004, memory +9% (limit 10%)
    (r,) = _compare([_result(size=1060, accuracy=0.894, slices={"rare": 0.796}, peak=10.9)],
                    [_before(slices={"rare": 0.8})]).results
    assert _checks(r) == {"size": (False, 0.06), "accuracy": (False, 0.006), "slice[rare]/accuracy": (True, 0.004),
                          "peak_memory": (True, 0.09), "latency.p50": (True, 0.0), "latency.p95": (True, 0.0)}
    size = next(c for c in r.checks if c.name == "ort-int8/regression/size")
    assert (size.limit, size.comparison, size.metric) == (0.05, "<=", "regression.size")
    assert size.message == "size 1,000 -> 1,060 bytes (+6.0%)"
    assert next(c for c in r.checks if c.slice == "rare").message == "slice[rare]/accuracy 0.8 -> 0.796 (-0.004)"


def test_a_figure_exactly_at_its_limit_passes():
    # binary fractions, so that growth and drop are exactly the limit (0.25): "<=" lets each pass
    limits = {k: 0.25 for k in ("max_size_increase", "max_memory_increase", "max_accuracy_decrease",
                                "max_latency_increase", "max_p95_increase")}
    (r,) = _compare([_result(size=1250, accuracy=0.5, peak=12.5, p50=1.25, p95=1.25)],
                    [_before(accuracy=0.75)], limits).results
    assert _checks(r) == {"size": (True, 0.25), "accuracy": (True, 0.25), "peak_memory": (True, 0.25),
                          "latency.p50": (True, 0.25), "latency.p95": (True, 0.25)}


def test_limits_given_replace_the_defaults_and_a_gain_passes():
    (r,) = _compare([_result(size=1060, accuracy=0.95, peak=12.0)], [_before()],
                    {"max_size_increase": 0.07, "max_memory_increase": 0.19}).results
    assert _checks(r)["size"] == (True, 0.06)
    assert _checks(r)["accuracy"] == (True, -0.05)
    assert _checks(r)["peak_memory"] == (False, 0.2)  # 12 / 10 - 1 = 0.2 > 0.19


def test_what_is_not_compared_and_why():
    missing, failed, fine = _result("fp32"), _result("int4"), _result("int8")
    failed.failure = {"stage": "build", "exit_code": 2, "reason": "refused"}
    report = _compare([missing, failed, fine], [_before("int4"), _before("int8", size=0, peak=0.0)])
    assert missing.checks == [] and missing.warnings == [
        "ort-fp32: not in the baseline (base/report.json): nothing to compare"]
    assert failed.checks == [] and failed.warnings == []
    # a baseline without a size or a peak has nothing to grow from
    assert set(_checks(fine)) == {"accuracy", "latency.p50", "latency.p95"}
    assert report.results[2].warnings == []


def test_a_failed_baseline_artifact_is_not_compared():
    (r,) = _compare([_result(size=5000)], [_before(failure={"stage": "build", "exit_code": 3})]).results
    assert r.checks == [] and r.warnings == []


def test_memory_measured_differently_is_not_compared():
    now = _result(peak=20.0)
    now.memory = Memory(20.0, Provenance("estimated", "pixel", "-", "-", "-", 1, "-", "-"))
    (r,) = _compare([now], [_before()]).results
    assert "peak_memory" not in _checks(r)
    unmeasured = _result()
    unmeasured.memory = Memory(None, None, "no /proc")
    assert "peak_memory" not in _checks(_compare([unmeasured], [_before()]).results[0])


def _bootstrap_p(k: int, n: int) -> float:
    """P(median of n draws from n old samples at 1 and k new ones at 1 of n (others at 2) stays <= 1.1):
    at least (n + 1) / 2 of the n draws must be one of the k fast runs."""
    p = k / n
    return sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range((n + 1) // 2, n + 1))


def test_a_latency_growth_beyond_the_noise_fails_and_within_it_passes():
    old = [1.0] * 15
    beyond = [1.0] * 4 + [2.0] * 11   # p = 0.0255 by the binomial: between 0.005 and 0.05
    within = [1.0] * 6 + [2.0] * 9    # p = 0.213
    (r,) = _compare([_result(p50=2.0, p95=2.0, samples=beyond)], [_before(samples=old)]).results
    p50 = next(c for c in r.checks if c.name.endswith("latency.p50"))
    assert (p50.passed, p50.value, p50.limit) == (False, 1.0, 0.1)
    p = float(p50.message.split("p = ")[1].split()[0])
    assert p == pytest.approx(_bootstrap_p(4, 15), abs=0.01)
    assert p50.message.startswith("p50 1 -> 2 ms: +100.0%; bootstrap of the ratio of medians over 15 and 15 runs, "
                                  "2000 resamples: p = ")
    assert p50.message.endswith("that it grew no more than 10%")
    (r,) = _compare([_result(p50=2.0, p95=2.0, samples=within)], [_before(samples=old)]).results
    p50 = next(c for c in r.checks if c.name.endswith("latency.p50"))
    assert p50.passed is True and p50.message.endswith("(within the noise: not a regression)")
    assert float(p50.message.split("p = ")[1].split()[0]) == pytest.approx(_bootstrap_p(6, 15), abs=0.03)


def test_a_growth_within_the_limit_is_not_called_noise():
    (r,) = _compare([_result(p50=1.05, samples=[1.05] * 15)], [_before(samples=[1.0] * 15)]).results
    p50 = next(c for c in r.checks if c.name.endswith("latency.p50"))
    assert p50.passed is True and p50.value == pytest.approx(0.05) and p50.message.endswith("grew no more than 10%")
    assert "p = 1 " in p50.message


def test_the_tail_has_its_own_limit():
    (r,) = _compare([_result(p50=1.0, p95=1.15)], [_before()], {"max_p95_increase": 0.1}).results
    assert _checks(r)["latency.p95"] == (False, 0.15)
    p95 = next(c for c in r.checks if c.name.endswith("latency.p95"))
    assert p95.message == "p95 1 -> 1.15 ms: +15.0%; no raw runs in one of the reports, so noise is not judged"
    (r,) = _compare([_result(p50=1.0, p95=1.15)], [_before()]).results
    assert _checks(r)["latency.p95"] == (True, 0.15)  # the default tail limit is 20%


def test_latencies_are_divided_by_the_hosts_speed_when_both_runs_have_it():
    # 2.1 ms on a host twice as slow (reference 4 ms against 2 ms) is 1.05 ms at the baseline's speed: +5%
    (r,) = _compare([_result(p50=2.1, reference=4.0)], [_before(p50=1.0, reference=2.0)]).results
    assert _checks(r)["latency.p50"] == (True, pytest.approx(0.05))
    msg = next(c for c in r.checks if c.name.endswith("latency.p50")).message
    assert msg.startswith("p50 1 -> 2.1 ms, each divided by the host's reference time (2 -> 4 ms): +5.0%")
    (r,) = _compare([_result(p50=2.1, reference=4.0)], [_before(p50=1.0)]).results  # one run lacks it
    assert _checks(r)["latency.p50"] == (False, pytest.approx(1.1))


def test_another_provenance_is_reported_not_compared():
    now = _result(p50=5.0)
    now.latency.provenance = Provenance("measured", "host", "onnxruntime", "1.23.0", "CPU B", 1, "Linux", "wall")
    (r,) = _compare([now], [_before()]).results
    assert "latency.p50" not in _checks(r) and "latency.p95" not in _checks(r)
    assert r.warnings == ["ort-int8: latency not compared with the baseline: different provenance "
                          "(cpu: CPU A -> CPU B, runtime_version: 1.22.0 -> 1.23.0)"]
    # forced across CPUs, the runtime version still differs: not compared
    (r,) = _compare([now], [_before()], any_cpu=True).results
    assert "latency.p50" not in _checks(r)
    cpu_only = _result(p50=5.0)
    cpu_only.latency.provenance = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU B", 1, "Linux", "w")
    (r,) = _compare([cpu_only], [_before()], any_cpu=True).results
    assert _checks(r)["latency.p50"] == (False, 4.0) and r.warnings == []


def test_a_run_without_a_latency_says_nothing_or_why():
    none = _result()
    none.latency = None
    before = _before()
    before["latency"] = None
    (r,) = _compare([none], [before]).results
    assert r.warnings == [] and set(_checks(r)) == {"size", "accuracy", "peak_memory"}
    (r,) = _compare([none], [_before()]).results
    assert r.warnings == ["ort-int8: latency not compared with the baseline: one of the two runs has no p50"]


def test_a_second_output_drop_beyond_the_accuracy_limit_fails():
    outputs = {"scores": {"cosine": 0.98}, "boxes": {"map_agreement": 0.9}}
    before = _before(outputs={"scores": {"cosine": 0.99}, "boxes": {"map_agreement": 0.9}})
    (r,) = _compare([_result(outputs=outputs)], [before]).results
    assert _checks(r)["output[scores]/cosine"] == (False, 0.01)
    assert _checks(r)["output[boxes]/map_agreement"] == (True, 0.0)


def test_a_report_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("not json")
    with pytest.raises(BadInput, match="not an edge-distill report to compare with"):
        load_baseline(bad)
    with pytest.raises(BadInput, match="not an edge-distill report to compare with"):
        load_baseline(tmp_path / "missing.json")
    bad.write_text(json.dumps({"created": "x"}))
    with pytest.raises(BadInput, match=r"no 'results'"):
        load_baseline(bad)
    bad.write_text(json.dumps({"created": "2026", "results": [_before()]}))
    loaded = load_baseline(bad)
    assert (loaded["path"], loaded["label"], loaded["created"]) == (str(bad), str(bad), "2026")
    assert list(loaded["results"]) == ["ort-int8"]


@pytest.mark.parametrize("change, why", [
    ({"size_bytes": True}, "size_bytes True is not a size in bytes"),
    ({"size_bytes": -1}, "size_bytes -1 is not a size in bytes"),
    ({"size_bytes": 10 ** 13}, "size_bytes 10000000000000 is not a size in bytes"),
    ({"artifact": "/etc/passwd"}, "its artifact '/etc/passwd' is outside the report's folder"),
    ({"metrics": {"accuracy": -0.1}}, "metrics.accuracy = -0.1 is not a share"),
    ({"metrics": {"accuracy": "high"}}, "metrics.accuracy = 'high' is not a share"),
    ({"latency": {"p95_ms": 0}}, "latency.p95_ms = 0 is not a time"),
    ({"latency": {"reference_ms": 1e7}}, "latency.reference_ms = 10000000.0 is not a time"),
])
def test_an_implausible_baseline_result_is_refused(change, why):
    with pytest.raises(BadInput, match="result 'ort-int8' of the baseline is not one a run writes: " + why):
        baseline_of({"results": [{**_before(), **change}]}, Path("b.json"))


def test_limits_at_their_edges_are_accepted_in_a_baseline():
    edge = {**_before(size=0), "metrics": {"accuracy": 1}, "latency": {"p50_ms": 9_999_999.0}}
    assert baseline_of({"results": [edge, {**_before("fp32"), "metrics": {"accuracy": 0}}]}, Path("b"))["results"]
    with pytest.raises(BadInput, match="not a result"):
        baseline_of({"results": [{"name": 3}]}, Path("b"))


def test_paired_bootstrap_draws_the_same_rounds_for_both():
    from edge_distill.regression import _p_within_limit

    # every round the new artifact takes exactly 1.5x the old one's time, whatever the load: paired, the ratio
    # of medians is 1.5 in every resample; unpaired, the load's spread makes it anything
    rng = np.random.default_rng(1)
    old = rng.uniform(1, 10, 31)
    new = old * 1.5
    assert _p_within_limit(old, new, 0.4, paired=True) == 0.0
    assert _p_within_limit(old, new, 0.6, paired=True) == 1.0
    assert 0.0 < _p_within_limit(old, new, 0.4) < 1.0


def test_default_memory_limit_is_ten_percent():
    (r,) = _compare([_result(peak=12.0)], [_before()]).results
    assert _checks(r)["peak_memory"] == (False, 0.2)
