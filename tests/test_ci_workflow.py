"""The ready CI workflows (examples/ci/): valid against the schemas GitHub and GitLab publish (as
check-jsonschema vendors them), and the GitHub workflow's own shell steps run here, twice, the second
time against the first as its baseline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLE, edit_config

CI = Path(__file__).parents[1] / "examples" / "ci"


def test_the_workflows_validate_against_their_schemas():
    for name, schema in (("github-actions.yml", "vendor.github-workflows"), ("gitlab-ci.yml", "vendor.gitlab-ci"),
                         ("gitlab-ci-sharded.yml", "vendor.gitlab-ci"),
                         ("github-actions-sharded.yml", "vendor.github-workflows")):
        proc = subprocess.run([Path(sys.executable).parent / "check-jsonschema", "--builtin-schema", schema, CI / name],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_github_workflows_shell_steps_run_and_compare_with_the_last_run(tmp_path):
    steps = yaml.safe_load((CI / "github-actions.yml").read_text())["jobs"]["budgets"]["steps"]
    local = {s["name"]: s["run"] for s in steps if "run" in s and not s["name"].startswith("Install")}
    assert set(local) == {"Check the budgets", "Summary"}
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    edit_config(repo, targets=("ort",), precisions=["fp32", "int8"])
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(step: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "-c", local[step]], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=900)

    first = run("Check the budgets")  # on main: no baseline yet
    assert first.returncode == 0, first.stdout + first.stderr
    assert "regression" not in (repo / "edge-distill-out" / "report.json").read_text()
    (repo / "edge-distill-out").rename(repo / "baseline")  # what the download step brings a pull request
    second = run("Check the budgets")
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((repo / "edge-distill-out" / "report.json").read_text())
    compared = {c["name"]: c for r in report["results"] for c in r["checks"] if "/regression/" in c["name"]}
    assert {"ort-int8/regression/size", "ort-int8/regression/latency.p50"} <= set(compared)
    assert "side by side with the baseline's artifact" in compared["ort-int8/regression/latency.p50"]["message"]
    assert run("Summary").returncode == 0 and summary.read_text().startswith("# edge-distill check")


def test_the_sharded_workflows_merge_what_their_matrix_runs():
    github = yaml.safe_load((CI / "github-actions-sharded.yml").read_text())
    shards = github["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    check = next(s["run"] for s in github["jobs"]["shard"]["steps"] if s.get("name") == "Check one shard")
    assert f'--shard "${{{{ matrix.shard }}}}/{len(shards)}"' in check and shards == list(range(1, len(shards) + 1))
    merge = next(s["run"] for s in github["jobs"]["budgets"]["steps"] if s.get("name") == "Merge the shards and gate")
    assert github["jobs"]["budgets"]["needs"] == "shard" and merge == "edge-distill merge-reports edge-distill-out shard-*"
    gitlab = yaml.safe_load((CI / "gitlab-ci-sharded.yml").read_text())
    assert gitlab["edge-distill-shard"]["parallel"] == 3 and "merge-reports" in gitlab["edge-distill"]["script"][-1]
