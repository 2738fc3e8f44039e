"""The Core ML target's options, each reaching coremltools' compression and changing the package as it
says: weight_threshold, int4_block_size, keep_float, keep_int8, and the precisions' own configs. A
three-layer ML program written with coremltools' MIL builder (no torch conversion), compressed by the
target's `compress` as a build does and saved; what a test asserts is read back from the saved package
(weight bytes per dtype, the constexpr ops and their shapes) and worked out a second way from the
layers' sizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_distill.errors import BadInput
from edge_distill.targets import get_target
from edge_distill.targets.coreml import build as coreml_build
from edge_distill.targets.coreml import inspect_package
from edge_distill.targets.coreml.inspect import load_program
from edge_distill.targets.coreml.pinned import load_coremltools, quieted

RNG = np.random.default_rng(0)
WEIGHTS = {"fc1": RNG.normal(size=(64, 96)).astype(np.float32),  # 6144 elements
           "fc2": RNG.normal(size=(32, 64)).astype(np.float32),  # 2048: coremltools' default threshold
           "fc3": RNG.normal(size=(8, 32)).astype(np.float32)}  # 256
OP = {name: f"{name}_cast_fp16" for name in WEIGHTS}  # the MIL op names keep_float takes
SAVES = itertools.count()


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The fp16 ML program (iOS18) of x -> fc1 -> relu -> fc2 -> fc3, and a folder to save into."""
    ct = load_coremltools()
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 96))], opset_version=ct.target.iOS18)
    def tiny(x):
        h = mb.relu(x=mb.linear(x=x, weight=WEIGHTS["fc1"], name="fc1"), name="relu")
        return mb.linear(x=mb.linear(x=h, weight=WEIGHTS["fc2"], name="fc2"), weight=WEIGHTS["fc3"], name="fc3")

    with quieted():
        model = ct.convert(tiny, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18)
    return ct, model, tmp_path_factory.mktemp("coreml-options")


def compress(program, precision: str, threshold: int = 2048, block: int = 32, keep_float=(), keep_int8=()):
    ct, model, folder = program
    path = folder / f"{precision}-{next(SAVES)}.mlpackage"
    with quieted():
        coreml_build.compress(ct, model, precision, threshold, block, [OP[n] for n in keep_float],
                              [OP[n] for n in keep_int8]).save(str(path))
    return path


def _compressed(path) -> dict[str, tuple]:
    """Each layer whose weight a constexpr op feeds: (the op type, its inputs' shapes by name)."""
    found = {}
    for op in load_program(path).functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            layer = next(name for name in WEIGHTS if op.name.startswith(f"{name}_"))
            found[layer] = (op.op_type, {k: tuple(v.shape) for k, v in op.inputs.items() if hasattr(v, "shape")})
    return found


def _fp16_bytes(compressed) -> int:
    """fp16 weight bytes: the uncompressed weights, every bias (coremltools gives each linear a zero
    bias) and the per-channel scales of the compressed ones (one a row)."""
    kept = [n for n in WEIGHTS if n not in compressed]
    return 2 * (sum(WEIGHTS[n].size for n in kept) + sum(len(w) for w in WEIGHTS.values())
                + sum(len(WEIGHTS[n]) for n in compressed))


@pytest.mark.parametrize("threshold, compressed", [(2048, ["fc1"]), (2047, ["fc1", "fc2"]), (100, ["fc1", "fc2", "fc3"])])
def test_int8_compresses_the_weights_over_weight_threshold(program, threshold, compressed):
    """coremltools compresses a weight with more elements than the threshold: 2048 leaves fc2's 2048 in fp16."""
    path = compress(program, "int8", threshold=threshold)
    assert sorted(_compressed(path)) == compressed
    bytes_ = inspect_package(path)["weight_bytes"]
    assert bytes_["int8"] == sum(WEIGHTS[n].size for n in compressed)
    assert bytes_["fp16"] == _fp16_bytes(compressed)
    for name in compressed:  # per channel: one scale per output row
        op_type, shapes = _compressed(path)[name]
        assert op_type == "constexpr_blockwise_shift_scale"
        assert shapes["data"] == WEIGHTS[name].shape and shapes["scale"] == (len(WEIGHTS[name]), 1)


@pytest.mark.parametrize("block", [16, 32])
def test_int4_block_size_is_the_per_block_scale_of_each_weight(program, block):
    path = compress(program, "int4", threshold=100, block=block)
    found = _compressed(path)
    assert sorted(found) == ["fc1", "fc2", "fc3"]
    for name, (op_type, shapes) in found.items():
        rows, depth = WEIGHTS[name].shape
        assert op_type == "constexpr_blockwise_shift_scale"
        assert shapes["scale"] == (rows, depth // block)
    assert inspect_package(path)["weight_bytes"]["int4"] == sum(w.size for w in WEIGHTS.values()) // 2


def test_palettize4_stores_4_bit_lookup_indices(program):
    path = compress(program, "palettize4")
    assert {name: op for name, (op, _) in _compressed(path).items()} == {"fc1": "constexpr_lut_to_dense"}
    assert inspect_package(path)["weight_bytes"]["uint4"] == WEIGHTS["fc1"].size // 2


def test_keep_float_leaves_the_named_op_in_fp16(program):
    path = compress(program, "int8", threshold=100, keep_float=["fc2"])
    assert sorted(_compressed(path)) == ["fc1", "fc3"]
    assert inspect_package(path)["weight_bytes"]["fp16"] == _fp16_bytes(["fc1", "fc3"])


def test_int4_keep_int8_quantizes_the_named_op_per_channel_in_8_bits(program):
    path = compress(program, "int4", threshold=100, keep_int8=["fc1"], keep_float=["fc3"])
    found = _compressed(path)
    assert sorted(found) == ["fc1", "fc2"]
    assert found["fc1"][1]["scale"] == (64, 1)  # per channel
    assert found["fc2"][1]["scale"] == (32, 64 // 32)  # per block
    bytes_ = inspect_package(path)["weight_bytes"]
    assert (bytes_["int8"], bytes_["int4"]) == (WEIGHTS["fc1"].size, WEIGHTS["fc2"].size // 2)


def test_fp16_is_the_converted_program_itself_and_an_unknown_precision_is_refused(program):
    ct, model, _ = program
    assert coreml_build.compress(ct, model, "fp16", 2048, 32) is model
    # bf16 sorts before fp16 and w8a8 (compressed on the torch side, never here) after palettize4:
    # the precision tests are equalities
    for unknown in ("int2", "bf16", "w8a8"):
        with pytest.raises(BadInput) as refused:
            coreml_build.compress(ct, model, unknown, 2048, 32)
        assert refused.value.args[0] == f"unknown coreml precision {unknown!r}"


def test_which_precisions_take_keep_float():
    coreml = get_target("coreml")
    assert [coreml.mixing_refused(p, {}) for p in ("int8", "int4", "palettize4")] == [None, None, None]
    assert coreml.mixing_refused("fp16", {}) == "fp16 has no quantized layers"
    assert coreml.mixing_refused("w8a8", {}) == ("w8a8 quantizes on the torch side, before conversion: its "
                                                 "per-op-name configs are not wired")
