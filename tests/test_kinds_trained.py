"""Each output kind on a model trained here whose outputs depend on its inputs: an identical artifact
passes its kind's budget, a deliberately degraded one (noise on its weights) and an untrained copy fail
it. Through `verify ARTIFACT --float TRAINED.onnx`, as a user checks an artifact they were handed."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from zoo import Segmenter

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(0)


class Tagger(nn.Module):
    """Per-position classes [B, 10, 5]: (this id + the previous one) mod 5."""

    def __init__(self):
        super().__init__()
        self.embed, self.rnn, self.head = nn.Embedding(5, 16), nn.GRU(16, 32, batch_first=True), nn.Linear(32, 5)

    def forward(self, ids):
        return self.head(self.rnn(self.embed(ids))[0])


class TopThree(nn.Module):
    """The three likeliest of 8 classes (int64 indices [B, 3]) of which octant holds the most mass."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, image):
        return self.net(image)


class TopThreeIndices(nn.Module):
    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, image):
        return torch.topk(self.scorer(image), 3).indices


class SquareFinder(nn.Module):
    """A yolov8-style head [B, 4 + 1, 16]: per cell of a 4 x 4 grid over a 32 x 32 image, the box of the
    bright square centred there (cx, cy, w, h in pixels) and its score."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 5, 1))
        grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="xy"), 0) * 8 + 4
        self.register_buffer("grid", grid.reshape(1, 2, 16))

    def forward(self, image):
        raw = self.body(image).flatten(2)  # [B, 5, 16]
        centre = self.grid + 4 * torch.tanh(raw[:, :2])
        size = 4 + 12 * torch.sigmoid(raw[:, 2:4])
        return torch.cat([centre, size, torch.sigmoid(raw[:, 4:])], 1)


def _tags(n):
    ids = RNG.integers(0, 5, (n, 10))
    return {"ids": ids}, (ids + np.concatenate([np.zeros((n, 1), int), ids[:, :-1]], 1)) % 5


def _pixels(n):
    return {"image": RNG.random((n, 1, 16, 16), np.float32)}, None


def _octants(n):
    image = RNG.random((n, 1, 8, 8), np.float32) * 0.2
    label = RNG.integers(0, 8, n)
    for i, c in enumerate(label):
        image[i, 0, (c // 4) * 4:(c // 4) * 4 + 4, (c % 4) * 2:(c % 4) * 2 + 2] += 1
    return {"image": image}, label


def _squares(n):
    image, boxes = np.zeros((n, 1, 32, 32), np.float32), np.zeros((n, 4), np.float32)
    for i in range(n):
        size = RNG.integers(5, 14)
        x, y = RNG.integers(0, 32 - size, 2)
        image[i, 0, y:y + size, x:x + size] = 1
        boxes[i] = [x + size / 2, y + size / 2, size, size]
    return {"image": image + RNG.normal(0, 0.05, image.shape).astype(np.float32)}, boxes


def _loss(kind, model, inputs, target):
    out = model(*[torch.from_numpy(v) for v in inputs.values()])
    if kind == "sequence":
        return nn.functional.cross_entropy(out.reshape(-1, 5), torch.from_numpy(target).reshape(-1))
    if kind == "segmentation":
        return nn.functional.cross_entropy(out, torch.from_numpy((inputs["image"][:, 0] > 0.5).astype(np.int64)))
    if kind == "indices":
        return nn.functional.cross_entropy(out, torch.from_numpy(target))
    boxes = torch.from_numpy(target)
    cell = (boxes[:, 1] // 8 * 4 + boxes[:, 0] // 8).long()  # the cell holding the centre
    score = torch.zeros(len(boxes), 16).scatter_(1, cell[:, None], 1.0)
    chosen = out[torch.arange(len(boxes)), :4, cell]
    return nn.functional.binary_cross_entropy(out[:, 4], score) + nn.functional.l1_loss(chosen, boxes) / 8


CASES = {  # kind -> (model, data, training steps, verify --kind, the kind's budget)
    "sequence": (Tagger, _tags, 300, "sequence,decode=none", "min_position_agreement = 0.95"),
    "segmentation": (Segmenter, _pixels, 200, "segmentation", "min_mean_iou = 0.95"),  # two classes per pixel
    "indices": (TopThree, _octants, 300, "indices", "min_topk_overlap = 0.95"),
    "detection": (SquareFinder, _squares, 600, "detection,layout=yolov8,conf=0.5", "min_map50_agreement = 0.9"),
}


def _trained(kind):
    factory, data, steps, *_ = CASES[kind]
    torch.manual_seed(0)
    model = factory().train()
    inputs, target = data(512)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        index = np.arange(step * 32, step * 32 + 32) % 512
        loss = _loss(kind, model, {k: v[index] for k, v in inputs.items()},
                     None if target is None else target[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _export(model, kind, inputs, path):
    model = TopThreeIndices(model) if kind == "indices" else model
    names = list(inputs)
    example = tuple(torch.from_numpy(v[:2]) for v in inputs.values())
    torch.onnx.export(model, example, str(path), input_names=names, output_names=["out"], dynamo=False,
                      dynamic_axes={**{n: {0: "batch"} for n in names}, "out": {0: "batch"}})


def _noisy(model, scale):
    """A degraded copy: Gaussian noise of `scale` times each weight tensor's own spread."""
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * p.std() * scale if p.numel() > 1 else torch.zeros_like(p))
    return noisy


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_kinds_budget_passes_an_identical_artifact_and_fails_a_degraded_and_an_untrained_one(tmp_path, kind):
    factory, data, _, declared, limit = CASES[kind]
    trained = _trained(kind)
    inputs, _ = data(96)
    np.savez(tmp_path / "eval.npz", **inputs)
    torch.manual_seed(1)
    for name, model in (("trained", trained), ("degraded", _noisy(trained, 0.5)), ("untrained", factory().eval())):
        _export(model, kind, inputs, tmp_path / f"{name}.onnx")
    (tmp_path / "budget.toml").write_text(f"[outputs.out]\n{limit}\n")
    figures = {}
    for name in ("trained", "degraded", "untrained"):
        proc = run_cli("verify", tmp_path / f"{name}.onnx", "--float", tmp_path / "trained.onnx", "--data",
                       tmp_path / "eval.npz", "--budget", tmp_path / "budget.toml", "--out", tmp_path / name,
                       "--runs", "20", "--kind", f"out={declared}")
        result = json.loads((tmp_path / name / "report.json").read_text())["results"][0]
        figures[name] = (proc.returncode, {k: v for k, v in result["outputs"]["out"].items() if k != "provenance"})
        assert result["outputs"]["out"]["kind"] == kind and result["outputs"]["out"]["inferred"] is False
    assert {name: code for name, (code, _) in figures.items()} == {"trained": 0, "degraded": 1, "untrained": 1}, figures
