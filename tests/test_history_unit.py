"""The results store on SQLite, fast: where it is, what a run records, how runs are filtered, and which
run a `--baseline` names (a run id, or the newest passing run of the same command on the same model,
on a branch if given). The same store on PostgreSQL and the CLI are in tests/test_history.py.
The mutation run of toolkit/history.py runs this file once per mutant."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_distill.errors import BadInput
from edge_distill.history import Store, figures_of_report, resolve_baseline, store_url

BRANCH_VARS = ("EDGE_DISTILL_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME",
               "EDGE_DISTILL_COMMIT", "GITHUB_SHA", "CI_COMMIT_SHA", "EDGE_DISTILL_HISTORY")


@pytest.fixture(autouse=True)
def _no_ci_env(monkeypatch):
    for name in BRANCH_VARS:
        monkeypatch.delenv(name, raising=False)


def _report(model="pkg:student", passed=True, command="check", p50=1.0, targets=("ort", "tflite")) -> str:
    results = [{"name": f"{t}-int8", "target": t, "size_bytes": 1000, "latency": {"p50_ms": p50, "p95_ms": 2.0},
                "memory": {"peak_mb": None}, "metrics": {"samples": 10, "accuracy": 0.9}, "slices": {}} for t in targets]
    return json.dumps({"command": command, "student": {"reference": model, "fingerprint": "ab" * 32},
                       "teacher": {"fingerprint": "cd" * 32}, "config": "c.toml", "exit_code": 0 if passed else 1,
                       "passed": passed, "results": results})


@pytest.fixture
def store(tmp_path):
    s = Store(store_url(str(tmp_path / "runs.db")))
    yield s
    s.close()


# -- where the store is ---------------------------------------------------------------------------------

def test_store_url_from_option_config_or_environment(tmp_path, monkeypatch):
    assert store_url() is None
    monkeypatch.chdir(tmp_path)
    # a relative path in the config is the config's folder's; on the command line, the working folder's
    assert store_url(None, "runs.db", Path("/cfg")) == "sqlite:////cfg/runs.db"
    assert store_url("runs.db", "other.db", Path("/cfg")) == f"sqlite:///{tmp_path / 'runs.db'}"
    assert store_url(None, "runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("EDGE_DISTILL_HISTORY", "env.db")
    assert store_url() == f"sqlite:///{tmp_path / 'env.db'}"
    assert store_url(None, None, Path("/cfg")) == f"sqlite:///{tmp_path / 'env.db'}"  # not the config's
    assert store_url(None, "/abs/runs.db") == "sqlite:////abs/runs.db"
    assert store_url("~/r.db") == f"sqlite:///{Path(os.path.expanduser('~')) / 'r.db'}"


@pytest.mark.parametrize("given, url", [
    ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ("postgres://h/db", "postgresql+psycopg://h/db"),
    ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_store_url_of_a_url(given, url):
    assert store_url(given) == url


def test_store_url_of_another_database_is_refused():
    with pytest.raises(BadInput, match="results store 'mysql://h/db': use a file path, sqlite:///PATH or "):
        store_url("mysql://h/db")


# -- what a run records ------------------------------------------------------------------------------

def test_a_run_records_its_branch_commit_targets_and_folder(store, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_REF_NAME", "refs-name")
    monkeypatch.setenv("GITHUB_HEAD_REF", "head-ref")  # a pull request's branch wins over the ref name
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    run_id = store.record(_report(targets=("tflite", "ort", "tflite")), tmp_path / "out")
    (run,) = store.list()
    assert (run.id, run.command, run.model, run.targets, run.branch, run.commit, run.exit_code, run.passed,
            run.folder) == (run_id, "check", "pkg:student", "tflite,ort", "head-ref", "abc123", 0, True,
                            str(tmp_path / "out"))
    monkeypatch.setenv("EDGE_DISTILL_BRANCH", "mine")
    monkeypatch.setenv("EDGE_DISTILL_COMMIT", "def456")
    store.record(_report(passed=False), None)
    newest = store.list()[0]
    assert (newest.branch, newest.commit, newest.passed, newest.exit_code, newest.folder) == (
        "mine", "def456", False, 1, None)
    assert newest.recorded.endswith("+00:00") and "T" in newest.recorded


def test_figures_of_a_report_by_hand():
    data = {"results": [{"name": "a", "size_bytes": 10, "latency": {"p50_ms": 1.5, "p95_ms": None},
                         "memory": None, "metrics": {"samples": 5, "accuracy": 0.8, "flag": True, "note": "x"},
                         "slices": {"rare": {"accuracy": 0.5}}},
                        {"name": "b", "size_bytes": True, "latency": None, "memory": {"peak_mb": 3}}]}
    assert figures_of_report(data) == [
        {"artifact": "a", "figure": "size_bytes", "slice": None, "value": 10.0},
        {"artifact": "a", "figure": "latency.p50_ms", "slice": None, "value": 1.5},
        {"artifact": "a", "figure": "samples", "slice": None, "value": 5.0},
        {"artifact": "a", "figure": "accuracy", "slice": None, "value": 0.8},
        {"artifact": "a", "figure": "accuracy", "slice": "rare", "value": 0.5},
        {"artifact": "b", "figure": "memory.peak_mb", "slice": None, "value": 3.0}]


# -- filtering ----------------------------------------------------------------------------------------

def test_runs_are_filtered_by_model_target_verdict_command_and_date(store):
    a = store.record(_report(model="pkg:student", targets=("ort",)))
    b = store.record(_report(model="pkg:student_2", targets=("tflite", "coreml", "ort2")))
    c = store.record(_report(model="100%", passed=False, command="verify", targets=("coreml", "ort")))
    assert [r.id for r in store.list()] == [c, b, a]
    assert [r.id for r in store.list(limit=2)] == [c, b]
    assert [r.id for r in store.list(model="student")] == [b, a]
    assert [r.id for r in store.list(model_is="pkg:student")] == [a]
    assert [r.id for r in store.list(model="0%")] == [c]  # "%" is a letter here, not a wildcard
    assert [r.id for r in store.list(model="_2")] == [b]
    assert [r.id for r in store.list(target="ort")] == [c, a]  # not ort2
    assert [r.id for r in store.list(target="coreml")] == [c, b]  # first, middle
    assert [r.id for r in store.list(target="ort2")] == [b]  # last
    assert [r.id for r in store.list(passed=False)] == [c]
    assert [r.id for r in store.list(passed=True)] == [b, a]
    assert [r.id for r in store.list(command="verify")] == [c]
    assert [r.id for r in store.list(since="2000-01-01")] == [c, b, a]
    assert store.list(since="2999-01-01T00:00:00+00:00") == []
    with pytest.raises(BadInput, match="--since 'yesterday': give a date as YYYY-MM-DD"):
        store.list(since="yesterday")


def test_trend_is_one_models_last_runs_oldest_first(store):
    ids = [store.record(_report(p50=float(i))) for i in range(4)]
    store.record(_report(model="other", p50=99.0))
    p50 = [(t["id"], t["value"]) for t in store.trend("ort-int8", "pkg:student", limit=3)
           if t["figure"] == "latency.p50_ms"]
    assert p50 == [(ids[1], 1.0), (ids[2], 2.0), (ids[3], 3.0)]
    rows = store.trend("tflite-int8", "pkg:student", limit=1)
    assert {(r["id"], r["figure"], r["slice"], r["value"]) for r in rows} == {
        (ids[3], "size_bytes", None, 1000.0), (ids[3], "latency.p50_ms", None, 3.0),
        (ids[3], "latency.p95_ms", None, 2.0), (ids[3], "samples", None, 10.0), (ids[3], "accuracy", None, 0.9)}


# -- the baseline -------------------------------------------------------------------------------------

def test_latest_passing_is_the_newest_passing_run_of_the_same_command_and_model(store, monkeypatch):
    monkeypatch.setenv("EDGE_DISTILL_BRANCH", "main")
    old = store.record(_report(p50=1.0))
    newest_main = store.record(_report(p50=2.0))
    store.record(_report(p50=3.0, passed=False))  # newer, but failed
    store.record(_report(p50=4.0, command="verify"))  # newer, another command
    store.record(_report(p50=5.0, model="pkg:student_2"))  # newer, another model (a longer name)
    monkeypatch.setenv("EDGE_DISTILL_BRANCH", "feature")
    feature = store.record(_report(p50=6.0, model="pkg:student", passed=True, command="check"))
    data, folder, label = resolve_baseline(store, "latest-passing@main", "pkg:student")
    assert data["results"][0]["latency"]["p50_ms"] == 2.0 and folder is None
    recorded = store.list()[-2].recorded  # the second run's time
    assert label == f"run {newest_main} of {store.safe_url} ({recorded})"
    data, _, label = resolve_baseline(store, "latest-passing", "pkg:student")
    assert data["results"][0]["latency"]["p50_ms"] == 6.0 and label.startswith(f"run {feature} of ")
    data, _, label = resolve_baseline(store, "latest-passing", "pkg:student", command="verify")
    assert data["results"][0]["latency"]["p50_ms"] == 4.0
    data, _, label = resolve_baseline(store, str(old), "pkg:whatever")
    assert data["results"][0]["latency"]["p50_ms"] == 1.0 and label == f"run {old} of {store.safe_url}"


def test_no_baseline_to_be_had_is_bad_input(store):
    with pytest.raises(BadInput, match=r"^--baseline latest-passing: no results store is configured \(history = "):
        resolve_baseline(None, "latest-passing", "m")
    store.record(_report(passed=False))
    with pytest.raises(BadInput, match=r"^--baseline latest-passing: no passing run of pkg:student in sqlite:///"):
        resolve_baseline(store, "latest-passing", "pkg:student")
    with pytest.raises(BadInput, match="^--baseline latest-passing@dev: no passing run of pkg:student on branch dev "):
        resolve_baseline(store, "latest-passing@dev", "pkg:student")
    with pytest.raises(BadInput, match="^no run 7 in the results store sqlite:///"):
        resolve_baseline(store, "7", "pkg:student")


def test_a_file_that_is_no_database_is_bad_input(tmp_path):
    bad = tmp_path / "runs.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BadInput, match="cannot open the results store sqlite:///"):
        Store(store_url(str(bad)))
