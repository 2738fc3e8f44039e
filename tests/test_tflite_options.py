"""The LiteRT target's options, each reaching ai-edge-quantizer (or the fp32 conversion) and changing the
.tflite as it says: int4_block_size, int4_recipe, keep_float, keep_int8, tolerance, and the refusals.
The quantizers run on tests/data/tiny_fc.fp32.tflite: `_student()` (a scale and a shift, Linear 96->64,
ReLU, Linear 64->32, seed 0) as this target converts it (`build_through_the_target(folder, "fp32")` rewrites it), stored so
that each quantization takes a fraction of a second rather than a 25-second conversion. What a test
asserts is read back from the flatbuffer itself (tensor types, blockwise details) and worked out a
second way from the layers' depths."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_distill.calibration import Dataset, InputSpec
from edge_distill.errors import BadInput, ExportMismatch
from edge_distill.models import SourceModel
from edge_distill.targets import BuildRequest, get_target
from edge_distill.targets.tflite import build as tflite_build
from edge_distill.targets.tflite import capabilities

FLOAT32, FLOAT16, INT8, INT4 = 0, 1, 9, 17  # TensorType in LiteRT's schema
DEQUANTIZE = 6
DEPTHS = {"fc1": 96, "fc2": 64}  # each Linear layer's input depth: what a block must divide
BUILDS = itertools.count()
TINY_FP32 = Path(__file__).parent / "data" / "tiny_fc.fp32.tflite"


class Student(torch.nn.Module):
    """x * scale + shift (a MUL and an ADD with 2-D constants, which a FULLY_CONNECTED filter must pass
    over), then Linear 96->64, ReLU, Linear 64->32."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.rand(1, 96) + 0.5)
        self.shift = torch.nn.Parameter(torch.rand(1, 96))
        self.layers = torch.nn.Sequential(torch.nn.Linear(96, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))

    def forward(self, x):
        return self.layers(x * self.scale + self.shift)


def _student() -> SourceModel:
    torch.manual_seed(0)
    return SourceModel("tiny", "torch", [InputSpec("x", ("batch", 96))], "0" * 64, module=Student().eval())


CALIBRATION = Dataset("calibration", {"x": np.random.default_rng(0).normal(size=(16, 96)).astype(np.float32)})


def build_through_the_target(folder, precision: str, export_tolerance: float = 1e-4, **options):
    out = folder / f"{precision}-{next(BUILDS)}"
    out.mkdir()
    return get_target("tflite").build(BuildRequest(onnx_path=None, source=_student(), precision=precision,
                                                   calibration=CALIBRATION, calibration_method="minmax",
                                                   options=options, out_dir=out, work_dir=out,
                                                   tolerance=export_tolerance))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """A copy of the student's fp32 .tflite, and its two FULLY_CONNECTED ops' names in graph order."""
    path = tmp_path_factory.mktemp("tflite-options") / "model.fp32.tflite"
    shutil.copyfile(TINY_FP32, path)
    names = list(_fc_weights(path))
    assert len(names) == 2
    return path, dict(zip(("fc1", "fc2"), names))


def quantize(fp32, precision: str, **options) -> tuple:
    """One quantizer of the target (its build's step after the fp32 conversion) over the fp32 file."""
    path, names = fp32
    out = path.parent / f"{precision}-{next(BUILDS)}.tflite"
    out.write_bytes(b"a stale file of an earlier build")  # replaced: every test below reads the new model
    details: dict = {}
    options = {k: [names.get(n, n) for n in v] if k.startswith("keep_") else v for k, v in options.items()}
    quantizer = {"int4": tflite_build.quantize_int4, "fp16": tflite_build.quantize_fp16,
                 "int8-dynamic": tflite_build.quantize_int8_dynamic}[precision]
    quantizer(path, out, capabilities.options_with_defaults(options), details)
    return _by_layer(_fc_weights(out), names), details


def _fc_weights(path) -> dict[str, dict]:
    """Each FULLY_CONNECTED op's weight, by the op's output tensor name: its stored type, block size
    (blockwise) or scale count (channelwise), and whether a DEQUANTIZE op feeds it (float compute)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    producer = {op.outputs[0]: op for op in graph.operators}
    found = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != 9:  # FULLY_CONNECTED
            continue
        index, via = op.inputs[1], producer.get(op.inputs[1])
        dequantized = via is not None and model.operatorCodes[via.opcodeIndex].builtinCode == DEQUANTIZE
        weight = graph.tensors[via.inputs[0] if dequantized else index]
        q = weight.quantization
        details = q.details if q is not None and q.details is not None else None
        name = graph.tensors[op.outputs[0]].name
        found[name.decode() if isinstance(name, bytes) else name] = {
            "type": weight.type, "block": getattr(details, "blockSize", None),
            "scales": None if q is None or q.scale is None else len(q.scale), "dequantized": dequantized}
    return found


def _by_layer(weights: dict, names: dict) -> dict:
    return {layer: weights[name] for layer, name in names.items()}


# -- int4 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", [32, 64])
def test_int4_block_size_goes_blockwise_on_the_layers_whose_depth_it_divides(fp32, block):
    layers, details = quantize(fp32, "int4", int4_block_size=block)
    blockwise = [layer for layer, depth in DEPTHS.items() if depth % block == 0]
    assert {layer for layer, w in layers.items() if w["block"] is not None} == set(blockwise)
    assert {w["block"] for w in layers.values() if w["block"] is not None} == {block}
    assert {w["type"] for w in layers.values()} == {INT4}
    for layer in set(DEPTHS) - set(blockwise):  # channelwise: one scale per output channel
        assert layers[layer]["scales"] == {"fc1": 64, "fc2": 32}[layer]
    assert not any(w["dequantized"] for w in layers.values())  # dynamic: the FC takes the int4 weight
    assert details["quantization"] == (f"ai-edge-quantizer int4 dynamic: channelwise int4 weights; blockwise-{block} "
                                       f"on {len(blockwise)} FULLY_CONNECTED layer(s) whose depth {block} divides")


def test_int4_weight_only_is_channelwise_and_dequantizes_to_float_compute(fp32):
    layers, details = quantize(fp32, "int4", int4_recipe="weight-only")
    assert {w["type"] for w in layers.values()} == {INT4}
    assert [w["block"] for w in layers.values()] == [None, None]
    assert [w["scales"] for w in layers.values()] == [64, 32]
    assert all(w["dequantized"] for w in layers.values())
    assert details["quantization"].startswith("ai-edge-quantizer int4 weight-only: channelwise int4 weights; "
                                              "blockwise-32 on 0 FULLY_CONNECTED layer(s)")


@pytest.mark.parametrize("block", [16, 48])
def test_a_block_size_ai_edge_quantizer_has_no_blockwise_mode_for_is_refused(fp32, block):
    with pytest.raises(BadInput) as refused:
        quantize(fp32, "int4", int4_block_size=block)
    assert refused.value.args[0] == f"int4_block_size must be 32, 64, 128 or 256, got {block}"


def test_int4_keep_int8_quantizes_the_named_layer_channelwise_in_8_bits(fp32):
    layers, details = quantize(fp32, "int4", keep_int8=["fc2"])
    assert layers["fc2"]["type"] == INT8 and layers["fc2"]["block"] is None and layers["fc2"]["scales"] == 32
    assert layers["fc1"]["type"] == INT4 and layers["fc1"]["block"] == 32
    assert details["quantization"].endswith("; 1 op(s) in int8")


@pytest.mark.parametrize("precision, quantized", [("int4", INT4), ("int8-dynamic", INT8), ("fp16", FLOAT16)])
def test_keep_float_leaves_the_named_layer_in_float32(fp32, precision, quantized):
    every, _ = quantize(fp32, precision)
    kept, _ = quantize(fp32, precision, keep_float=["fc1"])
    assert [w["type"] for w in every.values()] == [quantized, quantized]
    assert [kept["fc1"]["type"], kept["fc2"]["type"]] == [FLOAT32, quantized]


def test_keep_float_matches_an_op_by_its_whole_output_name_only(fp32):
    """fc2's output name ends with "output_0_output": that tail names no op, so nothing stays float."""
    _, names = fp32
    tail = names["fc2"][-len("output_0_output"):]
    assert tail != names["fc2"]
    layers, _ = quantize(fp32, "int4", keep_float=[tail])
    assert [w["type"] for w in layers.values()] == [INT4, INT4]


def test_the_quantizations_are_described(fp32):
    _, fp16 = quantize(fp32, "fp16")
    _, dynamic = quantize(fp32, "int8-dynamic")
    assert fp16["quantization"] == "fp16 weights, fp32 compute (ai-edge-quantizer float casting)"
    assert dynamic["quantization"] == ("ai-edge-quantizer dynamic_wi8_afp32: int8 channelwise weights, "
                                       "dynamic activations")


# -- through the target -----------------------------------------------------------------------------
@pytest.mark.slow  # three conversions by litert-torch
def test_the_tolerance_option_overrides_the_export_tolerance(fp32):
    """The fp32 .tflite differs from torch by float rounding (more than 0, far less than 1): a bound
    of 0 fails, whether it is [export]'s or the target's own; the option's 1.0 wins over [export]'s 0."""
    folder = fp32[0].parent
    built = build_through_the_target(folder, "fp32", export_tolerance=0.0, tolerance=1.0)
    diff = built.details["parity_max_abs_diff"]
    assert 0.0 < diff < 1e-3
    with pytest.raises(ExportMismatch) as export_bound:
        build_through_the_target(folder, "fp32", export_tolerance=0.0)
    assert export_bound.value.args[0].endswith(f"on 16 samples, tolerance {0.0:g}")
    with pytest.raises(ExportMismatch) as option_bound:
        build_through_the_target(folder, "fp32", export_tolerance=1.0, tolerance=0.0)
    assert option_bound.value.args[0].startswith("the fp32 .tflite disagrees with the torch student: max |difference| ")


def test_pt2e_int8_refuses_keep_float_and_an_unknown_recipe_is_refused(tmp_path):
    with pytest.raises(BadInput) as pt2e:
        build_through_the_target(tmp_path, "int8", keep_float=["x"])
    assert pt2e.value.args[0] == ("target 'tflite': keep_float does not apply to int8: litert-torch's PT2E quantizer "
                                  "takes no per-layer exclusions here; set int8_recipe = 'aeq'")
    with pytest.raises(BadInput) as recipe:
        build_through_the_target(tmp_path, "int4", int4_recipe="fast")
    assert recipe.value.args[0] == "target 'tflite': int4_recipe must be one of dynamic, weight-only, got 'fast'"


def test_mixing_is_refused_for_fp32_and_for_pt2e_int8_only():
    from edge_distill.targets import get_target

    tflite = get_target("tflite")
    pt2e = "litert-torch's PT2E quantizer takes no per-layer exclusions here; set int8_recipe = 'aeq'"
    assert tflite.mixing_refused("fp32", {"int8_recipe": "pt2e"}) == "fp32 has no quantized layers"
    assert tflite.mixing_refused("int8", {"int8_recipe": "pt2e"}) == pt2e
    for precision, recipe in [("int8", "aeq"), ("int8-dynamic", "pt2e"), ("int4", "pt2e"), ("fp16", "pt2e"),
                              ("int4", "aeq")]:
        assert tflite.mixing_refused(precision, {"int8_recipe": recipe}) is None, (precision, recipe)
