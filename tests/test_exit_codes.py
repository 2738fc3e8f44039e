"""The exit-code policy of a report whose artifacts were refused or not built, beside the checks of the
others: 1 (a budget broken) wins, then 2 (a target refused an artifact), then 3 (something could not be
measured), else 0. Fast: part of the mutation run of toolkit/result.py's exit-code policy."""

from __future__ import annotations

import pytest

from edge_distill.metrics import Metrics
from edge_distill.result import Check, Memory, Report, TargetResult


def _result(verdict=True, failure_code=None) -> TargetResult:
    checks = [Check("ort-int8/min_accuracy", "accuracy", ">=", 0.5, None if verdict is None else 0.6, "", verdict)]
    if failure_code is not None:  # as pipeline writes a row that was not built: one unmeasured "built" check
        checks = [Check("ort-int8/built", "built", "==", 1.0, None, "", None, message="refused: ...")]
    r = TargetResult("student", "ort", "int8", "a", [], 1, "ab" * 32, None, Memory(None, None), None, Metrics(1), {},
                     checks=checks)
    if failure_code is not None:
        r.failure = {"stage": "build", "exit_code": failure_code, "reason": "refused"}
    return r


def _report(*results) -> Report:
    return Report("check", "0", "", None, {}, None, {}, {}, None, {}, list(results))


@pytest.mark.parametrize("results, code", [
    ((_result(True), _result(failure_code=2)), 2),           # a refused artifact beside a passing one
    ((_result(True), _result(failure_code=3)), 3),           # a failure of another kind is not a refusal
    ((_result(False), _result(failure_code=2)), 1),          # a broken budget wins over a refusal
    ((_result(None), _result(failure_code=2)), 2),           # a refusal wins over an unmeasured figure
    ((_result(None), _result(failure_code=3)), 3),
    ((_result(True), _result(True)), 0),
])
def test_refused_artifacts_in_the_exit_code_lattice(results, code):
    report = _report(*results)
    assert report.exit_code == code
    assert report.passed is (code == 0)
