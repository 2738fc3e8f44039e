"""Devices: estimated profiles, provenance a budget can demand, and clear errors."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, edit_config, run_cli
from edge_distill.devices.profiles import estimate, load_profile
from edge_distill.targets import get_target

ORT = {p.name: p for p in get_target("ort").capabilities.precisions}  # what an estimate reads of a precision
from edge_distill.errors import BadInput


def _valid(report: dict) -> None:
    from importlib.resources import files

    import jsonschema

    jsonschema.validate(report, json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text()))


@pytest.mark.slow
def test_devices_lists_host_and_profiles():
    proc = run_cli("devices", "--json")
    assert proc.returncode == 0
    devices = {d["name"]: d for d in json.loads(proc.stdout)}
    assert devices["host"]["kind"] == "measured"
    for name in ("android-midrange", "android-flagship", "iphone-15-pro", "raspberry-pi-5"):
        assert devices[name]["kind"] == "estimated"
        assert all(load_profile(name).sources.get(k) for k in ("core", "clock_ghz", "threads"))


@pytest.mark.slow
def test_estimates_follow_the_work_and_the_device(demo_run):
    _, demo = demo_run
    graph = demo / "onnx" / "model.onnx"
    mid, flagship = load_profile("android-midrange"), load_profile("android-flagship")
    fp32_mid = estimate(graph, ORT["fp32"], mid)
    assert fp32_mid["flops"] > 5e5 and fp32_mid["ops"] > 5  # the student: about 0.68 MFLOP
    assert estimate(graph, ORT["fp32"], flagship)["latency_ms"] < fp32_mid["latency_ms"]
    assert estimate(graph, ORT["int8"], mid)["peak_memory_mb"] < fp32_mid["peak_memory_mb"]


@pytest.mark.slow
def test_check_on_an_estimated_device(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"],
                         budgets="[budgets]\nlatency_p95_ms = 100\nmin_speedup_vs_float = 0.1\n")
    proc = run_cli("check", config, "--device", "android-midrange", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for r in report["results"]:
        prov = r["latency"]["provenance"]
        assert prov["kind"] == "estimated" and prov["device"] == "android-midrange@2026.12.1"
        assert r["memory"]["provenance"]["kind"] == "estimated"
        assert r["details"]["host_latency"]["kind"] == "measured"  # the host figure stays, labelled
        assert all(c["provenance"] == "estimated" for c in r["checks"] if c["metric"].startswith("latency"))
    assert "estimated from the graph, not measured" in proc.stdout
    # One artifact, one estimate: `verify` and `bench` on the same device count the same graph (the
    # artifact's own), so they give the figure `check` gave.
    int8 = next(r for r in report["results"] if r["precision"] == "int8")
    artifact = tmp_path / "out" / int8["artifact"]
    budget = tmp_path / "b.toml"
    budget.write_text("latency_p95_ms = 100\n")
    verified = run_cli("verify", artifact, "--data", example / "eval.npz", "--budget", budget, "--device",
                       "android-midrange", "--runs", "20", "--out", tmp_path / "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verify_p50 = json.loads((tmp_path / "verify" / "report.json").read_text())["results"][0]["latency"]["p50_ms"]
    bench = run_cli("bench", artifact, "--device", "android-midrange", "--json")
    assert bench.returncode == 0, bench.stderr
    assert int8["latency"]["p50_ms"] == verify_p50 == json.loads(bench.stdout)["latency"]["p50_ms"]


@pytest.mark.slow
def test_int8_estimates_count_the_convolutions_of_a_qdq_graph(demo_run):
    _, demo = demo_run
    mid = load_profile("android-midrange")
    fp32, qdq = estimate(demo / "onnx" / "model.onnx", ORT["int8"], mid), estimate(demo / "ort" / "model.int8.onnx", ORT["int8"], mid)
    # The weights reach Conv and Gemm through DequantizeLinear: the multiply-adds are the float graph's
    # (the Q/DQ pairs themselves are folded into the kernels by the runtime, and cost nothing).
    assert qdq["flops"] == fp32["flops"] and qdq["ops"] < fp32["ops"] + 2


@pytest.mark.slow
def test_required_measurement_fails_an_estimate(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32"],
                         budgets='[budgets]\nlatency_p95_ms = 100\nrequire = "measured"\n')
    proc = run_cli("check", config, "--device", "android-flagship", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "requires a measured figure; this one is estimated" in proc.stdout
    # On the host the same budget holds: the figure is measured.
    assert run_cli("check", config, "--out", tmp_path / "host").returncode == 0


@pytest.mark.slow
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


@pytest.mark.slow
def test_unknown_device_is_refused_before_any_work(tmp_path):
    proc = run_cli("check", EXAMPLE / "edge-distill.toml", "--device", "pixel-99", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "unknown device 'pixel-99'; available: host, android-flagship" in proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(BadInput, match="unknown device"):
        load_profile("nope")


# -- emulated-arm64: the real aarch64 runtimes under qemu-user ------------------------------------

def _emulator_ready() -> bool:
    from edge_distill.devices.emulated import Emulator

    state = Emulator.state()
    if not state.ready and os.environ.get("CI"):
        pytest.fail(f"CI sets up emulated-arm64 before the tests (.ci/run), but it is {state.note}")
    return state.ready


@pytest.mark.slow
def test_arm64_numerics_under_emulation(example, tmp_path):
    if not _emulator_ready():
        pytest.skip("emulated-arm64 is not set up: `edge-distill devices setup emulated-arm64`")
    config = edit_config(example, precisions=["int8", "int4"], replace={
        "[measure]\n": '[measure]\ndevice = "emulated-arm64"\n', "warmup = 50\nruns = 300": "warmup = 5\nruns = 20"})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    _valid(report)
    results = {r["target"] + "-" + r["precision"]: r for r in report["results"]}
    for name, version in (("ort-int8", "1.27.0"), ("tflite-int8", "1.4.0"), ("ort-int4", "1.27.0")):
        r = results[name]
        assert r["evaluation"]["kind"] == "emulated" and r["evaluation"]["runtime_version"] == version
        assert r["evaluation"]["machine"] == "aarch64"
        parity = r["details"]["arm64_vs_host"]  # x86 and ARM int8 kernels round differently
        assert parity["samples"] == 2000 and parity["top1_agreement"] >= 0.97, parity
        assert r["metrics"]["accuracy"] >= 0.85
        assert all(c["provenance"] == "emulated" for c in r["checks"] if c["metric"] == "accuracy")
        assert r["latency"]["provenance"]["device"] == "host"  # never the emulator's timing
    # The .ort of int4 was written by a newer ORT than the emulator's: evaluated through its .onnx, said so.
    assert "model.int4.ort does not load in the aarch64 onnxruntime 1.27.0" in proc.stdout
    # LiteRT 1.4.0's XNNPACK (the last aarch64 wheel) cannot prepare blockwise int4: builtin kernels, said so.
    assert "LiteRT's builtin kernels ran it" in results["tflite-int4"]["evaluation"]["note"]
    assert results["tflite-int4"]["details"]["arm64_vs_host"]["top1_agreement"] >= 0.97
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "top-1 agreement with this host's x86 run" in (tmp_path / "out" / "report.md").read_text()


def test_a_model_the_arm_runtime_rejects_is_not_measured(tmp_path):
    if not _emulator_ready():
        pytest.skip("emulated-arm64 is not set up: `edge-distill devices setup emulated-arm64`")
    from edge_distill.devices.emulated import Emulator
    from edge_distill.errors import CannotMeasure

    import numpy as np

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    np.savez(tmp_path / "none.npz", x=np.zeros((1, 4), np.float32))
    with pytest.raises(CannotMeasure, match="device 'emulated-arm64': running broken.onnx failed in the aarch64 "
                                            "runtime: .*INVALID_PROTOBUF"):
        Emulator.run({"runtime": "ort", "model": str(broken), "inputs": str(tmp_path / "none.npz"), "batch": 1,
                      "threads": 1}, "running broken.onnx")


def test_emulated_device_refuses_coreml(tmp_path):
    from edge_distill.devices.emulated import emulated_outputs
    from edge_distill.errors import CannotMeasure

    class ReferenceMilRunnerStandIn:  # what the coreml target's runner off macOS says of itself; no emulation hooks
        def describe(self):
            return {"runtime": "coremltools reference MIL evaluator"}

    with pytest.raises(CannotMeasure, match="runs ORT and LiteRT artifacts; m.mlpackage runs on coremltools reference "
                                            "MIL evaluator, which has no aarch64 Linux build"):
        emulated_outputs(ReferenceMilRunnerStandIn(), tmp_path / "m.mlpackage", None, 1)


# -- attached Android phones over adb (a stand-in adb replays the real tools' output) --------------

STAND_IN_ADB = Path(__file__).parent / "doubles" / "stand_in_adb.py"


@pytest.fixture
def phone(tmp_path):
    """Environment for the stand-in adb, with benchmark binaries as files to push (never executed)."""
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("benchmark_model", "onnxruntime_perf_test"):
        (tools / name).write_bytes(b"\x7fELF stand-in: pushed, never run")
    return {"EDGE_DISTILL_ADB": str(STAND_IN_ADB), "STAND_IN_ADB_LOG": str(tmp_path / "adb.log"),
            "EDGE_DISTILL_BENCHMARK_MODEL": str(tools / "benchmark_model"),
            "EDGE_DISTILL_ORT_PERF_TEST": str(tools / "onnxruntime_perf_test"),
            "EDGE_DISTILL_CONFIG": str(tmp_path / "config")}


@pytest.mark.slow
def test_devices_lists_an_attached_phone(phone):
    proc = run_cli("devices", "--json", env=phone)
    found = {d["name"]: d for d in json.loads(proc.stdout)}
    assert found["adb:R5CT21ABCDE"]["kind"] == "measured" and "SM-A546B" in found["adb:R5CT21ABCDE"]["note"]
    assert "emulated-arm64" in found


@pytest.mark.slow
def test_check_on_a_phone_measures_there_and_gates(example, tmp_path, phone):
    config = edit_config(example, precisions=["fp32"], budgets="[budgets]\nlatency_p95_ms = 100\n",
                         replace={"warmup = 50\nruns = 300": "warmup = 5\nruns = 20\n\n[measure.adb]\n"
                                  f'benchmark_model = "{phone["EDGE_DISTILL_BENCHMARK_MODEL"]}"'})
    env = {**phone, "EDGE_DISTILL_BENCHMARK_MODEL": ""}  # the config's path is the one used
    proc = run_cli("check", config, "--device", "adb", "--out", tmp_path / "out", env=env)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    _valid(report)
    by_target = {r["target"]: r for r in report["results"]}
    ort, tfl = by_target["ort"], by_target["tflite"]
    for r in (ort, tfl):
        prov = r["latency"]["provenance"]
        assert prov["kind"] == "measured" and prov["device"] == "adb:R5CT21ABCDE (SM-A546B, Android 14)"
    # Figures parsed from the tools' own output (replayed): perf_test's P95 in s, benchmark_model's p95 in µs.
    assert ort["latency"]["p95_ms"] == pytest.approx(101.519) and ort["latency"]["p50_ms"] == pytest.approx(99.5086)
    assert ort["memory"]["peak_mb"] == pytest.approx(271.122432, rel=1e-4)  # bytes / 10^6: one MB everywhere
    assert tfl["latency"]["p95_ms"] == pytest.approx(106.281) and tfl["latency"]["p50_ms"] == pytest.approx(105.718)
    assert tfl["latency"]["p99_ms"] is None  # benchmark_model prints p5/median/p95 only: not invented
    assert tfl["memory"]["peak_mb"] == pytest.approx(14.8164 * 2**20 / 1e6, rel=1e-4)  # its "MB" is MiB
    # The captured logs hold 5 and 50 timed runs; 20 were asked for: the report says so, never passes them off.
    assert ort["latency"]["runs"] == 5 and tfl["latency"]["runs"] == 50
    assert any("onnxruntime_perf_test reported 5 timed runs where 20 were asked for" in w for w in ort["warnings"])
    assert any("benchmark_model reported 50 timed runs where 20 were asked for" in w for w in tfl["warnings"])
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 101.5 and 106.3 ms break the 100 ms budget
    log = Path(phone["STAND_IN_ADB_LOG"]).read_text()
    assert "push" in log and "model.fp32.ort /data/local/tmp/edge-distill/model.fp32.ort" in log
    assert "onnxruntime_perf_test -e cpu -m times -r 20 -x 1 -I -s" in log
    assert "--num_runs=20" in log and "--graph=/data/local/tmp/edge-distill/model.fp32.tflite" in log

    # That measurement corrects the mid-range profile: later estimates carry the ratio.
    proc = run_cli("devices", "correct", "android-midrange", "--from", tmp_path / "out" / "report.json", env=phone)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((Path(phone["EDGE_DISTILL_CONFIG"]) / "corrections" / "android-midrange.json").read_text())
    graph = tmp_path / "out" / "ort" / "model.fp32.onnx"
    bare = estimate(graph, ORT["fp32"], load_profile("android-midrange"))["latency_ms"]  # this process: uncorrected
    # The median of measured/estimated p50 over ORT (99.51 ms) and LiteRT (105.72 ms), one fp32 graph.
    assert stored["correction"] == pytest.approx((99.5086 + 105.718) / 2 / bare, rel=1e-3)
    assert stored["measured_on"] == ["adb:R5CT21ABCDE (SM-A546B, Android 14)"]
    listed = run_cli("devices", env=phone).stdout
    assert f"corrected x{stored['correction']:g}" in listed
    assert listed.count("corrected x") == 1  # that device's profile, and no other


@pytest.mark.slow
def test_correction_needs_a_device_measurement(demo_run, tmp_path, phone):
    _, demo = demo_run
    # `devices calibrate`, the old spelling of `devices correct`, still works
    proc = run_cli("devices", "calibrate", "android-midrange", "--from", demo / "report.json", env=phone)
    assert proc.returncode == 2 and "no latency measured on a device" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("scenario, device, code, message", [
    ("vanish", "adb", 3, "device 'adb:R5CT21ABCDE' went away while running onnxruntime_perf_test"),
    ("binary-fails", "adb", 3, "running onnxruntime_perf_test on model.fp32.ort failed (exit 255): Run failed:"),
    ("none", "adb", 3, "device 'adb': no Android device is attached"),
    ("offline", "adb", 3, "device 'adb:R5CT21ABCDE' is offline"),
    ("unauthorized", "adb", 3, "device 'adb:R5CT21ABCDE' is unauthorized\n  hint: unlock the phone and accept the USB "
                               "debugging prompt"),
    ("two", "adb", 2, "2 devices are attached"),
    ("ok", "adb:0123456", 3, "device 'adb:0123456' is not attached (attached: R5CT21ABCDE (device))"),
])
def test_phone_failures_name_the_device(demo_run, tmp_path, phone, scenario, device, code, message):
    _, demo = demo_run
    proc = run_cli("verify", demo / "ort" / "model.fp32.ort", "--data", EXAMPLE / "eval.npz", "--device", device,
                   "--runs", "20", "--out", tmp_path / "out", env={**phone, "STAND_IN_ADB_SCENARIO": scenario})
    assert proc.returncode == code and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()  # no partial report


@pytest.mark.slow
def test_phone_needs_the_benchmark_binary(demo_run, tmp_path, phone):
    _, demo = demo_run
    proc = run_cli("verify", demo / "tflite" / "model.fp32.tflite", "--data", EXAMPLE / "eval.npz", "--device", "adb",
                   "--out", tmp_path / "out", env={**phone, "EDGE_DISTILL_BENCHMARK_MODEL": ""})
    assert proc.returncode == 3 and "needs benchmark_model built for the phone" in proc.stderr
    assert "[measure.adb] benchmark_model" in proc.stderr


@pytest.mark.slow
def test_benchmark_without_percentiles_is_not_measured(demo_run, tmp_path, phone):
    _, demo = demo_run
    budget = tmp_path / "budget.toml"
    budget.write_text("[budgets]\nlatency_p95_ms = 100\n")
    proc = run_cli("verify", demo / "tflite" / "model.fp32.tflite", "--data", EXAMPLE / "eval.npz", "--device", "adb",
                   "--budget", budget, "--runs", "20", "--out", tmp_path / "out",
                   env={**phone, "STAND_IN_ADB_SCENARIO": "no-percentiles"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "this benchmark_model build prints count/avg and no percentiles" in proc.stdout
    result = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    assert result["latency"]["mean_ms"] == pytest.approx(56.2658) and result["latency"]["p95_ms"] is None


@pytest.mark.slow
def test_iphone_and_mac_off_macos_exit_3(tmp_path):
    for device, message in (("iphone", "an attached iPhone is reached through Xcode's command-line tools"),
                            ("macos-local", "device 'macos-local' runs Core ML on this Mac")):
        proc = run_cli("check", EXAMPLE / "edge-distill.toml", "--device", device, "--out", tmp_path / device)
        assert proc.returncode == 3 and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_bench_on_host_profile_and_phone(demo_run, phone):
    _, demo = demo_run
    host = run_cli("bench", demo / "ort" / "model.int8.ort", "--runs", "20", "--json", "-q")
    record = json.loads(host.stdout)
    assert host.returncode == 0 and record["latency"]["provenance"]["kind"] == "measured"
    assert 0 < record["latency"]["p50_ms"] <= record["latency"]["p95_ms"]
    estimated = run_cli("bench", demo / "tflite" / "model.int8.tflite", "--device", "raspberry-pi-5", "--float",
                        demo / "onnx" / "model.onnx", "--json")
    assert json.loads(estimated.stdout)["latency"]["provenance"]["device"] == "raspberry-pi-5@2026.12.1"
    on_phone = run_cli("bench", demo / "tflite" / "model.int8.tflite", "--device", "adb", env=phone)
    assert on_phone.returncode == 0 and "p95 106.3 ms" in on_phone.stdout and "p99 n/a" in on_phone.stdout
    emulated = run_cli("bench", demo / "ort" / "model.int8.ort", "--device", "emulated-arm64")
    assert emulated.returncode == 3
    assert "emulator's timing is not a device figure" in emulated.stderr  # refused before it is even needed


@pytest.mark.slow
def test_a_target_can_have_its_own_device(example, tmp_path):
    config = edit_config(example, precisions=["fp32"], budgets="[budgets]\nlatency_p95_ms = 100\n",
                         replace={'name = "tflite"\n': 'name = "tflite"\ndevice = "android-flagship"\n',
                                  "warmup = 50\nruns = 300": "warmup = 5\nruns = 20"})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = {r["target"]: r["latency"]["provenance"]["device"]
             for r in json.loads((tmp_path / "out" / "report.json").read_text())["results"]}
    assert kinds == {"ort": "host", "tflite": "android-flagship@2026.12.1"}


# -- an attached iPhone through Xcode's tools (stand-ins replay xctrace's and XCTest's output) ------

@pytest.fixture
def iphone(tmp_path):
    app = tmp_path / "ios-demo"
    shutil.copytree(Path(__file__).parents[1] / "ios-demo", app)
    (app / "EdgeDistillDemo.xcodeproj").mkdir()  # as `xcodegen generate` leaves it
    doubles = Path(__file__).parent / "doubles"
    return app, {"EDGE_DISTILL_XCRUN": str(doubles / "stand_in_xcrun.py"),
                 "EDGE_DISTILL_XCODEBUILD": str(doubles / "stand_in_xcodebuild.py"), "EDGE_DISTILL_IOS_APP": str(app)}


@pytest.mark.slow
def test_coreml_latency_on_an_attached_iphone(coreml_run, tmp_path, iphone):
    _, out, _ = coreml_run
    app, env = iphone
    listed = {d["name"]: d for d in json.loads(run_cli("devices", "--json", env=env).stdout)}
    assert listed["iphone:00008130-001A2B3C4D5E601E"]["note"] == "Dana's iPhone, iOS 18.5"
    budget = tmp_path / "budget.toml"
    budget.write_text("[budgets]\nlatency_p95_ms = 100\n")
    proc = run_cli("verify", out / "coreml" / "model.int8.mlpackage", "--data", EXAMPLE / "eval.npz", "--device",
                   "iphone", "--budget", budget, "--runs", "40", "--out", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    lat = result["latency"]
    assert lat["provenance"]["kind"] == "measured"
    assert lat["provenance"]["device"] == "iphone:00008130-001A2B3C4D5E601E (Dana's iPhone, iOS 18.5)"
    # 40 per-prediction values from XCTest's line: 3.1-3.7 ms, every 20th 0.9 ms slower.
    assert lat["runs"] == 40 and lat["p50_ms"] == pytest.approx(3.4, abs=0.01) and lat["p99_ms"] > 4.0
    assert not any("timed runs where" in w for w in result["warnings"])  # 40 asked, 40 replayed
    other = run_cli("bench", out / "coreml" / "model.int8.mlpackage", "--device", "iphone", "--runs", "20", env=env)
    assert other.returncode == 0 and "the XCTest run reported 40 timed runs where 20 were asked for" in other.stdout
    assert not (app / "EdgeDistillDemo" / "Models" / "edge-distill-latency.mlpackage").exists()  # cleaned up


@pytest.mark.slow
@pytest.mark.parametrize("scenario, code, message", [
    ("none", 3, "device 'iphone': no iPhone is attached"),
    ("offline", 3, "device 'iphone:00008130-001A2B3C4D5E601E' (Dana's iPhone) is offline"),
    ("gone", 3, "(Dana's iPhone) went away or was not usable: xcodebuild: error: Unable to find a destination"),
])
def test_iphone_failures_name_the_device(coreml_run, tmp_path, iphone, scenario, code, message):
    _, out, _ = coreml_run
    _, env = iphone
    proc = run_cli("bench", out / "coreml" / "model.int8.mlpackage", "--device", "iphone", "--runs", "20",
                   env={**env, "STAND_IN_XCODE_SCENARIO": scenario})
    assert proc.returncode == code and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_phone_without_adb_installed(demo_run, tmp_path):
    _, demo = demo_run
    env = {"EDGE_DISTILL_ADB": "", "PATH": str(Path(sys.executable).parent)}  # no adb anywhere
    proc = run_cli("bench", demo / "ort" / "model.fp32.ort", "--device", "adb", env=env)
    assert proc.returncode == 3 and "adb is not installed, so no Android device can be reached" in proc.stderr


def test_iphone_without_xcodebuild_cannot_measure(tmp_path, monkeypatch):
    """xcrun found (it lists the phone) and no xcodebuild: exit 3 naming the tool, not a TypeError from
    subprocess.run([None, ...]) (mypy found this)."""
    from edge_distill.devices import apple
    from edge_distill.errors import CannotMeasure

    app = tmp_path / "ios-demo"
    (app / "EdgeDistillDemo.xcodeproj").mkdir(parents=True)
    (tmp_path / "model.mlpackage").mkdir()
    monkeypatch.setenv("EDGE_DISTILL_XCODEBUILD", "")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))
    phone = apple.IPhone("Dana's iPhone", "18.5", "00008130-001A2B3C4D5E601E", True)
    with pytest.raises(CannotMeasure) as caught:
        apple.measure(phone, tmp_path / "model.mlpackage", [], app, warmup=1, runs=2)
    assert caught.value.exit_code == 3
    assert "xcodebuild is not installed" in str(caught.value)
    assert not (app / "EdgeDistillDemo" / "Models" / "edge-distill-latency.mlpackage").exists()  # cleaned up
