"""Qualcomm AI Hub's phones (--device qai-hub:NAME) through the real `qai-hub` client, against a stand-in
of the service on 127.0.0.1 (tests/doubles/qai_hub_standin.py): the client's own HTTP, protobuf, upload
and HDF5 code runs unchanged; only the service is stood in for."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import EXAMPLE, edit_config, run_cli

sys.path.insert(0, str(Path(__file__).parent / "doubles"))
from qai_hub_standin import PROFILE, StandIn  # noqa: E402

from edge_distill.calibration import Dataset  # noqa: E402
from edge_distill.config import load_config  # noqa: E402
from edge_distill.devices import Job, RunSettings, resolve  # noqa: E402
from edge_distill.errors import BadInput, CannotMeasure  # noqa: E402
from edge_distill.targets import get_target  # noqa: E402

TOKEN = "aihub-tok-9f8e7d6c5b4a39281706"
S24 = "Samsung Galaxy S24 (Family)"
FAST = {"qai_hub": {"poll_s": 0.02, "timeout_s": 30}}


@pytest.fixture
def service(tmp_path, monkeypatch):
    """The stand-in, and the client configured for it as `qai-hub configure` would (an INI file)."""
    with StandIn(TOKEN) as standin:
        ini = tmp_path / "client.ini"
        ini.write_text(f"[api]\napi_token = {TOKEN}\napi_url = {standin.url}\nweb_url = {standin.url}\n"
                       "verbose = True\nclient_mode = cli\n")
        monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
        monkeypatch.setenv("EDGE_DISTILL_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("EDGE_DISTILL_QAI_HUB_TOKEN", raising=False)
        yield standin


@pytest.fixture
def model(tmp_path) -> Path:
    """A 8 -> 4 MatMul as an .onnx artifact."""
    w = numpy_helper.from_array(np.random.RandomState(0).randn(8, 4).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    onnx.save(proto, tmp_path / "model.fp32.onnx")
    return tmp_path / "model.fp32.onnx"


def measure(device, path: Path, samples: int = 20):
    runner = get_target("ort").open_runner(path, 1, {})
    x = np.random.RandomState(1).randn(samples, 8).astype(np.float32)
    host = runner.run({"x": x})[0]
    said = []
    figures = device.measure(Job("ort", path, runner, Dataset("test", {"x": x}), RunSettings(device), "ort-fp32",
                                 host_outputs=host, progress=said.append))
    return figures, host, said


def jobs_posted(service) -> int:
    return sum(1 for method, path in service.requests if method == "POST" and path == "/api/v1/jobs/")


def test_a_profile_and_a_sample_run_become_the_usual_figures(service, model):
    device = resolve(f"qai-hub:{S24}", FAST)
    figures, host, said = measure(device, model)
    times = np.asarray(PROFILE["all_execution_times"]) / 1000.0  # µs in the profile
    lat = figures.latency
    assert (lat.p50_ms, lat.p90_ms, lat.p95_ms) == tuple(round(float(np.percentile(times, q)), 4) for q in (50, 90, 95))
    assert lat.p99_ms is None and lat.missing == "p99: 30 profiled iterations are too few"
    assert lat.runs == 30 and lat.min_ms == 0.396
    assert figures.memory.peak_mb == round(3145728 / 1e6, 4)  # the peak range's upper end: 3 MiB, in bytes
    assert figures.details["memory_peak_range_mb"] == [2.0972, 3.1457]
    assert figures.details["compute_units"] == {"counts": {"NPU": 1}, "layers": [["fc", "MatMul", "NPU"]]}
    prov = lat.provenance
    assert (prov.kind, prov.device, prov.runtime, prov.runtime_version, prov.os, prov.cpu, prov.threads) == (
        "measured", f"qai-hub:{S24} (Android 14)", "ONNX Runtime",
        "as AI Hub aihub-2026.11.0 runs it", "Android 14", "qualcomm-snapdragon-8gen3", 0)
    hub = figures.details["qai_hub"]
    assert prov.method.startswith(f"AI Hub profile job {hub['profile_job']['id']} ({service.url}/jobs/")
    assert hub["inference_job"]["url"] == f"{service.url}/jobs/{hub['inference_job']['id']}/"
    # the stand-in runs the uploaded model with onnxruntime: the phone's outputs are this host's
    assert figures.details["arm64_vs_host"] == {"top1_agreement": 1.0, "max_abs_diff": 0.0, "samples": 16,
                                                "device": f"qai-hub:{S24}"}
    assert [m for m in said if "submitted" in m] and jobs_posted(service) == 2
    inference = [j for j in service.submitted() if not j["profile"]][0]
    assert inference["device"] == S24 and inference["name"] == "ort-fp32"
    assert service.bad_tokens == 0


def test_bench_asks_for_speed_only(service, model):
    from edge_distill.pipeline import Timing, run_bench

    latency, memory, target = run_bench(model, timing=Timing(device=f"qai-hub:{S24}", device_tools=FAST))
    assert (latency.p50_ms, memory.peak_mb, target) == (0.4095, 3.1457, "ort")
    assert [j["profile"] for j in service.submitted()] == [True]  # no inference job: bench has no numerics


def test_a_rerun_asks_the_service_for_nothing(service, model):
    first, _, _ = measure(resolve(f"qai-hub:{S24}", FAST), model)
    calls = len(service.requests)
    again, _, said = measure(resolve(f"qai-hub:{S24}", FAST), model)
    new = service.requests[calls:]
    assert new == [("GET", "/api/v1/devices/")]  # choosing the phone; no upload, no job
    assert again.latency == first.latency and again.details == first.details
    assert sum("already finished (from the cache)" in m for m in said) == 2


def test_an_interrupted_job_is_resumed_by_its_id(service, model, tmp_path):
    service.scenario = "stall"
    with pytest.raises(CannotMeasure) as stalled:
        measure(resolve(f"qai-hub:{S24}", {"qai_hub": {"poll_s": 0.02, "timeout_s": 0.2}}), model)
    profile_id, inference_id = (next(j for j, r in service.jobs.items() if r["profile"] == on) for on in (True, False))
    assert str(stalled.value) == (
        f"device 'qai-hub:{S24}': profile job {profile_id} of ort-fp32 ({service.url}/jobs/{profile_id}/) did not "
        "finish in 0.2 s (last state MEASURING_PERFORMANCE)\n  hint: `check --resume` picks the job up again")
    service.scenario, posted = "ok", jobs_posted(service)
    figures, _, said = measure(resolve(f"qai-hub:{S24}", {"qai_hub": {**FAST["qai_hub"], "resume": True}}), model)
    assert {f"  ort-fp32: resuming profile job {profile_id} on qai-hub:{S24}",
            f"  ort-fp32: resuming inference job {inference_id} on qai-hub:{S24}"} <= set(said)
    assert jobs_posted(service) == posted == 2  # both picked up by their ids, none submitted again
    assert figures.details["qai_hub"]["profile_job"]["id"] == profile_id
    assert figures.details["qai_hub"]["inference_job"]["id"] == inference_id


def test_without_resume_an_unfinished_job_is_submitted_again(service, model):
    service.scenario = "stall"
    with pytest.raises(CannotMeasure):
        measure(resolve(f"qai-hub:{S24}", {"qai_hub": {"poll_s": 0.02, "timeout_s": 0.2}}), model)
    service.scenario, posted = "ok", jobs_posted(service)
    measure(resolve(f"qai-hub:{S24}", FAST), model)
    assert jobs_posted(service) == posted + 2


def test_artifacts_sent_ahead_run_side_by_side_under_the_bound(service, model, tmp_path):
    device = resolve(f"qai-hub:{S24}", {"qai_hub": {"poll_s": 0.2, "concurrency": 3}})
    runner = get_target("ort").open_runner(model, 1, {})
    data = Dataset("test", {"x": np.random.RandomState(1).randn(4, 8).astype(np.float32)})
    paths = []
    for i in range(4):  # four artifacts (distinct bytes), two jobs each
        proto = onnx.load(model)
        proto.doc_string = f"copy {i}"
        onnx.save(proto, tmp_path / f"model.{i}.onnx")
        paths.append(tmp_path / f"model.{i}.onnx")
        device.start(paths[-1], data, f"ort-{i}", lambda message: None)
    for i, path in enumerate(paths):
        figures = device.measure(Job("ort", path, runner, data, RunSettings(device), f"ort-{i}"))
        assert figures.latency.p50_ms == 0.4095
    assert len(service.jobs) == 8 and service.most_open == 3  # side by side, never more than the bound


def test_a_failed_job_names_the_device_the_job_and_its_reason(service, model):
    service.scenario = "fail"
    with pytest.raises(CannotMeasure) as failed:
        measure(resolve(f"qai-hub:{S24}", FAST), model)
    assert failed.value.exit_code == 3
    job_id = next(j for j, r in service.jobs.items() if r["profile"])
    deadline = time.monotonic() + 10  # the inference job fails too, in its own thread
    while any(j["polls"] < 4 for j in service.jobs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert str(failed.value) == (f"device 'qai-hub:{S24}': profile job {job_id} of ort-fp32 "
                                 f"({service.url}/jobs/{job_id}/) failed: {PROFILE['failure_reason']}")
    service.scenario, posted = "ok", jobs_posted(service)  # a failed job is not resumed: submitted afresh
    measure(resolve(f"qai-hub:{S24}", {"qai_hub": {**FAST["qai_hub"], "resume": True}}), model)
    assert jobs_posted(service) == posted + 2


def test_an_unknown_device_lists_close_names(service):
    with pytest.raises(BadInput) as unknown:
        resolve("qai-hub:Samsung Galaxy S24", FAST)
    assert unknown.value.exit_code == 2
    assert str(unknown.value) == ("AI Hub has no device 'qai-hub:Samsung Galaxy S24'; close names: Samsung Galaxy S24 "
                                  "(Family), Samsung Galaxy S23 (Family)\n"
                                  "  hint: `qai-hub list-devices` lists them with their attributes")


def test_a_device_chosen_by_attributes(service):
    device = resolve("qai-hub", {"qai_hub": {"attributes": ["chipset:google-tensor-g3"]}})
    assert device.name == "qai-hub:Google Pixel 8"


def test_no_token_cannot_measure(service, tmp_path, monkeypatch):
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
    with pytest.raises(CannotMeasure) as missing:
        resolve(f"qai-hub:{S24}", FAST)
    assert str(missing.value) == (
        f"device 'qai-hub:{S24}' needs an AI Hub API token, and none is configured\n  hint: `qai-hub configure "
        f"--api_token ...` (writes {tmp_path / 'absent.ini'}; $QAIHUB_CLIENT_INI points elsewhere), or set "
        "$EDGE_DISTILL_QAI_HUB_TOKEN; never put it in the project's config")


def test_the_environments_token_wins_and_a_rejected_one_is_never_repeated(service, tmp_path, monkeypatch):
    ini = tmp_path / "client.ini"
    ini.write_text(ini.read_text().replace(TOKEN, "stale-token-0000"))
    with pytest.raises(BadInput) as rejected:
        resolve(f"qai-hub:{S24}", FAST)
    assert "stale-token-0000" not in str(rejected.value) and service.bad_tokens >= 1
    assert str(rejected.value).startswith(f"device 'qai-hub:{S24}': listing AI Hub's devices: ")
    monkeypatch.setenv("EDGE_DISTILL_QAI_HUB_TOKEN", TOKEN)
    assert resolve(f"qai-hub:{S24}", FAST).name == f"qai-hub:{S24}"


def test_the_config_refuses_a_token_without_repeating_it(tmp_path):
    config = tmp_path / "edge-distill.toml"
    config.write_text((EXAMPLE / "edge-distill.toml").read_text().replace(
        "runs = 300", f'runs = 300\n\n[measure.qai_hub]\ndevice = "{S24}"\napi_token = "{TOKEN}"'))
    with pytest.raises(BadInput) as refused:
        load_config(config)
    assert TOKEN not in str(refused.value)
    assert str(refused.value) == (f"{config}: [measure.qai_hub] holds an API token: the config is no place for it, and "
                                  "it is not read from there\n  hint: `qai-hub configure --api_token ...`, or "
                                  "$EDGE_DISTILL_QAI_HUB_TOKEN in CI")


def _config(example: Path, service) -> Path:
    return edit_config(example, targets=("ort",), precisions=["fp32", "int8"], replace={
        "warmup = 50\nruns = 300": f'warmup = 5\nruns = 20\n\n[measure.qai_hub]\npoll_s = 0.02\ntimeout_s = 60'})


def _every_file_written(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_check_on_an_ai_hub_phone_end_to_end(service, example, tmp_path):
    config, out = _config(example, service), tmp_path / "out"
    env = {"QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"), "EDGE_DISTILL_CACHE": str(tmp_path / "cache")}
    proc = run_cli("check", config, "--device", f"qai-hub:{S24}", "--out", out, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    for r in report["results"]:
        assert r["latency"]["provenance"]["device"] == f"qai-hub:{S24} (Android 14)"
        assert r["details"]["qai_hub"]["uploaded"] == f"model.{r['precision']}.onnx"  # not the .ort
        assert r["details"]["arm64_vs_host"]["samples"] == 16
        assert any("AI Hub does not take .ort files" in w for w in r["warnings"])
    markdown = (out / "report.md").read_text()
    assert f"Outputs of ort-int8 on qai-hub:{S24}: 16 samples run on the phone" in markdown
    assert (f"measured on qai-hub:{S24} (Android 14) (qualcomm-snapdragon-8gen3, threads as the runtime chooses, "
            "ONNX Runtime as AI Hub aihub-2026.11.0 runs it); AI Hub profile job ") in markdown
    assert len(service.jobs) == 4  # two artifacts, a profile and an inference job each
    written = _every_file_written(out, tmp_path / "cache")
    assert not [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert TOKEN not in proc.stdout + proc.stderr
    again = run_cli("check", config, "--device", f"qai-hub:{S24}", "--out", tmp_path / "again", env=env)
    assert again.returncode == 0 and len(service.jobs) == 4  # from the cache: no job submitted
    rerun = json.loads((tmp_path / "again" / "report.json").read_text())
    assert [r["latency"] for r in rerun["results"]] == [r["latency"] for r in report["results"]]


@pytest.mark.slow
def test_one_failed_job_fails_its_artifact_and_the_others_are_measured(service, example, tmp_path):
    service.fail_named = "ort-int8"
    config, out = _config(example, service), tmp_path / "out"
    env = {"QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"), "EDGE_DISTILL_CACHE": str(tmp_path / "cache")}
    proc = run_cli("check", config, "--device", f"qai-hub:{S24}", "--out", out, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    results = {r["name"]: r for r in json.loads((out / "report.json").read_text())["results"]}
    assert results["ort-fp32"]["latency"]["p50_ms"] == 0.4095 and results["ort-fp32"]["failure"] is None
    failure = results["ort-int8"]["failure"]
    assert failure["exit_code"] == 3
    assert f"device 'qai-hub:{S24}': " in failure["reason"] and "of ort-int8" in failure["reason"]
    assert failure["reason"].endswith(f"failed: {PROFILE['failure_reason']}")
    assert not [p for p in _every_file_written(out, tmp_path / "cache") if TOKEN.encode() in p.read_bytes()]


def test_devices_lists_ai_hub_with_or_without_a_token(service, tmp_path, monkeypatch):
    from edge_distill.devices import list_devices

    line = next(d for d in list_devices() if d.name == "qai-hub:NAME")
    assert (line.kind, line.ready, line.note) == ("measured", True,
                                                  "Qualcomm AI Hub's phones (`qai-hub list-devices` names them)")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent.ini"))
    line = next(d for d in list_devices() if d.name == "qai-hub:NAME")
    assert (line.ready, line.measures) == (False, [])
    assert line.note.endswith(": no API token (`qai-hub configure` or $EDGE_DISTILL_QAI_HUB_TOKEN)")


@pytest.mark.slow
def test_an_unreachable_service_cannot_measure(tmp_path, monkeypatch):
    """The client retries a refused connection for about 45 s (its urllib3 and backoff settings) first."""
    ini = tmp_path / "client.ini"
    ini.write_text(f"[api]\napi_token = {TOKEN}\napi_url = http://127.0.0.1:9\nweb_url = http://127.0.0.1:9\n")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    with pytest.raises(CannotMeasure) as unreachable:
        resolve(f"qai-hub:{S24}", FAST)
    assert str(unreachable.value) == (
        f"device 'qai-hub:{S24}': listing AI Hub's devices: InternalError: Internal API failure. Could not connect "
        "to Qualcomm AI Hub. Please visit http://127.0.0.1:9 to check the service's status.")


@pytest.mark.slow
def test_check_resume_picks_up_the_jobs_an_interrupted_run_left(service, example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32"], replace={
        "warmup = 50\nruns = 300": "warmup = 5\nruns = 20\n\n[measure.qai_hub]\npoll_s = 0.02\ntimeout_s = 1"})
    env = {"QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"), "EDGE_DISTILL_CACHE": str(tmp_path / "cache")}
    service.scenario = "stall"
    stalled = run_cli("check", config, "--device", f"qai-hub:{S24}", "--out", tmp_path / "first", env=env)
    assert stalled.returncode == 3, stalled.stdout + stalled.stderr
    assert "did not finish in 1 s (last state" in (tmp_path / "first" / "report.json").read_text()
    service.scenario, jobs = "ok", dict(service.jobs)
    resumed = run_cli("check", config, "--device", f"qai-hub:{S24}", "--out", tmp_path / "second", "--resume",
                      env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert service.jobs.keys() == jobs.keys()  # no job submitted again
    assert all(f"resuming {kind} job" in resumed.stderr for kind in ("profile", "inference"))


@pytest.mark.slow
def test_verify_a_tflite_artifact_on_an_ai_hub_phone_and_record_it(service, example, tmp_path):
    built = run_cli("export", "fmnist_models:student", "--weights", "student.safetensors", "--config",
                    "edge-distill.toml", "--target", "tflite-fp32", "--data", "eval.npz", "--out", tmp_path / "built",
                    cwd=example)
    assert built.returncode == 0, built.stderr
    env = {"QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"), "EDGE_DISTILL_CACHE": str(tmp_path / "cache")}
    proc = run_cli("verify", tmp_path / "built" / "tflite" / "model.fp32.tflite", "--data", example / "eval.npz",
                   "--device", f"qai-hub:{S24}", "--history", tmp_path / "results.db", "--out", tmp_path / "out",
                   env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert result["latency"]["provenance"]["runtime"] == "TensorFlow Lite"
    assert result["details"]["qai_hub"]["uploaded"] == "model.fp32.tflite"
    assert sum(result["details"]["compute_units"]["counts"].values()) == len(result["details"]["compute_units"]["layers"])
    # LiteRT on the stand-in and on this host: the same kernels, the same outputs
    assert result["details"]["arm64_vs_host"] == {"top1_agreement": 1.0, "max_abs_diff": 0.0, "samples": 16,
                                                  "device": f"qai-hub:{S24}"}
    written = _every_file_written(tmp_path / "out", tmp_path / "cache") + [tmp_path / "results.db"]
    assert not [p for p in written if TOKEN.encode() in p.read_bytes()] and TOKEN not in proc.stdout + proc.stderr
