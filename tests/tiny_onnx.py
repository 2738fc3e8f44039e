"""A three-op ONNX graph built with onnx.helper, for fast tests run by the real onnxruntime:
x [batch, 4] -> logits = x @ W + B [batch, 3], emb = 2 x [batch, 4]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, -0.5, 0.25]], np.float32)
B = np.array([0.1, 0.0, -0.1], np.float32)


def tiny_model(folder: Path, ir_version: int = 9) -> Path:
    """ir_version 11: onnxruntime 1.32 loads it, 1.22 (max IR 10) does not: a real app-runtime mismatch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "B"], ["logits"]),
         helper.make_node("Mul", ["x", "two"], ["emb"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B"),
         numpy_helper.from_array(np.array(2, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = ir_version
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


WT = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, -1.0, 2.0]], np.float32)


def tiny_text_model(folder: Path) -> Path:
    """input_ids int64 [batch, 5] -> logits = float(input_ids) @ WT [batch, 3]: a text model's shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["ids", "WT"], ["logits"])], "tiny_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(WT, "WT")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = folder / "text.onnx"
    onnx.save(model, str(path))
    return path


def tiny_grid_model(folder: Path) -> Path:
    """x [batch, 4] -> scores [batch, 2, 2]: a class axis (1) and a position axis, as a per-position classifier's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["scores"])], "tiny_grid",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2, 2])],
        [numpy_helper.from_array(np.array([-1, 2, 2], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = folder / "grid.onnx"
    onnx.save(model, str(path))
    return path
