"""Bad input: each case exits 2 with a message naming the file and the problem, prints no
traceback, leaves nothing half-written at --out and overwrites no user file."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import EXAMPLE, edit_config, run_cli

pytestmark = pytest.mark.slow  # every test runs the CLI end to end


def assert_clean_failure(proc, tmp_path, out, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "a temporary folder was left behind"


def test_truncated_onnx(demo_run, tmp_path):
    _, demo = demo_run
    data = (demo / "onnx" / "model.onnx").read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    proc = run_cli("export", bad, "--data", EXAMPLE / "eval.npz", "--out", out)
    assert_clean_failure(proc, tmp_path, out, "truncated.onnx", "not a valid ONNX model")


def test_onnx_external_data_outside_its_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(folder / "m.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0, all_tensors_to_one_file=True)
    (folder / "w.bin").rename(tmp_path / "w.bin")  # now the data sits outside the model's folder
    proto = onnx.load(str(folder / "m.onnx"), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../w.bin"
    onnx.save(proto, str(folder / "m.onnx"))
    data = tmp_path / "x.npz"
    np.savez(data, x=np.ones((3, 4), np.float32))
    out = tmp_path / "out"
    proc = run_cli("export", folder / "m.onnx", "--data", data, "--out", out)
    assert_clean_failure(proc, tmp_path, out, "m.onnx", "outside the model's folder", "../w.bin")


def test_pickled_module_is_refused(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.save(model, tmp_path / "student.pt")
    out = tmp_path / "out"
    proc = run_cli("export", tmp_path / "student.pt", "--data", EXAMPLE / "eval.npz", "--out", out)
    assert_clean_failure(proc, tmp_path, out, "student.pt", "pickled", "--trust-pickle", "safetensors")


def test_pickled_module_as_weights_is_refused(example, tmp_path):
    import sys

    sys.path.insert(0, str(example))
    try:
        import fmnist_models
    finally:
        sys.path.remove(str(example))
    torch.save(fmnist_models.student(), example / "student.pt")
    config = edit_config(example, replace={'weights = "student.safetensors"': 'weights = "student.pt"'})
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert_clean_failure(proc, tmp_path, out, "student.pt", "does not unpickle")


@pytest.mark.parametrize("case, needles", [
    ("shape", ["calibration.npz", "input 'image'", "[5, 1, 14, 14]"]),
    ("nan", ["calibration.npz", "NaN or Inf", "3 sample(s)"]),
    ("empty", ["calibration.npz", "empty"]),
])
def test_bad_calibration_data(example, tmp_path, case, needles):
    images = {"shape": np.zeros((5, 1, 14, 14), np.float32), "empty": np.zeros((0, 1, 28, 28), np.float32),
              "nan": np.zeros((8, 1, 28, 28), np.float32)}[case]
    if case == "nan":
        images[[1, 4, 6], 0, 3, 3] = np.nan
    np.savez(example / "calibration.npz", image=images)
    out = tmp_path / "out"
    proc = run_cli("check", example / "edge-distill.toml", "--out", out)
    assert_clean_failure(proc, tmp_path, out, *needles)


def test_budget_with_unknown_key(example, tmp_path):
    config = edit_config(example, budgets="[budgets]\nmin_acuracy = 0.9\n")
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert_clean_failure(proc, tmp_path, out, "edge-distill.toml", "unknown key 'min_acuracy'", "min_accuracy")


def test_budget_file_with_unknown_slice_key(demo_run, tmp_path):
    _, demo = demo_run
    budget = tmp_path / "b.toml"
    budget.write_text("[slices.high_risk]\nmin_acc = 0.9\n")
    out = tmp_path / "out"
    proc = run_cli("verify", demo / "ort" / "model.fp32.ort", "--data", EXAMPLE / "eval.npz", "--budget", budget,
                   "--out", out)
    assert_clean_failure(proc, tmp_path, out, "b.toml", "unknown key 'min_acc'", "slices.high_risk")


def test_output_folder_holding_a_users_file(example, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = run_cli("check", example / "edge-distill.toml", "--out", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "notes.txt" in proc.stderr and "--force" in proc.stderr and str(out) in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_export_mismatch_past_tolerance_is_an_error(example, tmp_path):
    config = edit_config(example, replace={"tolerance = 1e-4": "tolerance = 1e-12"})
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert_clean_failure(proc, tmp_path, out, "max |difference|", "tolerance 1e-12")


def test_unknown_target_lists_the_available_ones(example, tmp_path):
    config = edit_config(example, replace={'name = "ort"': 'name = "tensorrt"'})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "unknown target 'tensorrt'; available: coreml, ort, tflite" in proc.stderr


def test_unknown_precision_lists_the_offered_ones(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["int3"])
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no precision 'int3'" in proc.stderr and "int8-dynamic" in proc.stderr


def test_every_command_help_exits_0():
    commands = ["check", "demo", "export", "verify", "ladder", "advise", "fingerprint", "bundle", "devices",
                "devices setup", "devices calibrate", "targets", "inspect", "merge-reports"]
    for command in commands:
        proc = run_cli(*command.split(), "--help")
        assert proc.returncode == 0 and "Usage:" in proc.stdout, (command, proc.stderr)
    assert run_cli("check", "--no-such-flag").returncode == 2


def test_a_cancelled_run_leaves_nothing_half_written(tmp_path):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "edge_distill", "demo", "--out", str(tmp_path / "out"), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.partial-*")) and time.time() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".out.partial-*")), "the run never started writing"
    proc.terminate()  # what a CI runner sends on cancel
    assert proc.wait(timeout=60) == 143
    assert not list(tmp_path.iterdir())  # neither the folder nor its temporary twin
