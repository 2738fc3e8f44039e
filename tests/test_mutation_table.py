"""The mutation table in docs/testing.md never shows a stale score as current: each score it claims is
for the module's file as it is now (sha256), and the table is exactly what the results file renders
(benchmarks/mutation.py --render)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("mutation_bench", ROOT / "benchmarks" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutation  # its dataclasses look themselves up there
_spec.loader.exec_module(mutation)

DOC = ROOT / "docs" / "testing.md"


def _rows() -> list[list[str]]:
    block = DOC.read_text().split("<!-- mutation:start -->", 1)[1].split("<!-- mutation:end -->", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| module |")]
    assert rows, "docs/testing.md has no mutation table between its markers"
    return rows


def test_every_score_in_the_table_is_for_the_file_as_it_is_now():
    for row in _rows():
        path, killed, survived, score, scored_at = row[1].strip("`"), row[3], row[4], row[6], row[8]
        if not score.endswith("%"):
            assert score == "not yet scored" or re.fullmatch(r"stale since [0-9a-f]{12}", score), row
            continue
        shown = re.search(r"sha256 ([0-9a-f]{12})", scored_at).group(1)
        now = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
        assert now.startswith(shown), (f"{path} changed since its mutation score was taken ({shown}, now "
                                       f"{now[:12]}): run python benchmarks/mutation.py --render, then rescore it")
        k, s = int(killed), int(survived)
        assert float(score.rstrip("%")) == round(100 * k / (k + s), 1), row


def test_the_table_is_what_the_results_render():
    rendered = mutation.render_table(mutation.load_modules(), mutation.load_results())
    assert mutation.rendered_block(DOC.read_text()) == rendered, \
        "docs/testing.md's mutation table is not what benchmarks/mutation-results.json renders: " \
        "run python benchmarks/mutation.py --render"


def test_every_listed_module_has_a_row_and_a_file():
    modules = mutation.load_modules()
    files = [row[1].strip("`") for row in _rows()]
    assert files == [m.path for m in modules.values()]
    for path in files:
        assert (ROOT / path).is_file(), path


def test_a_changed_file_renders_as_stale_not_as_its_score():
    path = "toolkit/metrics.py"
    now = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
    module = {"m": mutation.Module("m", path, ("tests/test_metrics.py",), "why")}
    row = {"sha256": now, "date": "2026-12-05", "tests": ["tests/test_metrics.py"], "killed": 45, "survived": 5, "score": 0.9, "seconds": 61.0,
           "equivalent": [], "survivors": ["12 f core/NumberReplacer"]}
    current = mutation.render_table(module, {"m": row}).splitlines()[2]
    assert "| 45 | 5 | 0 | 90.0% | 61 s |" in current and f"sha256 {now[:12]}" in current
    older = "ab" * 32
    stale = mutation.render_table(module, {"m": {**row, "sha256": older}})
    assert stale.splitlines()[2].endswith(f"| – | – | – | stale since {older[:12]} | – | 2026-12-05 |")
    assert "%" not in stale and "core/NumberReplacer" not in stale  # neither the score nor its survivors
    assert "not yet scored" in mutation.render_table(module, {}).splitlines()[2]
