"""What the arm64 emulator tries when an artifact does not load in its older runtime is the target's
knowledge, asked of the runner (`emulation_fallback`): ORT's .onnx beside a .ort, nothing for a
.tflite. Without a fallback the error names the emulated runtime, read from the emulator's pinned
wheels by the runner's own runtime package. Real runners on real files; no emulator is needed for
these paths (the fallback's own run under qemu is tests/test_devices.py's, slow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_distill.devices.emulated import EMULATED_LITERT, EMULATED_ORT, _through_the_fallback
from edge_distill.errors import CannotMeasure
from edge_distill.targets import get_target

TINY_TFLITE = Path(__file__).parent / "data" / "tiny_fc.fp32.tflite"


@pytest.fixture
def ort_files(tmp_path):
    """A .onnx, and the .ort the target converts it to, side by side."""
    from edge_distill.targets.ort.build import convert_to_ort

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    return tmp_path / "model.onnx", convert_to_ort(tmp_path / "model.onnx", tmp_path)


def test_an_ort_runner_falls_back_to_the_onnx_beside_its_ort_file(ort_files):
    onnx_path, ort_path = ort_files
    runner = get_target("ort").open_runner(ort_path, 1)
    assert runner.emulation_fallback(ort_path) == onnx_path
    assert runner.emulation_fallback(onnx_path) is None  # an .onnx has nothing older to fall back to
    onnx_path.unlink()
    assert runner.emulation_fallback(ort_path) is None


def test_without_a_fallback_the_error_names_the_emulated_runtime(ort_files, tmp_path):
    _, ort_path = ort_files
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(ort_path, alone / ort_path.name)
    runner = get_target("ort").open_runner(alone / ort_path.name, 1)
    with pytest.raises(CannotMeasure) as ort_error:
        _through_the_fallback(runner, {}, alone / ort_path.name, CannotMeasure("it did not load"))
    assert ort_error.value.args[0] == (f"it did not load (the emulated runtime is onnxruntime {EMULATED_ORT}, the "
                                       "newest that runs under qemu-user here; a phone app with a newer runtime "
                                       "may take this model)")
    tflite = get_target("tflite").open_runner(TINY_TFLITE, 1)
    assert not hasattr(tflite, "emulation_fallback")
    with pytest.raises(CannotMeasure) as litert_error:
        _through_the_fallback(tflite, {}, TINY_TFLITE, CannotMeasure("it did not load"))
    assert f"(the emulated runtime is ai-edge-litert {EMULATED_LITERT}, " in litert_error.value.args[0]
