"""The app can load what `bundle` puts into it: each app declares the runtime versions it ships, the
declaration matches its build file, and `bundle` runs every artifact in exactly that version (the
runtime's real Python wheel of the same release) before copying it."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, run_cli

ANDROID = ROOT / "android-demo"


def test_android_demo_declares_the_runtimes_its_gradle_file_ships():
    gradle = (ANDROID / "app" / "build.gradle.kts").read_text()
    shipped = {"tflite": re.search(r'"com\.google\.ai\.edge\.litert:litert:([\d.]+)"', gradle).group(1),
               "ort": re.search(r'"com\.microsoft\.onnxruntime:onnxruntime-android:([\d.]+)"', gradle).group(1)}
    declared = json.loads((ANDROID / "edge-distill-app.json").read_text())["runtimes"]
    assert declared == shipped


def _app(tmp_path, runtimes: dict):
    app = tmp_path / "app"
    app.mkdir()
    (app / "edge-distill-app.json").write_text(json.dumps({"platform": "android", "models_dir": "models",
                                                           "targets": ["ort"], "runtimes": runtimes}))
    return app


@pytest.mark.slow
def test_an_artifact_the_apps_runtime_cannot_load_is_refused(demo_run, tmp_path):
    """onnxruntime 1.22 (what android-demo shipped before) cannot read the int4 MatMulNBits that 1.32
    writes: bundling it would crash the app. fp32 and int8 load and reproduce their goldens."""
    _, demo = demo_run
    app = _app(tmp_path, {"ort": "1.22.0"})
    proc = run_cli("bundle", demo, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ort-int4" in proc.stderr and "onnxruntime 1.22.0, the version the app ships" in proc.stderr
    assert "MatMulNBits" in proc.stderr
    bundled = sorted(p.name for p in (app / "models").glob("*.model.json"))
    assert bundled == ["ort-fp32.model.json", "ort-int8.model.json"]
    proof = json.loads((app / "models" / "ort-int8.model.json").read_text())["provenance"]["app_runtime"]
    assert proof["version"] == "1.22.0" and proof["loads"] and proof["golden_max_abs_diff"] <= 0.05

    allowed = run_cli("bundle", demo, "--app", app, "--allow-failed")
    assert allowed.returncode == 0 and "does not load in the app" in allowed.stderr
    int4 = json.loads((app / "models" / "ort-int4.model.json").read_text())["provenance"]["app_runtime"]
    assert int4["loads"] is False and "MatMulNBits" in int4["error"]


@pytest.mark.slow
def test_a_bad_runtimes_declaration_is_refused(demo_run, tmp_path):
    _, demo = demo_run
    proc = run_cli("bundle", demo, "--app", _app(tmp_path, {"ort": 1.22}))
    assert proc.returncode == 2 and "'runtimes' must map a target" in proc.stderr


@pytest.mark.slow
def test_check_finds_the_incompatibility_at_export_time(example, tmp_path):
    from conftest import edit_config

    config = edit_config(example, targets=("ort",), precisions=["fp32", "int4"],
                         replace={'name = "ort"\n': 'name = "ort"\nruntime_version = "1.22.0"\n'})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = {c["name"]: c for r in json.loads((tmp_path / "out" / "report.json").read_text())["results"]
              for c in r["checks"] if c["metric"] == "loads_in_app_runtime"}
    assert checks["ort-fp32/loads_in_app_runtime"]["passed"] is True
    assert checks["ort-int4/loads_in_app_runtime"]["passed"] is False
    assert "onnxruntime 1.22.0" in checks["ort-int4/loads_in_app_runtime"]["message"]

    coreml = edit_config(example, targets=("ort",), precisions=["fp16"], replace={'name = "ort"\nruntime_version = "1.22.0"\n':
                                                             'name = "coreml"\nruntime_version = "17"\n'})
    refused = run_cli("check", coreml, "--out", tmp_path / "coreml")
    assert refused.returncode == 2 and "runtime_version does not apply" in refused.stderr
    assert str(coreml) in refused.stderr
