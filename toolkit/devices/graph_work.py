"""The work in an ONNX graph, op by op: what an estimate divides by a device's speed.

Each node becomes an `OpWork`: its class (what kind of kernel runs it, which decides how close to
the core's peak it gets), its FLOPs, and the weight and activation elements it touches. Quantized
graphs carry the float graph's work: QDQ weights are folded into the op that consumes them,
QOperator, dynamic and ORT contrib ops (QLinearConv, ConvInteger, MatMulInteger, QGemm,
MatMulNBits) are counted as the convolutions and matrix products they are.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..files import working_in
from ..quiet import quiet

# Op classes: kernels of one class run at a similar fraction of a core's peak on a given runtime.
CONV3X3_S1 = "conv3x3_s1"  # dense 3x3 stride 1: the one Winograd speeds up (ncnn does; XNNPACK, MLAS do not)
CONV = "conv"  # other dense convolutions with a spatial kernel (stems, strided, 5x5, 7x7, grouped)
DEPTHWISE = "depthwise"
POINTWISE = "pointwise"  # 1x1 convolutions: a GEMM over the pixels
GEMM = "gemm"  # matrix-vector products: a batch-1 fully connected layer, one row against its weights
# Matrix products over many rows (a sequence's tokens, attention's heads x tokens): a real GEMM, the
# microkernel a 1x1 convolution runs on, not a matrix-vector product streaming its weights once per row
MATMUL = "matmul"
LIGHT = "light"  # elementwise, pooling, normalization, softmax, data movement: a few operations per element
OP_CLASSES = (CONV3X3_S1, CONV, DEPTHWISE, POINTWISE, GEMM, MATMUL, LIGHT)
DENSE = (CONV3X3_S1, CONV)  # convolutions with a spatial kernel over all (or 16 or more) channels of a group

# A runtime folds these into their neighbours (QDQ pairs into QLinear kernels, shapes at load time).
_FREE = {"QuantizeLinear", "DequantizeLinear", "Shape", "Constant", "Identity", "Reshape", "Flatten", "Squeeze",
         "Unsqueeze", "Dropout"}
# Where the work is, in float and in quantized graphs (QDQ keeps Conv/MatMul; QOperator, dynamic
# quantization and ORT's fused contrib ops rename them): the weight input of each convolution, and
# the matrix products whose first input's last axis is the reduction.
_CONV_WEIGHT = {"Conv": 1, "FusedConv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_LIKE = {"Gemm", "MatMul", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                "DynamicQuantizeMatMul"}


@dataclass(frozen=True)
class OpWork:
    op_type: str
    op_class: str
    flops: float
    weight_elems: float
    act_elems: float  # elements read and written
    out_elems: float = 0.0
    # A dense convolution as a GEMM runtime runs it (im2col, or XNNPACK's indirect GEMM): the rows of
    # its lowered input matrix, output pixels x (input channels x kernel area), that it gathers.
    gathered: float = 0.0


def graph_work(onnx_path: Path) -> list[OpWork]:
    """The work of each node of the graph at batch 1 (free nodes left out)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
                dim.dim_value = 1
    model = _with_shapes(model)
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    # A QDQ graph's weights come through DequantizeLinear: its output counts as the consumer's weight.
    folded = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    weights.update({n.output[0]: weights[n.input[0]] for n in model.graph.node if n.output[0] in folded})
    shapes.update({k: list(v) for k, v in weights.items()})
    size = lambda name: float(np.prod(shapes[name])) if shapes.get(name) and all(shapes[name]) else 0.0  # noqa: E731
    work = []
    for node in model.graph.node:
        if node.op_type in _FREE:
            continue
        out_elems = size(node.output[0])
        weight_elems = float(sum(np.prod(weights[i]) for i in node.input if i in weights))
        act_elems = out_elems + sum(size(i) for i in node.input if i in shapes and i not in weights)
        op_class, flops, gathered = LIGHT, act_elems, 0.0
        kernel = node.input[_CONV_WEIGHT[node.op_type]] if node.op_type in _CONV_WEIGHT else None
        if kernel in weights:
            flops = 2.0 * out_elems * float(np.prod(weights[kernel][1:]))
            op_class = _conv_class(node, weights[kernel])
            if op_class in DENSE:  # output pixels x the kernel's inputs, over every group
                gathered = flops / 2.0 / weights[kernel][0] * _group(node)
        elif node.op_type in _MATMUL_LIKE and shapes.get(node.input[0]):
            op_class, flops = _matrix_class(shapes[node.input[0]]), 2.0 * out_elems * float(shapes[node.input[0]][-1])
        elif node.op_type == "MatMulNBits":  # int4 weights packed in blocks: K x N of them, whatever the packing
            attrs = {a.name: a.i for a in node.attribute}
            op_class, flops, weight_elems = (_matrix_class(shapes.get(node.input[0]) or [1]),
                                             2.0 * out_elems * attrs["K"], float(attrs["K"] * attrs["N"]))
        work.append(OpWork(node.op_type, op_class, flops, weight_elems, act_elems, out_elems, gathered))
    return work


def _matrix_class(first_input_shape: list) -> str:
    """GEMM for one row (a matrix-vector product), MATMUL for more: the rows are every axis but the
    reduction (batch x tokens, or batch x heads x tokens)."""
    rows = 1
    for d in first_input_shape[:-1]:
        rows *= d or 1
    return MATMUL if rows > 1 else GEMM


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1) or 1


def _conv_class(node, kernel_shape) -> str:
    attrs = {a.name: (list(a.ints) or a.i) for a in node.attribute}
    spatial, group = list(kernel_shape[2:]), _group(node)
    if kernel_shape[1] == 1 and group > 1:
        return DEPTHWISE
    if all(k == 1 for k in spatial):
        return POINTWISE
    strides = attrs.get("strides") or [1]
    # A group of 16 channels or more runs as a dense convolution of its own (AlexNet's two towers).
    if spatial == [3, 3] and all(s == 1 for s in strides) and (group == 1 or kernel_shape[1] >= 16):
        return CONV3X3_S1
    return CONV


def _with_shapes(model):
    """Every tensor's shape. onnxruntime's symbolic inference knows most contrib ops (QGemm,
    MatMulNBits, ...); where it gives up (QOperator graphs), ONNX's inference is taught the contrib
    ops it stops at, one at a time."""
    import onnx
    from onnx import shape_inference

    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        # Where it gives up it saves the model to the current folder: let that be a scratch one.
        with quiet("", streams=True), tempfile.TemporaryDirectory(prefix="edge-distill-shapes-") as scratch, \
                working_in(Path(scratch)):
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # "Incomplete symbolic shape inference", or no onnxruntime
        pass
    for _ in range(len(model.graph.node) + 1):
        model = shape_inference.infer_shapes(model)
        known = {v.name: v.type.tensor_type for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]
                 if v.type.tensor_type.shape.dim and all(d.dim_value for d in v.type.tensor_type.shape.dim)}
        node = next((n for n in model.graph.node if n.op_type in _CONTRIB_SHAPES and n.output[0] not in known
                     and n.input[0] in known), None)
        if node is None:
            return model
        source = known[node.input[0]]
        weights = {i.name: list(i.dims) for i in model.graph.initializer}
        shape = _CONTRIB_SHAPES[node.op_type]([d.dim_value for d in source.shape.dim], node, weights)
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(node.output[0], source.elem_type, shape))
    return model


def _pooled(shape: list, node, weights: dict) -> list:
    channels_last = any(a.name == "channels_last" and a.i for a in node.attribute)
    return [shape[0], *([1] * (len(shape) - 2)), shape[-1]] if channels_last else [*shape[:2], *([1] * (len(shape) - 2))]


def _qgemm(shape: list, node, weights: dict) -> list:
    b = weights.get(node.input[3], [0, 0])
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return [shape[0], b[0] if trans_b else b[1]]


# Output shapes of ORT's QOperator contrib ops, from their first input's (and QGemm's weight).
_CONTRIB_SHAPES = {**{op: (lambda shape, node, weights: shape) for op in ("QLinearAdd", "QLinearMul", "QLinearSigmoid",
                                                                           "QLinearLeakyRelu", "QLinearSoftmax")},
                   "QLinearGlobalAveragePool": _pooled, "QGemm": _qgemm}
