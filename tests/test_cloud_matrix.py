"""A check on two AI Hub phones and two targets, interrupted by SIGTERM and resumed: `edge-distill check`
runs in a child process against the stand-in of the service (tests/doubles/qai_hub_standin.py, a test
double), which logs every job it is given; the resumed run submits only the jobs the interrupted one
never submitted, and its report is an uninterrupted run's, figure for figure (timings and job ids aside)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import edit_config, run_cli

sys.path.insert(0, str(Path(__file__).parent / "doubles"))
from qai_hub_standin import StandIn  # noqa: E402

TOKEN = "aihub-tok-matrix-31415926535"
S24, PIXEL = "Samsung Galaxy S24 (Family)", "Google Pixel 8"
CELLS = {(name, device) for name, device in (("ort-fp32", S24), ("ort-int8", S24), ("tflite-fp32", PIXEL),
                                              ("tflite-int8", PIXEL))}


def _config(example: Path) -> Path:
    """ort on one phone, tflite on another, fp32 and int8 each; at most 2 jobs at once per phone."""
    return edit_config(example, targets=("ort", "tflite"), precisions=["fp32", "int8"], replace={
        'name = "ort"\n': f'name = "ort"\ndevice = "qai-hub:{S24}"\n',
        'name = "tflite"\n': f'name = "tflite"\ndevice = "qai-hub:{PIXEL}"\n',
        "warmup = 50\nruns = 300": "warmup = 5\nruns = 20\n\n[measure.qai_hub]\npoll_s = 0.02\ntimeout_s = 120\n"
                                   "concurrency = 2"})


def _jobs(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def _figures(report: dict) -> dict:
    """The report without what differs between two runs of the same cells: when, how long, the .ort's
    bytes (their layout changes from run to run), and the service's job ids (in the ids, URLs and methods)."""
    out = json.loads(re.sub(r"\bj\d{7}\b", "<job>", json.dumps(report)))
    out.pop("created")
    out["export"].pop("seconds")
    for r in out["results"]:
        r.pop("build_seconds")
        r.pop("sha256")
    return out


@pytest.mark.slow
def test_two_phones_two_targets_sigterm_then_resume(example, tmp_path):
    config, log = _config(example), tmp_path / "jobs.jsonl"
    with StandIn(TOKEN, scenario="stall", log=log) as service:
        (tmp_path / "client.ini").write_text(f"[api]\napi_token = {TOKEN}\napi_url = {service.url}\n"
                                             f"web_url = {service.url}\n")

        def env(cache: str) -> dict:
            return {**os.environ, "QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"),
                    "EDGE_DISTILL_CACHE": str(tmp_path / cache)}

        out, store = tmp_path / "out", tmp_path / "results.db"
        command = [sys.executable, "-m", "edge_distill", "check", str(config), "--out", str(out), "--history",
                   str(store)]
        first = subprocess.Popen(command, env=env("cache"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600  # a guard only: the run is stopped when the stand-in logs its jobs
        while len(_jobs(log)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_jobs(log)) == 2, "the first run submitted no jobs"
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
        assert first.returncode == 128 + signal.SIGTERM, stdout + stderr
        assert "Traceback" not in stderr, stderr
        assert not out.exists()  # the output folder is as it was before the run: it did not exist
        interrupted = _jobs(log)
        assert len(interrupted) == 2  # the bound (2 at once on a phone) held the others back
        assert {(j["name"], j["device"]) for j in interrupted} < CELLS

        service.scenario = "ok"
        resumed = subprocess.run([*command, "--resume"], env=env("cache"), stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=900)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        after = _jobs(log)[len(interrupted):]
        submitted = lambda jobs: sorted((j["name"], j["device"], j["profile"]) for j in jobs)  # noqa: E731
        every = sorted((name, device, profile) for name, device in CELLS for profile in (True, False))
        # only the missing jobs: the 8 jobs of the matrix, less the 2 the interrupted run left, each once
        assert submitted(after) == sorted(set(every) - set(submitted(interrupted)))
        for job in interrupted:
            assert f"resuming {'profile' if job['profile'] else 'inference'} job {job['id']}" in resumed.stderr

        whole = run_cli("check", config, "--out", tmp_path / "whole", env=env("fresh-cache"))
        assert whole.returncode == 0, whole.stdout + whole.stderr
        assert submitted(_jobs(log)[len(interrupted) + len(after):]) == every
        assert service.bad_tokens == 0

    report = json.loads((out / "report.json").read_text())
    assert _figures(report) == _figures(json.loads((tmp_path / "whole" / "report.json").read_text()))
    rows = {r["name"]: r for r in report["results"]}
    assert rows.keys() == {name for name, _ in CELLS}
    for name, phone in CELLS:
        assert rows[name]["latency"]["provenance"]["device"] == f"qai-hub:{phone} (Android 14)"
        assert rows[name]["latency"]["provenance"]["kind"] == "measured"
        assert rows[name]["details"]["qai_hub"]["device"] == phone
        # the stand-in runs the uploaded file with this host's runtime: LiteRT's outputs are the host's to the
        # bit; ORT's are of the .onnx where the host ran the .ort (fused by ORT's optimizer), within 1e-5
        agreement = rows[name]["details"]["arm64_vs_host"]
        assert (agreement["top1_agreement"], agreement["samples"], agreement["device"]) == (1.0, 16, f"qai-hub:{phone}")
        assert agreement["max_abs_diff"] <= (0.0 if name.startswith("tflite") else 1e-5), agreement
    written = [p for folder in (out, tmp_path / "cache") for p in folder.rglob("*") if p.is_file()] + [store]
    assert len(written) > 10 and not [p for p in written if TOKEN.encode() in p.read_bytes()]
    assert TOKEN not in stdout + stderr + resumed.stdout + resumed.stderr
