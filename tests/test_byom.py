"""Bring your own model: what people save goes through. A small CNN, trained for a few seconds on
synthetic data whose label depends on the input (which quadrant is brightest), so that its outputs
mean something, saved as `torch.export.export(model, example_inputs)` writes it by default: with a
fixed batch. The .pt2 goes through `check` on all three targets, the .onnx through ORT; figures are
computed at the model's own batch (the last chunk padded, the padding dropped)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from conftest import run_cli

BATCH = 4


class QuadrantNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16 * 8 * 8, 4)

    def forward(self, image):
        x = torch.relu(self.conv1(image))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def _quadrant_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, 16, 16), np.float32) * 0.5
    labels = rng.integers(0, 4, n)
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        images[i, 0, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 0.5
    return images, labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The trained net as a fixed-batch .pt2 and .onnx, with evaluation data."""
    folder = tmp_path_factory.mktemp("byom")
    torch.manual_seed(0)
    net = QuadrantNet()
    images, labels = _quadrant_data(512, 0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(150):  # a fixed step count: the same model on every machine
        index = np.arange(step * 32, step * 32 + 32) % len(images)
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(images[index])), torch.from_numpy(labels[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    example = (torch.from_numpy(images[:BATCH]),)
    torch.export.save(torch.export.export(net, example), str(folder / "net.pt2"))  # fixed batch, the default
    torch.onnx.export(net, example, str(folder / "net.onnx"), input_names=["image"], output_names=["logits"],
                      dynamo=False)
    eval_images, eval_labels = _quadrant_data(90, 1)  # 90: not a multiple of the batch
    np.savez(folder / "eval.npz", image=eval_images, labels=eval_labels)
    return folder


def _config(folder, student: str, targets: str) -> str:
    path = folder / f"{student}.toml"
    path.write_text(textwrap.dedent(f"""\
        [model]
        student = "{student}"
        [data]
        evaluation = "eval.npz"
        calibration = "eval.npz"
        [measure]
        runs = 20
        warmup = 2
        """) + targets + "[budgets]\nmin_accuracy = 0.8\nmin_float_agreement = 0.9\n")
    return path


def test_a_fixed_batch_pt2_goes_through_every_target(saved, tmp_path):
    config = _config(saved, "net.pt2", '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8"]\n'
                                       '[[targets]]\nname = "tflite"\nprecisions = ["fp32", "int8"]\n'
                                       '[[targets]]\nname = "coreml"\nprecisions = ["fp16", "int8"]\n')
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["student"]["inputs"][0]["shape"] == [BATCH, 1, 16, 16]
    float_accuracy = report["references"]["float student"]["overall"]["accuracy"]
    assert float_accuracy > 0.9  # trained: its outputs depend on its inputs
    for r in report["results"]:
        assert r["metrics"]["samples"] == 90  # every sample, the padding of the last batch dropped
        assert r["metrics"]["float_agreement"] >= 0.9, r["name"]
        if r["latency"]:
            assert r["latency"]["batch"] == BATCH and "the model's fixed batch" in r["latency"]["provenance"]["method"]


def test_a_fixed_batch_onnx_goes_through_ort_with_its_coverage(saved, tmp_path):
    config = _config(saved, "net.onnx", '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8", "int4"]\n')
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["precision"]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["results"]}
    assert results["fp32"]["metrics"]["float_agreement"] == 1.0 and results["fp32"]["coverage"] is None
    # static int8 quantizes every conv and the linear layer; int4 (MatMulNBits) only the linear layer:
    # 4,096 of 5,320 weights, but 4,096 of 96,256 multiply-accumulates.
    assert results["int8"]["coverage"]["quantized_weight_fraction"] == 1.0
    int4 = results["int4"]["coverage"]
    assert int4["quantized_weights"] == 4096 and int4["float_weights"] == 72 + 1152
    assert int4["quantized_mac_fraction"] == pytest.approx(4096 / (16 * 16 * 72 + 8 * 8 * 1152 + 4096), abs=1e-4)
    assert any("only 4% of its multiply-accumulates" in w for w in results["int4"]["warnings"])
    assert "int8/4 wts" in proc.stdout and "77%" in proc.stdout  # the table shows the share


class KeywordGRU(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(8, 32, batch_first=True)
        self.fc = torch.nn.Linear(32, 4)

    def forward(self, frames):
        out, _ = self.gru(frames)
        return self.fc(out[:, -1])


def _keyword_data(n: int, seed: int):
    """20 frames of 8 features; the keyword is the feature channel among the first 4 that is loudest."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    frames = rng.random((n, 20, 8), np.float32) * 0.5
    frames[np.arange(n), :, labels] += 0.5
    return frames, labels


def test_a_recurrent_model_that_int8_barely_quantizes_is_reported(tmp_path):
    """ORT keeps GRU weights in float in every int8 recipe: 97% of this model's weights. The report
    says so, and a min_quantized_fraction budget breaks on it."""
    torch.manual_seed(0)
    net = KeywordGRU()
    frames, labels = _keyword_data(256, 0)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(60):
        index = np.arange(step * 32, step * 32 + 32) % len(frames)
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(frames[index])), torch.from_numpy(labels[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.export.save(torch.export.export(net.eval(), (torch.from_numpy(frames[:BATCH]),)), str(tmp_path / "kws.pt2"))
    eval_frames, eval_labels = _keyword_data(64, 1)
    np.savez(tmp_path / "eval.npz", frames=eval_frames, labels=eval_labels)
    config = _config(tmp_path, "kws.pt2", '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8", "int8-dynamic"]\n')
    config.write_text(config.read_text().replace("min_accuracy = 0.8\nmin_float_agreement = 0.9\n",
                                                 "min_quantized_fraction = 0.5\n"))
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["references"]["float student"]["overall"]["accuracy"] > 0.9  # trained
    for r in report["results"][1:]:
        assert r["coverage"]["by_op"]["GRU"] == {"quantized": 0, "float": 3 * 32 * (8 + 32)}
        assert any("stores only 3% of its weights in int8/int4" in w for w in r["warnings"]), r["warnings"]
        (check,) = [c for c in r["checks"] if c["metric"] == "quantized_fraction"]
        assert check["passed"] is False and check["value"] == pytest.approx(128 / (128 + 3840), abs=1e-4)
    assert [c["name"] for c in report["results"][0]["checks"]] == []  # fp32: nothing to quantize, no check
