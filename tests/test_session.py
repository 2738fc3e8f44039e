"""The library's `check` (session.py) does what the CLI's does, with no CLI: the run recorded in the
results store, compared with a baseline the store resolves (latest-passing), the reports written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import edit_config

PLANTED_SIZE = 1000  # bytes: the planted baseline's artifact, far smaller than any real fp32 export


@pytest.mark.slow
def test_the_library_check_records_the_run_and_compares_with_the_stores_baseline(example, tmp_path):
    from edge_distill import Options, check, load_config
    from edge_distill.history import Store
    from edge_distill.pipeline import student_reference

    config = edit_config(example, precisions=["fp32"], targets=("ort",),
                         replace={"warmup = 50": "warmup = 5", "runs = 300": "runs = 20"})
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = Store(url)
    # A passing run of the same student recorded before this one, its artifact 1,000 bytes: the new
    # run's artifact grew against it, a size regression far beyond [budgets.regression]'s limit.
    planted = {"command": "check", "student": {"reference": student_reference(load_config(config))},
               "results": [{"name": "ort-fp32", "target": "ort", "size_bytes": PLANTED_SIZE}],
               "exit_code": 0, "passed": True}
    assert store.record(json.dumps(planted), tmp_path / "no-artifacts") == 1

    out = tmp_path / "out"
    outcome = check(config, out, Options(history=url, baseline="latest-passing"))

    assert (outcome.run_id, outcome.folder, outcome.exit_code) == (2, out, 1)
    (result,) = outcome.report.results
    (size_check,) = [c for c in result.checks if c.name == "ort-fp32/regression/size"]
    on_disk = (out / result.artifact).stat().st_size  # the artifact's file, read from the folder
    assert size_check.value == pytest.approx(on_disk / PLANTED_SIZE - 1, abs=1e-6)
    assert size_check.passed is False
    # every budget of the example but the planted regression holds: the exit code is the regression's
    assert [c.name for c in result.checks if c.passed is False] == ["ort-fp32/regression/size"]

    written = json.loads((out / "report.json").read_text())
    recorded, folder = store.report(2)
    assert written == recorded and Path(folder) == out.resolve()
    assert written["exit_code"] == 1
    assert "ort-fp32/regression/size" in [c["name"] for c in written["results"][0]["checks"]]
    assert {"report.json", "junit.xml", "report.md", "report.html"} <= {p.name for p in out.iterdir()}
    assert [(r.id, r.exit_code) for r in store.list()] == [(2, 1), (1, 0)]
