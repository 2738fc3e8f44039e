"""optimum: its task-aware ONNX exporter for sentence-transformers folders, and its ORT quantization
configurations as an `int8_recipe` of the ort target. A small BERT sentence encoder is written as a
sentence-transformers folder (offline: its own word-piece vocabulary, random weights; mean pooling
of token states makes its embeddings depend on the words)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow  # exports and quantizes a transformer end to end

pytest.importorskip("optimum.exporters.onnx", reason="needs pip install 'edge-distill[optimum]'")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A sentence-transformers folder, padded token ids to evaluate it on, and a config."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, models

    folder = tmp_path_factory.mktemp("optimum")
    bert = folder / "bert"
    bert.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(251)]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(bert)
    transformers.BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    modules = [models.Transformer(str(bert), max_seq_length=32), models.Pooling(32, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules).save(str(folder / "student"))
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 17, 64)
    mask = (np.arange(16)[None] < lengths[:, None]).astype(np.int64)  # padded samples: the mask matters
    ids = rng.integers(5, len(vocab), (64, 16)) * mask
    ids[:, 0] = 2
    np.savez(folder / "text.npz", input_ids=ids, attention_mask=mask)
    return folder


def _config(folder, precisions, recipe):
    path = folder / f"{recipe}.toml"
    path.write_text(f"""[model]
student = "student"
task = "embedding"
[data]
evaluation = "text.npz"
calibration = "text.npz"
[measure]
runs = 20
warmup = 2
[[targets]]
name = "ort"
precisions = {json.dumps(precisions)}
options = {{ int8_recipe = "{recipe}" }}
""")
    return path


def test_a_sentence_transformers_folder_exports_through_optimum_and_quantizes_with_its_arm64_config(encoder, tmp_path):
    proc = run_cli("check", _config(encoder, ["fp32", "int8-dynamic"], "optimum-arm64"), "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    export = report["export"]
    assert export["exporter"].startswith("optimum ") and "sentence_transformers" in export["exporter"]
    assert export["parity_max_abs_diff"] <= 1e-5  # against the torch encoder's pooled, normalized embedding
    int8 = next(r for r in report["results"] if r["precision"] == "int8-dynamic")
    assert int8["details"]["recipe"] == "optimum-arm64"
    assert "AutoQuantizationConfig.arm64(is_static=False)" in int8["details"]["quantization"]
    assert int8["metrics"]["float_cosine"] >= 0.98
    assert int8["coverage"]["quantized_weight_fraction"] >= 0.5
    assert "DynamicQuantizeLinear" in int8["details"]["ops"]  # optimum's dynamic recipe, in the graph


def test_static_int8_with_an_optimum_recipe_is_refused_naming_the_recipe(encoder, tmp_path):
    proc = run_cli("check", _config(encoder, ["int8"], "optimum-avx512-vnni"), "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # the artifact is refused; its row says why
    (result,) = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert "int8_recipe = 'optimum-avx512-vnni' builds int8-dynamic only" in result["failure"]["reason"]
    assert "int8_recipe = 'optimum-avx512-vnni' builds int8-dynamic only" in proc.stdout


def test_without_optimum_the_torch_exporter_is_used_and_the_report_says_why(encoder, tmp_path):
    """optimum made unimportable in the CLI's process: the export goes through torch, and says so."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['optimum'] = None\n")
    config = _config(encoder, ["fp32"], "onnxruntime")
    env = {"PYTHONPATH": str(blocker)}
    proc = run_cli("check", config, "--out", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exporter = json.loads((tmp_path / "out" / "report.json").read_text())["export"]["exporter"]
    assert exporter.startswith("torch.onnx.export (dynamo)")
    assert "optimum's exporter not used: optimum-onnx is not installed" in exporter
