"""`check --shard I/N` and `merge-reports`: the merged report of N shards is the unsharded run's, figure
for figure (timings aside), for N = 1, 2 and 3. The device is the AI Hub stand-in, whose latency and
memory are the same on every run (this host's timings would not be)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import edit_config, run_cli

sys.path.insert(0, str(Path(__file__).parent / "doubles"))
from qai_hub_standin import StandIn  # noqa: E402

from edge_distill.errors import BadInput  # noqa: E402
from edge_distill.shards import Shard  # noqa: E402

TOKEN = "aihub-tok-shards-5566778899"
DEVICE = "qai-hub:Samsung Galaxy S24 (Family)"


def _figures(report: dict) -> dict:
    """The report without what differs between two runs of the same cells: when, how long, and the .ort's bytes."""
    out = json.loads(json.dumps(report))
    out.pop("created")
    out["export"].pop("seconds")
    out["data"].pop("shard", None)
    for r in out["results"]:
        r.pop("build_seconds")
        r.pop("sha256")  # not a figure: an .ort file's bytes change layout from run to run (targets/ort/)
    return out


def test_a_shard_is_i_of_n():
    assert Shard.parse("2/3") == Shard(2, 3)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(BadInput) as refused:
            Shard.parse(bad)
        assert str(refused.value) == f"--shard {bad}: expected I/N with 1 <= I <= N (e.g. 2/3)"


@pytest.mark.slow
def test_merged_shards_equal_the_unsharded_run(example, tmp_path):
    # a size no artifact meets: every shard, the whole run and every merge break it (exit 1), each for its cells
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8", "int4"],
                         budgets="[budgets]\nmax_size_mb = 0.000001\n", replace={
                             "warmup = 50\nruns = 300": "warmup = 5\nruns = 20\n\n[measure.qai_hub]\npoll_s = 0.02"})
    with StandIn(TOKEN) as service:
        (tmp_path / "client.ini").write_text(f"[api]\napi_token = {TOKEN}\napi_url = {service.url}\n"
                                             f"web_url = {service.url}\n")
        env = {"QAIHUB_CLIENT_INI": str(tmp_path / "client.ini"), "EDGE_DISTILL_CACHE": str(tmp_path / "cache")}

        def check(out: str, *extra) -> int:
            proc = run_cli("check", config, "--device", DEVICE, "--out", tmp_path / out, "-q", *extra, env=env)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            return proc.returncode

        whole_code = check("whole")
        whole = json.loads((tmp_path / "whole" / "report.json").read_text())
        for total in (1, 2, 3):
            folders = [f"shard-{total}-{i}" for i in range(1, total + 1)]
            for i, folder in enumerate(folders, 1):
                check(folder, "--shard", f"{i}/{total}")
            merged = run_cli("merge-reports", tmp_path / f"merged-{total}", *[tmp_path / f for f in folders])
            assert merged.returncode == whole_code, merged.stdout + merged.stderr
            assert {p.name for p in (tmp_path / f"merged-{total}").iterdir()} >= {
                "report.json", "junit.xml", "report.md", "report.html"}
            report = json.loads((tmp_path / f"merged-{total}" / "report.json").read_text())
            assert _figures(report) == _figures(whole), total
        shard = json.loads((tmp_path / "shard-3-2" / "report.json").read_text())
        assert [r["name"] for r in shard["results"]] == ["ort-int8"]  # its fp32 ran only as the reference
        assert shard["data"]["shard"]["order"] == ["ort-fp32", "ort-int8", "ort-int4"]

    missing = run_cli("merge-reports", tmp_path / "m", tmp_path / "shard-3-1", tmp_path / "shard-3-3")
    assert (missing.returncode, missing.stderr) == (2, "error: merge-reports needs shards 1 to 3 once each: "
                                                       "missing 2\n")
    other = tmp_path / "shard-2-2" / "report.json"
    other.write_text(other.read_text().replace(whole["tool_version"], "0.0.1"))
    mixed = run_cli("merge-reports", tmp_path / "m", tmp_path / "shard-2-1", tmp_path / "shard-2-2")
    assert (mixed.returncode, mixed.stderr) == (
        2, f"error: {tmp_path / 'shard-2-2'} is a shard of another run than {tmp_path / 'shard-2-1'}: its edge-distill "
           f"version differs (0.0.1 against {whole['tool_version']})\n")
    unsharded = run_cli("merge-reports", tmp_path / "m", tmp_path / "whole")
    assert (unsharded.returncode, unsharded.stderr) == (
        2, f"error: {tmp_path / 'whole' / 'report.json'}: not a shard's report: `check --shard I/N` writes one\n")
