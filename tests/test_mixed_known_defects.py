"""Defects found in toolkit/mixed.py and not fixed yet (its mutation score is keyed by its sha256):
each test states the right outcome and is marked xfail(strict=True), so that the fix turns it into a
failure that asks for the mark to go. Kept out of mixed's mutation tests (benchmarks/mutation-modules.toml)."""

from __future__ import annotations

import pytest

from edge_distill.metrics import Metrics
from edge_distill.mixed import search
from edge_distill.result import Check, Memory, TargetResult
from edge_distill.targets import Layer


def _failing(raised: dict) -> TargetResult:
    check = Check("ort-int4/accuracy", "accuracy", ">=", 0.75, 0.70, "", False)
    return TargetResult("student", "ort", "int4", "a", [], 1, "0" * 64, None, Memory(None, None, "measured"), None,
                        Metrics(samples=10, accuracy=0.70), {}, checks=[check])


@pytest.mark.xfail(strict=True, reason="search reports 'every layer tried' when the trial budget let it try no layer")
def test_a_search_whose_budget_ends_before_any_layer_says_the_trials_ran_out():
    # max_trials=1: the full precision's trial spends it; no layer is measured or raised, so the search
    # ended on its trial budget, not after trying every layer.
    _, state = search("int4", _failing, lambda full: [Layer("a", "Gemm", 10), Layer("b", "Gemm", 10)], max_trials=1)
    assert state.layers == [] and state.trials == 1
    assert state.stopped == "trials"
