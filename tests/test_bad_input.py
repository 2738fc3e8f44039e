"""Bad input: each case exits 2 with a message naming the file and the problem, prints no
traceback, leaves nothing half-written at --out and overwrites no user file."""

import os

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


def test_a_budget_key_the_outputs_kind_cannot_answer_is_refused_before_any_build(example, tmp_path):
    """max_cer reads a sequence; the example's output is class scores. Before, every artifact was built
    and measured and the check came out unmeasured (exit 3) at the end."""
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int8"],
                         budgets="[budgets]\n[budgets.precisions.int8.outputs.output]\nmax_cer = 0.1\n")
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert_clean_failure(proc, tmp_path, out, f"error: {config}: [budgets.precisions.int8.outputs.output] max_cer: "
                                              "output 'output' is a classification output, which has no such figure "
                                              "(its keys: ",
                         "hint: use the output's own keys, or declare its kind: [model.outputs.NAME] kind = ...")
    assert "building" not in proc.stderr and "int8" not in proc.stdout  # refused before the first build


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
                "devices setup", "devices calibrate", "targets", "inspect", "slices", "slices discover", "merge-reports"]
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


LYING_CONFIG = """[model]
student = "mm.onnx"
[data]
evaluation = "{evaluation}"
calibration = "{calibration}"
[[targets]]
name = "ort"
precisions = ["fp32"]
"""


def lying_workspace(tmp_path, *, labels=None, x=None, calibration_count=16):
    """A 4-class MatMul model with data whose labels or inputs can lie, and a config checking it."""
    from test_hostile_corpus import _matmul_onnx

    _matmul_onnx(tmp_path / "mm.onnx")
    rng = np.random.default_rng(1)
    x = rng.random((16, 4), np.float32) if x is None else x
    np.savez(tmp_path / "eval.npz", x=x, labels=np.arange(16) % 4 if labels is None else labels)
    np.savez(tmp_path / "cal.npz", x=rng.random((calibration_count, 4), np.float32))
    config = tmp_path / "edge-distill.toml"
    config.write_text(LYING_CONFIG.format(evaluation="eval.npz", calibration="cal.npz"))
    return config


@pytest.mark.parametrize("command", ["check", "verify"])
def test_labels_outside_the_models_classes_are_refused(tmp_path, command):
    labels = np.arange(16) % 4
    labels[3], labels[9], labels[10] = 57, -1, 57
    config = lying_workspace(tmp_path, labels=labels)
    out = tmp_path / "out"
    args = [config] if command == "check" else [tmp_path / "mm.onnx", "--data", tmp_path / "eval.npz"]
    proc = run_cli(command, *args, "--out", out)
    assert_clean_failure(proc, tmp_path, out, f"{tmp_path / 'eval.npz'}: 'labels' holds -1, 57 in 3 sample(s), "
                                              "outside [0, 4): the model's output has 4 classes")


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int64"])
def test_integer_data_for_a_float_input_is_refused_not_cast(tmp_path, dtype):
    lying_workspace(tmp_path, x=np.arange(64).reshape(16, 4).astype(dtype))
    out = tmp_path / "out"
    proc = run_cli("export", tmp_path / "mm.onnx", "--data", tmp_path / "eval.npz", "--out", out)
    assert_clean_failure(proc, tmp_path, out, f"{tmp_path / 'eval.npz'}: input 'x' holds integers ({dtype}), the "
                                              "model expects float32; integers are never cast to float silently",
                         "hint: save the values the model was trained on (e.g. pixels scaled to 0..1) as float32")


def test_a_calibration_set_smaller_than_asked_for_is_a_warning(tmp_path):
    import json

    config = lying_workspace(tmp_path, calibration_count=5)
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = (f"{tmp_path / 'cal.npz'}: the calibration data hold 5 samples, fewer than calibration_samples = 256; "
               "quantization ranges drawn from so few may clip real inputs")
    assert warning in json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]


@pytest.mark.parametrize("content, needle", [
    (b"student weights, see the wiki\n", "notes.txt: is not a weights file: neither safetensors nor a state dict saved "
                                         "by torch.save (it begins b'stud')"),
    ("a zip", "notes.txt: cannot read weights (RuntimeError: "),
])
def test_weights_that_are_not_weights(example, tmp_path, content, needle):
    if content == "a zip":  # a zip, as torch.save writes, of something else
        import zipfile

        with zipfile.ZipFile(example / "notes.txt", "w") as archive:
            archive.writestr("notes.txt", "not a tensor")
    else:
        (example / "notes.txt").write_bytes(content)
    config = edit_config(example, replace={'weights = "student.safetensors"': 'weights = "notes.txt"'})
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert_clean_failure(proc, tmp_path, out, needle)


def test_a_results_store_that_is_not_a_database(tmp_path):
    from test_hostile_corpus import _matmul_onnx

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n")
    np.savez(tmp_path / "eval.npz", x=np.ones((4, 4), np.float32))
    out = tmp_path / "out"
    needle = f"cannot open the results store sqlite:///{notes}: file is not a database"
    proc = run_cli("verify", _matmul_onnx(tmp_path / "mm.onnx"), "--data", tmp_path / "eval.npz", "--history", notes,
                   "--out", out)
    assert_clean_failure(proc, tmp_path, out, needle)
    listing = run_cli("history", "--store", notes)
    assert listing.returncode == 2 and needle in listing.stderr and "Traceback" not in listing.stderr
    assert notes.read_text() == "my notes, not a database\n"


def test_an_array_whose_header_declares_terabytes_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    from test_hostile_corpus import _matmul_onnx

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)  # 64 bytes where 16 TB are declared
    out = tmp_path / "out"
    proc = run_cli("export", _matmul_onnx(tmp_path / "mm.onnx"), "--data", tmp_path / "huge.npz", "--out", out)
    quarter_of_memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4  # the default bound
    assert_clean_failure(proc, tmp_path, out, f"{tmp_path / 'huge.npz'}: array 'x' declares shape [1000000000000, 4] "
                                              f"float32: 16,000,000,000,000 bytes, more than the {quarter_of_memory:,} "
                                              "a data array may have; refused before reading it",
                         "hint: if this machine can hold it, set EDGE_DISTILL_MAX_ARRAY_BYTES to a larger number of "
                         "bytes")


def test_the_array_size_bound_is_configurable(tmp_path):
    from test_hostile_corpus import _matmul_onnx

    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.ones((16, 4), np.float32))  # 256 bytes
    out = tmp_path / "out"
    args = ("export", _matmul_onnx(tmp_path / "mm.onnx"), "--data", data, "--out", out)
    proc = run_cli(*args, env={"EDGE_DISTILL_MAX_ARRAY_BYTES": "255"})
    assert_clean_failure(proc, tmp_path, out, f"{data / 'x.npy'}: array 'x' declares shape [16, 4] float32: 256 bytes, "
                                              "more than the 255 a data array may have; refused before reading it")
    assert run_cli(*args, env={"EDGE_DISTILL_MAX_ARRAY_BYTES": "256"}).returncode == 0


def test_a_normalization_scale_that_is_not_a_number_is_refused(example):
    """bundle divides the golden inputs by [model.normalization] scale: a list there passed the config and
    bundling raised TypeError (float of a list, found by mypy)."""
    from edge_distill.config import load_config
    from edge_distill.errors import BadInput

    config = edit_config(example, replace={"scale = 0.00392156862745098": "scale = [0.5, 0.25]"})
    with pytest.raises(BadInput) as refused:
        load_config(config)
    assert refused.value.exit_code == 2
    assert str(refused.value) == f"{config}: 'scale' in [model.normalization] must be int or float, got [0.5, 0.25]"
