"""Output kinds: each figure against a second, independent computation (loops, scikit-learn, a
hand-written edit distance), the kind inferred from shape and dtype, and budgets that fail a degraded
output and pass an identical one, on every output, the first included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_distill import budgets
from edge_distill.budgets import parse_budget
from edge_distill.evaluate import OutputRef, output_figures
from edge_distill.kinds import KINDS, get_kind, infer, resolve_kinds
from edge_distill.metrics import Metrics
from edge_distill.result import Memory, TargetResult

RNG = np.random.default_rng(0)


def settings(kind: str, **over) -> dict:
    return {**KINDS[kind].settings, **over}


def edit_distance(a: list, b: list) -> int:
    """Levenshtein distance by the textbook dynamic programme (independent of jiwer/rapidfuzz)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def ctc_by_hand(path: list[int], blank: int = 0) -> list[int]:
    out, last = [], None
    for c in path:
        if c != last and c != blank:
            out.append(c)
        last = c
    return out


def test_sequence_figures_against_loops_and_a_hand_written_edit_distance():
    ref = RNG.normal(size=(40, 25, 12)).astype(np.float32)  # [B, T, C], a recognizer's scores
    out = ref + RNG.normal(scale=0.6, size=ref.shape).astype(np.float32)  # a degraded artifact
    found = get_kind("sequence").figures(out, ref, settings("sequence"))
    best_out, best_ref = out.argmax(-1), ref.argmax(-1)
    same = [[best_out[b, t] == best_ref[b, t] for t in range(25)] for b in range(40)]
    assert found["position_agreement"] == pytest.approx(np.mean(same), abs=1e-6)
    assert found["exact_match"] == pytest.approx(np.mean([all(s) for s in same]), abs=1e-6)
    texts = [(ctc_by_hand(list(best_ref[b])), ctc_by_hand(list(best_out[b]))) for b in range(40)]
    expected = sum(edit_distance(r, h) for r, h in texts if r) / sum(len(r) for r, _ in texts if r)
    assert found["cer"] == pytest.approx(expected, abs=1e-6) and 0 < found["cer"] < 1
    assert get_kind("sequence").figures(ref, ref, settings("sequence"))["cer"] == 0.0


def test_a_ctc_path_collapses_repeats_but_not_across_a_blank():
    one_hot = lambda path: np.eye(4, dtype=np.float32)[path][None]  # noqa: E731
    ref, out = one_hot([1, 1, 0, 1, 2, 2]), one_hot([1, 1, 1, 1, 2, 0])  # "aab" against "ab"
    found = get_kind("sequence").figures(out, ref, settings("sequence"))
    assert found["cer"] == pytest.approx(1 / 3)  # one deletion over three reference characters


def test_dense_psnr_uses_the_float_outputs_range_over_the_whole_set():
    import torch

    ref = RNG.random((10, 1, 8, 8)).astype(np.float32) * 4.0
    out = ref + RNG.normal(scale=0.05, size=ref.shape).astype(np.float32)
    found = get_kind("dense").figures(out, ref, settings("dense"))
    mse = torch.nn.functional.mse_loss(torch.from_numpy(out).double(), torch.from_numpy(ref).double()).item()
    data_range = float(ref.max() - ref.min())
    assert found["psnr_data_range"] == pytest.approx(data_range, abs=1e-5)
    assert found["psnr_db"] == pytest.approx(10 * np.log10(data_range ** 2 / mse), abs=1e-4)
    assert get_kind("dense").figures(ref, ref, settings("dense"))["psnr_db"] == 200.0
    assert get_kind("dense").figures(out, ref, settings("dense", data_range=255.0))["psnr_db"] > found["psnr_db"]


def test_segmentation_against_scikit_learn():
    from sklearn.metrics import jaccard_score

    ref = RNG.normal(size=(6, 3, 10, 10)).astype(np.float32)
    out = ref + RNG.normal(scale=0.8, size=ref.shape).astype(np.float32)
    found = get_kind("segmentation").figures(out, ref, settings("segmentation"))
    a, b = out.argmax(1).ravel(), ref.argmax(1).ravel()
    assert found["pixel_agreement"] == pytest.approx((a == b).mean(), abs=1e-6)
    assert found["mean_iou"] == pytest.approx(jaccard_score(b, a, average="macro"), abs=1e-6)


def test_indices_are_compared_as_sets_and_sequences_not_as_floats():
    ref = np.array([[3, 1, 2], [0, 4, 5], [7, 8, 9]], np.int64)  # top-3 indices per sample
    out = np.array([[1, 3, 2], [0, 4, 5], [7, 8, 6]], np.int64)  # reordered; equal; one replaced
    found = get_kind("indices").figures(out, ref, settings("indices"))
    assert found == {"exact_match": pytest.approx(1 / 3), "topk_overlap": pytest.approx((1 + 1 + 2 / 3) / 3)}


def test_classification_on_another_class_axis():
    ref = RNG.normal(size=(50, 7, 3)).astype(np.float32)  # classes on axis 1, three heads per sample
    out = ref.copy()
    out[:5, :, 0] = -ref[:5, :, 0]  # five samples' first head flips
    found = get_kind("classification").figures(out, ref, settings("classification", axis=1))
    assert found["float_agreement"] == pytest.approx(45 / 50)


@pytest.mark.parametrize("shape, dtype, task, kind, ambiguous", [
    ((10,), np.float32, "classification", "classification", False),
    ((384,), np.float32, "embedding", "embedding", False),
    ((1,), np.float32, "classification", "dense", False),
    ((), np.float32, "classification", "dense", False),
    ((40, 6625), np.float32, "classification", "sequence", True),
    ((1, 64, 64), np.float32, "classification", "dense", False),
    ((21, 64, 64), np.float32, "classification", "dense", True),
    ((3,), np.int64, "classification", "indices", False)])
def test_a_kind_is_inferred_from_shape_and_dtype(shape, dtype, task, kind, ambiguous):
    found, why = infer(shape, dtype, task)
    assert found == kind and bool(why) is ambiguous


def test_an_ambiguous_shape_is_warned_with_the_config_line_that_settles_it():
    specs, warnings = resolve_kinds({"mask": {"kind": "segmentation", "axis": 1}}, ["logits", "mask"],
                                    [np.zeros((2, 40, 80)), np.zeros((2, 21, 8, 8))], "classification")
    assert [(s["kind"], s["inferred"] if "inferred" in s else False) for s in specs] == [
        ("sequence", True), ("segmentation", False)]
    assert warnings == ["output 'logits': a [B, 40, 80] output is read as 40 positions of 80 classes; to say what "
                        "it is, set [model.outputs.logits] kind = \"...\" (one of classification, sequence, dense, "
                        "segmentation, detection, embedding, indices, state)"]


def _result(outputs: dict) -> TargetResult:
    return TargetResult("student", "ort", "int8", "ort/model.int8.onnx", [], 1000, "0" * 64, None,
                        Memory(None, None, "x"), None, Metrics(samples=4), {}, outputs=outputs)


def test_the_first_output_is_budgeted_by_name_like_any_other():
    ref = RNG.normal(size=(30, 20, 9)).astype(np.float32)
    noisy = ref + RNG.normal(scale=1.0, size=ref.shape).astype(np.float32)
    refs = [OutputRef("text", {**settings("sequence"), "kind": "sequence", "index": 0, "inferred": True}, ref)]
    budget = parse_budget({"outputs": {"text": {"max_cer": 0.05, "min_float_agreement": 0.9}}}, Path("b.toml"))
    for artifact, cer_passes in ((ref, True), (noisy, False)):
        checks = budgets.evaluate(_result(output_figures(refs, [artifact], "measured")), budget)
        assert [(c.name, c.passed) for c in checks] == [("ort-int8/output[text]/max_cer", cer_passes),
                                                        ("ort-int8/output[text]/min_float_agreement", None)]
        assert checks[1].message == ("output 'text' is a sequence output (inferred): min_float_agreement does not "
                                     "apply to it; its keys: min_position_agreement, min_exact_match, max_cer, "
                                     "max_max_abs_error, max_mean_abs_error, max_relative_error")


def test_a_sequence_first_output_is_not_scored_as_classes_over_its_positions():
    """The bug: argmax over axis 1 of a [B, 40, C] recognizer output scored the 40 positions."""
    from edge_distill.metrics import why_not_task_metric

    why = why_not_task_metric("logits", {"kind": "sequence"}, "classification")
    assert why.startswith("the first output 'logits' is a sequence output, not what the classification metric reads")
    assert why_not_task_metric("logits", {"kind": "classification"}, "classification") == ""


@pytest.mark.parametrize("spec, message", [
    ({"kind": "boxes"}, "[model.outputs.x] kind must be one of classification, sequence, dense"),
    ({"kind": "sequence", "blank": "0"}, "'blank' in [model.outputs.x] must be int, got '0'"),
    ({"kind": "dense", "axis": 1}, "unknown key 'axis'"),
    ({"kind": "sequence", "decode": True}, "'decode' in [model.outputs.x] must be str, got True")])
def test_a_declared_kind_is_validated(tmp_path, spec, message):
    from edge_distill.config import _output_spec
    from edge_distill.errors import BadInput

    with pytest.raises(BadInput, match=__import__("re").escape(message)):
        _output_spec(spec, "x", tmp_path / "edge-distill.toml")


def _verify(artifact: Path, reference: Path, data: Path, budget: str, out: Path):
    from conftest import run_cli

    (out.parent / "budget.toml").write_text(budget)
    return run_cli("verify", artifact, "--data", data, "--float", reference, "--budget", out.parent / "budget.toml",
                   "--out", out, "--runs", "20")


@pytest.mark.slow
def test_a_segmenters_map_is_judged_by_its_error_an_untrained_copy_fails_and_the_trained_one_passes(tmp_path):
    import json

    import zoo

    zoo.eval_data("segmenter", tmp_path)
    trained = zoo.save("segmenter", zoo.trained("segmenter"), "onnx-dynamic", tmp_path).split('"')[1]
    (tmp_path / "untrained").mkdir()
    untrained = zoo.save("segmenter", zoo.segmenter(), "onnx-dynamic", tmp_path / "untrained").split('"')[1]
    import onnx

    name = onnx.load(str(tmp_path / trained)).graph.output[0].name  # the model's own name is the output's
    budget = f'[outputs."{name}"]\nmin_psnr_db = 30\nmax_relative_error = 0.05\n'
    same = _verify(tmp_path / trained, tmp_path / trained, tmp_path / "eval.npz", budget, tmp_path / "same")
    assert same.returncode == 0, same.stdout + same.stderr
    (result,) = json.loads((tmp_path / "same" / "report.json").read_text())["results"]
    assert result["outputs"][name]["kind"] == "dense" and result["outputs"][name]["inferred"] is True
    assert "is read as a dense map" in same.stdout  # [B, 2, 16, 16]: ambiguous, and said so
    assert [c["passed"] for c in result["checks"]] == [True, True]
    assert result["outputs"][name]["psnr_db"] == 200.0 and result["outputs"][name]["relative_error"] == 0
    other = _verify(tmp_path / "untrained" / untrained, tmp_path / trained, tmp_path / "eval.npz", budget,
                    tmp_path / "other")
    assert other.returncode == 1, other.stdout + other.stderr
    (result,) = json.loads((tmp_path / "other" / "report.json").read_text())["results"]
    assert [(c["name"].split("/", 1)[1], c["passed"]) for c in result["checks"]] == [
        (f"output[{name}]/min_psnr_db", False), (f"output[{name}]/max_relative_error", False)]


def test_detection_nms_equals_a_brute_force_loop():
    from edge_distill.kinds.detection import nms

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 80, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], 1)
    scores, classes = rng.random(60), rng.integers(0, 3, 60)

    def iou(a, b):
        w, h = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
        area = lambda z: (z[2] - z[0]) * (z[3] - z[1])  # noqa: E731
        return w * h / (area(a) + area(b) - w * h)

    kept = []
    for i in sorted(range(60), key=lambda i: -scores[i]):
        if all(classes[i] != classes[j] or iou(boxes[i], boxes[j]) <= 0.5 for j in kept):
            kept.append(i)
    assert nms(boxes, scores, classes, 0.5).tolist() == kept


def test_detection_map_against_coco_rules_worked_by_hand():
    # Two images, one float-student box each; the artifact finds the first exactly and misses the
    # second (IoU 0.14): recall reaches 0.5 at precision 1, so COCO's 101-point AP@0.5 is 51/101.
    ref = np.zeros((2, 6, 3), np.float32)  # yolov8: [4 + 2 classes, 3 anchors]
    ref[0, :, 0] = [30, 30, 20, 20, 0.9, 0.0]
    ref[1, :, 0] = [60, 60, 20, 20, 0.8, 0.0]  # the same class: COCO averages AP over classes
    out = ref.copy()
    out[1, :2, 0] = [75, 75]  # moved 15 px on both axes: IoU (5 x 5) / (800 - 25) = 0.032
    found = get_kind("detection").figures(out, ref, settings("detection"))
    assert found["reference_boxes"] == 2 and found["map50_agreement"] == pytest.approx(51 / 101, abs=1e-6)
    same = get_kind("detection").figures(ref, ref, settings("detection"))
    assert same["map50_agreement"] == 1.0 and same["map_agreement"] == 1.0


def test_detection_of_several_boxes_in_one_image_agrees_with_itself():
    """Two apart boxes of one class in one image, found exactly: every reference box matched at precision
    1, so AP is 1 at every IoU threshold. Each box needs its own annotation id (one id shared within the
    image gave 0.25: COCO took the two for one)."""
    ref = np.zeros((1, 6, 3), np.float32)
    ref[0, :, 0] = [30, 30, 20, 20, 0.9, 0.0]
    ref[0, :, 1] = [90, 90, 20, 20, 0.6, 0.0]  # IoU 0 with the first: NMS keeps both
    same = get_kind("detection").figures(ref, ref, settings("detection"))
    assert same == {"map_agreement": 1.0, "map50_agreement": 1.0, "reference_boxes": 2}
    missed = ref.copy()
    missed[0, 4, 1] = 0.0  # the artifact loses the second box: recall 0.5 at precision 1, AP@0.5 = 51/101
    assert get_kind("detection").figures(missed, ref, settings("detection"))["map50_agreement"] == pytest.approx(
        51 / 101, abs=1e-6)


def test_detection_layouts_decode_to_the_same_boxes():
    from edge_distill.kinds.detection import decode

    v8 = np.zeros((6, 2), np.float32)
    v8[:, 0] = [50, 40, 20, 10, 0.1, 0.7]  # class 1 at 0.7
    v5 = np.zeros((2, 7), np.float32)
    v5[0] = [50, 40, 20, 10, 1.0, 0.1, 0.7]  # objectness 1 x class 0.7
    e2e = np.array([[40, 35, 60, 45, 0.7, 1]], np.float32)
    for head, layout in ((v8, "yolov8"), (v5, "yolov5"), (e2e, "end2end")):
        boxes, scores, classes = decode(head, settings("detection", layout=layout), 0.25)
        assert boxes.tolist() == [[40, 35, 60, 45]] and scores.tolist() == pytest.approx([0.7]) and classes.tolist() == [1]


@pytest.mark.slow
def test_verify_warns_of_data_that_never_pad_as_check_does(tmp_path):
    import zoo
    from conftest import run_cli

    student = zoo.save("masked-encoder", zoo.encoder(), "onnx-dynamic", tmp_path).split('"')[1]
    inputs, labels = zoo.ZOO["masked-encoder"].data(np.random.default_rng(0), 40)
    np.savez(tmp_path / "eval.npz", input_ids=inputs["input_ids"], attention_mask=np.ones_like(inputs["attention_mask"]),
             labels=labels)
    proc = run_cli("verify", tmp_path / student, "--data", tmp_path / "eval.npz", "--out", tmp_path / "out",
                   "--runs", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("the evaluation data never pads (attention_mask is 1 everywhere): how the artifacts behave on padded "
            "inputs is not judged; add padded samples") in proc.stdout


@pytest.mark.slow
def test_an_onnx_students_own_output_names_are_kept_and_every_output_budgeted_the_first_included(tmp_path):
    import json

    import torch
    import zoo
    from conftest import run_cli

    model = zoo.trained("two-heads")
    inputs, labels = zoo.ZOO["two-heads"].data(np.random.default_rng(1), 64)
    example = tuple(torch.from_numpy(v[:2]) for v in inputs.values())
    torch.onnx.export(model, example, str(tmp_path / "heads.onnx"), input_names=list(inputs), dynamo=False,
                      output_names=["quadrant", "box"], dynamic_axes={n: {0: "batch"} for n in [*inputs, "quadrant", "box"]})
    np.savez(tmp_path / "eval.npz", **inputs, labels=labels)
    (tmp_path / "edge-distill.toml").write_text(
        '[model]\nstudent = "heads.onnx"\n[data]\nevaluation = "eval.npz"\ncalibration = "eval.npz"\n'
        '[measure]\nruns = 20\nwarmup = 2\n[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8"]\n'
        "[budgets]\nmin_float_agreement = 0.5\n[budgets.outputs.quadrant]\nmin_float_agreement = 0.9\n"
        "[budgets.outputs.box]\nmax_mean_abs_error = 0.0000001\n")
    proc = run_cli("check", tmp_path / "edge-distill.toml", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fp32, int8 = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert list(int8["outputs"]) == ["quadrant", "box"]  # the model's own names, not output_1
    assert (int8["outputs"]["quadrant"]["kind"], int8["outputs"]["box"]["kind"]) == ("classification", "dense")
    # The first output's agreement is the task metric's: one figure, two ways to budget it.
    assert int8["outputs"]["quadrant"]["float_agreement"] == int8["metrics"]["float_agreement"]
    checks = {c["name"].split("/", 1)[1]: c["passed"] for c in int8["checks"]}
    assert checks["min_float_agreement"] is True and checks["output[quadrant]/min_float_agreement"] is True
    assert checks["output[box]/max_mean_abs_error"] is False and fp32["checks"][-1]["passed"] is True
