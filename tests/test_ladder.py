"""The decision ladder on the real example: teacher and student, quantized, measured in order."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import EXAMPLE, edit_config, run_cli
from edge_distill.advise import Answers, advise
from edge_distill.errors import BadInput
from edge_distill.ladder import parse_cost


def ladder(example, tmp_path, budget: str, *extra):
    edit_config(example, targets=("ort",), replace={"runs = 300": "runs = 40", "warmup = 50": "warmup = 5"})
    (example / "b.toml").write_text(budget)
    out = tmp_path / "out"
    proc = run_cli("ladder", example / "edge-distill.toml", "--budget", example / "b.toml", "--out", out, *extra)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return proc, report, out


def rungs(report):
    return {r["name"]: r for r in report["ladder"]["rungs"]}


def test_example_budget_climbs_to_the_student(example, tmp_path):
    proc, report, out = ladder(example, tmp_path, (EXAMPLE / "ladder-budget.toml").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = rungs(report)
    assert [n for n, x in r.items() if x["measured"]] == [
        "teacher/ort-fp32", "teacher/ort-int8", "teacher/ort-int4", "student/ort-fp32", "student/ort-int8"]
    assert report["ladder"]["chosen"] == "student/ort-int8" and not r["student/ort-int4"]["measured"]
    assert r["teacher/ort-int8"]["broken"] == ["max_size_mb"]
    assert "the distilled student is needed" in proc.stdout and "Ladder (cheapest rung first)" in proc.stdout
    cost = report["ladder"]["cost"]
    assert cost["fixed_cost_of_distillation"] == pytest.approx(0.02 * 40 + 0.1 * 1.0 + 5.0)
    assert "whatever the volume" in cost["payback_note"]
    # JUnit: the rungs below are findings (skipped), the verdict passes.
    cases = {c.get("name"): c for c in ET.parse(out / "junit.xml").getroot().iter("testcase")}
    assert cases["teacher/ort-fp32"].find("skipped") is not None and cases["verdict"].find("failure") is None
    assert "student/ort-int8" in (out / "report.md").read_text()


def test_budget_only_the_teacher_meets(example, tmp_path):
    proc, report, _ = ladder(example, tmp_path, "min_accuracy = 0.895\n", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = rungs(report)
    assert report["ladder"]["chosen"] == "teacher/ort-fp32"
    assert all(r[n]["measured"] and not r[n]["meets_budget"] for n in r if n.startswith("student/"))
    assert "quantizing the model you have is enough" in report["ladder"]["verdict"]
    cost = report["ladder"]["cost"]
    assert cost["payback_calls_per_month"] is None and "no measured student rung" in cost["payback_note"]


def test_no_rung_meets_the_budget_exits_1(example, tmp_path):
    proc, report, out = ladder(example, tmp_path, "min_accuracy = 0.99\n")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert report["ladder"]["chosen"] is None and all(x["measured"] for x in report["ladder"]["rungs"])
    verdict = next(c for c in ET.parse(out / "junit.xml").getroot().iter("testcase") if c.get("name") == "verdict")
    assert verdict.find("failure") is not None


def test_slice_budget_the_aggregate_hides(example, tmp_path):
    budget = "max_size_mb = 0.5\nmin_accuracy = 0.85\n[slices.high_risk]\nmin_accuracy = 0.80\n"
    proc, report, _ = ladder(example, tmp_path, budget, "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["name"]: r for r in report["results"]}
    student = results["student/ort-int8"]
    assert student["metrics"]["accuracy"] >= 0.85 > 0 and student["slices"]["high_risk"]["accuracy"] < 0.80
    assert rungs(report)["student/ort-int8"]["broken"] == ["slice[high_risk]/min_accuracy"]
    assert report["ladder"]["chosen"] == "teacher/ort-int4"  # the only rung small enough and right on high_risk


def test_payback_volume_when_both_families_meet(example, tmp_path):
    proc, report, _ = ladder(example, tmp_path, "min_accuracy = 0.85\n", "--all")
    cost = report["ladder"]["cost"]
    assert cost["baseline"].startswith("teacher/") and cost["student"].startswith("student/")
    if cost["saving_per_call"] > 0:
        monthly = cost["fixed_cost_of_distillation"] / 12 + 10.0
        assert cost["payback_calls_per_month"] == round(monthly / cost["saving_per_call"])
    else:
        assert "never pays back" in cost["payback_note"]


def test_stale_teacher_warns_and_can_fail(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32"],
                         replace={"runs = 300": "runs = 40", 'distilled_from = "5d2f': 'distilled_from = "0000'})
    proc = run_cli("check", config, "--out", tmp_path / "warn")
    assert proc.returncode == 0 and "stale student" in proc.stdout
    config.write_text(config.read_text().replace('task = "classification"',
                                                 'task = "classification"\nstale_teacher = "fail"'))
    proc = run_cli("check", config, "--out", tmp_path / "fail")
    assert proc.returncode == 1 and "teacher_fingerprint" in (tmp_path / "fail" / "junit.xml").read_text()
    # Recording the current teacher clears it.
    recorded = run_cli("fingerprint", example / "teacher.safetensors", "--config", config)
    assert recorded.returncode == 0, recorded.stderr
    assert run_cli("check", config, "--out", tmp_path / "ok").returncode == 0


def test_cost_model_is_validated(tmp_path):
    with pytest.raises(BadInput, match="missing training_hours.*not a zero"):
        parse_cost({"teacher_cost_per_1k": 1, "label_corpus_size": 10, "training_price_per_hour": 1,
                    "evaluation_cost": 1, "upkeep_per_month": 1}, tmp_path / "c.toml")
    with pytest.raises(BadInput, match="unknown key 'price_per_seconds'"):
        parse_cost({"price_per_seconds": 1}, tmp_path / "c.toml")


@pytest.mark.parametrize("answers, rung", [
    (dict(current_latency_ms=40), "keep the current model"),
    (dict(current_latency_ms=180), "quantize the current model"),
    (dict(current_latency_ms=900, teacher="none"), "fix the teacher/data gap"),
    (dict(current_latency_ms=900, monthly_calls=10_000), "distill only if the ladder's payback"),
    (dict(current_latency_ms=900), "distill a student, then quantize it"),
    (dict(current_latency_ms=900, task="broad", off_the_shelf=True), "off-the-shelf model"),
])
def test_advise_follows_the_ladder(answers, rung):
    base = dict(latency_budget_ms=100, current_latency_ms=None, monthly_calls=5_000_000, task="narrow",
                teacher="strong", teacher_stable=True, tolerance="medium", data="unlabelled", off_the_shelf=False)
    advice = advise(Answers(**{**base, **answers}))
    assert rung in advice.rung and advice.confirm.startswith("edge-distill")


def test_advise_cli_with_flags():
    proc = run_cli("advise", "--latency-budget-ms", "100", "--current-latency-ms", "900", "--monthly-calls",
                   "5000000", "--task", "narrow", "--teacher", "strong", "--tolerance", "medium", "--data",
                   "labelled", "--no-off-the-shelf", "--teacher-stable")
    assert proc.returncode == 0, proc.stderr
    assert "Start at: distill a student, then quantize it" in proc.stdout and "5." in proc.stdout
    bad = run_cli("advise", "--latency-budget-ms", "-1", "--monthly-calls", "1", "--task", "narrow", "--teacher",
                  "strong", "--tolerance", "low", "--data", "none", "--no-off-the-shelf", "--teacher-moves")
    assert bad.returncode == 2 and "positive" in bad.stderr
    missing = run_cli("advise", "--latency-budget-ms", "100")
    assert missing.returncode == 2 and "missing --monthly-calls" in missing.stderr


def test_off_the_shelf_rung_sits_between_teacher_and_student(example, tmp_path, demo_run):
    _, demo = demo_run
    shutil.copyfile(demo / "onnx" / "model.onnx", example / "ready-made.onnx")
    config = edit_config(example, targets=("ort",), replace={"runs = 300": "runs = 40", "warmup = 50": "warmup = 5"})
    config.write_text(config.read_text() + '\n[ladder]\noff_the_shelf = "ready-made.onnx"\n')
    (example / "b.toml").write_text("max_size_mb = 0.3\nmin_accuracy = 0.85\n")
    proc = run_cli("ladder", config, "--budget", example / "b.toml", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["ladder"]["order"][3] == "off-the-shelf/ort-fp32"
    assert report["ladder"]["chosen"] == "off-the-shelf/ort-fp32"
    assert "an off-the-shelf model is enough" in report["ladder"]["verdict"]
