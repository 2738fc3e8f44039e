"""The app bundle and its golden proof (toolkit/bundle.py), fast: a hand-written check folder (report.json, a
three-op ONNX graph as the `ort` artifacts, an evaluation .npz, an edge-distill.toml) bundled into a hand-written
app, with the real onnxruntime computing the golden outputs. Each golden figure is computed again with numpy.
Fast: the mutation run of toolkit/bundle.py runs this file once per mutant."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from edge_distill.bundle import MANIFEST, BundleOutcome, bundle, read_app
from edge_distill.errors import BadInput
from tiny_onnx import WT, B, W, tiny_model, tiny_text_model

X = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [0, 1, 0, 1], [2, 2, 2, 2], [5, 0, 1, 0], [1, 1, 4, 0]], np.float32)
LABELS = np.array([2, 0, 1, 0, 3, 1])  # the first sample of the first three classes (0, 1, 2): rows 1, 2, 0
CONFIG = """[model]
student = "pkg.models:student"
labels = ["cat", "dog", "owl"]
distilled_from = "feed"
[model.normalization]
scale = 0.5
mean = 0.1
std = 2.0
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check(name: str, passed: bool, value: float = 0.9) -> dict:
    return {"name": name, "metric": name.split("/")[-1], "comparison": ">=", "limit": 0.8, "value": value,
            "passed": passed, "provenance": "measured"}


def _result(out: Path, precision: str, passed: bool, **extra) -> dict:
    artifact = out / "ort" / f"model.{precision}.onnx"
    name = f"ort-{precision}"
    checks = [_check(f"{name}/min_accuracy", passed, 0.9 if passed else 0.7), _check(f"{name}/max_size_mb", True)]
    return {"name": name, "target": "ort", "precision": precision, "artifact": f"ort/model.{precision}.onnx",
            "sha256": _sha(artifact), "size_bytes": artifact.stat().st_size, "passed": passed, "checks": checks,
            "details": {}, "evaluation": {"kind": "measured", "device": "host"},
            "latency": {"p50_ms": 1.0, "provenance": {"kind": "measured", "device": "host"}}, **extra}


def _write_report(out: Path, results: list[dict], **top) -> Path:
    report = {"config": str(out.parent / "edge-distill.toml"), "tool_version": "0.1.0",
              "student": {"inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}]},
              "data": {"evaluation": {"source": str(out.parent / "eval.npz"), "sha256": _sha(out.parent / "eval.npz")}},
              "teacher": {"fingerprint": "beef"}, "results": results, **top}
    path = out / "report.json"
    path.write_text(json.dumps(report))
    return path


@pytest.fixture
def check(tmp_path) -> Path:
    """A `check --out` folder: ort-fp32 passed its budgets, ort-int8 broke min_accuracy."""
    (tmp_path / "edge-distill.toml").write_text(CONFIG)
    np.savez(tmp_path / "eval.npz", x=X, labels=LABELS)
    out = tmp_path / "out"
    (out / "ort").mkdir(parents=True)
    model = tiny_model(out / "ort")
    shutil.copy(model, out / "ort" / "model.fp32.onnx")
    model.rename(out / "ort" / "model.int8.onnx")
    _write_report(out, [_result(out, "fp32", True), _result(out, "int8", False)])
    return out


def _app(tmp_path: Path, **spec) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "edge-distill-app.json").write_text(json.dumps(
        {"platform": "android", "models_dir": "assets/models", "targets": ["ort"], **spec}))
    return app


def _bundle(check: Path, app: Path, **kw):
    said = []
    outcome = bundle(check, app, progress=said.append, **kw)
    return outcome, said


def _golden_by_hand(rows, scale=0.5, labels=("cat", "dog", "owl")):
    samples = []
    for i in rows:
        logits = X[i] @ W + B
        sample = {"inputs": {"x": [round(float(v) / scale, 4) for v in X[i]]},
                  "expected_output": [round(float(v), 5) for v in logits], "expected_top1": int(np.argmax(logits))}
        if labels:
            sample["expected_label"] = labels[sample["expected_top1"]]
        samples.append(sample)
    return samples


# ---- what is bundled ------------------------------------------------------------------------------------

def test_the_models_that_passed_are_bundled_with_their_golden_proof(check, tmp_path):
    app = _app(tmp_path)
    outcome, said = _bundle(check, app)
    models = app / "assets" / "models"
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx"]
    assert outcome.refused == ["ort-int8 (broken: min_accuracy)"]
    assert (outcome.unloadable, outcome.exit_code) == ([], 1)  # a model left out: CI notices
    assert said == [f"bundled {models / 'ort-fp32.onnx'}", f"bundled {models / 'ort-fp32.model.json'}"]
    assert (models / "ort-fp32.onnx").read_bytes() == (check / "ort" / "model.fp32.onnx").read_bytes()
    assert json.loads((models / MANIFEST).read_text()) == {"files": ["ort-fp32.model.json", "ort-fp32.onnx"]}
    meta = json.loads((models / "ort-fp32.model.json").read_text())
    fp32 = check / "ort" / "model.fp32.onnx"
    assert meta == {
        "schema_version": "1", "name": "ort-fp32", "target": "ort", "precision": "fp32", "file": "ort-fp32.onnx",
        "sha256": _sha(fp32), "size_bytes": fp32.stat().st_size, "task": "classification",
        "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32", "layout": "none",
                    "normalization": {"scale": 0.5, "mean": 0.1, "std": 2.0,
                                      "formula": "x = (raw * scale - mean) / std"}}],
        "outputs": [{"name": "output", "meaning": "logits", "labels": ["cat", "dog", "owl"],
                     "decoding": "softmax, then argmax: the label at the top index"}],
        "budgets": {"passed": True, "held": [
            {"name": "ort-fp32/min_accuracy", "limit": 0.8, "value": 0.9, "comparison": ">=", "provenance": "measured"},
            {"name": "ort-fp32/max_size_mb", "limit": 0.8, "value": 0.9, "comparison": ">=", "provenance": "measured"}],
            "broken": []},
        "provenance": {"evaluation": {"kind": "measured", "device": "host"},
                       "latency": {"kind": "measured", "device": "host"}, "report_sha256": _sha(check / "report.json"),
                       "tool_version": "0.1.0", "app_runtime": None},
        "teacher": {"sha256": "beef", "distilled_from": "feed"},
        "golden": {"tolerance": 1e-3, "samples": _golden_by_hand([1, 2, 0])}}


def test_allow_failed_bundles_a_broken_model_loudly_with_a_wider_tolerance(check, tmp_path):
    app = _app(tmp_path)
    outcome, _ = _bundle(check, app, allow_failed=True)
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx", "ort-int8.model.json", "ort-int8.onnx"]
    assert (outcome.refused, outcome.exit_code) == (["ort-int8 (broken: min_accuracy)"], 0)
    meta = json.loads((app / "assets" / "models" / "ort-int8.model.json").read_text())
    assert meta["budgets"] == {"passed": False, "held": [
        {"name": "ort-int8/max_size_mb", "limit": 0.8, "value": 0.9, "comparison": ">=", "provenance": "measured"}],
        "broken": ["min_accuracy"]}
    assert meta["golden"]["tolerance"] == 0.05  # int8: within 0.05 of the tool's outputs


def test_results_of_other_targets_and_results_never_built(check, tmp_path):
    report = json.loads((check / "report.json").read_text())
    fp32, int8 = report["results"]
    never = {**int8, "name": "ort-int4", "precision": "int4", "failure": {"stage": "build", "reason": "no MatMul"}}
    other = {**fp32, "name": "tflite-fp32", "target": "tflite"}
    _write_report(check, [fp32, never, other])
    outcome, _ = _bundle(check, _app(tmp_path))
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx"]
    assert outcome.refused == ["ort-int4 (not built: no MatMul)"]
    assert outcome.exit_code == 1
    outcome, _ = _bundle(check, _app(tmp_path, targets=["ort"]), allow_failed=True)  # never built: never bundled
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx"]


def test_nothing_passed_nothing_written(check, tmp_path):
    report = json.loads((check / "report.json").read_text())
    _write_report(check, [report["results"][1]])
    app = _app(tmp_path)
    outcome, said = _bundle(check, app)
    assert (outcome.written, outcome.refused, outcome.exit_code) == ([], ["ort-int8 (broken: min_accuracy)"], 1)
    assert said == [] and not (app / "assets").exists()


def test_bundling_again_replaces_its_own_files_and_keeps_the_manifest(check, tmp_path):
    app = _app(tmp_path)
    _bundle(check, app, allow_failed=True)
    report = json.loads((check / "report.json").read_text())
    _write_report(check, [report["results"][0]])
    outcome, _ = _bundle(check, app)
    assert (outcome.written, outcome.exit_code) == (["ort-fp32.model.json", "ort-fp32.onnx"], 0)
    assert json.loads((app / "assets" / "models" / MANIFEST).read_text())["files"] == [
        "ort-fp32.model.json", "ort-fp32.onnx", "ort-int8.model.json", "ort-int8.onnx"]


def test_a_file_the_app_holds_that_the_tool_did_not_write_is_never_overwritten(check, tmp_path):
    app = _app(tmp_path)
    models = app / "assets" / "models"
    models.mkdir(parents=True)
    (models / "ort-fp32.onnx").write_bytes(b"the app's own")
    with pytest.raises(BadInput) as caught:
        _bundle(check, app)
    assert str(caught.value) == (f"{models / 'ort-fp32.onnx'}: the app already holds 'ort-fp32.onnx', which "
                                 "edge-distill did not write; it will not overwrite it\n  hint: move it away, or "
                                 "bundle into another app folder")
    assert (models / "ort-fp32.onnx").read_bytes() == b"the app's own"
    assert sorted(p.name for p in models.iterdir()) == ["ort-fp32.onnx"]  # nothing written before the refusal


def test_a_broken_manifest_counts_as_none(check, tmp_path):
    app = _app(tmp_path)
    models = app / "assets" / "models"
    models.mkdir(parents=True)
    (models / MANIFEST).write_text("{not json")
    outcome, _ = _bundle(check, app)
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx"]
    assert json.loads((models / MANIFEST).read_text()) == {"files": ["ort-fp32.model.json", "ort-fp32.onnx"]}


def test_the_apps_runtime_version_proves_each_model_before_it_is_bundled(check, tmp_path):
    app = _app(tmp_path, runtimes={"ort": onnxruntime.__version__, "tflite": "1.4.0"})
    outcome, said = _bundle(check, app, allow_failed=True)
    assert outcome.unloadable == [] and outcome.exit_code == 0
    assert said[:2] == [f"ort-fp32 in onnxruntime {onnxruntime.__version__} (the app's): loads, golden outputs "
                        "within 0", f"ort-int8 in onnxruntime {onnxruntime.__version__} (the app's): loads, golden "
                        "outputs within 0"]
    meta = json.loads((app / "assets" / "models" / "ort-int8.model.json").read_text())
    assert meta["provenance"]["app_runtime"] == {"package": "onnxruntime", "version": onnxruntime.__version__,
                                                 "loads": True, "golden_max_abs_diff": 0.0, "error": ""}


def test_an_unloadable_model_is_left_out_with_exit_2(check, tmp_path):
    """The real onnxruntime 1.22.0 (installed once into edge-distill's cache) cannot read IR version 11, which
    this environment's onnxruntime wrote the goldens with: the model would crash the app."""
    for precision in ("fp32", "int8"):
        tiny_model(tmp_path, ir_version=11).replace(check / "ort" / f"model.{precision}.onnx")
    _write_report(check, [_result(check, "fp32", True), _result(check, "int8", False)])
    app = _app(tmp_path, runtimes={"ort": "1.22.0"})
    outcome, said = _bundle(check, app)
    assert outcome.written == []
    (unloadable,) = outcome.unloadable
    head = f"ort-fp32: Fail: [ONNXRuntimeError] : 1 : FAIL : Load model from {check / 'ort' / 'model.fp32.onnx'} failed:"
    tail = " in onnxruntime 1.22.0, the version the app ships"
    assert unloadable.startswith(head) and unloadable.endswith(tail)
    assert len(unloadable) == len("ort-fp32: ") + 300 + len(tail)  # the runtime's message, cut at 300 characters
    assert (outcome.refused, outcome.exit_code) == (["ort-int8 (broken: min_accuracy)"], 2)
    assert said == ["ort-fp32 in onnxruntime 1.22.0 (the app's): FAILS"]
    outcome, _ = _bundle(check, app, allow_failed=True)
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx", "ort-int8.model.json", "ort-int8.onnx"]
    assert len(outcome.unloadable) == 2 and outcome.exit_code == 0
    record = json.loads((app / "assets" / "models" / "ort-fp32.model.json").read_text())["provenance"]["app_runtime"]
    assert {k: record[k] for k in ("package", "version", "loads", "golden_max_abs_diff")} == {
        "package": "onnxruntime", "version": "1.22.0", "loads": False, "golden_max_abs_diff": None}
    assert record["error"].endswith("Unsupported model IR version: 11, max supported IR version: 10")


def test_a_report_without_a_config_bundles_raw_outputs(check, tmp_path):
    report = json.loads((check / "report.json").read_text())
    del report["config"]
    report["teacher"] = None
    (check / "report.json").write_text(json.dumps(report))
    np.savez(tmp_path / "eval.npz", x=X)  # no labels: the first three samples are the golden ones
    report["data"]["evaluation"]["sha256"] = _sha(tmp_path / "eval.npz")
    (check / "report.json").write_text(json.dumps(report))
    app = _app(tmp_path)
    _bundle(check, app)
    meta = json.loads((app / "assets" / "models" / "ort-fp32.model.json").read_text())
    assert meta["outputs"] == [{"name": "output", "meaning": "raw output", "labels": [], "decoding": "none"}]
    assert meta["inputs"][0]["normalization"] == {"scale": 1.0, "mean": 0.0, "std": 1.0,
                                                  "formula": "x = (raw * scale - mean) / std"}
    assert meta["teacher"] == {"sha256": None, "distilled_from": None}
    assert meta["golden"]["samples"] == _golden_by_hand([0, 1, 2], scale=1.0, labels=())


def test_an_embedding_models_output_is_compared_by_dot_product(check, tmp_path):
    (tmp_path / "edge-distill.toml").write_text(CONFIG.replace("[model.normalization]", 'task = "embedding"\n'
                                                                                        "[model.normalization]"))
    report = json.loads((check / "report.json").read_text())
    report["results"][0]["details"] = {"layout": "NHWC"}
    (check / "report.json").write_text(json.dumps(report))
    app = _app(tmp_path)
    _bundle(check, app)
    meta = json.loads((app / "assets" / "models" / "ort-fp32.model.json").read_text())
    assert meta["task"] == "embedding"
    assert meta["outputs"] == [{"name": "output", "meaning": "sentence embedding (3 floats, unit length)",
                                "labels": [], "decoding": "compare by dot product (= cosine similarity); the nearest "
                                                          "by dot product is the best match"}]
    assert meta["inputs"][0]["layout"] == "NHWC"
    # labels in the config name no top class of an embedding (bundle raised a KeyError here)
    expected = [{k: v for k, v in s.items() if k in ("inputs", "expected_output")} for s in _golden_by_hand([1, 2, 0])]
    assert meta["golden"]["samples"] == expected


# ---- what is refused ------------------------------------------------------------------------------------

def test_read_app(tmp_path):
    app = _app(tmp_path, runtimes={"ort": "1.22.0"})
    assert read_app(app) == {"platform": "android", "models_dir": "assets/models", "targets": ["ort"],
                             "runtimes": {"ort": "1.22.0"}, "models_path": (app / "assets" / "models").resolve()}
    assert read_app(_app(tmp_path, models_dir="."))["models_path"] == app.resolve()
    assert read_app(_app(tmp_path))["runtimes"] == {}


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"models_dir": "m", "targets": []}', "missing 'platform'"),
    ('{"platform": "ios", "targets": []}', "missing 'models_dir'"),
    ('{"platform": "ios", "models_dir": "m"}', "missing 'targets'"),
    ('{"platform": "ios", "models_dir": "../m", "targets": []}', "models_dir '../m' escapes the app folder"),
    ('{"platform": "ios", "models_dir": 5, "targets": []}', "'models_dir' must be a folder inside the app, got 5"),
    ('{"platform": "ios", "models_dir": "m", "targets": "ort"}',
     "'targets' must list target names, e.g. [\"tflite\", \"ort\"], got 'ort'"),
    ('{"platform": "ios", "models_dir": "m", "targets": ["ort", 1]}',
     "'targets' must list target names, e.g. [\"tflite\", \"ort\"], got ['ort', 1]"),
    ('{"platform": "ios", "models_dir": "/tmp", "targets": []}', "models_dir '/tmp' escapes the app folder"),
    ('{"platform": "ios", "models_dir": "m", "targets": [], "runtimes": ["1.22.0"]}',
     "'runtimes' must map a target to the runtime version the app ships, e.g. {\"ort\": \"1.22.0\"}"),
    ('{"platform": "ios", "models_dir": "m", "targets": [], "runtimes": {"ort": 1.22}}',
     "'runtimes' must map a target to the runtime version the app ships, e.g. {\"ort\": \"1.22.0\"}"),
])
def test_a_bad_app_file_is_refused_naming_it(tmp_path, text, message):
    (tmp_path / "edge-distill-app.json").write_text(text)
    with pytest.raises(BadInput) as caught:
        read_app(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'edge-distill-app.json'}: {message}"


def test_a_folder_that_is_no_app_is_refused(tmp_path):
    with pytest.raises(BadInput) as caught:
        read_app(tmp_path)
    assert str(caught.value) == (f"{tmp_path}: not an edge-distill app: no edge-distill-app.json\n  hint: add "
                                 '{"platform": ..., "models_dir": ..., "targets": [...]} (see android-demo/)')


def _refusal(check: Path, app: Path) -> str:
    with pytest.raises(BadInput) as caught:
        bundle(check, app, progress=lambda message: None)
    return str(caught.value)


def test_a_folder_without_a_report_is_refused(tmp_path):
    assert _refusal(tmp_path, _app(tmp_path)) == (f"{tmp_path}: no report.json here: bundle takes the --out folder "
                                                  "of `edge-distill check`")


def test_a_report_without_the_apps_targets_is_refused(check, tmp_path):
    assert _refusal(check, _app(tmp_path, targets=["tflite", "coreml"])) == (
        f"{check / 'report.json'}: the report has no result for the app's targets (tflite, coreml)\n  hint: run check "
        "with one of those targets in [[targets]]")


def _edit_result(check: Path, **changes) -> None:
    report = json.loads((check / "report.json").read_text())
    report["results"][0].update(changes)
    (check / "report.json").write_text(json.dumps(report))


@pytest.mark.parametrize(("changes", "message"), [
    ({"artifact": "../eval.npz"}, "{report}: the report's artifact '../eval.npz' is outside the check folder; refused"),
    ({"artifact": "/etc/passwd"}, "{report}: the report's artifact '/etc/passwd' is outside the check folder; refused"),
    ({"artifact": "ort/gone.onnx"}, "{report}: the report's artifact 'ort/gone.onnx' is missing"),
    ({"sha256": None}, "{report}: the report carries no sha256 for ort/model.fp32.onnx (written by an older "
                       "edge-distill)\n  hint: run check again"),
    ({"sha256": "0" * 64}, "{artifact}: ort/model.fp32.onnx is not the file the check verified (its sha256 differs "
                           "from the report's); refused\n  hint: run check again"),
    ({"name": "../x"}, "cannot make a safe file name from '../x'"),
])
def test_an_artifact_the_report_cannot_vouch_for_is_refused(check, tmp_path, changes, message):
    _edit_result(check, **changes)
    assert _refusal(check, _app(tmp_path)) == message.format(report=check / "report.json",
                                                             artifact=check / "ort" / "model.fp32.onnx")


def test_an_artifact_that_is_a_link_is_refused(check, tmp_path):
    (check / "ort" / "model.fp32.onnx").rename(check / "ort" / "real.onnx")
    os.symlink("real.onnx", check / "ort" / "model.fp32.onnx")
    assert _refusal(check, _app(tmp_path)) == (
        f"{check / 'ort' / 'model.fp32.onnx'}: is a symbolic link (to real.onnx); links are never followed out of an "
        "untrusted folder; refused\n  hint: if you trust it, replace the link by a copy of the file it points to")


def test_names_are_made_safe_for_the_apps_folder(check, tmp_path):
    _edit_result(check, name="ort fp32/v1")
    outcome, _ = _bundle(check, _app(tmp_path))
    assert outcome.written == ["ort_fp32_v1.model.json", "ort_fp32_v1.onnx"]


def _edit_data(check: Path, **changes) -> None:
    report = json.loads((check / "report.json").read_text())
    report["data"]["evaluation"].update(changes)
    (check / "report.json").write_text(json.dumps(report))


def test_golden_samples_only_from_the_evaluation_data_the_check_hashed(check, tmp_path):
    data = tmp_path / "eval.npz"
    app = _app(tmp_path)
    _edit_data(check, sha256=None)
    assert _refusal(check, app) == (f"{data}: the report records no sha256 of its evaluation data (written by an "
                                    "older edge-distill)\n  hint: run check again with this version")
    _edit_data(check, sha256="0" * 64)
    assert _refusal(check, app) == (f"{data}: the evaluation data changed since the check (its sha256 differs from "
                                    "the report's); refused\n  hint: run check again on this data")
    _edit_data(check, source=str(tmp_path / "gone.npz"))
    assert _refusal(check, app) == (f"{tmp_path / 'gone.npz'}: the evaluation data the report names is gone; bundle "
                                    "takes its golden samples from it")
    os.symlink(data, tmp_path / "link.npz")
    _edit_data(check, source=str(tmp_path / "link.npz"))
    assert _refusal(check, app).startswith(f"{tmp_path / 'link.npz'}: is a symbolic link (to {data})")


def test_the_exit_code_of_a_bundle():
    assert BundleOutcome(["a"], []).exit_code == 0
    assert BundleOutcome(["a"], ["b (broken: x)"]).exit_code == 1
    assert BundleOutcome(["a"], [], unloadable=["c"]).exit_code == 2
    assert BundleOutcome(["a"], ["b"], unloadable=["c"]).exit_code == 2
    assert BundleOutcome(["a"], ["b"], allow_failed=True, unloadable=["c"]).exit_code == 0


IDS = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [2, 2, 2, 2, 2], [5, 4, 3, 2, 1]], np.int64)


def _text_check(tmp_path: Path, tokenizer_files: dict) -> Path:
    """A text student: a Hugging Face folder's tokenizer files beside a model taking token ids."""
    student = tmp_path / "student"
    student.mkdir()
    for name, text in tokenizer_files.items():
        (student / name).write_text(text)
    (tmp_path / "edge-distill.toml").write_text('[model]\nstudent = "student"\nlabels = ["neg", "neu", "pos"]\n')
    np.savez(tmp_path / "eval.npz", input_ids=IDS, labels=np.array([1, 0, 2, 0]))
    out = tmp_path / "out"
    (out / "ort").mkdir(parents=True)
    tiny_text_model(out / "ort").rename(out / "ort" / "model.fp32.onnx")
    _write_report(out, [_result(out, "fp32", True)],
                  student={"inputs": [{"name": "input_ids", "shape": ["batch", 5], "dtype": "int64"}]})
    return out


def test_a_text_model_is_bundled_with_its_tokenizer(tmp_path):
    vocab = "[PAD]\n[CLS]\n[SEP]\nhello\nworld\n"
    settings = {"do_lower_case": False, "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    check = _text_check(tmp_path, {"vocab.txt": vocab, "tokenizer_config.json": json.dumps(settings)})
    app = _app(tmp_path)
    outcome, _ = _bundle(check, app)
    models = app / "assets" / "models"
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx", "ort-fp32.vocab.txt"]
    assert (models / "ort-fp32.vocab.txt").read_text() == vocab
    meta = json.loads((models / "ort-fp32.model.json").read_text())
    assert meta["tokenizer"] == {
        "files": {"vocab.txt": "ort-fp32.vocab.txt"}, "max_length": 5, "kind": "wordpiece", "lowercase": False,
        "padding": "pad to max_length with [PAD]; attention_mask 1 for real tokens, 0 for padding",
        "special_tokens": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"}}
    assert meta["inputs"] == [{"name": "input_ids", "shape": ["batch", 5], "dtype": "int64", "layout": "none",
                               "normalization": {"scale": 1.0, "mean": 0.0, "std": 1.0,
                                                 "formula": "none: token ids as they are"}}]
    samples = []
    for row in (1, 0, 2):  # the first sample of labels 0, 1, 2
        logits = IDS[row].astype(np.float32) @ WT
        top = int(np.argmax(logits))
        samples.append({"inputs": {"input_ids": [int(v) for v in IDS[row]]},
                        "expected_output": [round(float(v), 5) for v in logits], "expected_top1": top,
                        "expected_label": ["neg", "neu", "pos"][top]})
    assert meta["golden"]["samples"] == samples


def test_a_tokenizer_json_without_settings_is_taken_with_the_defaults(tmp_path):
    check = _text_check(tmp_path, {"tokenizer.json": '{"model": {}}'})
    app = _app(tmp_path)
    outcome, _ = _bundle(check, app)
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx", "ort-fp32.tokenizer.json"]
    meta = json.loads((app / "assets" / "models" / "ort-fp32.model.json").read_text())
    assert meta["tokenizer"] == {
        "files": {"tokenizer.json": "ort-fp32.tokenizer.json"}, "max_length": 5, "kind": "tokenizer.json",
        "lowercase": True, "padding": "pad to max_length with [PAD]; attention_mask 1 for real tokens, 0 for padding",
        "special_tokens": {}}


def test_a_student_folder_without_tokenizer_files_has_no_tokenizer(tmp_path):
    check = _text_check(tmp_path, {"config.json": "{}"})
    app = _app(tmp_path)
    outcome, _ = _bundle(check, app)
    assert outcome.written == ["ort-fp32.model.json", "ort-fp32.onnx"]
    assert "tokenizer" not in json.loads((app / "assets" / "models" / "ort-fp32.model.json").read_text())
