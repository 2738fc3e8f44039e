"""Bring your own model: what people save goes through. A small CNN, trained for a few seconds on
synthetic data whose label depends on the input (which quadrant is brightest), so that its outputs
mean something, saved as `torch.export.export(model, example_inputs)` writes it by default: with a
fixed batch. The .pt2 goes through `check` on all three targets, the .onnx through ORT; figures are
computed at the model's own batch (the last chunk padded, the padding dropped)."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from conftest import run_cli

pytestmark = pytest.mark.slow  # every test exports a model and runs check end to end

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
            lat = r["latency"]
            assert lat["batch"] == BATCH and "the model's fixed batch" in lat["provenance"]["method"]
            assert lat["per_sample_p95_ms"] == round(lat["p95_ms"] / BATCH, 4)
            assert f"{r['name']}: one run is the model's fixed batch of {BATCH} samples; per sample" in proc.stdout


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


@pytest.fixture
def keyword_gru(tmp_path):
    """A trained GRU keyword spotter, saved as a fixed-batch .pt2, with its evaluation data."""
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
    return tmp_path


def test_a_recurrent_model_that_int8_barely_quantizes_is_reported(keyword_gru, tmp_path):
    """ORT keeps GRU weights in float in every int8 recipe: 97% of this model's weights. The report
    says so, and a min_quantized_fraction budget breaks on it."""
    config = _config(keyword_gru, "kws.pt2", '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8", "int8-dynamic"]\n')
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


def test_a_quantizer_crash_falls_back_to_the_other_recipe_and_says_so(keyword_gru, tmp_path):
    """litert-torch's PT2E quantizer raises IndexError in its GRU annotation: ai-edge-quantizer's
    static recipe builds the int8 instead, and the report names the fallback and the error."""
    config = _config(keyword_gru, "kws.pt2", '[[targets]]\nname = "tflite"\nprecisions = ["fp32", "int8"]\n')
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every budget holds on the fallback artifact
    int8 = json.loads((tmp_path / "out" / "report.json").read_text())["results"][1]
    assert int8["details"]["recipe_fallback"] == {"asked": "pt2e", "used": "aeq",
                                                  "why": "IndexError: list index out of range"}
    assert int8["metrics"]["float_agreement"] >= 0.9
    assert any("PT2E int8 quantizer failed on this model" in w for w in int8["warnings"])


ZOO = '''
import torch


class Branchy(torch.nn.Module):
    """Branches on its input's values: torch.export cannot trace it; TorchScript records the branch taken."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        if x.abs().sum() >= 0:
            return self.fc(x)
        return -self.fc(x)


class Inverting(torch.nn.Module):
    """torch.linalg.inv has no ONNX export in either exporter."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.linalg.inv(self.fc(x).reshape(-1, 4, 4)).reshape(-1, 16)


class MaskedEncoder(torch.nn.Module):
    """Token ids and an attention mask: one attention layer, masked mean pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(64, 16)
        self.qkv = torch.nn.Linear(16, 48)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / 4.0 + (1.0 - attention_mask[:, None, :].float()) * -1e4
        x = torch.softmax(scores, dim=-1) @ v
        keep = attention_mask[..., None].float()
        return self.fc((x * keep).sum(1) / keep.sum(1))


def branchy():
    return Branchy().eval()


def inverting():
    return Inverting().eval()


def masked():
    return MaskedEncoder().eval()
'''


@pytest.fixture
def zoo(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "zoo.py").write_text(ZOO)
    namespace: dict = {}
    exec(compile(ZOO, "zoo.py", "exec"), namespace)
    torch.manual_seed(0)
    for name in ("branchy", "inverting", "masked"):
        save_file(namespace[name]().state_dict(), str(tmp_path / f"{name}.safetensors"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x8.npz", x=rng.random((32, 8), np.float32))
    np.savez(tmp_path / "x16.npz", x=rng.random((32, 16), np.float32))
    np.savez(tmp_path / "tokens.npz", input_ids=rng.integers(1, 64, (32, 12)), attention_mask=np.ones((32, 12), np.int64),
             labels=rng.integers(0, 4, 32))
    return tmp_path


def _inputs(folder, name, *specs) -> str:
    path = folder / f"{name}.toml"
    path.write_text("[model]\nstudent = \"zoo:x\"\n" + "".join(
        f'[[model.inputs]]\nname = "{n}"\nshape = {json.dumps(shape)}\ndtype = "{dtype}"\n' for n, shape, dtype in specs))
    return path


def test_when_dynamo_cannot_export_torchscript_does_and_the_report_says_so(zoo):
    config = _inputs(zoo, "branchy", ("x", ["batch", 8], "float32"))
    proc = run_cli("export", "zoo:branchy", "--weights", zoo / "branchy.safetensors", "--config", config,
                   "--data", zoo / "x8.npz", "--out", zoo / "out", cwd=zoo)
    assert proc.returncode == 0, proc.stderr
    exporter = json.loads((zoo / "out" / "export.json").read_text())["export"]["exporter"]
    assert exporter.startswith("torch.onnx.export (TorchScript; dynamo failed: GuardOnDataDependentSymNode")


def test_when_both_exporters_fail_the_root_causes_are_named(zoo):
    config = _inputs(zoo, "inverting", ("x", ["batch", 16], "float32"))
    proc = run_cli("export", "zoo:inverting", "--weights", zoo / "inverting.safetensors", "--config", config,
                   "--data", zoo / "x16.npz", "--out", zoo / "out", cwd=zoo)
    assert proc.returncode == 2, proc.stderr
    assert "with dynamo, DispatchError: No ONNX function found for <OpOverload(op='aten.linalg_inv_ex'" in proc.stderr
    assert "with TorchScript, UnsupportedOperatorError: Exporting the operator 'aten::linalg_inv'" in proc.stderr
    assert "Traceback" not in proc.stderr and "Torch IR graph" not in proc.stderr and not (zoo / "out").exists()


def test_static_int8_on_a_masked_model_and_unpadded_data_are_warned_about(zoo, tmp_path):
    config = zoo / "masked.toml"
    config.write_text(textwrap.dedent("""\
        [model]
        student = "zoo:masked"
        weights = "masked.safetensors"
        [[model.inputs]]
        name = "input_ids"
        shape = ["batch", 12]
        dtype = "int64"
        [[model.inputs]]
        name = "attention_mask"
        shape = ["batch", 12]
        dtype = "int64"
        [data]
        evaluation = "tokens.npz"
        calibration = "tokens.npz"
        [measure]
        runs = 20
        warmup = 2
        [[targets]]
        name = "ort"
        precisions = ["int8"]
        [[targets]]
        name = "tflite"
        precisions = ["fp32"]
        """))
    proc = run_cli("check", config, "--out", tmp_path / "out", cwd=zoo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("the evaluation data never pads (attention_mask is 1 everywhere)" in w for w in report["warnings"])
    int8 = report["results"][0]
    assert any("static int8 on a model with an attention mask (attention_mask)" in w and "int8-dynamic" in w
               for w in int8["warnings"])
    # The .tflite takes int32 token ids, its float ONNX twin int64: verify feeds each its own type.
    verified = run_cli("verify", tmp_path / "out" / "tflite" / "model.fp32.tflite", "--float",
                       tmp_path / "out" / "onnx" / "model.onnx", "--data", zoo / "tokens.npz", "--runs", "20",
                       "--out", tmp_path / "verify")
    assert verified.returncode == 0, verified.stderr
    result = json.loads((tmp_path / "verify" / "report.json").read_text())["results"][0]
    assert result["metrics"]["float_agreement"] == 1.0


class TwoHeads(torch.nn.Module):
    """Two inputs (an image, a 4-value side channel), two outputs: which quadrant is brightest
    (classification) and the image's mean brightness scaled by the side channel's sum (regression)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.quadrant = torch.nn.Linear(8 * 8 * 8, 4)
        self.brightness = torch.nn.Linear(8 * 8 * 8 + 4, 1)

    def forward(self, image, side):
        x = torch.relu(self.conv(image)).flatten(1)
        return self.quadrant(x), self.brightness(torch.cat([x, side], dim=1))


def test_every_output_of_a_two_output_model_is_evaluated_and_budgeted(tmp_path):
    torch.manual_seed(0)
    net = TwoHeads()
    images, labels = _quadrant_data(512, 0)
    side = np.random.default_rng(2).random((512, 4), np.float32)
    target = images.mean(axis=(1, 2, 3)) * side.sum(1)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(200):
        i = np.arange(step * 32, step * 32 + 32) % 512
        logits, value = net(torch.from_numpy(images[i]), torch.from_numpy(side[i]))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels[i])) + \
            torch.nn.functional.mse_loss(value[:, 0], torch.from_numpy(target[i]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    example = (torch.from_numpy(images[:BATCH]), torch.from_numpy(side[:BATCH]))
    torch.export.save(torch.export.export(net.eval(), example), str(tmp_path / "heads.pt2"))
    eval_images, eval_labels = _quadrant_data(64, 1)
    np.savez(tmp_path / "eval.npz", image=eval_images, side=np.random.default_rng(3).random((64, 4), np.float32),
             labels=eval_labels)
    config = _config(tmp_path, "heads.pt2", '[[targets]]\nname = "ort"\nprecisions = ["fp32", "int8"]\n')
    text = config.read_text().replace('student = "heads.pt2"\n', 'student = "heads.pt2"\noutputs = { quadrant = '
                                      '"classification", brightness = "regression" }\n')
    config.write_text(text + "[budgets.outputs.brightness]\nmax_mean_abs_error = 0.05\nmax_relative_error = 0.1\n")
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = {r["precision"]: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["results"]}
    assert results["fp32"]["outputs"]["brightness"]["max_abs_error"] < 1e-4  # the float artifact: itself
    brightness = results["int8"]["outputs"]["brightness"]
    assert brightness["kind"] == "dense" and brightness["shape"] == [1] and 0 < brightness["mean_abs_error"] < 0.05
    assert brightness["inferred"] is False and "cosine" not in brightness  # one value per sample: no cosine
    assert results["int8"]["outputs"]["quadrant"]["kind"] == "classification"
    assert "ort-int8 brightness (dense): psnr_db" in proc.stdout
    # A budget on the second output alone can fail the gate.
    config.write_text(text + "[budgets.precisions.int8.outputs.brightness]\nmax_mean_abs_error = 0.000001\n")
    failed = run_cli("check", config, "--out", tmp_path / "failed")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    root = ET.parse(tmp_path / "failed" / "junit.xml").getroot()
    assert [(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None] == [
        ("edge-distill.ort-int8", "output[brightness]/max_mean_abs_error")]
