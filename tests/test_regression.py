"""check --baseline: what got worse than a baseline report fails as a budget does; latency only
beyond the runs' noise, and never across provenances."""

from __future__ import annotations

import json

import pytest

from conftest import edit_config, run_cli


@pytest.mark.slow
def test_regressions_against_a_baseline_are_named_and_fail(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"], budgets="[budgets]\n")
    first = run_cli("check", config, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stdout + first.stderr
    baseline = json.loads((tmp_path / "first" / "report.json").read_text())
    int8 = next(r for r in baseline["results"] if r["precision"] == "int8")
    assert len(int8["latency"]["samples_ms"]) == int8["latency"]["runs"] and int8["latency"]["reference_ms"] > 0

    # A baseline whose int8 was smaller, more accurate on the high-risk slice and four times as fast (the
    # tail of 300 runs of a 0.1 ms model moves by up to 2x between two runs on a shared machine: p95 of a
    # baseline only twice as fast was once within the noise).
    int8["size_bytes"] = int(int8["size_bytes"] / 1.2)
    int8["slices"]["high_risk"]["accuracy"] += 0.02
    int8["latency"]["p50_ms"] /= 4
    int8["latency"]["samples_ms"] = [t / 4 for t in int8["latency"]["samples_ms"]]
    int8["latency"]["p95_ms"] /= 4
    int8["memory"]["peak_mb"] /= 1.5
    fp32 = next(r for r in baseline["results"] if r["precision"] == "fp32")
    fp32["latency"]["provenance"]["cpu"] = "another CPU"  # reported, never compared
    doctored = tmp_path / "baseline.json"
    doctored.write_text(json.dumps(baseline))

    second = run_cli("check", config, "--out", tmp_path / "second", "--baseline", doctored)
    assert second.returncode == 1, second.stdout + second.stderr
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    broken = {c["name"] for r in report["results"] for c in r["checks"] if c["passed"] is False}
    assert broken == {"ort-int8/regression/size", "ort-int8/regression/slice[high_risk]/accuracy",
                      "ort-int8/regression/latency.p50", "ort-int8/regression/latency.p95",
                      "ort-int8/regression/peak_memory"}
    latency = next(c for c in report["results"][1]["checks"] if c["name"] == "ort-int8/regression/latency.p50")
    assert "bootstrap of the ratio of medians" in latency["message"] and "p = 0 " in latency["message"]
    assert "ort-fp32: latency not compared with the baseline: different provenance (cpu: another CPU ->" in second.stdout
    assert not any(c["name"] == "ort-fp32/regression/latency.p50" for c in report["results"][0]["checks"])


@pytest.mark.slow
def test_a_bad_baseline_is_refused_before_any_work(example, tmp_path):
    bad = tmp_path / "baseline.json"
    bad.write_text("{}")
    proc = run_cli("check", example / "edge-distill.toml", "--out", tmp_path / "out", "--baseline", bad)
    assert proc.returncode == 2 and "not an edge-distill report to compare with" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_latency_is_measured_again_side_by_side_when_the_baselines_artifacts_are_there(example, tmp_path):
    """With the baseline's output folder at hand, both artifacts are timed in turns on this host: a
    baseline whose int8 was the (faster, on this x86 host) fp32 artifact makes this int8 a regression,
    and an unchanged artifact is not one, whatever the machine's load."""
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"], budgets="[budgets]\n")
    first = run_cli("check", config, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stdout + first.stderr
    baseline = json.loads((tmp_path / "first" / "report.json").read_text())
    fp32, int8 = baseline["results"]
    int8["artifact"] = fp32["artifact"]  # ORT int8 of this 50 µs model is 20-30% slower than fp32 on x86
    doctored = tmp_path / "first" / "baseline.json"
    doctored.write_text(json.dumps(baseline))
    second = run_cli("check", config, "--out", tmp_path / "second", "--baseline", doctored)
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    checks = {c["name"]: c for r in report["results"] for c in r["checks"] if "/regression/latency" in c["name"]}
    assert all("side by side with the baseline's artifact" in c["message"] for c in checks.values())
    assert checks["ort-int8/regression/latency.p50"]["passed"] is False and second.returncode == 1
    assert checks["ort-fp32/regression/latency.p50"]["passed"] is True  # the same artifact: within its noise
    assert abs(checks["ort-fp32/regression/latency.p50"]["value"]) < 0.1


def test_a_second_outputs_agreement_is_compared_too():
    from types import SimpleNamespace

    from edge_distill.regression import _outputs

    outputs = {"box": {"cosine": 0.95, "mean_abs_error": 0.2}, "new": {"cosine": 1}}
    now = SimpleNamespace(name="ort-int8", outputs=outputs, outputs_beyond_the_task=outputs)
    before = {"outputs": {"box": {"cosine": 0.99, "mean_abs_error": 0.1}}}
    (check,) = _outputs(now, before, {"max_accuracy_decrease": 0.005})
    assert (check.name, check.passed, check.value) == ("ort-int8/regression/output[box]/cosine", False, 0.04)
    assert check.message == "output box cosine 0.99 -> 0.95 (-0.04)"


def test_a_slice_has_its_own_limit_and_another_cpu_is_compared_only_when_forced():
    from pathlib import Path
    from types import SimpleNamespace as NS

    import pytest

    from edge_distill.budgets import REGRESSION_LIMITS, parse_budget
    from edge_distill.errors import BadInput
    from edge_distill.regression import _accuracy, _latency

    budget = parse_budget({"regression": {"slices": {"high_risk": {"max_accuracy_decrease": 0.001}}}}, Path("b.toml"))
    limits = {**REGRESSION_LIMITS, **budget.regression}
    now = NS(name="ort-int8", metrics=NS(accuracy=0.9), slices={"high_risk": NS(accuracy=0.797), "rest": NS(accuracy=0.797)})
    before = {"metrics": {"accuracy": 0.9}, "slices": {"high_risk": {"accuracy": 0.8}, "rest": {"accuracy": 0.8}}}
    assert {c.name.split("/regression/")[1]: c.passed for c in _accuracy(now, before, limits)} == {
        "accuracy": True, "slice[high_risk]/accuracy": False, "slice[rest]/accuracy": True}  # 0.003 > 0.001, < 0.005
    with pytest.raises(BadInput, match="budgets.regression.slices.x"):
        parse_budget({"regression": {"slices": {"x": {"min_accuracy": 1}}}}, Path("b.toml"))

    prov = {"kind": "measured", "device": "host", "threads": 1, "runtime": "onnxruntime", "runtime_version": "1.22"}
    now = NS(name="ort-int8", latency=NS(p50_ms=2.0, p95_ms=2.0, provenance=NS(**prov, cpu="CPU B"), reference_ms=None,
                                         samples_ms=None))
    before = {"latency": {"p50_ms": 1.0, "p95_ms": 1.0, "provenance": {**prov, "cpu": "CPU A"}}}
    assert _latency(now, before, limits) == (None, "different provenance (cpu: CPU A -> CPU B)")
    forced, _ = _latency(now, before, limits, any_cpu=True)
    assert forced.passed is False and "(forced across CPUs: CPU A -> CPU B)" in forced.message


def test_a_baseline_that_no_run_could_have_written_is_refused_naming_the_report():
    import math
    from pathlib import Path

    import pytest

    from edge_distill.errors import BadInput
    from edge_distill.regression import baseline_of

    good = {"name": "ort-int8", "size_bytes": 71_600, "artifact": "ort/model.int8.ort",
            "metrics": {"accuracy": 0.88, "accuracy_drop": -0.01}, "slices": {"rare": {"accuracy": 0.7}},
            "latency": {"p50_ms": 0.1, "p95_ms": 0.12, "reference_ms": 2.0}}
    assert baseline_of({"results": [good]}, Path("base/report.json"))["results"]["ort-int8"] is good
    for change, why in (({"size_bytes": 1e308}, "size_bytes 1e+308 is not a size in bytes"),
                        ({"metrics": {"accuracy": math.nan}}, "metrics.accuracy = nan is not a share between 0 and 1"),
                        ({"slices": {"rare": {"accuracy": 1.5}}}, "slices.rare.accuracy = 1.5 is not a share"),
                        ({"artifact": "../../../evil"}, "its artifact '../../../evil' is outside the report's folder"),
                        ({"latency": {"p50_ms": -1.0}}, "latency.p50_ms = -1.0 is not a time in milliseconds")):
        with pytest.raises(BadInput, match="^base/report.json: result 'ort-int8' of the baseline is not one a run "
                                           "writes: " + __import__("re").escape(why)):
            baseline_of({"results": [{**good, **change}]}, Path("base/report.json"))
