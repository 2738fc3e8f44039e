"""The walking skeleton end to end: `edge-distill demo` on the real distilled example."""

import json
import statistics
from importlib.resources import files

import jsonschema
import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter

from conftest import EXAMPLE, run_cli

pytestmark = pytest.mark.slow  # every test reads the session's `edge-distill demo` run


def test_demo_exits_0_and_report_validates(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    schema = json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(report, schema)
    assert report["passed"] is True and report["exit_code"] == 0
    assert [r["name"] for r in report["results"]] == ["ort-fp32", "ort-int8", "ort-int4",
                                                      "tflite-fp32", "tflite-int8", "tflite-int4"]
    runtimes = {"ort": ("onnxruntime", ".ort"), "tflite": ("ai-edge-litert", ".tflite")}
    for result in report["results"]:
        runtime, suffix = runtimes[result["target"]]
        assert result["latency"]["provenance"]["kind"] == "measured"
        assert result["latency"]["provenance"]["runtime"] == runtime
        assert result["memory"]["provenance"]["kind"] == "measured"
        assert (out / result["artifact"]).is_file() and result["artifact"].endswith(suffix)
        if result["target"] == "ort":
            assert result["details"]["mobile_usability"]["provenance"] == "estimated"
        assert result["checks"] and all(c["passed"] for c in result["checks"])
    # The table is printed, and the three reports are there.
    assert "ort-int8" in proc.stdout
    # the verdict line, its count worked out from report.json: every check of every result, and the gate's
    held = len(report.get("gate_checks", [])) + sum(len(r["checks"]) for r in report["results"])
    assert f"PASSED: every budget holds ({held}/{held} checks hold)" in proc.stdout.splitlines()
    assert (out / "junit.xml").read_text().count("<testcase") == len(
        [c for r in report["results"] for c in r["checks"]])
    assert "| check | value | limit | verdict |" in (out / "report.md").read_text()


def test_int8_keeps_top1_agreement_with_float_student(demo_run):
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    tflite = {r["precision"]: r for r in report["results"] if r["target"] == "tflite"}
    assert tflite["int8"]["metrics"]["float_agreement"] >= 0.98
    assert tflite["fp32"]["metrics"]["max_abs_diff_vs_float"] <= 1e-4  # the fp32 .tflite is the torch student
    # int4's figures worked out apart: the .tflite run by LiteRT's interpreter itself, one image at a time
    # (the file's batch is 1), against the labels and weights of eval.npz; its p95 from its own runs.
    int4 = tflite["int4"]
    evaluation = np.load(EXAMPLE / "eval.npz")
    interpreter = Interpreter(model_path=str(out / int4["artifact"]), num_threads=1)
    interpreter.allocate_tensors()
    (image,), (logits,) = interpreter.get_input_details(), interpreter.get_output_details()
    predicted = []
    for sample in evaluation["image"]:
        interpreter.set_tensor(image["index"], sample[None])
        interpreter.invoke()
        predicted.append(int(interpreter.get_tensor(logits["index"])[0].argmax()))
    right = np.array(predicted) == evaluation["labels"]
    assert int4["metrics"]["accuracy"] == pytest.approx(right.sum() / len(right), abs=1e-6)  # rounded to 6 places
    weights = evaluation["weights"]
    assert int4["metrics"]["weighted_accuracy"] == pytest.approx((weights * right).sum() / weights.sum(), abs=1e-6)
    runs = int4["latency"]["samples_ms"]
    assert len(runs) == int4["latency"]["runs"] == 300
    # numpy's default percentile is the "inclusive" method; each run and the p95 are rounded to 0.1 µs
    assert int4["latency"]["p95_ms"] == pytest.approx(statistics.quantiles(runs, n=20, method="inclusive")[18],
                                                      abs=2e-4)
    results = {r["precision"]: r for r in report["results"] if r["target"] == "ort"}
    assert results["int8"]["metrics"]["float_agreement"] >= 0.975  # 0.9885 on AMD (no VNNI), higher with VNNI
    assert results["int8"]["size_bytes"] < results["fp32"]["size_bytes"] / 2
    # int4 really packed the Linear layers into MatMulNBits; the convolutions stay fp32.
    assert results["int4"]["details"]["ops"].get("com.microsoft.MatMulNBits") == 2
    assert results["int4"]["size_bytes"] < results["int8"]["size_bytes"]


def test_export_has_a_really_dynamic_batch_and_stated_parity(demo_run):
    _, out = demo_run
    report = json.loads((out / "report.json").read_text())
    export = report["export"]
    assert export["opset"] >= 18 and export["parity_max_abs_diff"] <= export["parity_tolerance"] == 1e-4
    model = onnx.load(str(out / "onnx" / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not frozen at 2
    assert not (out / "onnx" / "model.onnx.data").exists()  # one self-contained file


def test_ort_mobile_outputs_and_reference_metrics(demo_run):
    _, out = demo_run
    # The ops a reduced ORT Mobile build must keep: the fused int8 kernels of the saved .ort, by domain.
    config = (out / "ort" / "model.int8.required_operators_and_types.config").read_text()
    ops = {}  # domain -> the text of its lines (one line per domain and opset)
    for line in config.splitlines():
        if line and not line.startswith("#"):
            domain, _, listed = line.split(";", 2)
            ops[domain] = ops.get(domain, "") + listed
    assert "QLinearConv" in ops["com.microsoft"] and "QGemm" in ops["com.microsoft"]
    assert "QuantizeLinear" in ops["ai.onnx"] and "DequantizeLinear" in ops["ai.onnx"]
    report = json.loads((out / "report.json").read_text())
    teacher = report["references"]["teacher"]["overall"]
    student = report["references"]["float student"]["overall"]
    assert teacher["accuracy"] > student["accuracy"] > 0.85
    assert report["teacher"]["fingerprint"] == json.loads(
        (files("edge_distill.examples") / "fashion-mnist" / "provenance.json").read_text())["teacher"]["sha256"]
    assert report["warnings"] == []  # the student is not stale


def test_inspect_prints_ops(demo_run):
    _, out = demo_run
    proc = run_cli("inspect", out / "ort" / "model.int8.ort")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["ops"]["QuantizeLinear"] > 0 and info["ops"]["DequantizeLinear"] > 0


def test_inspect_an_ort_file_alone(demo_run, tmp_path):
    _, out = demo_run
    alone = tmp_path / "model.int8.ort"  # an app developer's copy, without the .onnx beside it
    alone.write_bytes((out / "ort" / "model.int8.ort").read_bytes())
    proc = run_cli("inspect", alone)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert [(i["name"], i["shape"]) for i in info["inputs"]] == [("image", ["batch", 1, 28, 28])]
    assert [(o["name"], o["shape"]) for o in info["outputs"]] == [("output", ["batch", 10])]
    assert {"QLinearConv", "QGemm"} <= set(info["required_ops"]["com.microsoft"])
    (tmp_path / "broken.ort").write_bytes(b"not a flatbuffer")
    broken = run_cli("inspect", tmp_path / "broken.ort")
    assert broken.returncode == 2 and "broken.ort: not a readable ORT-format model" in broken.stderr
    assert "Traceback" not in broken.stderr
