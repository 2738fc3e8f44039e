"""Estimated device profiles' decisions (toolkit/devices/profiles.py): what a profile file must hold,
which validation and interval an estimate carries, the estimate itself on a counted graph worked by
hand, and the correction learnt from a measured report. Fast (no export, no fit): run once per mutant
by benchmarks/mutation.py, module "profiles"."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from edge_distill.devices import profiles
from edge_distill.devices.cost_model import Coefficients
from edge_distill.devices.graph_work import OpWork
from edge_distill.errors import BadInput, CannotMeasure
from edge_distill.targets import Precision

FP32 = Precision("fp32", 32, 32, "fp32")
INT8 = Precision("int8", 8, 8, "int8")
FP16_NE = Precision("fp16", 16, 16, "fp16", "neural engine")
W8A8_NE = Precision("w8a8", 8, 8, "int8", "neural engine")
VALIDATION = {"against": "sealed split", "runs": 36, "median_error": 1.2, "within_1_5x": 0.89, "ratio_low": 0.5,
              "ratio_high": 2.0, "interval_coverage": 0.94, "interval_claim": 0.9}
NE_VALIDATION = {**VALIDATION, "against": "iPhone 14 Pro", "runs": 19, "median_error": 1.07, "within_1_5x": 0.74,
                 "ratio_low": 0.8, "ratio_high": 1.25, "interval_coverage": 0.7, "interval_claim": 0.65}
PROFILE = """name = "test-phone"
version = "7"
description = "a test phone"
core = "Cortex-A76"
clock_ghz = 2.0
threads = 4
"""
NE = "neural_engine_fp16_tops = 10.0\nneural_engine_int8_tops = 20.0\n"


def _toml(table: str, values: dict) -> str:
    return f"\n[{table}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Profiles written as files and made the only built-in ones; corrections kept in tmp_path."""
    monkeypatch.setenv("EDGE_DISTILL_CONFIG", str(tmp_path / "config"))
    paths = {}
    monkeypatch.setattr(profiles, "builtin_profiles", lambda: dict(paths))

    def write(name: str, text: str) -> Path:
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(text)
        return paths[name]
    return write


def test_a_profile_is_read_with_its_figures_and_validations(install):
    install("test-phone", PROFILE + NE + _toml("validation", VALIDATION) + _toml("neural_engine_validation", NE_VALIDATION))
    p = profiles.load_profile("test-phone")
    assert (p.name, p.version, p.description, p.core_kind) == ("test-phone", "7", "a test phone", "Cortex-A76")
    assert p.figures == {"clock_ghz": 2.0, "threads": 4.0, "neural_engine_fp16_tops": 10.0,
                         "neural_engine_int8_tops": 20.0, "correction": 1.0}
    assert p.validation == VALIDATION and p.neural_engine_validation == NE_VALIDATION
    assert p.core.peak("fp32") == 2.0e9 * 16 and p.correction_info is None


def test_an_unknown_device_names_the_known_ones(install):
    install("b-phone", PROFILE)
    install("a-board", PROFILE)
    with pytest.raises(BadInput, match=r"^unknown device 'c-phone'; available: host, a-board, b-phone\n"):
        profiles.load_profile("c-phone")


@pytest.mark.parametrize("change, missing", [("threads = 4", "threads = 0"), ("clock_ghz = 2.0", "clock_ghz = -1"),
                                             ("clock_ghz = 2.0", 'clock_ghz = "fast"')])
def test_a_profile_needs_a_positive_clock_and_threads(install, change, missing):
    path = install("test-phone", PROFILE.replace(change, missing))
    key = change.split()[0]
    with pytest.raises(BadInput, match=rf"device profile needs a core and positive {key}$") as caught:
        profiles.load_profile("test-phone")
    assert caught.value.path == str(path)


def test_a_profile_needs_a_core_and_a_known_one(install):
    install("test-phone", PROFILE.replace('core = "Cortex-A76"\n', ""))
    with pytest.raises(BadInput, match="device profile needs a core and positive clock_ghz, threads$"):
        profiles.load_profile("test-phone")
    install("test-phone", PROFILE.replace("Cortex-A76", "Cortex-Z9"))
    with pytest.raises(BadInput, match="unknown core 'Cortex-Z9'"):
        profiles.load_profile("test-phone")
    install("test-phone", PROFILE + "cores = 4\n")
    with pytest.raises(BadInput, match=r"unknown key 'cores' in \[device test-phone\]"):
        profiles.load_profile("test-phone")


@pytest.mark.parametrize("change", [{"ratio_low": 2.5}, {"ratio_low": 0.0}, {"runs": None}, {"spread": 1},
                                    {"interval_claim": 1.0}, {"interval_claim": 1.5}, {"interval_claim": 0.0},
                                    {"interval_claim": -0.5}])
def test_a_validation_table_is_complete_and_ordered(install, change):
    table = {k: v for k, v in {**VALIDATION, **change}.items() if v is not None}
    path = install("test-phone", PROFILE + _toml("validation", table))
    with pytest.raises(BadInput) as caught:
        profiles.load_profile("test-phone")
    assert caught.value.path == str(path) and "[validation]" in str(caught.value)
    if "spread" not in change:
        assert "needs against, interval_claim, interval_coverage, median_error, ratio_high, ratio_low, runs, " \
               "within_1_5x, with 0 < ratio_low <= ratio_high and 0 < interval_claim < 1" in str(caught.value)


def test_an_interval_of_zero_width_is_accepted(install):
    install("test-phone", PROFILE + _toml("validation", {**VALIDATION, "ratio_low": 1.0, "ratio_high": 1.0,
                                                         "interval_claim": 0.99}))
    assert profiles.load_profile("test-phone").interval(3.0) == (3.0, 3.0)


def test_a_stored_correction_applies_to_its_profile_version_only(install, tmp_path):
    install("test-phone", PROFILE)
    stored = tmp_path / "config" / "corrections" / "test-phone.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({"profile_version": "7", "correction": 1.5}))
    p = profiles.load_profile("test-phone")
    assert p.figures["correction"] == 1.5 and p.correction_info == {"profile_version": "7", "correction": 1.5}
    for other in ("6", "8"):  # an older profile's, or a newer one's
        stored.write_text(json.dumps({"profile_version": other, "correction": 1.5}))
        p = profiles.load_profile("test-phone")
        assert p.figures["correction"] == 1.0 and p.correction_info is None


def test_the_interval_and_the_validation_follow_the_compute_unit(install):
    install("test-phone", PROFILE + NE + _toml("validation", VALIDATION) + _toml("neural_engine_validation", NE_VALIDATION))
    install("plain", PROFILE + _toml("validation", VALIDATION))
    install("bare", PROFILE)
    phone, plain, bare = (profiles.load_profile(n) for n in ("test-phone", "plain", "bare"))
    # CPU: estimate / published ranged 0.5..2, so the truth lies at estimate / 2 .. estimate / 0.5
    assert phone.interval(10.0) == (5.0, 20.0) and phone.interval(10.0, FP32) == (5.0, 20.0)
    assert phone.interval(10.0, FP16_NE) == (8.0, 12.5)  # 10 / 1.25, 10 / 0.8
    assert phone.interval(1 / 3, FP16_NE) == (0.2667, 0.4167)  # rounded to 4 places
    assert phone.on_neural_engine(W8A8_NE) and not phone.on_neural_engine(FP32)
    assert not plain.on_neural_engine(FP16_NE) and plain.interval(10.0, FP16_NE) == (5.0, 20.0)
    assert bare.interval(10.0) is None
    assert phone.validated_error(FP16_NE) == (
        "validated: median error 1.07x, 74% within 1.5x, on 19 published runs (iPhone 14 Pro); "
        "its 65% interval held 70% of them")
    assert bare.validated_error() == "not validated: no published runs of its core in the corpus"


def test_every_validated_error_a_profile_has(install, monkeypatch):
    monkeypatch.setattr(profiles, "load_coefficients", lambda: COEFFICIENTS)
    install("test-phone", PROFILE + NE + _toml("validation", VALIDATION) + _toml("neural_engine_validation", NE_VALIDATION))
    install("bare", PROFILE)
    cpu = "validated: median error 1.2x, 89% within 1.5x, on 36 published runs (sealed split); its 90% interval held 94% of them"
    families = ("by network family on the sealed split's GEMM runs: depthwise no sealed runs, dense conv no sealed "
                "runs, transformer no sealed runs, hybrid no sealed runs")
    neural_engine = ("Neural Engine validated: median error 1.07x, 74% within 1.5x, on 19 published runs "
                     "(iPhone 14 Pro); its 65% interval held 70% of them")
    # the made-up coefficients fit no core's speed: the Cortex-A76 is said to be at the corpus average
    unfitted = ("no published run of a Cortex-A76 is in the fitted corpus, so its speed is the corpus average: "
                "unvalidated for this core (cores in that position were off by 2x and more on sealed runs)")
    assert profiles.load_profile("test-phone").validated_errors() == f"CPU {cpu}; {families}; {unfitted}; {neural_engine}"
    assert profiles.load_profile("bare").validated_errors() == (
        f"CPU not validated: no published runs of its core in the corpus; {unfitted}")
    fitted = replace(COEFFICIENTS, core_speed={"Cortex-A76": -0.25})
    monkeypatch.setattr(profiles, "load_coefficients", lambda: fitted)
    assert profiles.load_profile("test-phone").validated_errors() == f"CPU {cpu}; {families}; {neural_engine}"
    assert profiles.load_profile("bare").validated_errors() == "CPU not validated: no published runs of its core in the corpus"


# Made-up coefficients and a counted graph (graph_work replaced: the figures are the test's)
COEFFICIENTS = Coefficients(
    efficiency={"float": {"conv3x3_s1": 0.5, "conv": 0.4, "depthwise": 0.1, "pointwise": 0.8, "gemm": 0.25},
                "int8": {"conv3x3_s1": 0.6, "conv": 0.45, "depthwise": 0.15, "pointwise": 0.9, "gemm": 0.35}},
    light_cycles={"float": 2.0, "int8": 3.0}, stream_cycles_per_byte=0.0, op_overhead_cycles=0.0, thread_scaling=1.0,
    int8_kernel_use={"dot": 0.5}, gather_cycles={"float": 0.0, "int8": 0.0},
    neural_engine={"fixed_us": 100.0, "op_us": 0.0, "efficiency": 0.5, "depthwise_efficiency": 0.5,
                   "output_ns_per_byte": 0.0})
WORK = [OpWork("Conv", "pointwise", 6.4e8, 1e6, 3e5, 1e5), OpWork("Relu", "light", 0.0, 0.0, 2e6, 1e6)]


@pytest.fixture
def counted(install, tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "load_coefficients", lambda: COEFFICIENTS)
    monkeypatch.setattr(profiles, "graph_work", lambda path: list(WORK))
    install("test-phone", PROFILE + NE + _toml("validation", VALIDATION))
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"counted by the test's graph_work")
    return graph


def test_an_estimate_worked_by_hand(counted):
    phone = profiles.load_profile("test-phone")
    # Cortex-A76 at 2 GHz: 32 GFLOP/s fp32 per core, pointwise at 0.8: 6.4e8 / 25.6e9 = 25 ms, light
    # 2e6 elements x 2 cycles / 2e9 = 2 ms; 4 threads at scaling 1: 27 / 4 = 6.75 ms
    est = profiles.estimate(counted, FP32, phone)
    assert est["latency_ms"] == pytest.approx(6.75, rel=1e-12)
    assert (est["ops"], est["flops"], est["network_family"]) == (2, 6.4e8, "depthwise")
    assert est["compute_unit"] == "Cortex-A76 at 2 GHz, 4 thread(s)"
    # memory: 1e6 weights x 4 bytes + 2 x the largest activation (2e6) x 4 bytes = 20e6 bytes
    assert est["peak_memory_mb"] == pytest.approx(20.0, rel=1e-12)  # MB of 1e6 bytes
    # int8 on SDOT (4 x 32e9) at 0.9 x 0.5: 6.4e8 / 57.6e9 s; light 2e6 x 3 / 2e9 = 3 ms; over 4 threads
    int8 = profiles.estimate(counted, INT8, phone)
    assert int8["latency_ms"] == pytest.approx((6.4e8 / 57.6e9 * 1e3 + 3.0) / 4, rel=1e-12)
    assert int8["peak_memory_mb"] == pytest.approx(5.0, rel=1e-12)  # 1e6 x 1 + 2 x 2e6 x 1
    # Winograd kernels (ncnn) would not change a 1x1 convolution; the profile's correction multiplies
    phone.figures["correction"] = 2.0
    assert profiles.estimate(counted, FP32, phone, "ncnn")["latency_ms"] == pytest.approx(
        2.0 * (6.4e8 / 51.2e9 * 1e3 + 2.0) / 4, rel=1e-12)  # ncnn's fp32 in fp16 on the A76: 64e9 at 0.8


def test_a_neural_engine_estimate_uses_the_tops_of_its_activations(counted):
    phone = profiles.load_profile("test-phone")
    # 100 us fixed + 6.4e8 at 0.5 of 10 TOPS (fp16 activations) = 0.1 + 0.128 ms; int8 activations: 20 TOPS
    fp16 = profiles.estimate(counted, FP16_NE, phone)
    assert fp16["latency_ms"] == pytest.approx(0.228, rel=1e-12) and fp16["compute_unit"] == "Neural Engine"
    assert profiles.estimate(counted, W8A8_NE, phone)["latency_ms"] == pytest.approx(0.164, rel=1e-12)
    # 8-bit weights with 16-bit activations (weight-only) run at fp16's TOPS
    weight_only = Precision("int8", 8, 16, "int8", "neural engine")
    assert profiles.estimate(counted, weight_only, phone)["latency_ms"] == pytest.approx(0.228, rel=1e-12)


def test_no_graph_cannot_be_estimated(counted, tmp_path):
    phone = profiles.load_profile("test-phone")
    for graph in (None, tmp_path / "absent.onnx"):
        with pytest.raises(CannotMeasure, match="cannot estimate for device 'test-phone': no ONNX graph"):
            profiles.estimate(graph, FP32, phone)


def _result(artifact: str, p50, device="adb:serial1", kind="measured"):
    return {"target": "ort", "precision": "fp32", "artifact": artifact,
            "latency": {"p50_ms": p50, "provenance": {"kind": kind, "device": device}}}


def test_a_correction_is_the_median_measured_over_estimated_ratio(counted, tmp_path):
    # the estimate of every artifact is 6.75 ms (test_an_estimate_worked_by_hand); a stored correction
    # does not count: the ratio is against the bare estimate
    stored = tmp_path / "config" / "corrections" / "test-phone.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({"profile_version": "7", "correction": 10.0}))
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("a", "b", "c", "host"):
        (folder / f"{name}.onnx").write_bytes(b"graph")
    report = {"results": [_result(str(folder / "a.tflite"), 13.5), _result("b.ort", 6.75 * 3, "iphone:00008130"),
                          _result(str(folder / "c.onnx"), 6.75 * 5), _result(str(folder / "c.onnx"), 6.75 * 3.14159),
                          _result(str(folder / "c.onnx"), 6.75 * 3.00014),
                          _result(str(folder / "host.onnx"), 1.0, device="host"),
                          _result(str(folder / "a.onnx"), 1.0, kind="estimated"),
                          _result(str(folder / "a.onnx"), 1.0, kind="reference-mil"),
                          _result(str(folder / "a.onnx"), 0.0),
                          _result(str(folder / "missing.onnx"), 1.0)]}
    path = folder / "report.json"
    path.write_text(json.dumps(report))
    info = profiles.correct("test-phone", path)
    # ratios and their median kept to 4 places: the median of 2, 3, 5, 3.14159 and 3.00014 is 3.00014
    assert info["correction"] == 3.0001 and info["ratios"] == [2.0, 3.0, 5.0, 3.1416, 3.0001]
    assert info["measured_on"] == ["adb:serial1", "iphone:00008130"] and info["profile_version"] == "7"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", info["created"])  # UTC, whole seconds
    assert json.loads(stored.read_text()) == info
    assert profiles.load_profile("test-phone").figures["correction"] == 3.0001


def test_a_correction_needs_a_device_measurement(counted, tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"graph")
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": [_result(str(tmp_path / "a.onnx"), 5.0, device="host")]}))
    with pytest.raises(BadInput, match="the report holds no latency measured on a device") as caught:
        profiles.correct("test-phone", path)
    assert caught.value.path == str(path) and "--device adb" in caught.value.hint
    path.write_text(json.dumps({"runs": []}))
    with pytest.raises(BadInput, match="not an edge-distill report"):
        profiles.correct("test-phone", path)
    assert not (tmp_path / "config" / "corrections" / "test-phone.json").exists()


def test_the_graph_of_a_result_is_its_own_onnx_else_the_exports(tmp_path):
    (tmp_path / "export.onnx").write_bytes(b"graph")
    report = {"export": {"path": "export.onnx"}}
    assert profiles._graph_of(tmp_path, report, {"artifact": "model.int8.tflite"}) == tmp_path / "export.onnx"
    (tmp_path / "model.int8.onnx").write_bytes(b"graph")
    assert profiles._graph_of(tmp_path, report, {"artifact": "model.int8.tflite"}) == tmp_path / "model.int8.onnx"
    assert profiles._graph_of(tmp_path, {}, {"artifact": "other.tflite"}) is None


def test_an_unknown_precision_of_a_report_is_estimated_as_fp32():
    assert profiles._precision_of("ort", "int8").arithmetic == "int8"
    assert profiles._precision_of("ort", "int3") == profiles.FP32
    assert profiles._precision_of("no-such-target", "int8") == profiles.FP32


def test_the_shipped_profiles_are_the_tomls_of_device_profiles():
    import edge_distill

    folder = Path(edge_distill.__file__).parent / "device_profiles"
    shipped = profiles.builtin_profiles()
    assert shipped == {p.stem: p for p in folder.glob("*.toml")} and "iphone-15-pro" in shipped
    iphone = profiles.load_profile("iphone-15-pro")
    assert iphone.on_neural_engine(FP16_NE) and iphone.core_kind == "Apple-Everest"
    with pytest.raises(BadInput, match=rf"available: host, {', '.join(sorted(shipped))}\n"):
        profiles.load_profile("no-such-phone")


def test_a_correction_creates_the_config_folder(counted, tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"graph")
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"results": [_result(str(tmp_path / "a.onnx"), 13.5)]}))
    assert not (tmp_path / "config").exists()
    assert profiles.correct("test-phone", path)["correction"] == 2.0  # 13.5 / 6.75
    assert json.loads((tmp_path / "config" / "corrections" / "test-phone.json").read_text())["correction"] == 2.0
