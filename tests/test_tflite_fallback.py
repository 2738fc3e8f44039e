"""LiteRT int8: when litert-torch's PT2E artifact does not prepare in the interpreter, the target
builds ai-edge-quantizer's static recipe instead and says so with LiteRT's first error; when neither
prepares, exit 2 names the artifact and both errors. The unpreparable PT2E file is the defect of
issue 29 planted back into the PT2E path alone: a QUANTIZE whose output carries no quantization
("QUANTIZE failed to prepare", as float I/O once made of uint8 image inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_distill.calibration import Dataset, InputSpec
from edge_distill.errors import BadInput
from edge_distill.models import SourceModel
from edge_distill.targets import BuildRequest, get_target
from test_tflite_target import BytesClassifier

pytestmark = pytest.mark.slow  # PT2E and ai-edge-quantizer builds


def unquantize_first_quantize(path) -> None:
    """The planted defect: the first QUANTIZE op's output loses its quantization parameters."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    quantize = next(op for op in graph.operators
                    if model.operatorCodes[op.opcodeIndex].builtinCode == fb.BuiltinOperator.QUANTIZE)
    graph.tensors[quantize.outputs[0]].quantization = None
    flatbuffer_utils.write_model(model, str(path))


def bytes_case(tmp_path, name: str):
    torch.manual_seed(0)
    net = BytesClassifier().eval()
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    source = SourceModel("bytes", "torch", [InputSpec("image", ("batch", 32, 32, 3), "uint8")], "0" * 64, module=net)
    out = tmp_path / name
    out.mkdir()
    request = BuildRequest(onnx_path=None, source=source, precision="int8",
                           calibration=Dataset("cal", {"image": images[:32]}), calibration_method="minmax",
                           options={}, out_dir=out, work_dir=out)
    return net, images, request


def plant(monkeypatch, function: str) -> None:
    from edge_distill.targets.tflite import build

    real = getattr(build, function)

    def broken(*args):
        made = real(*args)  # convert_int8 returns what it folded and stored
        unquantize_first_quantize(args[4] if function == "convert_int8" else args[1])  # `out`
        return made

    monkeypatch.setattr(build, function, broken)


def test_a_pt2e_artifact_that_does_not_prepare_falls_back_to_ai_edge_quantizer(tmp_path, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    plant(monkeypatch, "convert_int8")
    net, images, request = bytes_case(tmp_path, "fallback")
    artifact = get_target("tflite").build(request)
    fallback = artifact.details["recipe_fallback"]
    assert (fallback["asked"], fallback["used"]) == ("pt2e", "aeq")
    assert "Node number" in fallback["why"] and "(QUANTIZE) failed to prepare" in fallback["why"]
    assert artifact.details["quantization"] == "ai-edge-quantizer static_wi8_ai8, calibrated"
    assert any("PT2E int8 artifact did not prepare in the LiteRT interpreter" in n for n in artifact.details["notes"])
    # the artifact prepares; its agreement with torch worked out with LiteRT's interpreter directly
    interpreter = Interpreter(model_path=str(artifact.path))
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    top1 = []
    for image in images:
        interpreter.set_tensor(given["index"], image[None])
        interpreter.invoke()
        top1.append(int(interpreter.get_tensor(taken["index"])[0].argmax()))
    with torch.no_grad():
        reference = net(torch.from_numpy(images)).numpy().argmax(1)
    by_hand = float((np.array(top1) == reference).mean())
    runner = get_target("tflite").open_runner(artifact.path, 1).run({"image": images})[0]
    assert float((runner.argmax(1) == reference).mean()) == by_hand >= 0.9


def test_when_neither_recipe_prepares_exit_2_names_both_errors(tmp_path, monkeypatch):
    plant(monkeypatch, "convert_int8")
    plant(monkeypatch, "quantize_int8")
    _, _, request = bytes_case(tmp_path, "neither")
    with pytest.raises(BadInput) as info:
        get_target("tflite").build(request)
    message = str(info.value)
    assert message.startswith("no int8 artifact of this model prepares in the LiteRT interpreter: litert-torch's "
                              "PT2E int8 artifact did not prepare")
    assert message.count("(QUANTIZE) failed to prepare") == 2 and info.value.exit_code == 2
    assert not (request.out_dir / "model.int8.tflite").exists()
