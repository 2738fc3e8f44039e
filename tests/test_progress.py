"""Progress: on a terminal a live display that is never silent, finished stages with their durations,
bars with ETAs; off a terminal plain timestamped lines without control characters; -q silent."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

import pytest

from conftest import edit_config, run_cli

from edge_distill import progress as progress_module
from edge_distill.progress import Progress


def _run_in_a_terminal(args: list[str], env: dict) -> tuple[list[tuple[float, bytes]], int | None]:
    """The CLI with a pseudo-terminal as its stdout and stderr: what it wrote, chunk by chunk, and when;
    and its exit code."""
    leader, follower = os.openpty()
    chunks = [(time.monotonic(), b"")]  # from the start: a slow start is silence too
    proc = subprocess.Popen([sys.executable, "-m", "edge_distill", *args], stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower, env={**os.environ, **env, "COLUMNS": "160"})
    os.close(follower)
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append((time.monotonic(), data))
    code = proc.wait(60)
    os.close(leader)
    return chunks, code


@pytest.mark.slow
def test_a_terminal_is_never_silent_and_shows_each_stage(example, tmp_path):
    config = edit_config(example, targets=("tflite",), precisions=["fp32", "int8"])
    chunks, code = _run_in_a_terminal(["check", str(config), "--out", str(tmp_path / "out")],
                                      {"EDGE_DISTILL_CACHE": str(tmp_path / "cache")})
    gaps = [b[0] - a[0] for a, b in zip(chunks, chunks[1:])]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(c for _, c in chunks).decode(errors="replace"))
    # The example's budgets hold for LiteRT fp32 and int8 (the demo passes them; margins in its toml).
    assert code == 0 and "PASSED: every budget holds" in text, text[-2000:]
    assert max(gaps) < 10, f"silent for {max(gaps):.1f} s"
    assert re.search(r"✓ building tflite-int8 \(\d+\.\d s\)", text)
    assert "tflite-int8: timing" in text and re.search(r"\d+/350 runs", text)  # the latency loop's bar
    assert "tflite-int8: evaluating" in text and "/2000 samples" in text


@pytest.mark.slow
def test_off_a_terminal_plain_lines_and_quiet_is_silent(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32"])
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(re.match(r"\[ *\d+\.\ds\] ", line) for line in lines), lines
    quiet = run_cli("check", config, "--out", tmp_path / "quiet", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_plain_loop_says_its_count_and_eta(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_EVERY_S", 0.0)
    progress = Progress(True, terminal=False)
    progress("evaluating")
    with progress.loop("ort-int8: evaluating", 10, "samples") as advance:
        for _ in range(4):
            advance(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("] evaluating")
    assert re.search(r"\]   ort-int8: evaluating: 2/10 samples, about \d+ s left$", lines[1])
    assert len(lines) == 5 and lines[-1].split("]   ")[1].startswith("ort-int8: evaluating: 8/10 samples")


def test_a_stage_remembers_how_long_it_took(tmp_path, monkeypatch):
    """The ETA of a stage that reports nothing: how long the same stage took for the same model before
    (the median of the last five: one cold start does not set it)."""
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(tmp_path))
    first = Progress(True, terminal=False)
    first.context = "student-hash"
    for seconds in (240.0, 96.04, 90.0, 101.0, 99.0, 95.0):  # the first of six falls out
        first._times.remember("student-hash", "building tflite-int8", seconds)
    first._times.remember("student-hash", "  ort-fp32: peak memory", 0.4)
    first.close()
    again = Progress(True, terminal=False)._times
    assert again.last("student-hash", "building tflite-int8") == 96.0
    assert again.last("other-model", "building tflite-int8") is None
    assert again.last("student-hash", "  ort-fp32: peak memory") is None  # under 5 s: no ETA worth showing


@pytest.mark.slow
def test_ctrl_c_exits_130_not_a_budget_verdict(tmp_path):
    """Ctrl-C reaches the run and its display process alike (one process group): the run exits 130 (never
    1, "a budget is broken"), leaves no output folder, and the display prints no traceback."""
    import signal

    leader, follower = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edge_distill", "check", "examples/fashion-mnist/edge-distill.toml",
                             "--out", str(tmp_path / "out")], stdin=follower, stdout=follower, stderr=follower,
                            start_new_session=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                            # a CI job started in the background inherits SIGINT ignored: give the run the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(follower)
    seen = b""
    while b"building" not in seen:  # well into the run, the display process started
        ready, _, _ = select.select([leader], [], [], 60)
        assert ready, seen[-500:]
        seen += os.read(leader, 65536)
    os.killpg(proc.pid, signal.SIGINT)
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        try:
            data = os.read(leader, 65536) if ready else b""
        except OSError:
            break
        if not data:
            break
        seen += data
    assert proc.wait(30) == 130
    text = seen.decode(errors="replace")
    assert "interrupted: the output folder is as it was before this run" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()
