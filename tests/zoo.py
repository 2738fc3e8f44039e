"""A model zoo for the support matrix: small students of the shapes users bring, each trained for a
fixed number of steps on synthetic data whose labels depend on the inputs (a constant-output model
proves nothing about quantization), saved in every intake form, and run through `check`.

Used by tests/test_support_matrix.py (a fast subset, in CI) and benchmarks/support_matrix.py (the
whole matrix, written to docs/support.md). This file is also the factory module of the
`module:factory` form: `zoo:cnn` builds the untrained architecture, the weights come beside it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

BATCH = 4  # the batch a fixed-batch form is saved with
FORMS = ("factory", "pt2-fixed", "pt2-dynamic", "onnx-fixed", "onnx-dynamic")
TARGETS = {"ort": ["fp32", "int8", "int8-dynamic", "int4"], "tflite": ["fp32", "int8", "int4"],
           "coreml": ["fp16", "int8"]}
# The zoo's weights are tiny (64 to 5,000 elements); Core ML's default threshold (2,048) would leave most fp16.
TARGET_OPTIONS = {"coreml": {"weight_threshold": 64}}


# -- architectures -------------------------------------------------------------------------------
class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                                  nn.ReLU())
        self.head = nn.Linear(16 * 8 * 8, 4)

    def forward(self, image):
        return self.head(self.body(image).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // 4), nn.ReLU(), nn.Linear(channels // 4, channels),
                                nn.Hardsigmoid())

    def forward(self, x):
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


class MobileNetLike(nn.Module):
    """Depthwise-separable convolutions, hardswish, squeeze-excite (MobileNetV3's blocks)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.Hardswish())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Hardswish(), SqueezeExcite(16),
                                   nn.Conv2d(16, 24, 1), nn.Hardswish())
        self.head = nn.Linear(24, 4)

    def forward(self, image):
        return self.head(self.block(self.stem(image)).mean((2, 3)))


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.conv1, self.conv2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(16), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 4)

    def forward(self, image):
        x = torch.relu(self.stem(image))
        x = torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.head(x.mean((2, 3)))


class Audio1D(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, 8, 9, stride=2, padding=4), nn.ReLU(), nn.Conv1d(8, 16, 9, stride=2,
                                                                                                padding=4), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, audio):
        return self.head(self.body(audio).mean(2))


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(8, 32, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, frames):
        out, _ = self.rnn(frames)
        return self.head(out[:, -1])


class MaskedEncoder(nn.Module):
    """Token ids and an attention mask: one attention layer, masked mean pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(64, 32)
        self.qkv, self.out = nn.Linear(32, 96), nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(1, 2) / 32 ** 0.5 + (1.0 - attention_mask[:, None, :].float()) * -1e4
        x = x + self.out(torch.softmax(scores, dim=-1) @ v)
        keep = attention_mask[..., None].float()
        return self.head((x * keep).sum(1) / keep.sum(1))


class ViTLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 32, 4, stride=4)
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, image):
        return self.head(self.layer(self.patch(image).flatten(2).transpose(1, 2)).mean(1))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.quadrant, self.brightness = nn.Linear(512, 4), nn.Linear(516, 1)

    def forward(self, image, side):
        x = torch.relu(self.conv(image)).flatten(1)
        return self.quadrant(x), self.brightness(torch.cat([x, side], dim=1))


class Segmenter(nn.Module):
    """A dense output: two classes per pixel."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, image):
        return self.body(image)


class CausalDecoder(nn.Module):
    """Next-token logits at the last position, causal attention."""

    def __init__(self):
        super().__init__()
        self.embed, self.position = nn.Embedding(16, 32), nn.Parameter(torch.zeros(1, 8, 32))
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.register_buffer("causal", torch.triu(torch.full((8, 8), float("-inf")), diagonal=1))
        self.head = nn.Linear(32, 16)

    def forward(self, input_ids):
        x = self.layer(self.embed(input_ids) + self.position, src_mask=self.causal)
        return self.head(x[:, -1])


def cnn(): return CNN().eval()  # noqa: E704
def mobilenet(): return MobileNetLike().eval()  # noqa: E704
def resnet(): return ResNetLike().eval()  # noqa: E704
def audio(): return Audio1D().eval()  # noqa: E704
def lstm(): return Recurrent(nn.LSTM).eval()  # noqa: E704
def gru(): return Recurrent(nn.GRU).eval()  # noqa: E704
def encoder(): return MaskedEncoder().eval()  # noqa: E704
def vit(): return ViTLike().eval()  # noqa: E704
def two_heads(): return TwoHeads().eval()  # noqa: E704
def segmenter(): return Segmenter().eval()  # noqa: E704
def decoder(): return CausalDecoder().eval()  # noqa: E704


# -- synthetic tasks: the label is a function of the input ------------------------------------------
def _images(rng, n):
    labels = rng.integers(0, 4, n)
    images = rng.random((n, 1, 16, 16), np.float32) * 0.5
    for i, q in enumerate(labels):
        r, c = divmod(int(q), 2)
        images[i, 0, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 0.5
    return {"image": images}, labels


def _audio(rng, n):
    labels = rng.integers(0, 4, n)
    t = np.arange(64, dtype=np.float32)
    audio = np.stack([np.sin(t * (0.2 + 0.35 * k)) for k in labels])[:, None, :].astype(np.float32)
    return {"audio": audio + rng.normal(0, 0.2, audio.shape).astype(np.float32)}, labels


def _frames(rng, n):
    labels = rng.integers(0, 4, n)
    frames = rng.random((n, 20, 8), np.float32) * 0.5
    frames[np.arange(n), :, labels] += 0.5
    return {"frames": frames}, labels


def _tokens(rng, n):
    """A marker token (1-4) somewhere in the text names the class; half the samples are padded."""
    labels = rng.integers(0, 4, n)
    ids = rng.integers(5, 64, (n, 12))
    mask = np.ones((n, 12), np.int64)
    mask[::2, 8:] = 0
    ids[mask == 0] = 0
    ids[np.arange(n), rng.integers(0, 8, n)] = labels + 1
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask}, labels


def _two(rng, n):
    inputs, labels = _images(rng, n)
    inputs["side"] = rng.random((n, 4), np.float32)
    return inputs, labels


def _pixels(rng, n):
    images = rng.random((n, 1, 16, 16), np.float32)
    return {"image": images}, None


def _sequence(rng, n):
    start = rng.integers(0, 16, n)
    ids = (start[:, None] + np.arange(8)) % 16
    return {"input_ids": ids.astype(np.int64)}, (start + 8) % 16


@dataclass(frozen=True)
class Entry:
    factory: str
    data: object
    shapes: dict  # input -> (shape after the batch, dtype)
    outputs: dict | None = None  # [model] outputs
    task: str = "classification"


ZOO = {
    "cnn": Entry("cnn", _images, {"image": ([1, 16, 16], "float32")}),
    "mobilenet-se": Entry("mobilenet", _images, {"image": ([1, 16, 16], "float32")}),
    "resnet": Entry("resnet", _images, {"image": ([1, 16, 16], "float32")}),
    "audio-1d": Entry("audio", _audio, {"audio": ([1, 64], "float32")}),
    "lstm": Entry("lstm", _frames, {"frames": ([20, 8], "float32")}),
    "gru": Entry("gru", _frames, {"frames": ([20, 8], "float32")}),
    "masked-encoder": Entry("encoder", _tokens, {"input_ids": ([12], "int64"), "attention_mask": ([12], "int64")}),
    "vit": Entry("vit", _images, {"image": ([1, 16, 16], "float32")}),
    "two-heads": Entry("two_heads", _two, {"image": ([1, 16, 16], "float32"), "side": ([4], "float32")},
                       outputs={"quadrant": "classification", "brightness": "regression"}),
    "segmenter": Entry("segmenter", _pixels, {"image": ([1, 16, 16], "float32")}),
    "causal-decoder": Entry("decoder", _sequence, {"input_ids": ([8], "int64")}),
}


def _loss(name: str, model, inputs: dict, labels):
    out = model(*[torch.from_numpy(v) for v in inputs.values()])
    if name == "segmenter":
        target = torch.from_numpy((inputs["image"][:, 0] > 0.5).astype(np.int64))
        return nn.functional.cross_entropy(out, target)
    if name == "two-heads":
        logits, value = out
        target = torch.from_numpy(inputs["image"].mean((1, 2, 3)) * inputs["side"].sum(1))
        return nn.functional.cross_entropy(logits, torch.from_numpy(labels)) + nn.functional.mse_loss(value[:, 0], target)
    return nn.functional.cross_entropy(out, torch.from_numpy(labels))


def trained(name: str, steps: int = 150):
    """The model trained for a fixed number of steps (the same model on every machine)."""
    entry = ZOO[name]
    torch.manual_seed(0)
    model = getattr(sys.modules[__name__], entry.factory)().train()
    inputs, labels = entry.data(np.random.default_rng(0), 512)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        index = np.arange(step * 32, step * 32 + 32) % 512
        loss = _loss(name, model, {k: v[index] for k, v in inputs.items()},
                     None if labels is None else labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# -- intake forms ------------------------------------------------------------------------------------
def save(name: str, model, form: str, folder: Path) -> str:
    """Save `model` in one intake form; the config's `student` (and `weights`) for it."""
    entry = ZOO[name]
    example = tuple(torch.from_numpy(v[:BATCH]) for v in entry.data(np.random.default_rng(9), BATCH)[0].values())
    names = list(entry.shapes)
    if form == "factory":
        from safetensors.torch import save_file

        shutil.copyfile(__file__, folder / "zoo.py")
        save_file(model.state_dict(), str(folder / f"{name}.safetensors"))
        return f'student = "zoo:{entry.factory}"\nweights = "{name}.safetensors"'
    path = folder / f"{name}.{form}.{form.split('-')[0]}"
    if form.startswith("pt2"):
        dynamic = None
        if form == "pt2-dynamic":
            batch = torch.export.Dim("batch", min=1, max=1024)
            dynamic = {n: {0: batch} for n in names}
        torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), str(path))
    else:
        axes = {n: {0: "batch"} for n in names} if form == "onnx-dynamic" else None
        torch.onnx.export(model, example, str(path), input_names=names, dynamo=False, dynamic_axes=axes)
    return f'student = "{path.name}"'


def config(name: str, student: str, targets: dict, folder: Path) -> Path:
    entry = ZOO[name]
    lines = ["[model]", student, f'task = "{entry.task}"']
    if entry.outputs:
        lines.append("outputs = { " + ", ".join(f'{k} = "{v}"' for k, v in entry.outputs.items()) + " }")
    if student.startswith('student = "zoo:'):
        for input_name, (shape, dtype) in entry.shapes.items():
            lines += ["[[model.inputs]]", f'name = "{input_name}"', f"shape = {json.dumps(['batch', *shape])}",
                      f'dtype = "{dtype}"']
    lines += ["[data]", 'evaluation = "eval.npz"', 'calibration = "eval.npz"', "[measure]", "runs = 20", "warmup = 2"]
    for target, precisions in targets.items():
        lines += ["[[targets]]", f'name = "{target}"', f"precisions = {json.dumps(precisions)}"]
        lines += [f"options = {{ {k} = {v} }}" for k, v in TARGET_OPTIONS.get(target, {}).items()]
    path = folder / "edge-distill.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def eval_data(name: str, folder: Path) -> None:
    inputs, labels = ZOO[name].data(np.random.default_rng(1), 90)  # 90: not a multiple of the batch
    np.savez(folder / "eval.npz", **inputs, **({} if labels is None else {"labels": labels}))


@dataclass
class Cell:
    model: str
    form: str
    target: str
    code: int
    text: str  # "pass: ..." or the limitation's message


def run(name: str, form: str, targets: dict, folder: Path, model=None) -> list[Cell]:
    """One `check` of one model in one form on some targets: one cell per target."""
    folder.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else trained(name)
    eval_data(name, folder)
    try:
        student = save(name, model, form, folder)
    except Exception as exc:  # the form cannot be written by torch itself: not the tool's cell
        why = " ".join(str(exc).split())[:120]
        return [Cell(name, form, t, -1, f"torch cannot save this form: {type(exc).__name__}: {why}") for t in targets]
    cfg = config(name, student, targets, folder)
    proc = subprocess.run([sys.executable, "-m", "edge_distill", "check", str(cfg), "--out", str(folder / "out"),
                           "-q"], capture_output=True, text=True, cwd=folder, timeout=1800)
    if not (folder / "out" / "report.json").exists():  # the run stopped before any artifact: its error says why
        line = next((l for l in proc.stderr.splitlines() if l.startswith("error:")), proc.stderr.strip()[-200:])
        return [Cell(name, form, t, proc.returncode, line[:300]) for t in targets]
    report = json.loads((folder / "out" / "report.json").read_text())
    if proc.returncode == 2:  # a target refused its artifacts: their rows say why, the others were measured
        return [_refused_or_summary(name, form, t, [r for r in report["results"] if r["target"] == t]) for t in targets]
    if proc.returncode == 1:  # the zoo's configs give no budget: a broken check is a finding, never a pass
        broken = [c["name"] for c in report.get("gate_checks", []) + [c for r in report["results"] for c in r["checks"]]
                  if c["passed"] is False]
        return [Cell(name, form, t, 1, "broken without a budget: " + ", ".join(broken)) for t in targets]
    return [Cell(name, form, t, proc.returncode, _summary([r for r in report["results"] if r["target"] == t]))
            for t in targets]


def _refused_or_summary(name: str, form: str, target: str, results: list[dict]) -> Cell:
    """A target whose every artifact was refused is a limitation (its reasons); one refused in part, a
    pass for the rest with the refusals named."""
    reasons = list(dict.fromkeys(r["failure"]["reason"].splitlines()[0] for r in results if r.get("failure")))
    if results and all(r.get("failure") for r in results):
        return Cell(name, form, target, 2, "; ".join(reasons))
    built = _summary([r for r in results if not r.get("failure")])
    return Cell(name, form, target, 2 if reasons else 0, built + "".join(f"; refused: {why}" for why in reasons))


def _summary(results: list[dict]) -> str:
    cells = []
    for r in results:
        m = r["metrics"]
        agreement = m.get("float_agreement")
        share = (r.get("coverage") or {}).get("quantized_weight_fraction")
        text = f"{r['precision']} {agreement:.2f}" if agreement is not None else f"{r['precision']} n/a"
        cells.append(text + (f" ({share:.0%} q)" if share is not None else ""))
    return "pass: " + ", ".join(cells)
