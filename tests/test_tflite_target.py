"""The TFLite target with the real litert-torch converter, ai-edge-quantizer and LiteRT interpreter."""

import importlib.util

import numpy as np
import pytest
import torch

from conftest import EXAMPLE, run_cli
from edge_distill.calibration import Dataset, InputSpec, load_dataset, select_samples
from edge_distill.config import load_config
from edge_distill.errors import BadInput
from edge_distill.models import SourceModel, load_model
from edge_distill.targets import BuildRequest, get_target

pytestmark = pytest.mark.slow  # every test converts a model to LiteRT or runs the CLI


@pytest.fixture(scope="module")
def student():
    cfg = load_config(EXAMPLE / "edge-distill.toml")
    return load_model("fmnist_models:student", str(EXAMPLE / "student.safetensors"), cfg.model.inputs,
                      search_path=EXAMPLE)


@pytest.fixture(scope="module")
def data(student):
    return load_dataset(EXAMPLE / "eval.npz", student.inputs).subset(np.arange(500))


@pytest.fixture(scope="module")
def calibration(student):
    return select_samples(load_dataset(EXAMPLE / "calibration.npz", student.inputs), 128)


def build(tmp_path, source, precision, calibration, **options):
    out = tmp_path / f"{precision}-{'-'.join(f'{k}={v}' for k, v in options.items())}"
    out.mkdir()
    return get_target("tflite").build(BuildRequest(onnx_path=None, source=source, precision=precision,
                                                   calibration=calibration, calibration_method="minmax",
                                                   options=options, out_dir=out, work_dir=out))


def run(artifact, data):
    runner = get_target("tflite").open_runner(artifact.path, 1)
    return runner.run({"image": data.inputs["image"]})[0]


def test_fp32_matches_torch_and_carries_metadata(tmp_path, student, data, calibration):
    artifact = build(tmp_path, student, "fp32", calibration)
    diff = np.abs(run(artifact, data) - student.predict(data)).max()
    assert diff <= 1e-4 and artifact.details["parity_max_abs_diff"] <= 1e-4
    info = get_target("tflite").inspect(artifact.path)
    assert info["io"]["inputs"][0]["name"] == "image"  # the signature uses the model's input name
    assert info["metadata"]["inputs"][0]["layout"] == "source" and not info["integer_only"]


def test_int8_float_io_by_default_and_integer_io_on_request(tmp_path, student, data, calibration):
    reference = student.predict(data).argmax(1)
    float_io = build(tmp_path, student, "int8", calibration)
    assert float_io.details["io"]["inputs"][0]["dtype"] == "float32"
    assert float_io.details["integer_only"] is False  # float I/O: a QUANTIZE and a DEQUANTIZE at the edges
    assert float_io.details["float_islands"] == []  # every op of the student runs in int8
    assert (run(float_io, data).argmax(1) == reference).mean() >= 0.98
    integer_io = build(tmp_path, student, "int8", calibration, integer_io=True)
    assert integer_io.details["io"]["inputs"][0]["dtype"] == "int8" and integer_io.details["integer_only"]
    assert (run(integer_io, data).argmax(1) == reference).mean() >= 0.98  # the runner quantizes the I/O


def test_channels_last_io(tmp_path, student, data, calibration):
    artifact = build(tmp_path, student, "fp32", calibration, channels_last_io=True)
    assert artifact.details["io"]["inputs"][0]["shape"] == [1, 28, 28, 1]
    assert np.abs(run(artifact, data) - student.predict(data)).max() <= 1e-4  # NCHW data, transposed by the runner


@pytest.mark.parametrize("precision, min_agreement", [("fp16", 0.99), ("int8-dynamic", 0.98), ("int4", 0.95)])
def test_weight_precisions(tmp_path, student, data, calibration, precision, min_agreement):
    artifact = build(tmp_path, student, precision, calibration)
    assert (run(artifact, data).argmax(1) == student.predict(data).argmax(1)).mean() >= min_agreement
    fp32_size = 212_000
    assert artifact.size_bytes < fp32_size * {"fp16": 0.6, "int8-dynamic": 0.35, "int4": 0.2}[precision]
    assert artifact.path.stat().st_mode & 0o777 == 0o644  # a model file, not an executable


def int4_blocks(path):
    """{weight shape: (scales, block size)} of the block-quantized int4 weights of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    blocks = {}
    for t in Interpreter(model_path=str(path)).get_tensor_details():
        q = t["quantization_parameters"]
        if q["block_size"]:
            blocks[tuple(int(d) for d in t["shape"])] = (len(q["scales"]), int(q["block_size"]))
    return blocks


@pytest.mark.parametrize("block", [32, 64])
def test_int4_block_size_is_the_graphs(tmp_path, student, calibration, block):
    artifact = build(tmp_path, student, "int4", calibration, int4_block_size=block)
    # The student's 64 -> 10 layer is blockwise (its depth, 64, the block divides); its 784-deep layer
    # is not (no supported block divides 784) and stays channelwise. Read from the flatbuffer.
    assert int4_blocks(artifact.path) == {(10, 64): (10 * 64 // block, block)}


def test_int4_weight_only_recipe(tmp_path, student, data, calibration):
    artifact = build(tmp_path, student, "int4", calibration, int4_recipe="weight-only")
    assert "DEQUANTIZE" in artifact.details["ops"] and "weight-only" in artifact.details["quantization"]
    with pytest.raises(BadInput, match="int4_recipe must be"):
        build(tmp_path, student, "int4", calibration, int4_recipe="fancy")


def test_layer_choices_that_do_not_apply_are_refused(tmp_path, student, calibration):
    with pytest.raises(BadInput, match="keep_float does not apply to int8: litert-torch's PT2E quantizer"):
        build(tmp_path, student, "int8", calibration, keep_float=["a"])
    with pytest.raises(BadInput, match="keep_int8 applies to int4 only, not int8-dynamic"):
        build(tmp_path, student, "int8-dynamic", calibration, keep_int8=["a"])
    with pytest.raises(BadInput, match="'a' is in both keep_float and keep_int8"):
        build(tmp_path, student, "int4", calibration, keep_float=["a"], keep_int8=["a"])


SPEC = [InputSpec("x", ("batch", 8))]
CAL = Dataset("cal", {"x": np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)})


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


class Inverse(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.linalg.inv(self.linear(x).reshape(-1, 2, 2, 2)).reshape(-1, 8)


class WithLayerNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.b(torch.sin(self.norm(self.a(x))))


@pytest.mark.parametrize("module, precision, options, message", [
    (Branchy(), "fp32", {}, "torch.export cannot trace branchy: it branches on the values of its inputs"),
    (Inverse(), "fp32", {}, "no LiteRT lowering for aten.linalg_inv_ex"),
    (WithLayerNorm(), "int8", {"integer_io": True}, "keeps float islands: .*RSQRT"),
])
def test_conversion_errors_name_the_reason(tmp_path, module, precision, options, message):
    source = SourceModel("branchy" if isinstance(module, Branchy) else "m", "torch", SPEC, "0" * 64,
                         module=module.eval())
    with pytest.raises(BadInput, match=message):
        build(tmp_path, source, precision, CAL, **options)
    assert not list(tmp_path.rglob("*.tflite"))  # nothing half-written


def test_float_islands_are_reported_with_float_io(tmp_path):
    source = SourceModel("m", "torch", SPEC, "0" * 64, module=WithLayerNorm().eval())
    artifact = build(tmp_path, source, "int8", CAL)
    assert "RSQRT" in artifact.details["float_islands"] and not artifact.details["integer_only"]


def test_unknown_option_is_refused(example, tmp_path):
    from conftest import edit_config

    config = edit_config(example, replace={'name = "tflite"\n': 'name = "tflite"\noptions = { integer_oi = true }\n'})
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no option 'integer_oi'" in proc.stderr and "integer_io" in proc.stderr


def test_inspect_tflite_cli(demo_run):
    _, out = demo_run
    proc = run_cli("inspect", out / "tflite" / "model.int8.tflite")
    assert proc.returncode == 0, proc.stderr
    assert '"FULLY_CONNECTED"' in proc.stdout and '"float_islands": []' in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is not None, reason="onnx2torch is installed by hand here")
def test_onnx_only_student_gets_a_clear_answer(demo_run, tmp_path):
    """The ONNX route goes through onnx2torch; when the result does not convert, exit 2 says which
    input formats work, and nothing is left at --out."""
    _, demo = demo_run
    out = tmp_path / "out"
    proc = run_cli("export", demo / "onnx" / "model.onnx", "--target", "tflite-fp32", "--data", EXAMPLE / "eval.npz",
                   "--out", out)
    # onnx2torch is not a dependency (it pulls torchvision, which upgrades torch): without it, exit 2
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{demo / 'onnx' / 'model.onnx'} is ONNX only; the tflite target converts from torch" in proc.stderr
    assert "pip install onnx2torch" in proc.stderr and "module:factory" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_export_tolerance_reaches_the_fp32_parity_check_unless_the_option_is_given(tmp_path, student, calibration):
    out = tmp_path / "strict"
    out.mkdir()
    request = BuildRequest(onnx_path=None, source=student, precision="fp32", calibration=calibration,
                           calibration_method="minmax", options={}, out_dir=out, work_dir=out, tolerance=1e-12)
    with pytest.raises(BadInput, match=r"max \|difference\| .* on 32 samples, tolerance 1e-12") as info:
        get_target("tflite").build(request)
    assert "[export] tolerance" in str(info.value) and not (out / "model.fp32.tflite").exists()
    # the target's own option wins over [export]'s
    own = BuildRequest(**{**request.__dict__, "options": {"tolerance": 1e-3}})
    artifact = get_target("tflite").build(own)
    data = calibration.subset(np.arange(32))
    diff = float(np.abs(run(artifact, data) - student.predict(data)).max())  # worked out again
    assert artifact.details["parity_max_abs_diff"] == diff and 1e-12 < diff <= 1e-3


class BytesClassifier(torch.nn.Module):
    """Takes uint8 NHWC image bytes and normalises them inside, as many app-ready models do."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))

    def forward(self, x):
        return self.body((x.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std)


@pytest.mark.parametrize("recipe", ["pt2e", "aeq"])
def test_int8_keeps_a_plain_uint8_image_input_and_prepares(tmp_path, recipe):
    """Float I/O used to wrap every integer input in a QUANTIZE: on image bytes with no quantization
    it made a model LiteRT cannot prepare ("QUANTIZE failed to prepare"), whichever the recipe."""
    torch.manual_seed(0)
    net = BytesClassifier().eval()
    spec = [InputSpec("image", ("batch", 32, 32, 3), "uint8")]
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    source = SourceModel("bytes", "torch", spec, "0" * 64, module=net)
    artifact = build(tmp_path, source, "int8", Dataset("cal", {"image": images[:32]}), int8_recipe=recipe)
    assert artifact.details["io"]["inputs"] == [{"name": "image", "shape": [1, 32, 32, 3], "dtype": "uint8"}]
    assert "recipe_fallback" not in artifact.details
    out = get_target("tflite").open_runner(artifact.path, 1).run({"image": images})[0]
    with torch.no_grad():
        reference = net(torch.from_numpy(images)).numpy()
    assert out.dtype == np.float32 and np.abs(out - reference).max() < 0.1 * np.abs(reference).max()
    assert (out.argmax(1) == reference.argmax(1)).mean() >= 0.9
