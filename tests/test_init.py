"""`edge-distill init`: a model's inputs, outputs and targets read from the model itself, a commented
edge-distill.toml and a sample .npz that `check` runs as written; published models from their packages
(PaddleOCR's recognizer and direction classifier from rapidocr-onnxruntime, Silero VAD from silero-vad)."""

from __future__ import annotations

import json
import shutil
import tomllib
from collections import Counter
from importlib import resources

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import run_cli
from edge_distill.calibration import InputSpec
from edge_distill.errors import BadInput
from edge_distill.scaffold import Plan, batch_axis, onnx_weights_by_op, run_init, target_choices
from test_published_models import cer_by_hand, text_lines
from test_streaming import speech_like, stream_by_hand

PADDLE = resources.files("rapidocr_onnxruntime") / "models"


@pytest.mark.parametrize("shape, first, expected", [
    ((), {"batch"}, (None, False)),  # a 0-d input (a sample rate) has no batch
    (("batch", "sequence"), {"batch"}, (0, False)),
    ((2, "batch", 128), {"batch"}, (1, True)),  # [L, B, H] sharing the batch-first inputs' name
    ((2, "", 128), set(), (1, True)),  # unnamed: the free middle dimension
    ((1, 1, 128), {"sequence_length"}, (0, False)),  # a fixed-size state: a fixed batch of 1
    (("dim0", 3, "?", "?"), {"dim0"}, (0, False)),
])
def test_where_each_input_takes_its_batch(shape, first, expected):
    assert batch_axis(shape, first) == expected


def conv_only_with_constant_weights():
    """A conv net as old exporters write it: its weights in Constant nodes."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.ones(108, np.float32))
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], np.zeros(4, np.float32))
    nodes = [helper.make_node("Constant", [], ["cw"], value=w), helper.make_node("Constant", [], ["cb"], value=b),
             helper.make_node("Conv", ["x", "cw", "cb"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4, 6, 6])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_weights_are_counted_per_op_constant_nodes_included():
    assert onnx_weights_by_op(conv_only_with_constant_weights()) == Counter({"Conv": 108 + 4})


def test_each_target_is_asked_what_this_model_can_take():
    plan = Plan("m.onnx", "onnx", 11, [], [], {}, Counter({"Conv": 112}))
    target_choices(plan)
    kept, refused = plan.targets["ort"]
    assert kept == ["fp32", "int8", "int8-dynamic"]
    assert refused == {"int4": "stores only MatMul/Gemm weights in 4 bits, and this model has none (its weights: "
                               "Conv 112)"}
    assert plan.unavailable["coreml"] == ("converts from torch or exported sources, not onnx; the torch student "
                                          "(.pt2 or module:factory) goes there")
    assert plan.notes["ort"] == []
    mostly_conv = Plan("m.onnx", "onnx", 13, [], [], {}, Counter({"Conv": 62, "MatMul": 38}))
    target_choices(mostly_conv)
    assert "int4" in mostly_conv.targets["ort"][0]
    assert mostly_conv.notes["ort"] == ["int4: MatMul/Gemm hold 38% of the weights; the rest stays float"]
    streamed = Plan("m.pt2", "exported", 18, [], [], {"hn": "h"}, Counter({"Gemm": 10}))
    target_choices(streamed)
    calibrated = "calibrated, and calibration feeds samples batch first"
    for name, (kept, refused) in streamed.targets.items():
        assert all(refused[p].startswith(calibrated) for p in ("int8", "w8a8") if p in refused), name
        assert "int4" in kept, name


def test_init_never_writes_into_the_models_folder(tmp_path):
    onnx.save(conv_only_with_constant_weights(), tmp_path / "m.onnx")
    with pytest.raises(BadInput) as info:
        run_init(str(tmp_path / "m.onnx"), tmp_path / "cfg")
    assert str(info.value) == (f"--out {tmp_path / 'cfg'} is inside the input folder {tmp_path}; init never writes "
                               "there\n  hint: pass --out a folder elsewhere")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def init_and_check(tmp_path, model, *init_args):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    shutil.copyfile(model, models / model.name)
    init = run_cli("init", models / model.name, "--out", tmp_path / "cfg", *init_args)
    assert init.returncode == 0, init.stdout + init.stderr
    config = tmp_path / "cfg" / "edge-distill.toml"
    check = run_cli("check", config, "--out", tmp_path / "out", "--quiet")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return init, tomllib.loads(config.read_text()), check, report


@pytest.mark.slow
def test_init_then_check_a_direction_classifier_on_its_own_sample(tmp_path):
    init, config, check, report = init_and_check(tmp_path, PADDLE / "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert "input  x[dim0, 3, ?, ?] float32 batch axis 0: images NCHW" in init.stdout  # -1: a free dimension
    assert config["model"]["outputs"] == {"save_infer_model/scale_0.tmp_1": {"kind": "classification"}}
    assert config["data"] == {"evaluation": "sample.npz", "calibration": "sample.npz"}
    sample = np.load(tmp_path / "cfg" / "sample.npz")
    assert sample["x"].shape == (8, 3, 64, 64) and sample["x"].dtype == np.float32
    assert check.returncode == 0, check.stdout + check.stderr  # no budget set: every figure, no verdict
    results = {r["precision"]: r for r in report["results"]}
    assert set(results) == set(config["targets"][0]["precisions"])
    import onnxruntime as ort

    def argmax(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": sample["x"]})[0] \
            .argmax(1)
    agree = float(np.mean(argmax(tmp_path / "out" / results["int8"]["artifact"])
                          == argmax(tmp_path / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx")))
    assert results["int8"]["metrics"]["float_agreement"] == pytest.approx(agree)


@pytest.mark.slow
def test_init_then_check_a_text_recognizer_with_its_data(tmp_path):
    x = text_lines(16)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "lines.npz", x=x)
    init, config, check, report = init_and_check(tmp_path, PADDLE / "ch_PP-OCRv4_rec_infer.onnx",
                                                 "--data", tmp_path / "data")
    assert config["model"]["outputs"] == {"softmax_11.tmp_0": {"kind": "sequence"}}
    assert config["data"] == {"evaluation": "../data/lines.npz", "calibration": "../data/lines.npz"}
    assert config["targets"][0] == {"name": "ort", "precisions": ["fp32", "int8", "int8-dynamic", "int4"]}
    assert not (tmp_path / "cfg" / "sample.npz").exists() and sorted(p.name for p in (tmp_path / "data").iterdir()) \
        == ["lines.npz"]
    assert check.returncode == 0, check.stdout + check.stderr
    int4 = next(r for r in report["results"] if r["precision"] == "int4")
    # init's note counted the MatMul weights from the graph; the int4 artifact's coverage read them from its file
    note = "int4: MatMul/Gemm hold 38% of the weights; the rest stays float"
    assert f"\n  {note}\n" in init.stdout and f"\n# {note}\n" in (tmp_path / "cfg" / "edge-distill.toml").read_text()
    assert int4["coverage"]["quantized_weights"] == 1_025_400 and int4["coverage"]["by_op"]["Conv"]["quantized"] == 0
    cer = cer_by_hand(tmp_path / "out" / int4["artifact"], tmp_path / "models" / "ch_PP-OCRv4_rec_infer.onnx", x)
    assert int4["outputs"]["softmax_11.tmp_0"]["cer"] == pytest.approx(cer, abs=1e-5)


@pytest.mark.slow
def test_init_then_check_a_streaming_voice_detector(tmp_path):
    inputs = speech_like(np.random.default_rng(0), 4)
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "eval.npz", input=inputs, sr=np.full(4, 16000, np.int64))
    model = resources.files("silero_vad") / "data" / "silero_vad_16k_op15.onnx"
    init, config, check, report = init_and_check(tmp_path, model, "--data", tmp_path / "data")
    assert "input  sr[] int64 batch axis none" in init.stdout
    assert config["model"]["batch_axes"] == {"state": 1} and config["model"]["state"] == {"stateN": "state"}
    assert config["model"]["outputs"] == {"output": {"kind": "dense"}, "stateN": {"kind": "state"}}
    assert config["targets"][0] == {"name": "ort", "precisions": ["fp32", "int8-dynamic"]}
    text = (tmp_path / "cfg" / "edge-distill.toml").read_text()
    assert "# not int8: calibrated" in text and "# not int4: stores only MatMul/Gemm weights" in text
    assert check.returncode == 0, check.stdout + check.stderr
    fp32, dynamic = report["results"]
    float_probs, _ = stream_by_hand(tmp_path / "out" / fp32["artifact"], inputs)
    int8_probs, _ = stream_by_hand(tmp_path / "out" / dynamic["artifact"], inputs)
    assert fp32["outputs"]["output"]["max_abs_error"] == 0
    assert dynamic["outputs"]["output"]["max_abs_error"] == pytest.approx(np.abs(int8_probs - float_probs).max(),
                                                                          abs=1e-5)


def test_coreml_refuses_at_build_the_onnx_source_its_capabilities_exclude(tmp_path):
    from edge_distill.models import load_model
    from edge_distill.targets import BuildRequest, get_target

    onnx.save(conv_only_with_constant_weights(), tmp_path / "m.onnx")
    source = load_model(str(tmp_path / "m.onnx"))
    assert get_target("coreml").capabilities.source_refused(source.kind) == "converts from torch or exported " \
                                                                            "sources, not onnx"
    with pytest.raises(BadInput) as info:
        get_target("coreml").build(BuildRequest(onnx_path=tmp_path / "m.onnx", source=source, precision="fp16",
                                                calibration=None, calibration_method="minmax", options={},
                                                out_dir=tmp_path, work_dir=tmp_path))
    assert str(info.value) == (f"{tmp_path / 'm.onnx'} is ONNX only; the coreml target converts from torch\n  hint: "
                               "give the torch student (module:factory + weights, or a .pt2 program)")


def test_init_refuses_what_it_cannot_read_by_name(tmp_path):
    with pytest.raises(BadInput) as info:
        # a name no other test imports: a module already in sys.modules would be found wherever init runs
        run_init("no_such_models:student", tmp_path / "cfg")
    assert str(info.value) == ("cannot import module 'no_such_models' for no_such_models:student: No module named "
                               "'no_such_models'\n  hint: run init where the module is importable (the current folder "
                               "is searched)")
    (tmp_path / "models").mkdir()
    onnx.save(conv_only_with_constant_weights(), tmp_path / "models" / "m.onnx")
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "other.npz", image=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(BadInput) as info:
        run_init(str(tmp_path / "models" / "m.onnx"), tmp_path / "cfg", tmp_path / "data")
    assert str(info.value) == f"{tmp_path / 'data'}: no .npz file in the folder holds every input (x)"
    assert not (tmp_path / "cfg").exists() and not list(tmp_path.glob(".cfg.partial-*"))


def test_init_samples_an_input_whatever_its_name(tmp_path):
    """np.savez takes names as keywords: an input called allow_pickle became its flag and left sample.npz
    without it (mypy flagged the **arrays)."""
    x = helper.make_tensor_value_info("allow_pickle", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["allow_pickle"], ["y"])], "relu", [x], [y])
    (tmp_path / "models").mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "models" / "m.onnx")
    run_init(str(tmp_path / "models" / "m.onnx"), tmp_path / "cfg")
    sample = np.load(tmp_path / "cfg" / "sample.npz")
    assert sorted(sample.files) == ["allow_pickle"]
    assert sample["allow_pickle"].shape[1:] == (4,) and sample["allow_pickle"].dtype == np.float32


def test_init_offers_the_recipe_search_where_a_calibrated_precision_is_kept(tmp_path):
    (tmp_path / "models").mkdir()
    onnx.save(conv_only_with_constant_weights(), tmp_path / "models" / "m.onnx")
    run_init(str(tmp_path / "models" / "m.onnx"), tmp_path / "cfg")
    text = (tmp_path / "cfg" / "edge-distill.toml").read_text()
    ort = text.split('name = "ort"\n', 1)[1].split("\n\n", 1)[0]
    assert '\n# options = { int8_recipe = "auto" }: each recipe built and evaluated, the best by the budgets kept ' \
           "(docs/int8-recipes.md)" in ort
    assert "int8_recipe" not in tomllib.loads(text)["targets"][0]  # offered in a comment, not set
    assert "\n# also int8-auto, int8-dynamic-auto: the layers that break a budget left in float" in ort


def test_the_auto_precisions_init_offers_are_ones_check_plans(tmp_path):
    from edge_distill.config import load_config
    from edge_distill.pipeline import plan_targets

    (tmp_path / "models").mkdir()
    onnx.save(conv_only_with_constant_weights(), tmp_path / "models" / "m.onnx")
    run_init(str(tmp_path / "models" / "m.onnx"), tmp_path / "cfg")
    path = tmp_path / "cfg" / "edge-distill.toml"
    offered = path.read_text().split("# also ", 1)[1].split(":", 1)[0].split(", ")
    path.write_text(path.read_text().replace('precisions = ["fp32", "int8", "int8-dynamic"]',
                                             f"precisions = {json.dumps(offered)}"))
    (planned,) = plan_targets(load_config(path))
    assert planned.precisions == ["int8-auto", "int8-dynamic-auto"]


FACTORY = """import torch
from torch import nn

EXAMPLE_INPUTS = {"two_heads": {"image": torch.zeros(1, 3, 8, 8)}}


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.score, self.box = nn.Conv2d(3, 4, 3), nn.Linear(144, 2), nn.Linear(144, 4)

    def forward(self, image):
        x = torch.relu(self.conv(image)).flatten(1)
        return torch.softmax(self.score(x), 1), self.box(x)


def two_heads():
    torch.manual_seed(0)
    return TwoHeads().eval()
"""


def test_init_reads_a_factory_from_its_modules_example_and_check_can_load_it(tmp_path, monkeypatch):
    from edge_distill.config import load_config
    from edge_distill.pipeline import Progress, load_inputs

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "heads.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path / "src")
    plan = run_init("heads:two_heads", tmp_path / "cfg")
    assert [(name, shape, kind) for name, shape, _, kind, _ in plan.outputs] == [("output_0", (2,), "classification"),
                                                                                 ("output_1", (4,), "dense")]  # a box
    # regression beside the softmax: its argmax would mean nothing
    assert (tmp_path / "cfg" / "heads.py").read_text() == FACTORY  # beside the config, where check imports it
    config = tomllib.loads((tmp_path / "cfg" / "edge-distill.toml").read_text())
    assert config["model"]["student"] == "heads:two_heads" and "weights" not in config["model"]
    assert config["model"]["inputs"] == [{"name": "image", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    monkeypatch.chdir(tmp_path)  # check runs from anywhere: the module is found beside the config
    loaded = load_inputs(load_config(tmp_path / "cfg" / "edge-distill.toml"), Progress(False))
    assert loaded.student.kind == "torch" and loaded.evaluation.inputs["image"].shape == (8, 3, 8, 8)


def test_init_refuses_a_factory_that_does_not_say_what_it_takes(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bare.py").write_text(FACTORY.replace("EXAMPLE_INPUTS", "UNUSED"))
    monkeypatch.chdir(tmp_path / "src")
    proc = run_cli("init", "bare:two_heads", "--out", tmp_path / "cfg", cwd=tmp_path / "src")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bare:two_heads does not say what it takes" in proc.stderr and 'EXAMPLE_INPUTS["two_heads"]' in proc.stderr


# -- the kind init proposes for each output, from its values (synthetic outputs of known layouts) ------
def yolo_rows(rng, anchors: int, classes: int, size: int, objectness: bool, best: float) -> np.ndarray:
    """One sample's decoded rows [anchors, 4 (+1) + classes]: centres inside a size x size image, sizes
    in pixels, scores in [0, best]."""
    boxes = np.column_stack([rng.uniform(0, size, (anchors, 2)), rng.uniform(4, size / 2, (anchors, 2))])
    scores = rng.uniform(0, best, (anchors, classes + objectness))
    return np.column_stack([boxes, scores]).astype(np.float32)


def test_a_yolov8_output_with_decoded_boxes_is_a_detection():
    from edge_distill.scaffold import propose_kind

    rng = np.random.default_rng(0)
    anchors = 40 * 40 + 20 * 20 + 10 * 10  # a 320 x 320 image at strides 8, 16 and 32
    head = np.stack([yolo_rows(rng, anchors, 18, 320, False, 0.9).T for _ in range(2)])  # [B, 4 + 18, N]
    kind, settings, why = propose_kind("output0", head, {}, (320, 320), False)
    assert (kind, settings) == ("detection", {"layout": "yolov8"})
    assert why.startswith("[B, 4 + 18, 2100]: 2100 anchors (strides 8, 16 and 32 together of the 320x320 input)")


def test_a_yolov5_output_anchors_first_is_a_detection_with_its_objectness():
    from edge_distill.scaffold import propose_kind

    rng = np.random.default_rng(1)
    anchors = 52 * 52 + 26 * 26 + 13 * 13  # 416 x 416
    head = np.stack([yolo_rows(rng, anchors, 1, 416, True, 0.8) for _ in range(2)])  # [B, N, 5 + 1]
    kind, settings, _ = propose_kind("output", head, {}, (416, 416), False)
    assert (kind, settings) == ("detection", {"layout": "yolov5"})


def test_a_detector_that_scores_nothing_above_the_default_gets_a_conf_it_reaches():
    from edge_distill.scaffold import propose_kind

    rng = np.random.default_rng(2)
    head = np.stack([yolo_rows(rng, 2100, 18, 320, False, 0.054).T for _ in range(2)])
    best = float(head[:, 4:].max())  # just under 0.054
    kind, settings, why = propose_kind("output0", head, {}, (320, 320), False)
    assert kind == "detection" and settings == {"layout": "yolov8", "conf": 0.02}  # half the best, 2 decimals down
    assert f"best score on the samples init ran is {best:.3f}, below the default 0.25" in why


@pytest.mark.parametrize("anchors, width, level", [(100 * 76, 10, "the stride-8 grid"), (50 * 38, 32, "the stride-16 grid"),
                                                   (13 * 10, 32, "the stride-64 grid")])
def test_picodet_heads_per_level_are_dense_with_the_reason(anchors, width, level):
    """PicoDet's eight outputs on an 800 x 608 page: class scores [N, 10] and box distributions [N, 32]
    per level, before decoding: nothing the detection kind decodes."""
    from edge_distill.scaffold import propose_kind

    rng = np.random.default_rng(3)
    values = (rng.uniform(0, 0.3, (1, anchors, width)) if width == 10 else rng.normal(0, 2, (1, anchors, width)))
    kind, settings, why = propose_kind("transpose_0.tmp_0", values.astype(np.float32), {}, (800, 608), False)
    assert (kind, settings) == ("dense", {})
    assert why.startswith(f"a raw detector head: {anchors} anchors ({level} of the 800x608 input) of {width} values")


def test_yolox_rows_before_the_grid_decoding_are_dense():
    """YOLOX's [N, 5 + C] as ddddocr ships it: offsets per cell and log sizes (negative), not pixels."""
    from edge_distill.scaffold import propose_kind

    rng = np.random.default_rng(4)
    rows = np.column_stack([rng.uniform(-1, 1.5, (3549, 4)), rng.uniform(0, 0.8, (3549, 2))])[None].astype(np.float32)
    kind, _, why = propose_kind("output", rows, {}, (416, 416), False)
    assert kind == "dense" and "3549 anchors (strides 8, 16 and 32 together of the 416x416 input)" in why


def test_a_recognizers_positions_are_not_taken_for_anchors():
    from edge_distill.scaffold import propose_kind

    probabilities = np.random.default_rng(5).dirichlet(np.ones(97), (2, 40)).astype(np.float32)
    assert propose_kind("softmax", probabilities, {}, (48, 320), False)[0] == "sequence"


def test_a_text_encoders_outputs_are_embeddings_and_its_copied_inputs_are_named():
    from edge_distill.scaffold import image_size, propose_kind, text_encoder

    rng = np.random.default_rng(6)
    ids = rng.integers(0, 30000, (2, 16)).astype(np.int64)
    mask = np.ones((2, 16), np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    specs = [InputSpec("input_ids", ("batch", "tokens"), "int64"), InputSpec("attention_mask", ("batch", "tokens"), "int64")]
    assert text_encoder(specs, feeds) and image_size(feeds) is None
    tokens = rng.normal(size=(2, 16, 384)).astype(np.float32)
    assert propose_kind("onnx::Shape_422", tokens, feeds, None, True)[0] == "embedding"
    assert "(its name is the exporter's" in propose_kind("onnx::Shape_422", tokens, feeds, None, True)[2]
    assert propose_kind("461", tokens[:, 0], feeds, None, True)[:2] == ("embedding", {})
    assert propose_kind("463", mask.copy(), feeds, None, True)[2].startswith("a copy of the input 'attention_mask'")
    assert propose_kind("ids", ids[:, ::-1].copy(), feeds, None, True)[2].startswith("integer values")
    # the same [B, 384] from an image model is a classifier's scores
    assert propose_kind("logits", tokens[:, 0], {"x": np.zeros((2, 3, 8, 8))}, (8, 8), False)[0] == "classification"


def test_regression_heads_beside_a_probability_head_are_dense_and_logits_alone_stay_classes():
    """MTCNN's ONet: a face probability [B, 2] (softmax), box offsets [B, 4] and landmarks [B, 10]
    (fractions of the crop, in [0, 1] like probabilities, but their rows do not sum to 1)."""
    from edge_distill.scaffold import probabilities, propose_kind

    rng = np.random.default_rng(4)
    face = rng.uniform(0, 1, (8, 1))
    probability = np.hstack([1 - face, face]).astype(np.float32)
    boxes = rng.normal(0, 0.1, (8, 4)).astype(np.float32)
    landmarks = rng.uniform(0.2, 0.8, (8, 10)).astype(np.float32)
    assert probabilities(probability) and not probabilities(landmarks) and not probabilities(boxes)
    assert propose_kind("output_0", probability, {}, (48, 48), False, "output_0")[0] == "classification"
    for name, values in (("output_1", boxes), ("output_2", landmarks)):
        kind, settings, why = propose_kind(name, values, {}, (48, 48), False, "output_0")
        assert (kind, settings) == ("dense", {}), name
        assert why.startswith("raw values beside the probability head 'output_0': a regression"), name
    # logits with no probability head beside them: classes, as before
    assert propose_kind("logits", boxes, {}, (48, 48), False, None)[0] == "classification"


def test_init_allows_the_float_rounding_it_measured_in_the_export_with_a_margin():
    """A torch source's export differs from torch by rounding; init writes [export] tolerance at the
    power of ten above four times what it measured, only where the default 1e-4 leaves less than that."""
    from dataclasses import replace

    from edge_distill.scaffold import Plan, _export_lines, export_tolerance

    assert export_tolerance(2e-5) is None  # 8e-5: the default holds with its margin
    assert export_tolerance(2.6e-5) == pytest.approx(1e-3)  # 1.04e-4
    assert export_tolerance(1.7e-4) == pytest.approx(1e-3)  # 6.8e-4: a ViT's four blocks over 1,024 patches
    assert export_tolerance(2.5e-3) == pytest.approx(1e-2)  # the most init reads as rounding
    plan = Plan(reference="nets:vit", source_kind="torch", opset=18, inputs=[], outputs=[], state={},
                weight_ops=Counter(), parity=(1.7e-4, 2))
    lines = _export_lines(plan)
    assert lines[1:] == ["[export]", "tolerance = 0.001   # init measured max |onnxruntime - torch| 0.00017 on 2 "
                         "samples: the default 0.0001 leaves less than 4x for the evaluation set"]
    assert _export_lines(replace(plan, parity=(2e-5, 2))) == [] and _export_lines(replace(plan, parity=None)) == []


def test_a_vit_encoders_patch_tokens_are_dense_and_named_as_tokens_not_a_detector_head():
    """latex-ocr-junia's encoder: [B, 1024, 256] from a 128 x 512 image in 8 x 8 patches; 1024 is also
    the stride-8 grid a detector head would have, but 256 features a position is no detector's row."""
    from edge_distill.scaffold import propose_kind

    tokens = np.random.default_rng(5).normal(0, 1, (2, 1024, 256)).astype(np.float32)
    kind, settings, why = propose_kind("output", tokens, {}, (128, 512), False)
    assert (kind, settings) == ("dense", {})
    assert why == ("1024 tokens (the 128x512 input in 8x8 patches) of 256 features each: a vision transformer's "
                   "patch tokens, compared as values, by cosine and error")
