"""A corpus of hostile and broken inputs, each run through the real CLI, and one property over all of
them: nothing outside `--out` is created, modified or removed (the workspace is hashed before and
after), no code from a file runs (a planted pickle would create a folder, which the hash would show),
and a bad input exits 2 naming the file and the problem, never with a traceback.

The files are built here from small real models (an ONNX MatMul, a torch.export program), so the
corpus costs a few seconds per case."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_hostile_files import Planted, rewrite  # one way to plant a pickle, one way to rewrite a zip

pytestmark = pytest.mark.slow  # runs the CLI on every hostile input


def _matmul_onnx(path: Path, external: str | None = None, op=("MatMul", "")) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((4, 4), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node(op[0], ["x", "w"], ["y"], domain=op[1])
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(op[1], 1)] if op[1] else [])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]), opset_imports=opsets)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location=external, size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def _program(path: Path) -> Path:
    import torch

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x)

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(Small().eval(), (torch.zeros(2, 4),), dynamic_shapes={"x": {0: batch}}),
                      str(path))
    return path


CONFIG = """[model]
student = "mm.onnx"
[data]
evaluation = "data.npz"
calibration = "data.npz"
{data}
[export]
{export}
[[targets]]
name = "{target}"
precisions = {precisions}
{budgets}
"""


def _config(ws: Path, name: str, *, data="", export="", target="ort", precisions='["fp32"]', budgets="") -> Path:
    path = ws / name
    path.write_text(CONFIG.format(data=data, export=export, target=target, precisions=precisions, budgets=budgets))
    return path


# name -> (build(ws) -> CLI args, expected exit code, what stderr must name)
def _cases():
    def custom_op(ws):
        return ["export", _matmul_onnx(ws / "custom.onnx", op=("FancyOp", "com.example")), "--data", ws / "data.npz"]

    def truncated_external(ws):
        model = _matmul_onnx(ws / "ext.onnx", external="ext.data")
        with open(ws / "ext.data", "r+b") as f:
            f.truncate(40)
        return ["export", model, "--data", ws / "data.npz"]

    def external_outside(ws):
        import onnx

        model = _matmul_onnx(ws / "outside.onnx", external="w.data")
        proto = onnx.load(str(model), load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
        onnx.save(proto, str(model))
        return ["export", model, "--data", ws / "data.npz"]

    def hard_linked_external(ws):
        model = _matmul_onnx(ws / "linked.onnx", external="linked.data")
        os.link(ws / "linked.data", ws / "victim-dir" / "also.data")  # one file, a second name outside
        return ["export", model, "--data", ws / "data.npz"]

    def truncated_onnx(ws):
        good = _matmul_onnx(ws / "whole.onnx").read_bytes()
        (ws / "half.onnx").write_bytes(good[: len(good) // 2])
        return ["export", ws / "half.onnx", "--data", ws / "data.npz"]

    def planted_pt2(ws):
        hostile = rewrite(_program(ws / "clean.pt2"), ws / "planted.pt2",
                           replace={"data/sample_inputs/model.pt": pickle.dumps(Planted(ws / "RAN"), protocol=2)})
        return ["export", hostile, "--data", ws / "data.npz"]

    def escaping_pt2(ws):
        hostile = rewrite(_program(ws / "clean.pt2"), ws / "escape.pt2", add={"../../outside.txt": b"x"})
        return ["export", hostile, "--data", ws / "data.npz"]

    def garbage_pt2(ws):
        hostile = rewrite(_program(ws / "clean.pt2"), ws / "garbage.pt2", replace={"archive_format": b"\0{"})
        return ["export", hostile, "--data", ws / "data.npz"]

    def pickled_data(ws):
        np.savez(ws / "evil.npz", x=np.array([Planted(ws / "RAN")], dtype=object))
        return ["export", ws / "mm.onnx", "--data", ws / "evil.npz"]

    def nan_limit(ws):
        return ["check", _config(ws, "nan.toml", budgets="[budgets]\nmin_accuracy = nan\n")]

    def negative_slice_limit(ws):
        return ["check", _config(ws, "negative.toml", budgets="[budgets.precisions.fp32.slices.rare]\n"
                                                             "min_accuracy = -0.5\n")]

    def negative_tolerance(ws):
        return ["check", _config(ws, "tolerance.toml", export="tolerance = -1")]

    def negative_seed(ws):
        return ["check", _config(ws, "seed.toml", data="seed = -1")]

    def unknown_precision(ws):
        return ["check", _config(ws, "int3.toml", precisions='["int3"]')]

    def unknown_target(ws):
        return ["check", _config(ws, "tensorrt.toml", target="tensorrt")]

    def out_under_a_file(ws):
        return ["export", ws / "mm.onnx", "--data", ws / "data.npz", "--out", ws / "a-file" / "out"]

    def crafted_manifest(ws):  # --force with a manifest claiming files outside --out: nothing outside goes
        out = ws / "out"
        out.mkdir()
        (out / ".edge-distill-output.json").write_text(json.dumps({"entries": ["../victim", "/etc/hostname",
                                                                               "../victim-dir"]}))
        return ["export", ws / "mm.onnx", "--data", ws / "data.npz", "--force"]

    return {
        "custom-op": (custom_op, 2, ["custom.onnx", "com.example:FancyOp"]),
        "truncated-external-data": (truncated_external, 2, ["ext.data", "truncated"]),
        "external-data-outside": (external_outside, 2, ["outside.onnx", "outside the model's folder"]),
        "truncated-onnx": (truncated_onnx, 2, ["half.onnx"]),
        "hard-linked-external-data": (hard_linked_external, 2, ["linked.data: is a hard link (2 names for one file)"]),
        "pickle-in-pt2": (planted_pt2, 2, ["planted.pt2", "os.makedirs"]),
        "escaping-entry": (escaping_pt2, 2, ["escape.pt2", "points outside the archive"]),
        "garbage-pt2": (garbage_pt2, 2, ["garbage.pt2"]),
        "pickled-data": (pickled_data, 2, ["evil.npz"]),
        "nan-limit": (nan_limit, 2, ["nan.toml", "min_accuracy"]),
        "negative-slice-limit": (negative_slice_limit, 2, ["negative.toml", "min_accuracy"]),
        "negative-tolerance": (negative_tolerance, 2, ["tolerance.toml", "tolerance"]),
        "negative-seed": (negative_seed, 2, ["seed.toml", "seed"]),
        "unknown-precision": (unknown_precision, 2, ["int3.toml", "int3"]),
        "unknown-target": (unknown_target, 2, ["tensorrt.toml", "tensorrt"]),
        "out-under-a-file": (out_under_a_file, 2, ["a-file is a file"]),
        "crafted-manifest": (crafted_manifest, 0, []),
    }


CASES = _cases()


def _snapshot(ws: Path, out: Path) -> dict[str, str]:
    """Every path in the workspace outside `out`, with its content hash (folders: "dir")."""
    state = {}
    for root, dirs, files in os.walk(ws):
        for name in dirs + files:
            path = Path(root) / name
            if path == out or out in path.parents:
                continue
            state[str(path.relative_to(ws))] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_changes_nothing_outside_out(tmp_path, case):
    build, code, named = CASES[case]
    ws = tmp_path / "ws"
    ws.mkdir()
    _matmul_onnx(ws / "mm.onnx")
    np.savez(ws / "data.npz", x=np.random.default_rng(1).random((16, 4), np.float32),
             labels=np.arange(16) % 4)
    (ws / "victim").write_text("the user's file")
    (ws / "victim-dir").mkdir()
    (ws / "victim-dir" / "keep.txt").write_text("keep")
    (ws / "a-file").write_text("not a folder")
    args = build(ws)
    out = ws / "out"
    if "--out" not in args:
        args += ["--out", out]
    before = _snapshot(ws, out)
    proc = run_cli(*args, cwd=ws)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for needle in named:
        assert needle in proc.stderr, proc.stderr
    assert _snapshot(ws, out) == before  # nothing created, modified or removed outside --out
    assert not (ws / "RAN").exists()
