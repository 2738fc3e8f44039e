"""What an ORT artifact holds: op counts, mobile usability, weight coverage and MACs per op, an ORT-format
file's contents, and each layer's activation error against the float graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_distill.calibration import run_in_batches
from edge_distill.errors import BadInput
from edge_distill.quiet import quiet

from .. import Coverage, sqnr_db
from .build import PREPROCESSED


def float_name(node_name: str) -> str:
    """A quantized node's name as it was before quantization (what keep_float names): MatMulNBits adds
    "_Q4" (or "_Q8"), the dynamic quantizer "_quant"."""
    return node_name.removesuffix("_Q4").removesuffix("_Q8").removesuffix("_quant")


def intermediate(model, tensors: list[str], data) -> dict[str, np.ndarray]:
    """The named tensors of `model` (an onnx ModelProto) over `data`'s samples, as extra graph outputs."""
    import onnx
    import onnxruntime as ort

    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in dict.fromkeys(tensors) if t not in have)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    shape = session.get_inputs()[0].shape
    batch = shape[0] if shape and isinstance(shape[0], int) else None
    feeds = {n: data.inputs[n] for n in names}
    outputs = run_in_batches(lambda chunk: session.run(tensors, chunk), feeds, batch)
    return dict(zip(tensors, outputs))


def tensor_errors(path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
    """SQNR (dB) at each layer's output, as the next layer reads it (after its QDQ pair): this quantized
    artifact against the float graph its quantizer was given (left in the build's `work_dir`), over
    `data`'s samples; the comparison of ORT's qdq_loss_debug, matched by node and tensor name, for
    QDQ, dynamic and MatMulNBits graphs alike. A layer whose output has no counterpart in the float
    graph is left out."""
    import onnx

    reference = next(iter(sorted(Path(work_dir).rglob(PREPROCESSED))), None)
    if reference is None:
        return {}
    quantized = onnx.load(str(path if path.suffix == ".onnx" else path.with_suffix(".onnx")))
    float_model = onnx.load(str(reference))
    float_tensors = {o for n in float_model.graph.node for o in n.output}
    float_output = {n.name: n.output[0] for n in float_model.graph.node if n.output}
    produced = {o for n in quantized.graph.node for o in n.output}
    pairs = {}  # layer -> (tensor in the quantized graph, the same tensor in the float graph)
    for node in quantized.graph.node:
        name, out = float_name(node.name), node.output[0] if node.output else ""
        ref = out.removesuffix("_QuantizeLinear_Input")
        if ref not in float_tensors:  # dynamic: the float node's output, rebuilt after its integer op
            ref = float_output.get(name, "")
        # What the next layer reads: after a QDQ pair (a fused ReLU lives in its quantization range).
        seen = next((t for t in (f"{ref}_DequantizeLinear_Output", ref, out) if t in produced), out)
        if name in layers and ref in float_tensors:
            pairs[name] = (seen, ref)
    if not pairs:
        return {}
    got = intermediate(quantized, [q for q, _ in pairs.values()], data)
    want = intermediate(float_model, [f for _, f in pairs.values()], data)
    return {layer: round(sqnr_db(want[f], got[q]), 2) for layer, (q, f) in pairs.items()}


def ort_file_contents(path: Path) -> dict:
    """Inputs, outputs and the operators an ORT-format file needs, read without its .onnx: the ops are
    those left after the conversion's optimizations (fused int8 kernels), by domain, without counts."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model.ort_model_processor import OrtFormatModelProcessor

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        required: dict = {}
        with quiet("", "ort_format_model.utils", "onnxruntime"):
            OrtFormatModelProcessor(str(path), required, None).process()
    except Exception as exc:  # a damaged or foreign file: name it, never a traceback
        raise BadInput(f"not a readable ORT-format model ({type(exc).__name__}: {exc})", path=path) from exc
    io = lambda values: [{"name": v.name, "shape": v.shape, "type": v.type} for v in values]  # noqa: E731
    return {"inputs": io(session.get_inputs()), "outputs": io(session.get_outputs()),
            "required_ops": {domain or "ai.onnx": sorted({op for ops in by_opset.values() for op in ops})
                             for domain, by_opset in sorted(required.items())},
            "note": "an ORT-format file alone: operators after its build-time optimizations, without counts "
                    "(the .onnx beside it gives counts and the mobile usability check)"}


def op_counts(onnx_path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def mobile_usability(onnx_path: Path) -> dict:
    """How much of the graph NNAPI and the Core ML EP (ML Program) would take, with the dynamic
    dims fixed to 1. Provenance: estimated from ORT's own op tables, not run on a device."""
    import onnx
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                make_dim_param_fixed(model.graph, dim.dim_param, 1)
    try:
        fix_output_shapes(model)
    except Exception:  # outputs of contrib ops may not infer; partition counts still work
        pass
    out: dict[str, object] = {"provenance": "estimated", "method": "onnxruntime usability_checker op tables, dynamic dims fixed to 1"}
    checks = {"nnapi": lambda m: uc.check_nnapi_partitions(m, require_fixed_input_sizes=True),
              "coreml_mlprogram": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md")}
    with quiet("", "ort_format_model.utils", "onnxruntime"):
        for ep, check in checks.items():
            try:
                info = check(model)
            except Exception as exc:  # an internal module of ORT: report, do not crash the build
                out[ep] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            out[ep] = {"supported_nodes": info.num_supported_nodes, "nodes": info.num_nodes,
                       "partitions": info.num_partitions, "unsupported_ops": sorted(info.unsupported_ops),
                       "suitability": info.suitability().name}
    return out


# op type -> (index of its weight inputs, bits when the op itself holds quantized weights)
_QUANTIZED_OPS = {"MatMulNBits": ((1,), 4), "GatherBlockQuantized": ((0,), 4), "MatMulInteger": ((1,), 8),
                  "ConvInteger": ((1,), 8), "DynamicQuantizeMatMul": ((1,), 8), "QLinearConv": ((3,), 8),
                  "QLinearMatMul": ((3,), 8), "DynamicQuantizeLSTM": ((1, 2), 8), "QGemm": ((3,), 8)}
_FLOAT_OPS = {"Conv": (1,), "ConvTranspose": (1,), "MatMul": (1,), "Gemm": (1,), "LSTM": (1, 2), "GRU": (1, 2),
              "RNN": (1, 2), "Gather": (0,)}
_WHY_FLOAT = {"Conv": "int4 (MatMulNBits) covers MatMul and Gemm only", "Gather": "int4_gather is off",
              "LSTM": "static QDQ leaves recurrent weights in float; int8-dynamic quantizes them",
              "GRU": "onnxruntime's quantizers keep GRU weights in float (dynamic covers LSTM only)",
              "RNN": "onnxruntime's quantizers keep RNN weights in float (dynamic covers LSTM only)"}


def coverage(onnx_path: Path) -> Coverage:
    """Weights and multiply-accumulates of an ORT graph, quantized or float, per op: QDQ weights
    (DequantizeLinear of an int8 initializer), the quantized ops (MatMulNBits, MatMulInteger, ...)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
                dim.dim_value = 1  # batch 1, as the latency is reported
    try:
        model = shape_inference.infer_shapes(model)
    except Exception:  # contrib ops may not infer: MACs of what does
        pass
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
    inits = {i.name: i for i in model.graph.initializer}
    dequantized = {n.output[0]: inits[n.input[0]] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    result = Coverage()
    for node in model.graph.node:
        if node.op_type in _QUANTIZED_OPS:
            indices, bits = _QUANTIZED_OPS[node.op_type]
            bits = next((a.i for a in node.attribute if a.name == "bits"), bits)  # MatMulNBits: 4 or 8
        elif node.op_type in _FLOAT_OPS:
            indices, bits = _FLOAT_OPS[node.op_type], None
        else:
            continue
        for index in indices:
            name = node.input[index] if index < len(node.input) else ""
            tensor = dequantized.get(name) or inits.get(name)
            if tensor is None:
                continue  # an activation (MatMul of two activations): no weights
            elements = _weight_elements(node, tensor)
            width = _INTEGER_BITS.get(tensor.data_type, 8) if name in dequantized else bits  # QDQ: its stored type's
            result.add(node.op_type, elements, _macs(node, shapes, elements), width is not None, node.name,
                       "" if width else _WHY_FLOAT.get(node.op_type, ""), bits=width)
    return result


_INTEGER_BITS = {2: 8, 3: 8, 4: 16, 5: 16, 21: 4, 22: 4}  # onnx.TensorProto: UINT8, INT8, UINT16, INT16, UINT4, INT4


def _weight_elements(node, tensor) -> int:
    if node.op_type == "MatMulNBits":
        attrs = {a.name: a.i for a in node.attribute}
        return attrs["K"] * attrs["N"]
    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return count * 2 if node.op_type == "GatherBlockQuantized" else count  # two 4-bit values per byte


def _macs(node, shapes: dict, elements: int) -> int | None:
    """Multiply-accumulates per sample: every weight once per output position (a lookup: none). The
    leading axis is the batch (fixed graphs keep theirs), so it is left out."""
    if node.op_type in ("Gather", "GatherBlockQuantized"):
        return 0
    out = shapes.get(node.output[0])
    if (not out or not all(out)) and shapes.get(node.input[0]):  # a contrib op's output is not inferred
        rows = shapes[node.input[0]][1:-1]
        return int(np.prod(rows)) * elements if all(rows) else None
    if not out or not all(out):
        return None
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose"):
        return int(np.prod(out[2:])) * elements  # each output pixel uses every weight of its group
    if node.op_type in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
        return int(out[0]) * elements  # every weight at every time step
    return int(np.prod(out[1:-1])) * elements  # MatMul / Gemm: every weight once per row of a sample
