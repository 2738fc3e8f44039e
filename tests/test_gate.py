"""The CI gate: budgets that are broken exit 1, with the failing check in junit.xml."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import onnxruntime as ort
import pytest

from conftest import edit_config, run_cli

pytestmark = pytest.mark.slow  # every test runs check end to end


def failures(junit_path):
    root = ET.parse(junit_path).getroot()
    return {f"{c.get('classname')}/{c.get('name')}" for c in root.iter("testcase") if c.find("failure") is not None}


@pytest.mark.parametrize("target", ["ort", "tflite"])
def test_latency_budget_below_measured_p95_exits_1(example, tmp_path, target):
    config = edit_config(example, targets=(target,), precisions=["fp32"],
                         budgets="[budgets]\nlatency_p95_ms = 0.0001\nmin_accuracy = 0.5\n")
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failures(tmp_path / "out" / "junit.xml") == {f"edge-distill.{target}-fp32/latency_p95_ms"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check = next(c for c in report["results"][0]["checks"] if c["metric"] == "latency.p95_ms")
    assert check["passed"] is False and check["value"] > check["limit"] and check["provenance"] == "measured"
    assert "BROKEN" in proc.stdout


def test_high_risk_slice_fails_while_overall_accuracy_passes(example, tmp_path):
    budgets = "[budgets]\nmin_accuracy = 0.85\n[budgets.slices.high_risk]\nmin_accuracy = 0.85\n"
    config = edit_config(example, targets=("ort",), precisions=["fp32"], budgets=budgets)
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failures(tmp_path / "out" / "junit.xml") == {"edge-distill.ort-fp32/slice[high_risk]/min_accuracy"}
    result = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    assert result["metrics"]["accuracy"] >= 0.85 > result["slices"]["high_risk"]["accuracy"]


def test_quantized_slower_than_float_is_caught(example, tmp_path):
    # A speedup nobody gets on a 50 µs model: the int8 artifact must be reported as failing,
    # and fp32 is measured first as its baseline even though only int8 was asked for.
    config = edit_config(example, targets=("ort",), precisions=["int8"], budgets="[budgets]\nmin_speedup_vs_float = 20\n")
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["precision"] for r in report["results"]] == ["fp32", "int8"]
    assert failures(tmp_path / "out" / "junit.xml") == {"edge-distill.ort-int8/min_speedup_vs_float"}
    assert report["results"][1]["speedup_vs_float"] < 20


def test_unmeasurable_figure_exits_3_and_says_what(demo_run, tmp_path):
    _, demo = demo_run
    budget = tmp_path / "budget.toml"
    budget.write_text("min_teacher_agreement = 0.9\nlatency_p95_ms = 100\n")
    from conftest import EXAMPLE

    proc = run_cli("verify", demo / "ort" / "model.int8.ort", "--data", EXAMPLE / "eval.npz", "--budget", budget,
                   "--out", tmp_path / "out", "--runs", "50")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no teacher was given" in proc.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["exit_code"] == 3 and report["results"][0]["precision"] == "int8"


def test_verify_with_float_and_teacher_onnx(demo_run, tmp_path):
    _, demo = demo_run
    from conftest import EXAMPLE

    budget = tmp_path / "budget.toml"
    budget.write_text("[budgets]\nmin_float_agreement = 0.975\nmax_size_mb = 0.5\n"
                      "[budgets.slices.high_risk]\nmax_accuracy_drop = 0.03\n")
    proc = run_cli("verify", demo / "ort" / "model.int8.ort", "--data", EXAMPLE / "eval.npz", "--budget", budget,
                   "--float", demo / "onnx" / "model.onnx", "--out", tmp_path / "out", "--runs", "50")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    assert result["metrics"]["float_agreement"] >= 0.975 and result["speedup_vs_float"] is not None


def test_a_precision_layer_changes_the_verdict_of_that_precision_only(example, tmp_path):
    budgets = ("[budgets]\nmin_float_agreement = 0.9\n"
               "[budgets.precisions.int8]\nmin_float_agreement = 0.9999\n")  # int8 agrees on ~99%: not 99.99%
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8", "int4"], budgets=budgets,
                         replace={"runs = 300": "runs = 20"})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failures(tmp_path / "out" / "junit.xml") == {"edge-distill.ort-int8/min_float_agreement"}
    checks = {c["name"]: c for r in json.loads((tmp_path / "out" / "report.json").read_text())["results"]
              for c in r["checks"]}
    assert checks["ort-int8/min_float_agreement"]["limit"] == 0.9999
    assert checks["ort-int4/min_float_agreement"]["limit"] == 0.9 and checks["ort-int4/min_float_agreement"]["passed"]


def test_every_latency_percentile_weighted_accuracy_and_peak_memory_are_checked(example, tmp_path):
    budgets = ("[budgets]\nlatency_p50_ms = 100\nlatency_p90_ms = 100\nlatency_p99_ms = 100\n"
               "min_weighted_accuracy = 0.5\nmax_peak_memory_mb = 1\n")  # no runtime fits in 1 MB of RSS
    config = edit_config(example, targets=("ort",), precisions=["fp32"], budgets=budgets,
                         replace={"runs = 300": "runs = 20"})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failures(tmp_path / "out" / "junit.xml") == {"edge-distill.ort-fp32/max_peak_memory_mb"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    checks = {c["metric"]: c for c in report["results"][0]["checks"]}
    assert set(checks) == {"latency.p50_ms", "latency.p90_ms", "latency.p99_ms", "weighted_accuracy", "peak_memory_mb"}
    latency = report["results"][0]["latency"]
    assert [checks[f"latency.{p}"]["value"] for p in ("p50_ms", "p90_ms", "p99_ms")] == [
        latency["p50_ms"], latency["p90_ms"], latency["p99_ms"]]
    assert latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    # fp32 computes what the float student computes: the same weighted accuracy, with its provenance
    weighted = report["references"]["float student"]["overall"]["weighted_accuracy"]
    assert checks["weighted_accuracy"]["value"] == pytest.approx(weighted) and checks["weighted_accuracy"]["passed"]
    # and worked out apart: the artifact run by onnxruntime itself, each right answer counted with its weight
    evaluation = np.load(example / "eval.npz")
    session = ort.InferenceSession(str(tmp_path / "out" / report["results"][0]["artifact"]),
                                   providers=["CPUExecutionProvider"])
    right = session.run(None, {"image": evaluation["image"]})[0].argmax(1) == evaluation["labels"]
    weights = evaluation["weights"]
    assert checks["weighted_accuracy"]["value"] == pytest.approx((weights * right).sum() / weights.sum(), abs=1e-6)
    assert abs(checks["weighted_accuracy"]["value"] - right.mean()) > 1e-3  # the weights do move the figure
    assert checks["peak_memory_mb"]["value"] > 1 and checks["peak_memory_mb"]["provenance"] == "measured"


def test_a_refused_artifact_is_its_own_row_and_the_others_keep_their_figures(example, tmp_path):
    # A .tflite parity bound no real conversion meets: LiteRT refuses its fp32; ORT's artifacts go on.
    config = edit_config(example, targets=("ort", "tflite"), precisions=["fp32"],
                         budgets="[budgets]\nmin_accuracy = 0.5\n",
                         replace={'name = "tflite"\nprecisions = ["fp32"]':
                                  'name = "tflite"\nprecisions = ["fp32"]\noptions = { tolerance = 1e-12 }'})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # refused (2) is worse than every budget holding
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    ort, tflite = report["results"]
    assert ort["name"] == "ort-fp32" and ort["failure"] is None and ort["metrics"]["accuracy"] > 0.85
    assert [c["passed"] for c in ort["checks"]] == [True]
    assert tflite["name"] == "tflite-fp32" and tflite["failure"]["exit_code"] == 2 and tflite["size_bytes"] == 0
    assert "tolerance 1e-12" in tflite["failure"]["reason"] and ".partial-" not in proc.stdout + proc.stderr
    assert report["exit_code"] == 2
    leftovers = list((tmp_path / "out" / "tflite").rglob("*")) if (tmp_path / "out" / "tflite").exists() else []
    assert leftovers == []  # the refused build left nothing that looks like an artifact
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    (case,) = [c for c in root.iter("testcase") if c.get("name") == "built"]
    assert "refused: " in case.find("error").get("message")
    assert "REFUSED" in proc.stdout
