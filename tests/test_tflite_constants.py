"""LiteRT int8: the float constants PT2E leaves (a learned position embedding entering an ADD, a
LayerNorm's scale and shift) stored int8, and a LayerNorm's scale folded into the Linear after it.
The post-pass runs on tests/data/tiny_pos.fp32.tflite (`PosStudent`, seed 0, converted by litert-torch
as the target converts: `python tests/test_tflite_constants.py` rewrites it), so that it takes a fraction
of a second. What a test asserts is read back from the flatbuffer with its reader API (not the object
API the pass writes with) and worked out a second way from the torch student's own tensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_distill.calibration import Dataset, InputSpec
from edge_distill.models import SourceModel
from edge_distill.targets import BuildRequest, get_target
from edge_distill.targets.tflite import build as tflite_build

FLOAT32, INT8 = 0, 9  # TensorType in LiteRT's schema
DEQUANTIZE = 6
TINY_POS = Path(__file__).parent / "data" / "tiny_pos.fp32.tflite"


class PosStudent(torch.nn.Module):
    """x [n, 16, 32] + a position embedding [1, 16, 32] (512 values), LayerNorm, Linear 32->4 (128 weights), then times a
    [1, 16, 4] constant (64 values)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pos = torch.nn.Parameter(torch.randn(1, 16, 32))
        self.norm = torch.nn.LayerNorm(32)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)
        self.fc = torch.nn.Linear(32, 4)
        self.gain = torch.nn.Parameter(torch.rand(1, 16, 4) + 0.5)

    def forward(self, x):
        return self.fc(self.norm(x + self.pos)) * self.gain


SAMPLES = np.random.default_rng(0).normal(size=(8, 16, 32)).astype(np.float32)


def _student() -> SourceModel:
    return SourceModel("pos", "torch", [InputSpec("x", ("batch", 16, 32))], "0" * 64, module=PosStudent().eval())


def _constants(path: Path) -> list[dict]:
    """Every tensor holding data in the file: its index, type, shape, bytes, scales."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    found = []
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, np.ndarray) and data.size:
            q = tensor.Quantization()
            found.append({"index": i, "type": tensor.Type(), "shape": list(tensor.ShapeAsNumpy()), "bytes": data.size,
                          "data": data, "scales": [] if q is None or q.ScaleLength() == 0 else list(q.ScaleAsNumpy()),
                          "zero_points": [] if q is None or q.ZeroPointLength() == 0 else list(q.ZeroPointAsNumpy())})
    return found


def _dequantize_ops(path: Path) -> list[tuple[int, int]]:
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == DEQUANTIZE:
            ops.append((int(op.Inputs(0)), int(op.Outputs(0))))
    return ops


def _name(path: Path, index: int) -> str:
    from ai_edge_litert import schema_py_generated as fb

    return fb.Model.GetRootAs(path.read_bytes(), 0).Subgraphs(0).Tensors(index).Name().decode()


def _run(path: Path) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    name = next(iter(runner.get_input_details()))
    return np.concatenate([next(iter(runner(**{name: SAMPLES[i:i + 1]}).values())) for i in range(len(SAMPLES))])


@pytest.fixture
def fp32(tmp_path):
    path = tmp_path / "model.int8.tflite"
    shutil.copyfile(TINY_POS, path)
    return path


# -- the post-pass ------------------------------------------------------------------------------------
def test_the_position_embedding_is_stored_int8_per_tensor_behind_a_dequantize(fp32):
    pos = PosStudent().pos.detach().numpy()
    before = [c for c in _constants(fp32) if c["type"] == FLOAT32 and c["bytes"] == 4 * pos.size]
    assert len(before) == 1  # the embedding, in float32, before the pass
    assert tflite_build.int8_constants(fp32) == 1
    after = _constants(fp32)
    assert not [c for c in after if c["type"] == FLOAT32 and c["bytes"] >= 4 * 256]
    [stored] = [c for c in after if c["type"] == INT8 and c["shape"] == [1, 16, 32]]
    scale = float(np.abs(pos).max()) / 127  # symmetric, one scale for the whole tensor
    assert stored["bytes"] == pos.size and stored["zero_points"] == [0]
    assert stored["scales"] == pytest.approx([scale], rel=1e-6)
    values = stored["data"].view(np.int8).astype(np.float32).reshape(pos.shape) * scale
    assert np.abs(values - pos).max() <= scale / 2 * 1.001  # rounded to the nearest step
    assert np.abs(stored["data"].view(np.int8)).max() == 127  # the largest value is the last step
    # one DEQUANTIZE, from the int8 twin to the float tensor the ADD reads, which now holds no data
    assert _dequantize_ops(fp32) == [(stored["index"], before[0]["index"])]
    assert _name(fp32, stored["index"]) == _name(fp32, before[0]["index"]) + "_int8"
    assert before[0]["index"] not in {c["index"] for c in after}


def test_the_file_runs_and_agrees_with_the_float_one_within_the_steps_error(fp32, tmp_path):
    reference = _run(TINY_POS)
    tflite_build.int8_constants(fp32)
    got = _run(fp32)
    difference = float(np.abs(got - reference).max())
    # the embedding moves each sum by at most half a step; LayerNorm, the Linear and the gain scale it
    # by far less than 10 here: a difference above 0 and below 10 steps
    step = float(np.abs(PosStudent().pos.detach().numpy()).max()) / 127
    assert 0 < difference < 10 * step


def test_smaller_constants_stay_float_and_the_threshold_counts_elements(fp32, tmp_path):
    assert tflite_build.int8_constants(fp32, min_elements=513) == 0  # 512 values: below
    assert fp32.read_bytes() == TINY_POS.read_bytes()  # nothing to store: the file is not rewritten
    untouched = _constants(fp32)
    assert [c["bytes"] for c in untouched if c["type"] == FLOAT32 and c["shape"] == [1, 16, 32]] == [4 * 512]
    assert _dequantize_ops(fp32) == []
    assert tflite_build.int8_constants(fp32, min_elements=512) == 1  # exactly 512: in
    gains = [c for c in _constants(fp32) if c["shape"] == [1, 16, 4]]
    assert [(c["type"], c["bytes"]) for c in gains] == [(FLOAT32, 4 * 64)]  # 64 < 256: kept float


@pytest.mark.parametrize("elements, stored", [(255, 1), (256, 2)])
def test_the_default_threshold_is_256_values(fp32, elements, stored):
    """The gain's buffer rewritten to hold 255 or 256 values (the pass reads data, not the graph)."""
    def resized(model, tensor):
        gain = next(t for t in model.subgraphs[0].tensors if list(t.shape) == [1, 16, 4])
        gain.shape = [elements]
        model.buffers[gain.buffer].data = np.ones(elements, np.float32).view(np.uint8)

    _edit(fp32, resized)
    assert tflite_build.int8_constants(fp32) == stored  # the embedding, and the gain from 256 values


def test_an_all_zero_constant_gets_a_unit_scale(fp32):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(fp32))
    for buffer in model.buffers:
        if buffer.data is not None and len(buffer.data) == 4 * 512:
            buffer.data = np.zeros(4 * 512, np.uint8)
    flatbuffer_utils.write_model(model, str(fp32))
    assert tflite_build.int8_constants(fp32) == 1
    [stored] = [c for c in _constants(fp32) if c["type"] == INT8 and c["shape"] == [1, 16, 32]]
    assert stored["scales"] == [1.0] and not stored["data"].any()


def _edit(path: Path, change) -> None:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    change(model, next(t for t in model.subgraphs[0].tensors if list(t.shape) == [1, 16, 32]
                       and model.buffers[t.buffer].data is not None))
    flatbuffer_utils.write_model(model, str(path))


def test_a_variable_or_a_buffer_two_tensors_read_stays_as_it_is(fp32, tmp_path):
    import copy

    def variable(model, tensor):
        tensor.isVariable = True

    def shared(model, tensor):
        model.subgraphs[0].tensors.append(copy.deepcopy(tensor))  # a second reader of the same buffer

    for change in (variable, shared):
        path = tmp_path / f"{change.__name__}.tflite"
        shutil.copyfile(TINY_POS, path)
        _edit(path, change)
        assert tflite_build.int8_constants(path) == 0
        assert _dequantize_ops(path) == []


def test_one_dequantize_code_serves_every_stored_constant(fp32):
    from ai_edge_litert import schema_py_generated as fb

    assert tflite_build.int8_constants(fp32, min_elements=512) == 1
    assert tflite_build.int8_constants(fp32, min_elements=64) == 2  # then the gain (64) and the weight (128)
    model = fb.Model.GetRootAs(fp32.read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    dequantize = [c for c in codes if max(c.BuiltinCode(), c.DeprecatedBuiltinCode()) == DEQUANTIZE]
    assert [(c.BuiltinCode(), c.DeprecatedBuiltinCode(), c.Version()) for c in dequantize] == [(6, 6, 2)]
    assert len(_dequantize_ops(fp32)) == 3
    assert sorted(c["type"] for c in _constants(fp32) if c["shape"] in ([1, 16, 32], [1, 16, 4], [4, 32])) == [INT8] * 3
    assert _run(fp32).shape == (8, 16, 4)  # and the interpreter runs both


# -- the fold -----------------------------------------------------------------------------------------
class Norms(torch.nn.Module):
    """Nine LayerNorms (eps 0.1, not the default), in graph order: one read by a residual and then a
    Linear, one read by a Linear and then as an output, one before a Linear without bias, one before a ReLU,
    one with no scale and shift, one whose parameters a second call shares (twice), the one read by a
    Linear alone (the only one folded), and one that is the model's output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(8, eps=0.1) for _ in range(5))
        self.bare = torch.nn.LayerNorm(8, eps=0.1, elementwise_affine=False)
        self.shared = torch.nn.LayerNorm(8, eps=0.1)
        self.last = torch.nn.LayerNorm(8, eps=0.1)
        for norm in list(self.norms) + [self.shared]:
            with torch.no_grad():
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
        self.fc = torch.nn.ModuleList(torch.nn.Linear(8, 8, bias=i != 2) for i in range(7))

    def forward(self, x):
        y = self.norms[0](x)
        x = y * 2 + self.fc[0](y)
        kept = self.norms[1](x)
        x = self.fc[1](kept)  # read by its linear first, then as an output
        x = self.fc[2](self.norms[2](x))
        x = torch.relu(self.norms[4](x))
        x = self.fc[3](self.bare(x))
        x = self.fc[4](self.shared(x)) + self.fc[5](self.shared(x))
        return self.last(self.fc[6](self.norms[3](x))), kept  # the last norm read by the output alone


def test_a_layer_norm_read_by_a_linear_alone_is_folded_into_it():
    module = Norms().eval()
    x = torch.randn(4, 8)
    program = torch.export.export(module, (x,)).module()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    assert tflite_build.fold_norms_into_linears(program) == 1
    with torch.no_grad():
        for got, expected in zip(program(x), module(x), strict=True):
            assert torch.allclose(got, expected, atol=1e-5)
    gamma, beta = before["norms.3.weight"], before["norms.3.bias"]
    weight, bias = before["fc.6.weight"], before["fc.6.bias"]
    folded = dict(program.named_parameters())
    assert torch.allclose(folded["fc.6.weight"], weight * gamma[None, :])  # column j scaled by gamma j
    assert torch.allclose(folded["fc.6.bias"], bias + (weight * beta[None, :]).sum(1))
    norms = [n for n in program.graph.nodes if n.target == torch.ops.aten.layer_norm.default]
    assert [n.args[2] is None for n in norms] == [False, False, False, False, True, False, False, True, False]
    assert [n.args[4] for n in norms] == [0.1] * 9
    for name, value in module.named_parameters():  # the caller's module keeps its own weights
        assert torch.equal(value, before[name])
    for name in before:
        if name not in ("fc.6.weight", "fc.6.bias"):
            assert name not in folded or torch.equal(folded[name], before[name]), name


# -- through the target -------------------------------------------------------------------------------
@pytest.mark.slow  # a PT2E quantization and two conversions by litert-torch
def test_pt2e_int8_holds_no_large_float_constant(tmp_path):
    built = get_target("tflite").build(BuildRequest(
        onnx_path=None, source=_student(), precision="int8", calibration=Dataset("calibration", {"x": SAMPLES}),
        calibration_method="minmax", options={}, out_dir=tmp_path, work_dir=tmp_path, tolerance=1e-4))
    constants = _constants(built.path)
    assert not [c for c in constants if c["type"] == FLOAT32 and c["bytes"] >= 4 * 256]
    assert [c["bytes"] for c in constants if c["type"] == INT8 and c["shape"] == [1, 16, 32]] == [512]
    assert built.details["quantization"] == ("litert-torch PT2E int8, symmetric per-channel weights, calibrated; "
                                             "1 LayerNorm scale(s) folded into the next linear; 1 other float "
                                             "constant(s) stored int8 per tensor")
    with torch.no_grad():
        expected = PosStudent().eval()(torch.from_numpy(SAMPLES)).numpy()
    got = _run(built.path)
    cosine = (got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected)
    assert cosine > 0.99


if __name__ == "__main__":
    tflite_build.convert(PosStudent().eval(), (torch.from_numpy(SAMPLES[:1]),), TINY_POS, False, _student().inputs)
    tflite_build.name_signature(TINY_POS, _student().inputs)
