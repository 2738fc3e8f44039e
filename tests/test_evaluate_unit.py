"""One artifact measured and judged (toolkit/evaluate.py), fast: a three-op ONNX graph built with onnx.helper and
run by the real onnxruntime through the real `ort` target. Only the phone is a test double
(tests/doubles/stand_in_phone_device.py: no phone exists on this host); it returns the latency, memory and, where
asked, the numerics a phone would. Every figure is computed a second way with numpy.
Fast: the mutation run of toolkit/evaluate.py runs this file once per mutant."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime
import pytest

from edge_distill.budgets import parse_budget
from edge_distill.calibration import Dataset
from edge_distill.devices import Figures, RunSettings
from edge_distill.errors import BadInput
from edge_distill.evaluate import (Candidate, OutputRef, References, assemble, evaluate_artifact, host_outputs,
                                   output_figures, quantization_warnings, score)
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.result import Latency, Memory, TargetResult
from tiny_onnx import B, W, tiny_grid_model, tiny_model

sys.path.insert(0, str(Path(__file__).parent / "doubles"))
from stand_in_phone_device import StandInPhone  # noqa: E402

PROV = Provenance("measured", "stand-in-phone", "onnxruntime", "1.22.0", "test double", 1, "Android", "replayed")
HOW = {"kind": "measured", "runtime": "onnxruntime", "runtime_version": onnxruntime.__version__, "device": "host"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def _latency(p50: float, missing: str = "") -> Latency:
    return Latency(p50, p50, p50, p50, p50, p50, 20, 1, 1, PROV, missing=missing)


def _data(n: int = 40, seed: int = 0, labels=None) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    if labels is None:
        labels = rng.integers(0, 3, n)
    return Dataset("eval.npz", {"x": x}, labels=labels, slices={"odd": np.arange(n) % 2 == 1},
                   weights=np.linspace(0.5, 2.0, n))


def _float_refs(data: Dataset, **extra) -> References:
    """The float student's outputs: a slightly different W, so that agreement is not trivially 1."""
    w = W.copy()
    w[3] = [0.2, -0.1, 0.6]
    float_logits = data.inputs["x"] @ w + B
    float_emb = data.inputs["x"] * 2 + np.float32(0.125) * (np.arange(len(data))[:, None] % 3 == 0)
    outputs = [OutputRef("logits", {"kind": "classification", "axis": -1, "index": 0}, float_logits),
               OutputRef("emb", {"kind": "dense", "data_range": 0.0, "index": 1, "inferred": True}, float_emb)]
    return References(float_outputs=float_logits, outputs=outputs, **extra)


def _settings(figures: Figures) -> RunSettings:
    return RunSettings(device=StandInPhone(figures), threads=1, warmup=1, runs=20)


def _run(model, precision="int8", data=None, refs=None, figures=None, budget=None, subject="student", task=None):
    data = data if data is not None else _data()
    refs = refs if refs is not None else _float_refs(data)
    figures = figures if figures is not None else Figures(_latency(2.0), Memory(12.5, PROV), "on stand-in-phone")
    settings = _settings(figures)
    kw = {"task": task} if task else {}
    result = evaluate_artifact(Candidate("ort", precision, model, subject=subject), data, settings, refs,
                               parse_budget(budget or {}, Path("budget.toml")), **kw)
    return result, settings.device.jobs


# ---- evaluate_artifact ---------------------------------------------------------------------------------

def test_an_int8_artifact_is_scored_checked_and_warned_about(model):
    data = _data()
    refs = _float_refs(data, float_latency=_latency(5.0), float_size=model.stat().st_size)
    result, jobs = _run(model, data=data, refs=refs, budget={"min_accuracy": 0.99, "max_size_mb": 1})
    logits = data.inputs["x"] @ W + B  # the artifact's outputs, computed with numpy
    pred, float_pred = logits.argmax(1), refs.float_outputs.argmax(1)
    assert 0 < (pred == float_pred).mean() < 1  # the data tell the two apart
    accuracy = (pred == data.labels).mean()
    assert result.metrics.samples == 40
    assert result.metrics.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert result.metrics.weighted_accuracy == pytest.approx(
        sum(w for w, ok in zip(data.weights, pred == data.labels) if ok) / data.weights.sum(), abs=1e-6)
    assert result.metrics.float_agreement == pytest.approx((pred == float_pred).mean(), abs=1e-6)
    odd = np.arange(40) % 2 == 1
    assert result.slices["odd"].samples == 20
    assert result.slices["odd"].accuracy == pytest.approx((pred[odd] == data.labels[odd]).mean(), abs=1e-6)
    assert result.speedup_vs_float == 2.5  # 5.0 ms of the fp32 over 2.0 ms
    assert (result.latency.p50_ms, result.memory.peak_mb) == (2.0, 12.5)
    assert (result.subject, result.target, result.precision, result.name) == ("student", "ort", "int8", "ort-int8")
    assert (result.artifact, result.files, result.size_bytes) == (str(model), [str(model)], model.stat().st_size)
    assert result.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    assert result.evaluation == HOW
    assert result.coverage["quantized_weight_fraction"] == 0.0 and result.coverage["float_weights"] == 12  # W: 4 x 3
    assert result.warnings == [
        "ort-int8 stores only 0% of its weights in int8/int4 (0 of 12); left in float: MatMul",
        f"ort-int8 is no smaller than its fp32: {model.stat().st_size:,} bytes against {model.stat().st_size:,}"]
    checks = {c.name: c for c in result.checks}
    assert checks["ort-int8/min_accuracy"].value == pytest.approx(accuracy, abs=1e-6) and checks["ort-int8/min_accuracy"].passed is False
    assert checks["ort-int8/max_size_mb"].passed is True
    # the device was asked once, with this host's outputs and the target's precision
    (job,) = jobs
    assert (job.target, job.path, job.label, job.precision.name) == ("ort", model, "ort-int8", "int8")
    np.testing.assert_allclose(job.host_outputs, logits, atol=1e-6)
    np.testing.assert_array_equal(job.data.inputs["x"], data.inputs["x"])
    # every output judged against the float student's same output
    emb_diff = np.abs(data.inputs["x"] * 2 - refs.outputs[1].float_values)
    assert result.outputs["emb"]["max_abs_error"] == pytest.approx(emb_diff.max(), abs=1e-6)
    assert result.outputs["emb"]["mean_abs_error"] == pytest.approx(emb_diff.mean(), abs=1e-6)
    assert (result.outputs["emb"]["kind"], result.outputs["emb"]["inferred"]) == ("dense", True)
    assert (result.outputs["emb"]["shape"], result.outputs["emb"]["provenance"]) == ([4], "measured")
    assert result.outputs["logits"]["float_agreement"] == pytest.approx((pred == float_pred).mean(), abs=1e-6)
    assert (result.outputs["logits"]["kind"], result.outputs["logits"]["inferred"]) == ("classification", False)
    assert "last_chunk" not in result.outputs["emb"]  # not a streaming model


def test_the_fp32_baseline_has_no_speedup_coverage_or_quantization_warnings(model):
    data = _data()
    refs = _float_refs(data, float_latency=_latency(5.0), float_size=1)
    result, _ = _run(model, precision="fp32", data=data, refs=refs, budget={"min_speedup_vs_float": 2.0})
    assert result.speedup_vs_float is None
    assert result.coverage is None
    assert result.warnings == []
    assert [c.metric for c in result.checks] == []  # the float baseline carries no speedup limit


def test_a_smaller_artifact_with_half_its_weights_quantized_is_not_warned_about(model):
    data = _data()
    result, _ = _run(model, data=data, refs=_float_refs(data, float_size=model.stat().st_size + 1))
    assert result.warnings == ["ort-int8 stores only 0% of its weights in int8/int4 (0 of 12); left in float: MatMul"]


def test_no_speedup_without_a_float_latency_or_a_latency(model):
    result, _ = _run(model, refs=_float_refs(_data()))
    assert result.speedup_vs_float is None
    figures = Figures(None, Memory(None, None, "no phone"), "on stand-in-phone")
    result, _ = _run(model, refs=_float_refs(_data(), float_latency=_latency(5.0), float_size=10**9), figures=figures)
    assert (result.latency, result.speedup_vs_float) == (None, None)
    # onnxruntime can time on this host (why_no_latency None): nothing to say about the missing latency
    assert result.warnings == ["ort-int8 stores only 0% of its weights in int8/int4 (0 of 12); left in float: MatMul"]
    result, _ = _run(model, refs=_float_refs(_data(), float_latency=_latency(0.0)))
    assert result.speedup_vs_float is None  # a zero float p50 divides nothing


def test_a_quantized_artifact_slower_than_its_fp32_is_reported(model):
    figures = Figures(_latency(4.0, missing="p90 is not printed by the tool"), Memory(None, None, "n/a"),
                      "on stand-in-phone")
    result, _ = _run(model, refs=_float_refs(_data(), float_latency=_latency(1.0), float_size=10**9), figures=figures)
    assert result.speedup_vs_float == 0.25
    assert result.warnings[:2] == ["ort-int8 on stand-in-phone: p90 is not printed by the tool",
                                   "ort-int8 is slower than fp32 on stand-in-phone (speedup 0.25x)"]


def test_a_speedup_is_rounded_to_three_decimals(model):
    result, _ = _run(model, refs=_float_refs(_data(), float_latency=_latency(5.0)),
                     figures=Figures(_latency(3.0), Memory(None, None, "n/a"), "on stand-in-phone"))
    assert result.speedup_vs_float == 1.667  # 5 / 3 = 1.6666...


def test_a_speedup_of_exactly_one_is_not_slower(model):
    result, _ = _run(model, refs=_float_refs(_data(), float_latency=_latency(2.0), float_size=10**9))
    assert result.speedup_vs_float == 1.0
    assert not any("slower" in w for w in result.warnings)


def test_a_devices_own_outputs_are_scored_instead_of_this_hosts(model):
    data = _data()
    device_logits = -(data.inputs["x"] @ W + B)  # a phone whose arithmetic disagrees with the host's
    evaluation = {"kind": "measured", "runtime": "onnxruntime", "runtime_version": "1.20.0", "device": "phone"}
    figures = Figures(_latency(2.0), Memory(1.0, PROV), "on stand-in-phone", outputs=device_logits,
                      evaluation=evaluation, details={"notes": ["ran on the phone's CPU"]}, warnings=["replayed"])
    result, _ = _run(model, data=data, figures=figures)
    assert result.metrics.accuracy == pytest.approx((device_logits.argmax(1) == data.labels).mean(), abs=1e-6)
    assert result.metrics.accuracy != pytest.approx(((data.inputs["x"] @ W + B).argmax(1) == data.labels).mean())
    assert result.evaluation == evaluation
    assert result.details["notes"] == ["ran on the phone's CPU"]
    assert result.warnings[:2] == ["ran on the phone's CPU", "replayed"]


def test_a_device_that_could_not_give_numerics_leaves_the_task_figures_empty(model):
    figures = Figures(_latency(2.0), Memory(1.0, PROV), "on stand-in-phone", why_no_numerics="the phone hung up")
    result, _ = _run(model, figures=figures, budget={"min_accuracy": 0.5})
    assert result.metrics == Metrics(samples=40)
    assert result.slices == {"odd": Metrics(samples=20)}
    (check,) = result.checks
    assert (check.metric, check.value, check.passed) == ("accuracy", None, None)


def test_a_first_output_the_task_metric_cannot_read_is_said_so(model):
    data = _data()
    refs = _float_refs(data, why_no_task="the first output is dense")
    result, _ = _run(model, data=data, refs=refs)
    assert result.metrics == Metrics(samples=40)
    assert result.details["task_metric"] == "the first output is dense"
    assert result.outputs["logits"]["float_agreement"] is not None  # its own kind still judges it


def test_labels_outside_the_models_classes_are_refused_before_any_timing(model):
    data = _data(labels=np.array([0, 1, 2, 3] * 10))
    with pytest.raises(BadInput) as caught:
        _run(model, data=data)
    assert str(caught.value) == ("eval.npz: 'labels' holds 3 in 10 sample(s), outside [0, 3): the model's output "
                                 "has 3 classes")


def test_an_off_the_shelf_model_and_an_embedding_task_count_their_own_classes(model):
    data = _data(labels=np.array([0, 1, 2, 3] * 10))
    result, jobs = _run(model, data=data, subject="off-the-shelf")
    assert result.name == "off-the-shelf/ort-int8" and len(jobs) == 1
    result, _ = _run(model, data=data, task="embedding")
    assert result.metrics.accuracy is None and result.metrics.float_cosine is not None


# ---- the parts, on hand-made figures ------------------------------------------------------------------

def test_host_outputs_run_every_sample_in_batches(model):
    from edge_distill.targets import get_target

    data = _data(n=300)
    logits, emb = host_outputs(get_target("ort").open_runner(model, 1), data, batch_size=128)
    np.testing.assert_allclose(logits, data.inputs["x"] @ W + B, atol=1e-5)
    np.testing.assert_allclose(emb, data.inputs["x"] * 2, atol=1e-6)


def test_a_streaming_models_outputs_are_judged_again_on_each_sequences_last_chunk():
    values = np.zeros((6, 2), np.float32)  # 2 sequences of 3 chunks: the last chunks are rows 2 and 5
    reference = values.copy()
    reference[2] = 1.0
    reference[5] = 3.0
    reference[0] = 0.5
    spec = {"kind": "dense", "data_range": 0.0, "index": 0}
    found = output_figures([OutputRef("y", spec, reference)], [values], "measured", sequences=2)
    assert found["y"]["max_abs_error"] == 3.0
    assert found["y"]["mean_abs_error"] == pytest.approx((0.5 * 2 + 1 * 2 + 3 * 2) / 12)
    assert found["y"]["last_chunk"]["max_abs_error"] == 3.0
    assert found["y"]["last_chunk"]["mean_abs_error"] == pytest.approx((1 * 2 + 3 * 2) / 4)


def test_outputs_that_were_not_computed_have_no_figures():
    ref = OutputRef("y", {"kind": "dense", "index": 1}, np.zeros((2, 2)))
    assert output_figures([ref], [None], "estimated") == {
        "y": {"kind": "dense", "inferred": False, "provenance": "estimated", "shape": None}}
    assert output_figures([ref], [np.zeros((2, 3))], "measured")["y"]["shape"] is None  # no second output
    first_missing = output_figures([ref], [None, np.zeros((2, 2))], "measured")
    assert first_missing["y"]["shape"] is None
    no_float = OutputRef("y", {"kind": "dense", "index": 0})
    assert output_figures([no_float], [np.zeros((2, 5))], "measured") == {
        "y": {"kind": "dense", "inferred": False, "provenance": "measured", "shape": [5]}}


def _result(size=100, coverage=None) -> TargetResult:
    return TargetResult("student", "ort", "int8", "a.onnx", [], size, "", None, Memory(None, None), None,
                        Metrics(1), {}, coverage=coverage)


def _coverage(quantized, floating, qmacs, fmacs, float_ops=()):
    return {"quantized_weight_fraction": quantized / (quantized + floating), "quantized_weights": quantized,
            "float_weights": floating, "quantized_mac_fraction": qmacs / (qmacs + fmacs), "float_ops": list(float_ops)}


def test_quantization_warnings_at_their_edges():
    refs = References()
    assert quantization_warnings(_result(coverage=_coverage(1, 1, 1, 1)), refs) == []  # half and half: enough
    assert quantization_warnings(_result(coverage=_coverage(4999, 5001, 1, 1)), refs) == [
        "ort-int8 stores only 50% of its weights in int8/int4 (4,999 of 10,000)"]
    assert quantization_warnings(_result(coverage=_coverage(3, 1, 49, 51, ["Conv a", "Conv b", "Gemm c", "Gemm d"])),
                                 refs) == [
        "ort-int8 quantized 75% of its weights but only 49% of its multiply-accumulates: most of the compute still "
        "runs in float; left in float: Conv a, Conv b, Gemm c"]
    assert quantization_warnings(_result(coverage=_coverage(3, 1, 1, 1)), refs) == []  # half the MACs: enough
    assert quantization_warnings(_result(coverage=_coverage(3, 1, 3, 1)), refs) == []
    assert quantization_warnings(_result(coverage=None), refs) == []
    assert quantization_warnings(_result(size=100), References(float_size=101)) == []
    assert quantization_warnings(_result(size=100), References(float_size=100)) == [
        "ort-int8 is no smaller than its fp32: 100 bytes against 100"]
    assert quantization_warnings(_result(size=2000), References(float_size=1000)) == [
        "ort-int8 is no smaller than its fp32: 2,000 bytes against 1,000"]


def test_score_without_outputs_counts_samples_only():
    data = _data(n=10)
    data.slices["first"] = np.arange(10) < 3
    overall, slices = score(None, data, References(), "classification", "student")
    assert overall == Metrics(samples=10)
    assert slices == {"odd": Metrics(samples=5), "first": Metrics(samples=3)}


def test_score_reads_the_class_axis_the_first_outputs_spec_names():
    data = Dataset("e", {"x": np.zeros((3, 1))}, labels=np.array([0, 0, 1]))
    outputs = np.array([[5, 1, 0], [4, 0, 2], [0, 3, 1]], np.float32)
    by_row, by_column = [0, 0, 1], [0, 2, 1]  # argmax along each axis, read off the matrix
    assert (outputs.argmax(axis=1).tolist(), outputs.argmax(axis=0).tolist()) == (by_row, by_column)
    unnamed = References(outputs=[OutputRef("o", {"kind": "classification", "index": 0})])
    for refs in (References(), unnamed):  # no axis named: the last
        overall, _ = score(outputs, data, refs, "classification", "student")
        assert overall.accuracy == 1.0
    named = References(outputs=[OutputRef("o", {"kind": "classification", "axis": 0, "index": 0})])
    overall, _ = score(outputs, data, named, "classification", "student")
    assert overall.accuracy == pytest.approx(2 / 3, abs=1e-6)


def test_assemble_prefers_the_devices_evaluation_record_and_the_built_files():
    data = _data(n=4)
    built = SimpleNamespace(details={"keep_float": ["a"], "notes": ["built note"]}, files=["m.onnx", "m.ort"])
    figures = Figures(None, Memory(None, None), "here", details={"extra": 1}, warnings=["device warning"])
    candidate = Candidate("ort", "int8", Path(__file__), built=built)
    result = assemble(candidate, {"runtime": "r", "runtime_version": "v"}, None, figures, data, References(),
                      "classification", False)
    assert result.files == ["m.onnx", "m.ort"]
    assert result.details == {"keep_float": ["a"], "notes": ["built note"], "extra": 1}
    assert result.warnings == ["built note", "device warning"]
    assert result.evaluation == {"kind": "measured", "runtime": "r", "runtime_version": "v", "device": "host"}
    assert result.size_bytes == Path(__file__).stat().st_size
    estimated = assemble(candidate, {"kind": "estimated", "runtime": "r", "runtime_version": "v"}, None, figures,
                         data, References(), "classification", False)
    assert estimated.evaluation["kind"] == "estimated"


def test_a_candidate_is_labelled_by_whose_it_is():
    assert Candidate("ort", "int8", Path("m")).label == "ort-int8"
    assert Candidate("ort", "int8", Path("m"), qualified=True).label == "student/ort-int8"
    assert Candidate("tflite", "fp16", Path("m"), subject="teacher").label == "teacher/tflite-fp16"
    assert Candidate("ort", "int8", Path("m")).precision_data().weight_bits == 8
    assert Candidate("ort", "int3", Path("m")).precision_data() is None


def test_a_multi_position_output_is_compared_with_the_float_one_on_its_last_axis():
    outputs = np.zeros((2, 2, 3), np.float32)  # 2 samples, 2 positions, 3 classes
    outputs[0, :, 2] = 1.0  # sample 0 says class 2 at both positions; the float student says 2 and 0
    outputs[1, :, 1] = 1.0  # sample 1 says 1, 1; the float student 1, 1
    float_outputs = np.zeros_like(outputs)
    float_outputs[0, 0, 2] = float_outputs[0, 1, 0] = float_outputs[1, :, 1] = 1.0
    data = Dataset("e", {"x": np.zeros((2, 1))})
    unnamed = [OutputRef("o", {"kind": "classification", "index": 0})]
    for refs in (References(float_outputs=float_outputs), References(float_outputs=float_outputs, outputs=unnamed)):
        overall, _ = score(outputs, data, refs, "classification", "student")
        assert overall.float_agreement == 0.75  # 3 of 4 positions agree on the class axis (the last)


def test_an_off_the_shelf_embedding_is_not_compared_with_the_teachers_space():
    rng = np.random.default_rng(3)
    outputs, teacher = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    data = Dataset("e", {"x": np.zeros((6, 1))})
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    mine, _ = score(outputs, data, References(teacher_outputs=teacher), "embedding", "student")
    assert mine.teacher_cosine == pytest.approx(np.mean(np.sum(unit(outputs) * unit(teacher), axis=1)), abs=1e-6)
    apart, _ = score(outputs, data, References(teacher_outputs=teacher), "embedding", "off-the-shelf")
    assert apart.teacher_cosine is None
    assert apart.teacher_retrieval_agreement == mine.teacher_retrieval_agreement


def test_an_artifact_loads_in_the_apps_runtime_version(model):
    """The real onnxruntime 1.22.0 (installed once into edge-distill's cache, as `check` does) runs the artifact."""
    data = _data()
    figures = Figures(_latency(2.0), Memory(1.0, PROV), "on stand-in-phone")
    settings = RunSettings(device=StandInPhone(figures), threads=1, warmup=1, runs=20,
                           app_runtime=("onnxruntime", "1.22.0"))
    result = evaluate_artifact(Candidate("ort", "fp32", model), data, settings, _float_refs(data),
                               parse_budget({}, Path("b.toml")))
    (check,) = result.checks
    assert (check.name, check.metric, check.comparison, check.limit) == (
        "ort-fp32/loads_in_app_runtime", "loads_in_app_runtime", "==", 1.0)
    assert (check.value, check.passed, check.message, check.provenance) == (1.0, True, "", "measured")
    assert result.details["app_runtime"] == {"package": "onnxruntime", "version": "1.22.0", "loads": True,
                                             "max_abs_diff": 0.0, "error": ""}


def test_an_artifact_the_apps_runtime_cannot_read_fails_its_check(tmp_path):
    newer = tiny_model(tmp_path, ir_version=11)  # onnxruntime 1.22 reads IR versions up to 10
    data = _data()
    figures = Figures(_latency(2.0), Memory(1.0, PROV), "on stand-in-phone")
    settings = RunSettings(device=StandInPhone(figures), threads=1, warmup=1, runs=20,
                           app_runtime=("onnxruntime", "1.22.0"))
    result = evaluate_artifact(Candidate("ort", "int8", newer), data, settings, _float_refs(data),
                               parse_budget({}, Path("b.toml")))
    check = result.checks[-1]
    assert (check.name, check.value, check.passed) == ("ort-int8/loads_in_app_runtime", 0.0, False)
    error = result.details["app_runtime"]["error"]
    assert error.startswith(f"Fail: [ONNXRuntimeError] : 1 : FAIL : Load model from {newer} failed:")
    assert error.endswith("Unsupported model IR version: 11, max supported IR version: 10")
    assert check.message == f"in onnxruntime 1.22.0: {error[:300]}" and len(error) > 300
    assert result.details["app_runtime"] == {"package": "onnxruntime", "version": "1.22.0", "loads": False,
                                             "max_abs_diff": None, "error": error}
    assert result.passed is False


def test_labels_are_checked_against_the_class_axis_of_a_multi_position_output(tmp_path):
    grid = tiny_grid_model(tmp_path)  # scores [batch, 2 classes, 2 positions]
    data = _data(labels=np.array([0, 1, 2, 1] * 10))
    with pytest.raises(BadInput) as caught:
        _run(grid, data=data, refs=References())
    assert str(caught.value) == ("eval.npz: 'labels' holds 2 in 10 sample(s), outside [0, 2): the model's output "
                                 "has 2 classes")
