"""A fast subset of the support matrix (benchmarks/support_matrix.py runs all of it into
docs/support.md): each cell is a pass or a documented limitation (exit 2), never an internal error,
and says the same as the committed table."""

from __future__ import annotations

import re

import pytest

import zoo
from conftest import ROOT

SUBSET = [  # architectures and forms the examples do not have; the exit code docs/support.md says
    ("mobilenet-se", "pt2-dynamic", "tflite", 0),
    ("resnet", "onnx-fixed", "ort", 0),
    ("gru", "onnx-dynamic", "ort", 0),
    ("masked-encoder", "factory", "ort", 0),
    ("two-heads", "pt2-fixed", "coreml", 0),
    ("segmenter", "onnx-dynamic", "tflite", 2),  # LiteRT converts from torch, not from ONNX
    ("causal-decoder", "pt2-fixed", "ort", 0),
]

def _committed(model: str, form: str, target: str) -> str | None:
    table = (ROOT / "docs" / "support.md").read_text()
    row = re.search(rf"^\| {re.escape(model)} \| {re.escape(form)} \|(.*)\|$", table, re.MULTILINE)
    if row is None:
        return None
    return row.group(1).split(" | ")[list(zoo.TARGETS).index(target)].strip()


@pytest.mark.slow
@pytest.mark.parametrize("model, form, target, code", SUBSET)
def test_a_cell_is_a_pass_or_a_documented_limitation(tmp_path, model, form, target, code):
    (cell,) = zoo.run(model, form, {target: zoo.TARGETS[target]}, tmp_path)
    # The zoo's configs carry no budget: 0 (every precision built and measured) or 2 (a documented
    # limitation); 1 would be a check broken with no budget given, 3 an internal error.
    assert cell.code == code, cell.text
    committed = _committed(model, form, target)
    assert committed is not None, f"docs/support.md has no row {model} / {form}: run benchmarks/support_matrix.py"
    assert committed.startswith("limitation") == (code == 2), (committed, cell.text)
    if code == 0:
        precisions = [part.split()[0] for part in cell.text.removeprefix("pass: ").split(", ")]
        assert precisions == zoo.TARGETS[target]
    else:  # the limitation the table documents, word for word (the table drops the work folder)
        assert committed == "limitation: " + cell.text.removeprefix("error: ").replace(f"{tmp_path}/", "")
