"""A fast subset of the support matrix (benchmarks/support_matrix.py runs all of it into
docs/support.md): each cell is a pass or a documented limitation (exit 2), never an internal error,
and says the same as the committed table."""

from __future__ import annotations

import re

import pytest

import zoo
from conftest import ROOT

SUBSET = [  # architectures and forms the examples do not have
    ("mobilenet-se", "pt2-dynamic", "tflite"),
    ("resnet", "onnx-fixed", "ort"),
    ("gru", "onnx-dynamic", "ort"),
    ("masked-encoder", "factory", "ort"),
    ("two-heads", "pt2-fixed", "coreml"),
    ("segmenter", "onnx-dynamic", "tflite"),
    ("causal-decoder", "pt2-fixed", "ort"),
]


def _committed(model: str, form: str, target: str) -> str | None:
    table = (ROOT / "docs" / "support.md").read_text()
    row = re.search(rf"^\| {re.escape(model)} \| {re.escape(form)} \|(.*)\|$", table, re.MULTILINE)
    if row is None:
        return None
    return row.group(1).split(" | ")[list(zoo.TARGETS).index(target)].strip()


@pytest.mark.parametrize("model, form, target", SUBSET)
def test_a_cell_is_a_pass_or_a_documented_limitation(tmp_path, model, form, target):
    (cell,) = zoo.run(model, form, {target: zoo.TARGETS[target]}, tmp_path)
    assert cell.code != 3, cell.text  # an internal error is a bug, never a cell
    assert cell.code in (0, 1, 2), cell.text
    committed = _committed(model, form, target)
    assert committed is not None, f"docs/support.md has no row {model} / {form}: run benchmarks/support_matrix.py"
    assert committed.startswith("limitation") == (cell.code == 2), (committed, cell.text)
    if cell.code in (0, 1):
        precisions = [part.split()[0] for part in cell.text.removeprefix("pass: ").split(", ")]
        assert precisions == zoo.TARGETS[target]
