"""Shared fixtures. Everything runs the real exporter, quantizer and onnxruntime on the
bundled Fashion-MNIST example; nothing is mocked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every test computes its exports and reference outputs afresh (a test that breaks the exporter must see it
# break); tests/test_cache.py turns the cache on, in a folder of its own.
os.environ["EDGE_DISTILL_NO_CACHE"] = "1"
EXAMPLE = ROOT / "examples" / "fashion-mnist"


def run_cli(*args, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed CLI in a child process, as a user or CI would run it (`env` adds variables)."""
    return subprocess.run([sys.executable, "-m", "edge_distill", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=cwd, timeout=900, env={**os.environ, **(env or {})})


@pytest.fixture
def cache_on(tmp_path, monkeypatch) -> Path:
    """The cache turned on (the suite runs with it off), in a folder of this test's own."""
    home = tmp_path / "cache-home"
    monkeypatch.setenv("EDGE_DISTILL_NO_CACHE", "0")
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(home))
    return home / "reuse"


@pytest.fixture
def example(tmp_path) -> Path:
    """A private copy of the example folder, free to edit."""
    dst = tmp_path / "example"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def edit_config(folder: Path, *, precisions=None, budgets: str | None = None, replace: dict | None = None,
                targets: tuple[str, ...] = ("ort", "tflite")) -> Path:
    """Rewrite the example's edge-distill.toml: keep only `targets`, set their precisions,
    replace the [budgets] section, or replace raw text."""
    path = folder / "edge-distill.toml"
    text = path.read_text()
    head, *blocks = text.split("[[targets]]")
    last = blocks[-1]
    tail = last[last.index("[budgets]"):]
    blocks[-1] = last[: last.index("[budgets]")]
    kept = [b for b in blocks if re.search(r'name = "(\w+)"', b).group(1) in targets]
    if precisions is not None:
        kept = [re.sub(r"precisions = \[.*\]", "precisions = " + json.dumps(precisions), b) for b in kept]
    text = head + "".join("[[targets]]" + b for b in kept) + (budgets if budgets is not None else tail)
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`edge-distill demo` once per session; its artifacts serve several tests."""
    out = tmp_path_factory.mktemp("demo") / "out"
    return run_cli("demo", "--out", out), out


@pytest.fixture(scope="session")
def coreml_run(tmp_path_factory):
    """`edge-distill check examples/fashion-mnist/coreml.toml` once per session."""
    out = tmp_path_factory.mktemp("coreml") / "out"
    proc = run_cli("check", EXAMPLE / "coreml.toml", "--out", out)
    return proc, out, (json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None)


def needs_service(available: bool, what: str) -> None:
    """Skip where a service from Debian's packages is missing on a developer's machine; under CI
    (`.ci/run` installs and starts them, CI=true) its absence fails the test instead."""
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing under CI: .ci/services start provides it")
        pytest.skip(f"{what} is not here (.ci/services start installs and starts it)")


@pytest.fixture
def postgres_url():
    """A fresh database on the PostgreSQL server `.ci/services start` runs ($EDGE_DISTILL_TEST_POSTGRES),
    dropped afterwards."""
    server = os.environ.get("EDGE_DISTILL_TEST_POSTGRES")
    needs_service(bool(server), "a PostgreSQL server ($EDGE_DISTILL_TEST_POSTGRES)")
    import uuid

    import psycopg

    name = f"edge_distill_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # this machine's closed network refuses the rest


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    needs_service(Path(CHROMIUM).exists(), "Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()
