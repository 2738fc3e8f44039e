"""edge-distill's int8 against the runtime's own default on a published model (benchmarks/published_corpus.py,
`against_runtime_default`): Silero VAD, stateful, so static int8 is refused by design and int8-dynamic is
compared with onnxruntime's `quantize_dynamic` defaults. Every figure is computed again here, streaming the
files chunk by chunk with onnxruntime, never through edge_distill."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import published_corpus as corpus  # noqa: E402
from test_streaming import stream_by_hand  # noqa: E402

pytestmark = pytest.mark.slow  # a check of three precisions, then the runtime's own quantizer


def test_silero_int8_dynamic_is_no_larger_and_no_worse_than_onnxruntimes_default(tmp_path, monkeypatch):
    from onnxruntime.quantization import quantize_dynamic

    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(tmp_path / "cache"))
    entry = corpus.BY_NAME["silero-vad"]
    folder = tmp_path / "cell"
    config = corpus.prepare(entry, "ort", folder)
    proc = run_cli("check", config, "--out", folder / "out")
    report = json.loads((folder / "out" / "report.json").read_text())
    results = {r["precision"]: r for r in report["results"]}
    refused = results["int8"]["failure"]["reason"]
    # the limitation names the config line to write instead
    assert refused.endswith('hint: [[targets]] name = "ort": precisions = ["fp32", "int8-dynamic"]'), refused
    ours = folder / "out" / Path(results["int8-dynamic"]["artifact"]).with_suffix(".onnx")
    theirs = tmp_path / "default.onnx"
    quantize_dynamic(str(folder / "out" / "onnx" / "model.onnx"), str(theirs))
    inputs = np.load(folder / "eval.npz")["input"]
    reference = stream_by_hand(folder / "out" / "onnx" / "model.onnx", inputs)[0]
    error = {name: np.abs(stream_by_hand(path, inputs)[0] - reference).max() for name, path in
             (("ours", ours), ("theirs", theirs))}
    assert results["int8-dynamic"]["outputs"]["output"]["max_abs_error"] == pytest.approx(error["ours"], abs=1e-5)
    # quant_pre_process' optimizer copied 1 MB of weights into the If branches, left float: 1.27 MB before
    assert ours.stat().st_size <= theirs.stat().st_size * 1.01
    assert error["ours"] <= error["theirs"] + 1e-6
    row = corpus.against_runtime_default(entry, "ort", folder, report)
    assert (row["precision"], row["figure"]) == ("int8-dynamic", "max abs error")
    assert row["ours"] == pytest.approx(error["ours"], abs=1e-9) and row["theirs"] == pytest.approx(error["theirs"],
                                                                                                    abs=1e-9)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # int8-dynamic breaks its 0.05 budget: both recipes do
