"""The results store: the same tests on SQLite and on a real PostgreSQL server, four concurrent
writers included, and the commands that read it (history, history show, --baseline latest-passing)."""

from __future__ import annotations

import json
import multiprocessing

import pytest
from conftest import run_cli

from edge_distill.errors import BadInput
from edge_distill.history import Store, resolve_baseline, store_url


def _report(model: str = "pkg:student", passed: bool = True, p50: float = 1.0, accuracy: float = 0.9) -> str:
    return json.dumps({
        "command": "check", "student": {"reference": model, "fingerprint": "ab" * 32}, "teacher": None,
        "config": "edge-distill.toml", "exit_code": 0 if passed else 1, "passed": passed,
        "results": [{"name": "ort-int8", "target": "ort", "size_bytes": 1000, "latency": {"p50_ms": p50, "p95_ms": p50 * 1.2},
                     "memory": {"peak_mb": 12.0}, "metrics": {"samples": 10, "accuracy": accuracy, "float_agreement": None},
                     "slices": {"high_risk": {"samples": 4, "accuracy": accuracy - 0.1}}},
                    {"name": "tflite-int8", "target": "tflite", "size_bytes": 900, "latency": None,
                     "memory": {"peak_mb": None}, "metrics": {"samples": 10, "accuracy": accuracy}, "slices": {}}]})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return store_url(str(tmp_path / "runs.db"))
    return store_url(request.getfixturevalue("postgres_url"))


def test_runs_are_recorded_listed_filtered_and_read_back(url, monkeypatch):
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    store = Store(url)
    first = store.record(_report(p50=1.0), None)
    monkeypatch.setenv("GITHUB_REF_NAME", "feature")
    second = store.record(_report(passed=False, p50=2.0), None)
    third = store.record(_report(model="other:model"), None)
    assert [r.id for r in store.list()] == [third, second, first]
    assert [r.id for r in store.list(model="student")] == [second, first]
    assert [r.id for r in store.list(target="tflite")] == [third, second, first]
    assert store.list(target="coreml") == [] and store.list(since="2999-01-01") == []
    assert [r.id for r in store.list(passed=True, branch="main")] == [first]
    assert store.report(second)[0]["results"][0]["latency"]["p50_ms"] == 2.0
    trend = [(t["id"], t["value"]) for t in store.trend("ort-int8", "pkg:student") if t["figure"] == "latency.p50_ms"]
    assert trend == [(first, 1.0), (second, 2.0)]
    slices = {t["slice"] for t in store.trend("ort-int8", "pkg:student") if t["figure"] == "accuracy"}
    assert slices == {None, "high_risk"}
    data, _, label = resolve_baseline(store, "latest-passing", "pkg:student")
    assert label.startswith(f"run {first} ") and data["results"][0]["latency"]["p50_ms"] == 1.0
    with pytest.raises(BadInput, match="no passing run of pkg:student on branch feature"):
        resolve_baseline(store, "latest-passing@feature", "pkg:student")
    with pytest.raises(BadInput, match="no run 99 in the results store"):
        store.report(99)
    store.close()


def _write_many(url: str, writer: int, count: int) -> None:
    store = Store(url)  # each writer opens (and migrates) the store itself, all at once
    for i in range(count):
        store.record(_report(p50=writer * 100 + i), None)
    store.close()


def test_four_concurrent_writers_lose_nothing(url):
    """Four processes open a store that does not exist yet and write 15 runs each at the same time."""
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write_many, args=(url, w, 15)) for w in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    store = Store(url)
    runs = store.list(limit=1000)
    assert len(runs) == 60 and len({r.id for r in runs}) == 60
    p50s = sorted(t["value"] for t in store.trend("ort-int8", "pkg:student", limit=1000)
                  if t["figure"] == "latency.p50_ms")
    assert p50s == sorted(float(w * 100 + i) for w in range(4) for i in range(15))
    store.close()


@pytest.mark.slow
def test_history_commands(tmp_path):
    db = tmp_path / "runs.db"
    store = Store(store_url(str(db)))
    run = store.record(_report(), tmp_path)
    store.close()
    listing = run_cli("history", "--store", db)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.split("\n")[0].split() == ["run", "recorded", "command", "model", "targets", "branch",
                                                     "commit", "verdict"]
    as_json = json.loads(run_cli("history", "--json", env={"EDGE_DISTILL_HISTORY": str(db)}).stdout)
    assert [(r["id"], r["model"], r["targets"], r["passed"]) for r in as_json] == [(run, "pkg:student", "ort,tflite", True)]
    missing = run_cli("history", "--store", db, "show", "7")
    assert missing.returncode == 2 and "no run 7 in the results store" in missing.stderr
    nowhere = run_cli("history", env={"EDGE_DISTILL_HISTORY": ""})
    assert nowhere.returncode == 2 and "no results store: pass --store" in nowhere.stderr
    bad = run_cli("history", "--store", "mysql://x")
    assert bad.returncode == 2 and "results store 'mysql://x': use a file path" in bad.stderr
