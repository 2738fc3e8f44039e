"""The loader's accepted forms, and the export's guarantees, with the real torch exporter."""

import sys

import numpy as np
import pytest
import torch

from conftest import EXAMPLE, run_cli
from edge_distill.calibration import load_dataset
from edge_distill.errors import BadInput
from edge_distill.exporting import export_to_onnx
from edge_distill.models import load_model

sys.path.insert(0, str(EXAMPLE))
import fmnist_models  # noqa: E402

sys.path.remove(str(EXAMPLE))


@pytest.fixture(scope="module")
def student():
    return load_model("fmnist_models:student", str(EXAMPLE / "student.safetensors"),
                      load_model_inputs(), search_path=EXAMPLE)


def load_model_inputs():
    from edge_distill.config import load_config

    return load_config(EXAMPLE / "edge-distill.toml").model.inputs


@pytest.fixture(scope="module")
def samples(student):
    return load_dataset(EXAMPLE / "eval.npz", student.inputs).subset(np.arange(64))


def test_pt2_program_loads_with_its_own_signature(tmp_path, student, samples):
    x = torch.from_numpy(samples.inputs["image"][:2])
    program = torch.export.export(student.module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "student.pt2")
    loaded = load_model(str(tmp_path / "student.pt2"))
    assert [(s.name, s.shape, s.dtype) for s in loaded.inputs] == [("input", ("batch", 1, 28, 28), "float32")]
    data = load_dataset(EXAMPLE / "eval.npz", student.inputs).subset(np.arange(16))
    data.inputs["input"] = data.inputs.pop("image")
    info = export_to_onnx(loaded, tmp_path / "m.onnx", samples=data)
    assert info.dynamic_axes == {"input": ["batch"]} and info.parity_max_abs_diff < 1e-4


def test_state_dict_pt_is_read_with_weights_only(tmp_path, student, samples):
    torch.save(student.module.state_dict(), tmp_path / "w.pt")
    again = load_model("fmnist_models:student", str(tmp_path / "w.pt"), student.inputs, search_path=EXAMPLE)
    assert np.array_equal(again.predict(samples), student.predict(samples))


def test_trust_pickle_is_the_explicit_way_out(tmp_path, student, samples):
    torch.save(student.module, tmp_path / "whole.pt")
    with pytest.raises(BadInput, match="refuses it by default"):
        load_model(str(tmp_path / "whole.pt"), inputs=student.inputs)
    trusted = load_model(str(tmp_path / "whole.pt"), inputs=student.inputs, trust_pickle=True)
    assert np.array_equal(trusted.predict(samples), student.predict(samples))


def test_factory_errors_are_clear(tmp_path, student):
    with pytest.raises(BadInput, match="has no callable 'nope'"):
        load_model("fmnist_models:nope", None, student.inputs, search_path=EXAMPLE)
    with pytest.raises(BadInput, match="weights do not fit"):
        load_model("fmnist_models:teacher", str(EXAMPLE / "student.safetensors"), student.inputs, search_path=EXAMPLE)
    with pytest.raises(BadInput, match="does not declare its inputs"):
        load_model("fmnist_models:student", str(EXAMPLE / "student.safetensors"), [], search_path=EXAMPLE)


def test_export_catches_a_frozen_batch_axis(tmp_path, samples):
    class BatchFrozen(torch.nn.Module):  # reshapes with a literal batch of 2
        def forward(self, x):
            return x.reshape(2, 784)[:, :10]

    from edge_distill.models import SourceModel

    model = SourceModel(reference="frozen", kind="torch", inputs=load_model_inputs(),
                        fingerprint="0" * 64, module=BatchFrozen())
    with pytest.raises(BadInput) as err:
        export_to_onnx(model, tmp_path / "f.onnx", samples=samples)
    assert "export froze the dynamic axes ['batch'] of input 'image'" in str(err.value)


@pytest.mark.slow
def test_export_command_builds_onnx_and_ort_artifacts(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", "fmnist_models:student", "--weights", EXAMPLE / "student.safetensors",
                   "--config", EXAMPLE / "edge-distill.toml", "--target", "ort-int8-dynamic",
                   "--data", EXAMPLE / "eval.npz", "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.onnx").is_file() and (out / "ort" / "model.int8-dynamic.ort").is_file()
    assert "max |difference| vs source" in proc.stdout
    # The same --out again is ours to replace; a user's file inside it is not.
    (out / "mine.txt").write_text("x")
    again = run_cli("export", "fmnist_models:student", "--weights", EXAMPLE / "student.safetensors",
                    "--config", EXAMPLE / "edge-distill.toml", "--data", EXAMPLE / "eval.npz", "--out", out, "-q")
    assert again.returncode == 2 and "mine.txt" in again.stderr
    forced = run_cli("export", "fmnist_models:student", "--weights", EXAMPLE / "student.safetensors",
                     "--config", EXAMPLE / "edge-distill.toml", "--data", EXAMPLE / "eval.npz", "--out", out, "-q",
                     "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "mine.txt").read_text() == "x" and not (out / "ort").exists()


@pytest.mark.slow
def test_help_is_light():
    code = ("import sys; from edge_distill.cli import main\n"
            "heavy = {'torch', 'onnx', 'onnxruntime', 'numpy'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
    proc = run_cli("--help")
    assert proc.returncode == 0 and "Exit codes" in proc.stdout


@pytest.mark.slow
def test_targets_command_answers_from_data():
    proc = run_cli("targets")
    assert proc.returncode == 0
    assert "ort:" in proc.stdout and "int8-dynamic" in proc.stdout and "entropy" in proc.stdout


def test_target_strings():
    from edge_distill.targets import parse_target_string

    assert parse_target_string("ort") == ("ort", None)
    assert parse_target_string("ort-int8-dynamic") == ("ort", "int8-dynamic")
    assert parse_target_string("coreml-palettize4") == ("coreml", "palettize4")
    with pytest.raises(BadInput, match="available: coreml, ort, tflite"):
        parse_target_string("tensorrt-int8")


def test_fmnist_models_match_the_weights():
    assert fmnist_models.count_parameters(fmnist_models.student()) < fmnist_models.count_parameters(
        fmnist_models.teacher()) / 5


def test_an_onnx_output_is_chosen_by_name(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edge_distill.calibration import Dataset

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 3]) for n in ("first", "pooled")]
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["first"]), helper.make_node("Relu", ["x"], ["pooled"])],
                              "g", [x], outs)
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    data = Dataset(source="s", inputs={"x": np.array([[-1.0, 2.0, -3.0]], np.float32)})
    model = load_model(f"{path}#pooled")
    assert model.predict(data).tolist() == [[0.0, 2.0, 0.0]]  # Relu, not the first output (Neg)
    export_to_onnx(model, tmp_path / "copy.onnx", samples=data)
    assert [o.name for o in onnx.load(str(tmp_path / "copy.onnx")).graph.output] == ["pooled"]
    with pytest.raises(BadInput, match="has no output 'nope'; its outputs: first, pooled"):
        load_model(f"{path}#nope")


def test_latency_by_length_on_a_fixed_length_model(tmp_path):
    """A model built for exactly 8 tokens is timed at 8 only; a budget held at another length is
    not measured, with the reason."""
    import onnx
    from onnx import TensorProto, helper

    from edge_distill.calibration import Dataset
    from edge_distill.devices import Job, RunSettings, resolve
    from edge_distill.devices.host import latency_by_length
    from edge_distill.targets import get_target

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 8])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, 8])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph([helper.make_node("Add", ["input_ids", "attention_mask"], ["sum"]),
                               helper.make_node("Cast", ["sum"], ["output"], to=TensorProto.FLOAT)],
                              "g", [ids, mask], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "fixed.onnx")
    runner = get_target("ort").open_runner(tmp_path / "fixed.onnx", 1)
    data = Dataset(source="s", inputs={"input_ids": np.array([[101, 7, 9, 102, 0, 0, 0, 0]] * 4),
                                       "attention_mask": np.array([[1, 1, 1, 1, 0, 0, 0, 0]] * 4)})
    def job(budget_length):
        settings = RunSettings(resolve("host"), warmup=2, runs=20, sequence_lengths=(4, 8),
                               sequence_length=budget_length)
        return Job(target="ort", path=tmp_path / "fixed.onnx", runner=runner, data=data, settings=settings, label="m")

    lat, by_length, length = latency_by_length(job(8))
    assert length == 8 and lat.p95_ms > 0 and by_length["8"]["p95_ms"] == lat.p95_ms
    assert "takes exactly 8 tokens (a fixed shape), not 4" in by_length["4"]["why"]
    lat, by_length, length = latency_by_length(job(16))
    assert lat is None and length == 16 and "not 16" in by_length["16"]["why"]


SELF_LOADING = '''import torch
from safetensors.torch import load_file
from pathlib import Path


def student():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    net.load_state_dict(load_file(str(Path(__file__).with_name("packaged.safetensors"))))
    return net
'''


def test_a_factory_that_loads_its_own_weights_needs_no_weights_file(tmp_path, samples):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    save_file(net.state_dict(), str(tmp_path / "packaged.safetensors"))
    (tmp_path / "selfloading.py").write_text(SELF_LOADING)
    loaded = load_model("selfloading:student", None, load_model_inputs(), search_path=tmp_path)
    with torch.no_grad():
        expected = net(torch.from_numpy(samples.inputs["image"])).numpy()
    np.testing.assert_array_equal(loaded.predict(samples), expected)
    # the fingerprint follows the weights the factory loaded: the same weights give it, others change it
    again = load_model("selfloading:student", None, load_model_inputs(), search_path=tmp_path)
    assert loaded.fingerprint == again.fingerprint and len(loaded.fingerprint) == 64
    save_file({k: v + 1 for k, v in net.state_dict().items()}, str(tmp_path / "packaged.safetensors"))
    assert load_model("selfloading:student", None, load_model_inputs(), search_path=tmp_path).fingerprint \
        != loaded.fingerprint


def _unresolvable_op_pt2(tmp_path, student, samples):
    """A program naming an operator this torch does not have (a custom op whose library is absent)."""
    import zipfile

    x = torch.from_numpy(samples.inputs["image"][:2])
    torch.export.save(torch.export.export(student.module, (x,)), tmp_path / "clean.pt2")
    bad = tmp_path / "custom_op.pt2"
    with zipfile.ZipFile(tmp_path / "clean.pt2") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("models/model.json"):
                data = data.replace(b"torch.ops.aten.linear.default", b"torch.ops.mylib.custom.default")
            dst.writestr(name, data)
    return bad


def test_a_pt2_torch_cannot_load_is_bad_input_with_torchs_reason(tmp_path, student, samples):
    bad = _unresolvable_op_pt2(tmp_path, student, samples)
    with pytest.raises(BadInput) as info:
        load_model(str(bad))
    assert str(info.value) == (f"{bad}: not a loadable torch.export program (torch._export.serde.serialize."
                               "SerializeError: We failed to resolve torch.ops.mylib.custom.default to an operator)")


@pytest.mark.slow
def test_a_pt2_torch_cannot_load_exits_2_naming_the_file(tmp_path, student, samples):
    bad = _unresolvable_op_pt2(tmp_path, student, samples)
    proc = run_cli("export", bad, "--data", EXAMPLE / "eval.npz", "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: not a loadable torch.export program (")
    assert "We failed to resolve torch.ops.mylib.custom.default to an operator)" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_onnx_dimension_of_minus_one_is_free_not_a_batch_of_minus_one(tmp_path):
    """Paddle's exporter writes -1 for a free dimension: read as a size, it made the batch -1 and
    predictions came back empty."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "m.onnx")
    model = load_model(str(tmp_path / "m.onnx"))
    assert model.inputs[0].shape == ("dim0", 3) and model.inputs[0].fixed_batch is None
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    from edge_distill.calibration import Dataset

    np.testing.assert_array_equal(model.predict(Dataset("x", {"x": x})), np.maximum(x, 0))


def _damaged(clean, out, entry_suffix, compress=False):
    """`clean` with one byte of one entry flipped after its CRC was written (a bit rot, a bad copy)."""
    import zipfile

    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename),
                         zipfile.ZIP_DEFLATED if compress and info.filename.endswith(entry_suffix) else zipfile.ZIP_STORED)
    data = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(entry_suffix))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + min(40, info.compress_size // 2)] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("entry, compress, reason", [
    ("models/model.json", False, "not a loadable torch.export program (UnicodeDecodeError: "),  # torch's reason
    ("sample_inputs/model.pt", False, "archive entry '{name}/data/sample_inputs/model.pt' cannot be checked: "
                                      "not a well-formed pickle"),
    ("sample_inputs/model.pt", True, "archive entry '{name}/data/sample_inputs/model.pt' cannot be read (Error -3 "
                                     "while decompressing data"),
])
def test_a_damaged_pt2_is_bad_input_never_an_internal_error(tmp_path, student, samples, entry, compress, reason):
    """A damaged entry used to escape the archive check as zipfile's BadZipFile ('Bad CRC-32'): exit 3."""
    x = torch.from_numpy(samples.inputs["image"][:2])
    torch.export.save(torch.export.export(student.module, (x,)), tmp_path / "clean.pt2")
    bad = _damaged(tmp_path / "clean.pt2", tmp_path / "damaged.pt2", entry, compress)
    with pytest.raises(BadInput) as info:
        load_model(str(bad))
    assert str(info.value).startswith(f"{bad}: " + reason.format(name="clean")), str(info.value)


@pytest.mark.slow
def test_a_pt2_with_a_bad_crc_exits_2_not_3(tmp_path, student, samples):
    x = torch.from_numpy(samples.inputs["image"][:2])
    torch.export.save(torch.export.export(student.module, (x,)), tmp_path / "clean.pt2")
    bad = _damaged(tmp_path / "clean.pt2", tmp_path / "damaged.pt2", "sample_inputs/model.pt")
    proc = run_cli("export", bad, "--data", EXAMPLE / "eval.npz", "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: archive entry 'clean/data/sample_inputs/model.pt' cannot be "
                                  "checked: not a well-formed pickle"), proc.stderr
