"""Published models from public packages (weights not trained here) through `check`, each figure the
tool reports computed again here from the artifacts it wrote."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import numpy as np
import pytest

from conftest import run_cli
from test_kinds import ctc_by_hand, edit_distance

WORDS = ["hello", "world", "edge", "distill", "model", "phone", "budget", "quantize", "latency", "2026", "slice"]


def text_lines(n: int) -> np.ndarray:
    """Lines of words drawn with Pillow's scalable default font, normalised as PaddleOCR's recognizer
    takes them: [n, 3, 48, 320], (pixel / 255 - 0.5) / 0.5."""
    from PIL import Image, ImageDraw, ImageFont

    rng, font, lines = np.random.default_rng(0), ImageFont.load_default(size=28), []
    for _ in range(n):
        image = Image.new("RGB", (320, 48), tuple(int(v) for v in rng.integers(180, 256, 3)))
        ImageDraw.Draw(image).text((int(rng.integers(2, 20)), int(rng.integers(4, 12))),
                                   " ".join(rng.choice(WORDS, int(rng.integers(1, 3)))),
                                   fill=tuple(int(v) for v in rng.integers(0, 80, 3)), font=font)
        lines.append(((np.asarray(image, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(lines)


def cer_by_hand(artifact, reference, x) -> float:
    import onnxruntime as ort

    paths = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].argmax(-1)
             for p in (artifact, reference)]
    pairs = [(ctc_by_hand(list(r)), ctc_by_hand(list(h))) for h, r in zip(*paths)]
    return sum(edit_distance(r, h) for r, h in pairs if r) / sum(len(r) for r, _ in pairs if r)


@pytest.mark.slow
def test_a_published_text_recognizer_at_opset_12_with_constant_weights_is_judged_by_its_cer(tmp_path):
    model = resources.files("rapidocr_onnxruntime") / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    shutil.copyfile(model, tmp_path / "rec.onnx")
    x = text_lines(32)
    np.savez(tmp_path / "eval.npz", x=x)
    (tmp_path / "edge-distill.toml").write_text(
        '[model]\nstudent = "rec.onnx"\n[[model.inputs]]\nname = "x"\nshape = ["batch", 3, 48, 320]\n'
        '[data]\nevaluation = "eval.npz"\ncalibration = "eval.npz"\n[measure]\nruns = 20\nwarmup = 2\n'
        '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8"]\n'
        '[budgets.outputs."softmax_11.tmp_0"]\nmax_cer = 0.05\n')
    proc = run_cli("check", tmp_path / "edge-distill.toml", "--out", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    exporter = report["export"]["exporter"]
    assert "420 Constant nodes moved to initializers" in exporter and "opset 12 converted to 13" in exporter
    fp32, int8 = report["results"]
    assert int8["failure"] is None  # int8 crashed on opset 12 (DequantizeLinear has no axis there)
    text = int8["outputs"]["softmax_11.tmp_0"]
    assert text["kind"] == "sequence" and text["inferred"] is True and text["shape"] == [40, 6625]
    assert fp32["outputs"]["softmax_11.tmp_0"]["cer"] == 0
    out = tmp_path / "out"
    assert text["cer"] == pytest.approx(cer_by_hand(out / int8["artifact"], out / "onnx" / "model.onnx", x), abs=1e-5)
    assert (proc.returncode == 1) is (text["cer"] > 0.05), proc.stdout + proc.stderr
    assert 'set [model.outputs."softmax_11.tmp_0"] kind' in proc.stdout  # the line that settles the reading
