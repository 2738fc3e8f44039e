"""The ORT target's options, each reaching the real quantizer and changing the artifact as it says:
keep_float, keep_int8, int4_block_size, int4_gather, int8_recipe (and the recipes' own weights,
activations and calibration), int8_auto_recipes, the calibration method. Tiny graphs written with
onnx.helper, so that each build takes a fraction of a second; every figure asserted is computed a
second way from the calibration data or the weights."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_distill.calibration import Dataset, InputSpec
from edge_distill.errors import BadInput
from edge_distill.targets import BuildRequest, get_target
from edge_distill.targets.ort import STATIC_RECIPES

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(64, 64)).astype(np.float32)
W2 = RNG.normal(size=(64, 32)).astype(np.float32)
CALIBRATION = RNG.normal(size=(32, 64)).astype(np.float32)
TABLE = RNG.normal(size=(40, 64)).astype(np.float32)
BUILDS = itertools.count()


def _save(path, nodes, inputs, outputs, weights: dict) -> None:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs,
                              [numpy_helper.from_array(w, name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _two_linear(path) -> None:
    """x -> fc1 (MatMul) -> relu -> fc2 (MatMul) -> y."""
    _save(path, [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
                 helper.make_node("Relu", ["h"], ["r"], name="relu"),
                 helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")],
          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], {"w1": W1, "w2": W2})


def _embedding(path) -> None:
    """ids (a token a sample) -> lookup (Gather of a table) -> fc (MatMul) -> y."""
    _save(path, [helper.make_node("Gather", ["table", "ids"], ["e"], name="lookup"),
                 helper.make_node("MatMul", ["e", "w2"], ["y"], name="fc")],
          [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
          {"table": TABLE, "w2": W2})


def _masked(path) -> None:
    """x * cast(mask) -> fc1: a model with an integer attention mask, or (float_mask) a float one."""
    _save(path, [helper.make_node("Cast", ["attention_mask"], ["m"], name="cast", to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["x", "m"], ["xm"], name="masked"),
                 helper.make_node("MatMul", ["xm", "w1"], ["y"], name="fc1")],
          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64]),
           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", 64])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])], {"w1": W1})


def _attention(path) -> None:
    """One attention block: q, k projections (weights), scores = q kT, Softmax, p x, and a residual Add."""
    wq, wk = W1[:16, :16].copy(), W1[16:32, :16].copy()
    _save(path, [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
                 helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
                 helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
                 helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
                 helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
                 helper.make_node("MatMul", ["p", "x"], ["o"], name="mix"),
                 helper.make_node("Add", ["o", "x"], ["y"], name="residual")],
          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 16])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16])], {"wq": wq, "wk": wk})


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort-options")
    for name, write in (("linear", _two_linear), ("embedding", _embedding), ("attention", _attention),
                        ("masked", _masked)):
        write(folder / f"{name}.onnx")
    return folder


def _data(graph: str, x: np.ndarray | None = None) -> tuple[SimpleNamespace, Dataset]:
    if graph == "embedding":
        ids = RNG.integers(0, len(TABLE), size=16).astype(np.int64)
        return SimpleNamespace(inputs=[InputSpec("ids", ("batch",), "int64")]), Dataset("calibration", {"ids": ids})
    if graph == "masked":
        mask = (RNG.random(size=(16, 64)) < 0.8).astype(np.int64)
        specs = [InputSpec("x", ("batch", 64)), InputSpec("attention_mask", ("batch", 64), "int64")]
        return SimpleNamespace(inputs=specs), Dataset("calibration", {"x": CALIBRATION[:16], "attention_mask": mask})
    if graph == "attention":
        x = RNG.normal(size=(16, 8, 16)).astype(np.float32) if x is None else x
        return SimpleNamespace(inputs=[InputSpec("x", ("batch", 8, 16))]), Dataset("calibration", {"x": x})
    return SimpleNamespace(inputs=[InputSpec("x", ("batch", 64))]), Dataset("calibration", {"x": CALIBRATION if x is None else x})


def build(folder, precision, graph="linear", method="minmax", x=None, **options):
    source, data = _data(graph, x)
    name = f"{graph}-{precision}-{next(BUILDS)}"
    out, work = folder / name, folder / f"work-{name}"
    out.mkdir()
    work.mkdir()
    artifact = get_target("ort").build(BuildRequest(onnx_path=folder / f"{graph}.onnx", source=source, precision=precision,
                                                    calibration=data, calibration_method=method, options=options,
                                                    out_dir=out, work_dir=work))
    return artifact, onnx.load(str(out / f"model.{precision}.onnx"))


def _initializers(model) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _quantized(model) -> set[str]:
    """Nodes (other than QDQ's own) whose output a QuantizeLinear takes: those the quantizer did not
    leave in float (a float node may still read a quantized neighbour's output)."""
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return {n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(o in quantized for o in n.output)}


def _attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


# -- int4 (MatMulNBits) -----------------------------------------------------------------------------
@pytest.mark.parametrize("block", [16, 32])
def test_int4_block_size_is_the_matmulnbits_block(graphs, block):
    artifact, model = build(graphs, "int4", int4_block_size=block)
    nodes = {n.name: n for n in model.graph.node if n.op_type == "MatMulNBits"}
    assert sorted(nodes) == ["fc1_Q4", "fc2_Q4"]
    assert {_attributes(n)["block_size"] for n in nodes.values()} == {block}
    assert {_attributes(n)["bits"] for n in nodes.values()} == {4}
    assert {_attributes(n)["accuracy_level"] for n in nodes.values()} == {4}
    assert {len(n.input) for n in nodes.values()} == {3}  # symmetric: data, scales, no zero points
    # the packed weight: N rows of K / block blocks, two 4-bit values a byte
    assert _initializers(model)["w2_Q4"].shape == (32, 64 // block, block // 2)
    assert artifact.details["quantization"] == f"weight-only int4, block {block}, symmetric, accuracy level 4"
    assert artifact.details["int4_nodes"] == 2
    assert artifact.details["gemm_rewritten_to_matmul"] == 0
    # one self-contained .onnx (no external weights file beside it), its .ort and the .ort's config
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == sorted(p.name for p in artifact.files)


def test_int4_keep_int8_packs_the_named_layer_in_8_bits_and_keep_float_leaves_one_float(graphs):
    artifact, model = build(graphs, "int4", keep_int8=["fc1"])
    bits = {n.name: _attributes(n)["bits"] for n in model.graph.node if n.op_type == "MatMulNBits"}
    assert bits == {"fc1_Q8": 8, "fc2_Q4": 4}
    assert _initializers(model)["w1_Q8"].shape == (64, 2, 32)  # a byte a value, block 32
    assert artifact.details["quantization"].endswith("; 1 layer(s) in 8 bits")
    _, kept = build(graphs, "int4", keep_float=["fc2"])
    assert [n.name for n in kept.graph.node if n.op_type == "MatMulNBits"] == ["fc1_Q4"]
    assert [n.name for n in kept.graph.node if n.op_type == "MatMul"] == ["fc2"]


def test_int4_gather_packs_the_embedding_table_only_when_asked(graphs):
    _, plain = build(graphs, "int4", graph="embedding")
    _, packed = build(graphs, "int4", graph="embedding", int4_gather=True)
    assert sorted(n.op_type for n in plain.graph.node if n.op_type in ("Gather", "GatherBlockQuantized",
                                                                        "MatMulNBits")) == ["Gather", "MatMulNBits"]
    assert sorted(n.op_type for n in packed.graph.node if n.op_type in ("Gather", "GatherBlockQuantized",
                                                                         "MatMulNBits")) == ["GatherBlockQuantized",
                                                                                             "MatMulNBits"]


def test_int4_with_every_matmul_kept_float_finds_nothing_to_pack(graphs):
    with pytest.raises(BadInput) as refused:
        build(graphs, "int4", keep_float=["fc1", "fc2"])
    assert refused.value.args[0] == "int4 weight-only found no MatMul/Gemm with constant weights to quantize in this model"


def test_keep_int8_outside_int4_and_a_layer_in_both_lists_are_refused(graphs):
    with pytest.raises(BadInput) as outside:
        build(graphs, "int8", keep_int8=["fc1"])
    assert outside.value.args[0] == "target 'ort': keep_int8 applies to int4 only, not int8"
    with pytest.raises(BadInput) as both:
        build(graphs, "int4", keep_int8=["fc1"], keep_float=["fc1"])
    assert both.value.args[0] == "target 'ort': 'fc1' is in both keep_float and keep_int8"


# -- int8 (static QDQ) ------------------------------------------------------------------------------
def test_int8_quantizes_both_layers_and_keep_float_leaves_the_named_one_float(graphs):
    _, every = build(graphs, "int8")
    artifact, kept = build(graphs, "int8", keep_float=["fc2"])
    assert _quantized(every) == {"fc1", "fc2"}
    assert _quantized(kept) == {"fc1"}
    fc2 = next(n for n in kept.graph.node if n.name == "fc2")
    assert fc2.input[1] == "w2"  # its weight, the float initializer itself
    np.testing.assert_array_equal(_initializers(kept)["w2"], W2)
    assert artifact.details["quantization"].endswith("; 1 node(s) left in float")


def test_int8_minmax_scales_are_the_calibration_range_and_the_weights_per_channel_maximum(graphs):
    artifact, model = build(graphs, "int8")
    inits = _initializers(model)
    low, high = min(0.0, float(CALIBRATION.min())), max(0.0, float(CALIBRATION.max()))
    assert float(inits["x_scale"]) == pytest.approx((high - low) / 255, rel=1e-6)
    assert inits["x_zero_point"].dtype == np.uint8
    assert int(inits["x_zero_point"]) == round(-low / ((high - low) / 255))
    np.testing.assert_allclose(inits["w2_scale"], np.abs(W2).max(axis=0) / 127, rtol=1e-6)
    np.testing.assert_array_equal(inits["w2_quantized"], np.round(W2 / inits["w2_scale"]).astype(np.int8))
    assert artifact.details["calibration"] == {"method": "minmax", "samples": 32, "source": "calibration"}
    assert artifact.details["int8_recipe"] == "onnxruntime"
    assert artifact.details["quantization"] == f"QDQ, recipe 'onnxruntime': {STATIC_RECIPES['onnxruntime'].help}"


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_a_clipping_calibration_method_leaves_an_outlier_out_of_the_range(graphs, method):
    """One value of 1000 among 2048 x 64 normal ones: minmax spans it, percentile (99.999%) and entropy
    clip it; each scale is under a fifth of minmax's."""
    x = RNG.normal(size=(2048, 64)).astype(np.float32)
    x[7, 3] = 1000.0
    _, plain = build(graphs, "int8", x=x)
    clipped, model = build(graphs, "int8", method=method, x=x)
    assert float(_initializers(plain)["x_scale"]) * 255 == pytest.approx(1000.0 - min(0.0, float(x.min())), rel=1e-5)
    assert float(_initializers(model)["x_scale"]) < float(_initializers(plain)["x_scale"]) / 5
    assert clipped.details["calibration"]["method"] == method


def test_per_tensor_recipe_gives_each_weight_one_scale(graphs):
    _, model = build(graphs, "int8", int8_recipe="per-tensor")
    inits = _initializers(model)
    assert inits["w2_scale"].shape == ()
    assert float(inits["w2_scale"]) == pytest.approx(float(np.abs(W2).max()) / 127, rel=1e-6)
    assert inits["x_zero_point"].dtype == np.uint8


def test_symmetric_recipe_gives_signed_activations_centred_on_zero(graphs):
    _, model = build(graphs, "int8", int8_recipe="symmetric")
    inits = _initializers(model)
    assert inits["x_zero_point"].dtype == np.int8
    assert int(inits["x_zero_point"]) == 0
    bound = max(abs(float(CALIBRATION.min())), abs(float(CALIBRATION.max())))
    assert float(inits["x_scale"]) == pytest.approx(2 * bound / 254, rel=1e-5)
    assert inits["w2_scale"].shape == (32,)


def test_static_int8_of_a_model_with_an_integer_attention_mask_says_int8_dynamic_is_safer(graphs):
    masked, _ = build(graphs, "int8", graph="masked")
    plain, _ = build(graphs, "int8")
    assert masked.details["notes"] == [
        "static int8 on a model with an attention mask (attention_mask): activation ranges come from the "
        "calibration texts, and padded positions can fall outside them (top-1 agreement 0.45-0.71 on padded "
        "inputs measured on a BERT-like encoder); int8-dynamic is the safer recipe for transformers"]
    assert "notes" not in plain.details
    ids, _ = build(graphs, "int8", graph="embedding")  # an integer input that is not a mask: no note
    assert "notes" not in ids.details


def test_ort_defaults_recipe_calibrates_with_minmax_whatever_the_configured_method(graphs):
    artifact, model = build(graphs, "int8", method="percentile", int8_recipe="ort-defaults")
    inits = _initializers(model)
    low, high = min(0.0, float(CALIBRATION.min())), max(0.0, float(CALIBRATION.max()))
    assert float(inits["x_scale"]) == pytest.approx((high - low) / 255, rel=1e-6)
    assert inits["x_zero_point"].dtype == np.int8  # int8 activations, asymmetric
    assert inits["w2_scale"].shape == ()
    assert artifact.details["calibration"]["method"] == "minmax"
    assert artifact.details["int8_recipe"] == "ort-defaults"


def test_the_percentile_recipe_overrides_a_configured_minmax(graphs):
    artifact, _ = build(graphs, "int8", method="minmax", int8_recipe="percentile")
    assert artifact.details["calibration"]["method"] == "percentile"


def test_attention_float_recipe_leaves_softmax_and_the_products_of_two_activations_float(graphs):
    _, every = build(graphs, "int8", graph="attention")
    artifact, model = build(graphs, "int8", graph="attention", int8_recipe="attention-float")
    assert _quantized(every) == {"q", "k", "kt", "scores", "softmax", "mix", "residual"}
    assert _quantized(model) == {"q", "k", "kt"}
    assert artifact.details["quantization"].endswith("; 4 node(s) left in float")


def test_int8_auto_and_an_optimum_recipe_are_refused_by_a_static_build(graphs):
    with pytest.raises(BadInput) as auto:
        build(graphs, "int8", int8_recipe="auto")
    assert auto.value.args[0] == ("int8_recipe = 'auto' is resolved by `check`, which builds every candidate recipe; "
                               "here one recipe is built")
    assert auto.value.hint == f"name one: {', '.join(STATIC_RECIPES)}"
    with pytest.raises(BadInput) as optimum:
        build(graphs, "int8", int8_recipe="optimum-arm64")
    assert optimum.value.args[0] == ("int8_recipe = 'optimum-arm64' builds int8-dynamic only: optimum's static recipe "
                                  "calibrates through the `datasets` library, which edge-distill does not use")


def test_int8_without_calibration_data_is_refused(graphs, tmp_path):
    source, _ = _data("linear")
    request = BuildRequest(onnx_path=graphs / "linear.onnx", source=source, precision="int8", calibration=None,
                           calibration_method="minmax", options={}, out_dir=tmp_path, work_dir=tmp_path)
    with pytest.raises(BadInput) as refused:
        get_target("ort").build(request)
    assert refused.value.args[0] == "int8 (static) needs calibration data: set [data] calibration or pass --calibration"


def test_an_invalid_option_value_is_refused_with_its_rule(graphs):
    with pytest.raises(BadInput) as small:
        build(graphs, "int4", int4_block_size=8)
    assert small.value.args[0] == "target 'ort': int4_block_size must be >= 16, got 8"
    with pytest.raises(BadInput) as unknown:
        build(graphs, "int8", int8_recipe="fastest")
    assert unknown.value.args[0].startswith("target 'ort': int8_recipe must be one of onnxruntime, auto, ort-defaults, ")
    assert unknown.value.args[0].endswith(", got 'fastest'")


# -- recipe candidates ------------------------------------------------------------------------------
def test_recipe_candidates_are_every_static_recipe_or_the_listed_ones_in_order():
    ort = get_target("ort")
    assert ort.recipe_candidates("int8", {"int8_recipe": "auto"}) == tuple(STATIC_RECIPES)
    assert ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": ["symmetric", "per-tensor"]}) \
        == ("symmetric", "per-tensor")
    assert ort.recipe_candidates("int8", {"int8_recipe": "onnxruntime"}) == ()
    assert ort.recipe_candidates("int4", {"int8_recipe": "auto"}) == ()
    with pytest.raises(BadInput) as refused:
        ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": ["symmetric", "fastest"]})
    assert refused.value.args[0] == "target 'ort': int8_auto_recipes names no static recipe 'fastest'"


# -- int8-dynamic -----------------------------------------------------------------------------------
def test_int8_dynamic_keep_float_leaves_the_named_matmul_float(graphs):
    _, every = build(graphs, "int8-dynamic")
    artifact, kept = build(graphs, "int8-dynamic", keep_float=["fc2"])
    assert sorted(n.name for n in every.graph.node if n.op_type == "MatMulInteger") == ["fc1_quant", "fc2_quant"]
    assert [n.name for n in kept.graph.node if n.op_type == "MatMulInteger"] == ["fc1_quant"]
    assert [n.name for n in kept.graph.node if n.op_type == "MatMul"] == ["fc2"]
    assert artifact.details["quantization"] == "dynamic: int8 per-channel weights, activations quantized at run time"


def test_int8_dynamic_with_an_optimum_recipe_is_built_by_optimum(graphs):
    artifact, model = build(graphs, "int8-dynamic", int8_recipe="optimum-arm64")
    assert artifact.details["recipe"] == "optimum-arm64"
    assert artifact.details["quantization"].startswith("optimum ")
    assert "AutoQuantizationConfig.arm64(is_static=False)" in artifact.details["quantization"]
    assert sorted(n.op_type for n in model.graph.node if n.op_type == "MatMulInteger") == ["MatMulInteger"] * 2


def test_only_int8_set_to_auto_has_candidates_and_only_fp32_refuses_mixing():
    ort = get_target("ort")
    for precision in ("fp32", "int4", "int8-dynamic"):
        assert ort.recipe_candidates(precision, {"int8_recipe": "auto"}) == (), precision
    for recipe in (*STATIC_RECIPES, "", "zzz"):  # names sorting before and after "auto"
        assert ort.recipe_candidates("int8", {"int8_recipe": recipe}) == (), recipe
    assert ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": []}) == tuple(STATIC_RECIPES)
    with pytest.raises(BadInput) as refused:  # the first unknown name is the one named
        ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": ["fast", "faster", "fastest"]})
    assert refused.value.args[0] == "target 'ort': int8_auto_recipes names no static recipe 'fast'"
    assert ort.mixing_refused("fp32", {}) == "fp32 has no quantized layers"
    for precision in ("int8", "int8-dynamic", "int4"):
        assert ort.mixing_refused(precision, {}) is None, precision


def test_quant_pre_processings_stamp_does_not_ride_into_the_artifacts(graphs, tmp_path):
    """onnxruntime's quant_pre_process stamps its output with `onnx.quant.pre_process` (64 bytes of Silero VAD's
    .ort that its own quantize_dynamic file does not carry): the quantizer is given the stamped graph (so it
    does not warn), the artifacts keep the source's other metadata and not the stamp."""
    from edge_distill.targets.ort.build import PRE_PROCESS_MARK, drop_pre_process_mark, preprocessed

    source = onnx.load(str(graphs / "linear.onnx"))
    onnx.helper.set_model_props(source, {"author": "test"})
    onnx.save(source, str(tmp_path / "stamped.onnx"))
    spec, _ = _data("linear")
    request = BuildRequest(onnx_path=tmp_path / "stamped.onnx", source=spec, precision="int8", calibration=None,
                           calibration_method="minmax", options={}, out_dir=tmp_path, work_dir=tmp_path)
    pre = preprocessed(request)
    assert PRE_PROCESS_MARK == "onnx.quant.pre_process"
    assert {PRE_PROCESS_MARK, "author"} <= {p.key for p in onnx.load(str(pre)).metadata_props}
    drop_pre_process_mark(pre)
    keys = {p.key for p in onnx.load(str(pre)).metadata_props}
    assert PRE_PROCESS_MARK not in keys and "author" in keys
    for precision in ("int8", "int8-dynamic"):
        _, model = build(graphs, precision)
        assert PRE_PROCESS_MARK not in {p.key for p in model.metadata_props}, precision
