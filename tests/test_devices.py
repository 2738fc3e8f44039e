"""Devices: estimated profiles, provenance a budget can demand, and clear errors."""

import json

import pytest

from conftest import EXAMPLE, edit_config, run_cli
from edge_distill.devices import estimate, load_profile
from edge_distill.errors import BadInput


def test_devices_lists_host_and_profiles():
    proc = run_cli("devices", "--json")
    assert proc.returncode == 0
    devices = {d["name"]: d for d in json.loads(proc.stdout)}
    assert devices["host"]["kind"] == "measured"
    for name in ("android-midrange", "android-flagship", "iphone-15-pro", "raspberry-pi-5"):
        assert devices[name]["kind"] == "estimated"
        assert all(load_profile(name).sources.get(k) for k in ("fp32_gflops", "int8_gops", "memory_bandwidth_gbs"))


def test_estimates_follow_the_work_and_the_device(demo_run):
    _, demo = demo_run
    graph = demo / "onnx" / "model.onnx"
    mid, flagship = load_profile("android-midrange"), load_profile("android-flagship")
    fp32_mid = estimate(graph, "fp32", mid)
    assert fp32_mid["flops"] > 5e5 and fp32_mid["ops"] > 5  # the student: about 0.68 MFLOP
    assert estimate(graph, "fp32", flagship)["latency_ms"] < fp32_mid["latency_ms"]
    assert estimate(graph, "int8", mid)["latency_ms"] < fp32_mid["latency_ms"]
    assert estimate(graph, "int8", mid)["peak_memory_mb"] < fp32_mid["peak_memory_mb"]


def test_check_on_an_estimated_device(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"],
                         budgets="[budgets]\nlatency_p95_ms = 100\nmin_speedup_vs_float = 0.1\n")
    proc = run_cli("check", config, "--device", "android-midrange", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for r in report["results"]:
        prov = r["latency"]["provenance"]
        assert prov["kind"] == "estimated" and prov["device"] == "android-midrange@2026.11"
        assert r["memory"]["provenance"]["kind"] == "estimated"
        assert r["details"]["host_latency"]["kind"] == "measured"  # the host figure stays, labelled
        assert all(c["provenance"] == "estimated" for c in r["checks"] if c["metric"].startswith("latency"))
    assert "estimated from the graph, not measured" in proc.stdout


def test_required_measurement_fails_an_estimate(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32"],
                         budgets='[budgets]\nlatency_p95_ms = 100\nrequire = "measured"\n')
    proc = run_cli("check", config, "--device", "android-flagship", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "requires a measured figure; this one is estimated" in proc.stdout
    # On the host the same budget holds: the figure is measured.
    assert run_cli("check", config, "--out", tmp_path / "host").returncode == 0


def test_coreml_latency_off_macos_needs_a_profile(tmp_path):
    config = tmp_path / "coreml.toml"
    text = (EXAMPLE / "coreml.toml").read_text().replace("[budgets]\n", "[budgets]\nlatency_p95_ms = 100\n")
    config.write_text(text.replace('precisions = ["fp16", "int8", "int4", "palettize4", "w8a8"]',
                                   'precisions = ["int8"]'))
    for name in ("fmnist_models.py", "student.safetensors", "teacher.safetensors", "calibration.npz", "eval.npz"):
        (tmp_path / name).symlink_to(EXAMPLE / name)
    proc = run_cli("check", config, "--device", "iphone-15-pro", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    assert result["latency"]["provenance"]["kind"] == "estimated" and result["evaluation"]["kind"] in (
        "reference-mil", "measured")


def test_unknown_device_is_refused_before_any_work(tmp_path):
    proc = run_cli("check", EXAMPLE / "edge-distill.toml", "--device", "pixel-99", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "unknown device 'pixel-99'; available: host, android-flagship" in proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(BadInput, match="unknown device"):
        load_profile("nope")
