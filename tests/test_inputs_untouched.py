"""No command writes into its inputs: every command is run on a workspace, and every file under it
(the model, the data, the config, the check folder later commands read, the working directory) is
hashed before and after; only the command's own output may change."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLE, edit_config, run_cli


def tree(root: Path, outputs: tuple[Path, ...]) -> dict[str, str]:
    """Every file and link under `root`, outside `outputs`, with its bytes' (or its target's) sha256."""
    found = {}
    for path in sorted(root.rglob("*")):
        if any(path == out or out in path.parents for out in outputs):
            continue
        if path.is_symlink():
            found[str(path.relative_to(root))] = "link to " + str(path.readlink())
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.slow
def test_no_command_writes_into_its_inputs(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"], budgets="[budgets]\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE.parents[1] / "android-demo", app, ignore=shutil.ignore_patterns("node_modules", "build"))
    check, shard = tmp_path / "check", tmp_path / "shard"
    artifact, onnx = check / "ort" / "model.int8.ort", check / "onnx" / "model.onnx"
    eval_data = example / "eval.npz"

    def run(*args, outputs: tuple[Path, ...] = ()):
        before = tree(tmp_path, outputs + (app,) * ("bundle" not in args))
        proc = run_cli(*args, cwd=cwd)
        assert proc.returncode == 0, (args, proc.stdout + proc.stderr)
        after = tree(tmp_path, outputs + (app,) * ("bundle" not in args))
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"{args[0]} changed its inputs: {changed}"

    run("check", config, "--out", check, outputs=(check,))
    run("check", config, "--shard", "1/1", "--out", shard, outputs=(shard,))
    run("merge-reports", tmp_path / "merged", shard, outputs=(tmp_path / "merged",))
    run("report", check / "report.json", "--html", outputs=(check / "report.html",))
    run("verify", artifact, "--data", eval_data, "--runs", "20", "--out", tmp_path / "verify",
        outputs=(tmp_path / "verify",))
    run("bench", artifact, "--data", eval_data, "--runs", "20", "--warmup", "1")
    run("inspect", artifact)
    run("export", onnx, "--data", eval_data, "--out", tmp_path / "export", outputs=(tmp_path / "export",))
    data_folder = tmp_path / "data"
    data_folder.mkdir()
    shutil.copy(eval_data, data_folder / "eval.npz")
    run("init", onnx, "--data", data_folder, "--out", tmp_path / "init", outputs=(tmp_path / "init",))
    run("slices", "discover", config, "--out", tmp_path / "discover", outputs=(tmp_path / "discover",))
    run("sensitivity", config, "--target", "ort", "--precision", "int8", "--out", tmp_path / "sensitivity",
        outputs=(tmp_path / "sensitivity",))
    run("fingerprint", example / "teacher.safetensors")
    run("bundle", check, "--app", app, outputs=(app,))
    assert (app / "app" / "src" / "main" / "assets" / "models").is_dir()  # the one folder bundle writes
