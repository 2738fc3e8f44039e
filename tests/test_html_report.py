"""report.html in a real headless Chromium: a recorded run compared with the latest passing one, a
broken budget visibly marked, every plot drawn, no console error, under 2 MB; a screenshot is kept
($EDGE_DISTILL_ARTIFACTS, which .ci/run keeps as CI's artifact folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import edit_config, run_cli

pytestmark = pytest.mark.slow  # runs check end to end and a real browser

PLOTS = {"plot-latency", "plot-budgets", "plot-slices", "plot-tradeoff", "plot-trend-ort-int8", "plot-trend-ort-fp32"}


def test_a_recorded_run_against_the_latest_passing_one_in_a_real_browser(example, tmp_path, browser):
    store = tmp_path / "runs.db"
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"], budgets="[budgets]\n"
                         "latency_p95_ms = 100\n[budgets.slices.high_risk]\nmin_accuracy = 0.7\n",
                         replace={"[model]": f'history = "{store}"\n\n[model]'})
    first = run_cli("check", config, "--out", tmp_path / "first")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"recorded as run 1 in sqlite:///{store}" in first.stderr

    # The same model, now with a high-risk slice budget it cannot hold, against the latest passing run.
    config.write_text(config.read_text().replace("min_accuracy = 0.7", "min_accuracy = 0.99"))
    second = run_cli("check", config, "--out", tmp_path / "second", "--baseline", "latest-passing", "--json")
    assert second.returncode == 1, second.stderr
    report = json.loads(second.stdout)  # stdout is the one JSON document; the store's note went to stderr
    assert "recorded as run 2" in second.stderr
    checks = {c["name"]: c for r in report["results"] for c in r["checks"]}
    assert checks["ort-int8/slice[high_risk]/min_accuracy"]["passed"] is False
    assert checks["ort-int8/regression/size"]["passed"] is True  # compared with run 1: the same artifact size

    listing = json.loads(run_cli("history", "--store", store, "--json").stdout)
    assert [(r["id"], r["passed"], r["exit_code"]) for r in listing] == [(2, False, 1), (1, True, 0)]
    shown = run_cli("history", "--store", store, "show", "1")
    assert shown.returncode == 0 and "PASSED: every budget holds" in shown.stdout

    page_file = tmp_path / "second" / "report.html"
    assert page_file.stat().st_size < 2_000_000
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
    page.goto(page_file.as_uri())
    assert errors == []
    plots = page.eval_on_selector_all("figure.plot", """figs => figs.map(f => {
        const svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
        return [f.id, box.width, box.height, svg ? svg.querySelectorAll('path, rect, use, text').length : 0]; })""")
    assert {p[0] for p in plots} >= PLOTS
    assert all(w > 200 and h > 150 and marks > 20 for _, w, h, marks in plots), plots
    assert page.inner_text("#verdict").startswith("FAILED: a budget is broken")
    assert page.eval_on_selector("#verdict", "e => getComputedStyle(e).backgroundColor") == "rgb(198, 40, 40)"
    broken = page.eval_on_selector_all("#checks tr.broken td:first-child", "tds => tds.map(t => t.innerText)")
    assert broken == ["ort-fp32/slice[high_risk]/min_accuracy", "ort-int8/slice[high_risk]/min_accuracy"]
    assert page.eval_on_selector("#checks tr.broken td", "e => getComputedStyle(e).color") == "rgb(183, 28, 28)"
    shots = Path(os.environ.get("EDGE_DISTILL_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=shots / "report-html.png", full_page=True)
    page.close()
    assert (shots / "report-html.png").stat().st_size > 50_000


def test_report_command_renders_an_existing_report(demo_run, tmp_path):
    _, out = demo_run
    copy = tmp_path / "report.json"
    shutil.copy(out / "report.json", copy)
    proc = run_cli("report", copy, "--html")
    assert proc.returncode == 0 and (tmp_path / "report.html").read_text().count("<figure class='plot'") >= 4
    table = run_cli("report", copy)
    assert table.stdout.strip().endswith("checks hold)") and "ort-int8" in table.stdout
    assert json.loads(run_cli("report", copy, "--json").stdout) == json.loads(copy.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    refused = run_cli("report", bad)
    assert refused.returncode == 2 and f"{bad}: not an edge-distill report" in refused.stderr
