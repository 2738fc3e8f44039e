"""The last mile: `edge-distill bundle` into the demo apps, the model.json schema, and what CI can
check of the apps on Linux: the pure-Kotlin core compiled and tested with a real Kotlin compiler,
the Android sources linted with ktlint, the Swift sources parsed with tree-sitter-swift."""

import hashlib
import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from conftest import EXAMPLE, ROOT, run_cli

ANDROID, IOS = ROOT / "android-demo", ROOT / "ios-demo"
NODE_BIN = ANDROID / "node_modules" / ".bin"
KOTLINC = ANDROID / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
MODEL_SCHEMA = json.loads((files("edge_distill") / "schemas" / "model.schema.json").read_text())
EXAMPLE_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]
TEACHER_SHA256 = json.loads((EXAMPLE / "provenance.json").read_text())["teacher"]["sha256"]


def app_copy(tmp_path, app: Path) -> Path:
    dst = tmp_path / app.name
    shutil.copytree(app, dst, ignore=shutil.ignore_patterns("node_modules", "build", ".build"))
    return dst


@pytest.fixture(scope="module")
def android_bundle(demo_run, tmp_path_factory):
    _, demo = demo_run
    app = app_copy(tmp_path_factory.mktemp("android"), ANDROID)
    proc = run_cli("bundle", demo, "--app", app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return app / "app" / "src" / "main" / "assets" / "models"


BUNDLED = [f"{t}-{p}" for t in ("ort", "tflite") for p in ("fp32", "int8", "int4")]


@pytest.mark.slow
def test_android_bundle_places_artifacts_and_valid_model_json(android_bundle):
    names = sorted(p.name for p in android_bundle.iterdir())
    suffix = {"ort": ".ort", "tflite": ".tflite"}
    assert names == sorted([".edge-distill-bundle.json"] + [n + ".model.json" for n in BUNDLED]
                           + [n + suffix[n.split("-")[0]] for n in BUNDLED])
    for name in BUNDLED:
        spec = json.loads((android_bundle / f"{name}.model.json").read_text())
        jsonschema.validate(spec, MODEL_SCHEMA)
        assert spec["name"] == name and spec["file"] == name + suffix[spec["target"]]
        assert spec["budgets"]["passed"] is True and spec["budgets"]["broken"] == []
        assert spec["inputs"][0]["normalization"]["scale"] == pytest.approx(1 / 255)
        assert spec["outputs"][0]["labels"] == EXAMPLE_LABELS
        assert spec["teacher"]["sha256"] == spec["teacher"]["distilled_from"] == TEACHER_SHA256


@pytest.mark.slow
def test_bundled_hash_and_goldens_are_the_artifacts_own(android_bundle):
    """The app checks the file against `sha256` and the model against its goldens: both must be
    what the bundled file really gives, sample by sample, in order."""
    from edge_distill.targets import get_target

    for name in BUNDLED:
        spec = json.loads((android_bundle / f"{name}.model.json").read_text())
        artifact = android_bundle / spec["file"]
        assert spec["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest(), name
        samples = spec["golden"]["samples"]
        assert len(samples) == 3 and len({s["expected_top1"] for s in samples}) == 3  # three distinct answers
        scale = spec["inputs"][0]["normalization"]["scale"]
        image = np.array([s["inputs"]["image"] for s in samples], np.float32).reshape(3, 1, 28, 28) * scale
        out = get_target(spec["target"]).open_runner(artifact, 1).run({"image": image})[0]
        expected = np.array([s["expected_output"] for s in samples])
        np.testing.assert_allclose(out, expected, atol=1e-4, err_msg=name)  # goldens are rounded to 5 decimals
        assert [s["expected_top1"] for s in samples] == out.argmax(1).tolist()
        assert [s["expected_label"] for s in samples] == [EXAMPLE_LABELS[i] for i in out.argmax(1)]


@pytest.mark.slow
def test_ios_bundle_places_the_mlpackages(coreml_run, tmp_path):
    _, out, _ = coreml_run
    app = app_copy(tmp_path, IOS)
    proc = run_cli("bundle", out, "--app", app)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    models = app / "EdgeDistillDemo" / "Models"
    assert (models / "coreml-int8.mlpackage" / "Manifest.json").is_file()
    spec = json.loads((models / "coreml-int8.model.json").read_text())
    jsonschema.validate(spec, MODEL_SCHEMA)
    # Core ML runs only on macOS; here the program is evaluated in numpy, and says so
    assert spec["provenance"]["evaluation"]["kind"] == ("measured" if sys.platform == "darwin" else "reference-mil")


@pytest.mark.slow
def test_kotlin_core_tests_run_on_the_bundled_model_json(android_bundle, tmp_path):
    assert KOTLINC.exists(), "run `npm ci` in android-demo (the README's test command does)"
    jar = tmp_path / "core-tests.jar"
    subprocess.run([str(KOTLINC), str(ANDROID / "core" / "src" / "main" / "kotlin"),
                    str(ANDROID / "core" / "src" / "test" / "kotlin"), "-include-runtime", "-d", str(jar)],
                   check=True, capture_output=True, timeout=600)
    specs = sorted(str(p) for p in android_bundle.glob("*.model.json"))
    proc = subprocess.run(["java", "-jar", str(jar), *specs], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout and "golden 2 decodes to its expected top-1" in proc.stdout


def test_android_sources_pass_ktlint():
    assert (NODE_BIN / "ktlint").exists(), "run `npm ci` in android-demo"
    proc = subprocess.run([str(NODE_BIN / "ktlint"), "core/**/*.kt", "app/**/*.kt"], cwd=ANDROID,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ktlint_really_lints(tmp_path):
    bad = tmp_path / "Bad.kt"
    bad.write_text("fun  bad( ) {val x=1}\n")
    proc = subprocess.run([str(NODE_BIN / "ktlint"), "Bad.kt"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    # exit 1 with the rule named, not any crash: a ktlint that fails to start must not pass this test
    assert proc.returncode == 1 and "Bad.kt:1:4: Single space expected after the fun keyword" in proc.stdout


def test_swift_sources_parse():
    import tree_sitter_swift
    from tree_sitter import Language, Parser

    parser = Parser(Language(tree_sitter_swift.language()))
    sources = sorted(IOS.rglob("*.swift"))
    assert len(sources) >= 8
    broken = [str(f) for f in sources if parser.parse(f.read_bytes()).root_node.has_error]
    assert broken == []
    assert parser.parse(b"func broken( {").root_node.has_error  # the parser does catch errors


@pytest.mark.slow
def test_failed_model_is_refused_unless_allowed(demo_run, tmp_path):
    _, demo = demo_run
    source = tmp_path / "source"
    shutil.copytree(demo, source)
    report = json.loads((source / "report.json").read_text())
    broken = next(r for r in report["results"] if r["name"] == "tflite-int4")
    broken["passed"] = False
    broken["checks"][0]["passed"] = False
    (source / "report.json").write_text(json.dumps(report))
    app = app_copy(tmp_path, ANDROID)
    proc = run_cli("bundle", source, "--app", app)
    assert proc.returncode == 1 and "tflite-int4" in proc.stderr and broken["checks"][0]["name"].split("/", 1)[1] in proc.stderr
    models = app / "app" / "src" / "main" / "assets" / "models"
    assert not (models / "tflite-int4.tflite").exists() and (models / "tflite-int8.tflite").exists()
    allowed = run_cli("bundle", source, "--app", app, "--allow-failed")
    assert allowed.returncode == 0 and "WARNING" in allowed.stderr and (models / "tflite-int4.tflite").exists()


@pytest.mark.slow
def test_users_file_of_the_same_name_is_not_overwritten(demo_run, tmp_path):
    _, demo = demo_run
    app = app_copy(tmp_path, ANDROID)
    models = app / "app" / "src" / "main" / "assets" / "models"
    models.mkdir(parents=True)
    (models / "ort-int8.ort").write_text("my own model")
    proc = run_cli("bundle", demo, "--app", app)
    assert proc.returncode == 2 and "ort-int8.ort" in proc.stderr and "did not write" in proc.stderr
    assert (models / "ort-int8.ort").read_text() == "my own model"
    assert not (models / "ort-fp32.ort").exists()  # refused before anything was written
    # Its own files, edge-distill may replace on the next bundle.
    (models / "ort-int8.ort").unlink()
    assert run_cli("bundle", demo, "--app", app).returncode == 0
    assert run_cli("bundle", demo, "--app", app).returncode == 0


@pytest.mark.slow
def test_app_paths_cannot_escape(demo_run, tmp_path):
    _, demo = demo_run
    app = tmp_path / "evil"
    app.mkdir()
    (app / "edge-distill-app.json").write_text('{"platform": "x", "models_dir": "../outside", "targets": ["ort"]}')
    proc = run_cli("bundle", demo, "--app", app)
    assert proc.returncode == 2 and "escapes the app folder" in proc.stderr
    assert not (tmp_path / "outside").exists()


@pytest.mark.slow
def test_bundle_needs_a_check_report(tmp_path):
    proc = run_cli("bundle", tmp_path, "--app", ANDROID)
    assert proc.returncode == 2 and "no report.json" in proc.stderr
