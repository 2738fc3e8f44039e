"""LiteRT builds: the torch student converted by litert-torch, then each precision's quantizer (PT2E or
ai-edge-quantizer), with what keep_float, keep_int8, int4_recipe and int4_block_size ask of them."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from edge_distill.calibration import example_batch, fixed_batch_of, padded
from edge_distill.errors import BadInput, ExportMismatch, MissingDependency

from .. import inference_module
from .inspect import NotPrepared, why_unprepared
from .runner import TfliteRunner


def convert_int8(module, sample, specs, request, out, channels_last):
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    import litert_torch

    _require_calibration(request)
    if channels_last:
        module = litert_torch.to_channel_last_io(module, args=_image_args(specs))
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                             is_dynamic=False))
    program = torch.export.export(module, sample).module()
    folded = fold_norms_into_linears(program)
    prepared = prepare_pt2e(program, quantizer)
    with torch.no_grad():
        for feeds in _calibration_feeds(request.calibration, specs):
            prepared(*_as_tensors(specs, feeds, channels_last))
    converted = convert_pt2e(prepared, fold_quantize=False)
    edge = litert_torch.convert(converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(out))
    stored = int8_constants(out)
    if not request.options["integer_io"]:
        _float_io(out)
    return folded, stored


def fold_norms_into_linears(program) -> int:
    """Fold each LayerNorm's scale and shift into the Linear that alone reads it (W * gamma, b + W @ beta),
    as LiteRT's float converter does: PT2E puts a QUANTIZE between the two, which stops the converter's
    own fusion and leaves both vectors and their MUL and ADD in float. Returns how many were folded."""
    import torch

    aten = torch.ops.aten
    params = dict(program.named_parameters())
    reads = Counter(node.target for node in program.graph.nodes for _ in node.users)  # a parameter's: get_attr's

    def alone(node) -> bool:  # a parameter (not a buffer) read once, by this graph node only
        return isinstance(node, torch.fx.Node) and node.target in params and reads[node.target] == 1

    folded = 0
    for norm in list(program.graph.nodes):
        if norm.target != aten.layer_norm.default or len(norm.users) != 1:
            continue
        linear = next(iter(norm.users))
        if linear.target != aten.linear.default:
            continue
        gamma, beta = (*norm.args, None, None)[2:4]  # None: a norm without scale and shift
        weight, bias = (*linear.args, None)[1:3]  # None: a linear without bias
        # the norm as the linear's input: were it its weight or bias, that would not be a parameter
        if not all(alone(n) for n in (gamma, beta, weight, bias)):
            continue
        g, b, w, c = (params[n.target].detach() for n in (gamma, beta, weight, bias))
        _set_tensor(program, weight.target, w * g)
        _set_tensor(program, bias.target, c + w @ b)
        norm.args = (norm.args[0], norm.args[1], None, None, *norm.args[4:])
        folded += 1
    program.graph.eliminate_dead_code()
    program.recompile()
    return folded


def _set_tensor(program, target: str, value) -> None:
    """A new parameter in the graph module's copy: the caller's own module keeps its weights."""
    import torch

    owner, _, name = target.rpartition(".")
    setattr(program.get_submodule(owner) if owner else program, name, torch.nn.Parameter(value))


def int8_constants(path: Path, min_elements: int = 256) -> int:
    """Store each float32 constant of at least min_elements (a learned position embedding entering an
    ADD, a LayerNorm's scale left in float) as int8, symmetric per tensor, behind a DEQUANTIZE (the op
    reading it still computes in float): PT2E quantizes the weights of linears and convolutions only. Smaller ones
    would cost more in the op and tensor entries than they save. Returns how many were stored."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    readers: dict[int, int] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    stored = 0
    for graph in model.subgraphs:
        front = []
        for index, tensor in enumerate(list(graph.tensors)):
            data = model.buffers[tensor.buffer].data
            if (tensor.type != fb.TensorType.FLOAT32 or data is None or len(data) < 4 * min_elements
                    or readers[tensor.buffer] != 1 or tensor.isVariable):
                continue
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)
            scale = float(np.abs(values).max()) / 127 or 1.0  # all zeros: any scale
            twin = fb.TensorT()
            twin.name, twin.shape, twin.type, twin.buffer = f"{_text(tensor.name)}_int8", tensor.shape, \
                fb.TensorType.INT8, tensor.buffer
            twin.quantization = fb.QuantizationParametersT()
            twin.quantization.scale, twin.quantization.zeroPoint = [scale], [0]
            model.buffers[tensor.buffer].data = np.round(values / scale).astype(np.int8).view(np.uint8)  # within +-127
            model.buffers.append(fb.BufferT())
            tensor.buffer = len(model.buffers) - 1  # the float tensor is now DEQUANTIZE's output
            graph.tensors.append(twin)
            op = fb.OperatorT()
            op.opcodeIndex = _opcode(model, fb.BuiltinOperator.DEQUANTIZE)
            op.inputs, op.outputs = [len(graph.tensors) - 1], [index]
            front.append(op)
        graph.operators = front + list(graph.operators)
        stored += len(front)
    if stored:
        flatbuffer_utils.write_model(model, str(path))
    return stored


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _opcode(model, builtin: int) -> int:
    """The index of this builtin's operator code in the model, added if it has none (version 2: int8
    tensors, for QUANTIZE and DEQUANTIZE, both below 127, where the deprecated field holds them)."""
    from ai_edge_litert import schema_py_generated as fb

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = fb.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def pt2e_or_aeq(module, sample, specs, request, out: Path, fp32: Path, details: dict) -> None:
    """litert-torch's PT2E quantizer, and ai-edge-quantizer's static recipe when PT2E crashes (its GRU
    annotation raises IndexError, for one) or builds a file the interpreter cannot prepare (a QUANTIZE
    without a quantization of its output, for one): the fallback is said, never silent."""
    channels_last = bool(request.options["channels_last_io"])
    try:
        folded, stored = convert_int8(module, sample, specs, request, out, channels_last)
        details["quantization"] = (f"litert-torch PT2E int8, symmetric per-channel weights, calibrated; {folded} "
                                   f"LayerNorm scale(s) folded into the next linear; {stored} other float "
                                   "constant(s) stored int8 per tensor")
        unprepared = why_unprepared(out)
        if unprepared:
            raise NotPrepared(unprepared)
    except (BadInput, MissingDependency):
        raise
    except Exception as exc:
        failed = ("artifact did not prepare in the LiteRT interpreter" if isinstance(exc, NotPrepared)
                  else "quantizer failed on this model")
        why = (str(exc) if isinstance(exc, NotPrepared)  # LiteRT's own words, first
               else f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
        convert(module, sample, fp32, channels_last, specs)
        name_signature(fp32, specs)
        quantize_int8(fp32, out, request.options, details, request)
        also = why_unprepared(out)
        if also:
            out.unlink()
            raise BadInput(f"no int8 artifact of this model prepares in the LiteRT interpreter: litert-torch's "
                           f"PT2E int8 {failed} ({why}); ai-edge-quantizer's static one did not prepare either ({also})",
                           hint="int8-dynamic or fp16 keep float activations") from exc
        details.setdefault("notes", []).append(
            f"litert-torch's PT2E int8 {failed} ({why}); built with ai-edge-quantizer's static "
            "recipe instead (the int8_recipe = \"aeq\" option)")
        details["recipe_fallback"] = {"asked": "pt2e", "used": "aeq", "why": why}


def quantize_int8(fp32: Path, out: Path, opts, details, request):
    """int8_recipe = "aeq": ai-edge-quantizer's own static recipe, calibrated on the same samples."""
    from ai_edge_quantizer import quantizer, recipe

    _require_calibration(request)
    data, specs = request.calibration, request.source.inputs
    channels_last = bool(opts["channels_last_io"])
    samples = [{s.name: _as_tensors([s], {s.name: feeds[s.name]}, channels_last)[0].numpy() for s in specs}
               for feeds in _calibration_feeds(data, specs)]
    qt = _keeping_float(quantizer.Quantizer(str(fp32), recipe.static_wi8_ai8()), opts)
    qt.quantize(qt.calibrate({"serving_default": samples})).export_model(str(out), overwrite=True)
    if not opts["integer_io"]:
        _float_io(out)
    details["quantization"] = "ai-edge-quantizer static_wi8_ai8, calibrated"


def quantize_fp16(fp32: Path, out: Path, opts, details, request=None):
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    qt = quantizer.Quantizer(str(fp32))
    qt.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, QuantGranularity.TENSORWISE,
                              AlgorithmName.FLOAT_CASTING)
    _keeping_float(qt, opts).quantize().export_model(str(out), overwrite=True)
    details["quantization"] = "fp16 weights, fp32 compute (ai-edge-quantizer float casting)"


def quantize_int8_dynamic(fp32: Path, out: Path, opts, details, request=None):
    from ai_edge_quantizer import quantizer, recipe

    qt = _keeping_float(quantizer.Quantizer(str(fp32), recipe.dynamic_wi8_afp32()), opts)
    qt.quantize().export_model(str(out), overwrite=True)
    details["quantization"] = "ai-edge-quantizer dynamic_wi8_afp32: int8 channelwise weights, dynamic activations"


def quantize_int4(fp32: Path, out: Path, opts, details, request=None):
    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    kind = opts["int4_recipe"]
    block = int(opts["int4_block_size"])
    granularity = getattr(QuantGranularity, f"BLOCKWISE_{block}", None)
    if granularity is None:
        raise BadInput(f"int4_block_size must be 32, 64, 128 or 256, got {block}")
    add = "add_dynamic_config" if kind == "dynamic" else "add_weight_only_config"
    qt = quantizer.Quantizer(str(fp32))
    getattr(qt, add)(".*", TFLOperationName.ALL_SUPPORTED, 4, QuantGranularity.CHANNELWISE)
    blockwise = [] if kind == "weight-only" else _fc_layers_divisible_by(fp32, block)
    for name in blockwise:  # later configs override earlier ones for the layers they match
        getattr(qt, add)(re.escape(name), TFLOperationName.FULLY_CONNECTED, 4, granularity)
    for name in opts["keep_int8"]:
        getattr(qt, add)(_scope(name), TFLOperationName.ALL_SUPPORTED, 8, QuantGranularity.CHANNELWISE)
    _keeping_float(qt, opts).quantize().export_model(str(out), overwrite=True)
    details["quantization"] = (f"ai-edge-quantizer int4 {kind}: channelwise int4 weights; blockwise-{block} on "
                               f"{len(blockwise)} FULLY_CONNECTED layer(s) whose depth {block} divides"
                               + (f"; {len(opts['keep_int8'])} op(s) in int8" if opts["keep_int8"] else ""))


def torch_module(source):
    if source.module is not None:
        return inference_module(source)
    try:
        from onnx2torch import convert
    except ImportError as exc:
        raise BadInput(f"{source.reference} is ONNX only; the tflite target converts from torch",
                       hint="pip install onnx2torch to convert it, or give the torch student "
                            "(module:factory + weights, or a .pt2 program)") from exc
    try:
        return convert(_without_allowzero(source.onnx_path)).eval()
    except NotImplementedError as exc:
        raise BadInput(f"onnx2torch cannot convert {source.reference}: {exc}",
                       hint="these ops block the ONNX route; give the torch student (module:factory or .pt2)") \
            from exc


def _without_allowzero(path):
    """onnx2torch rejects Reshape(allowzero=1), which the dynamo exporter writes. With a constant
    shape that holds no 0 the flag changes nothing, so drop it there."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    for node in model.graph.node:
        shape = constants.get(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
        if shape is not None and not (shape == 0).any():
            for attr in node.attribute:
                if attr.name == "allowzero":
                    attr.i = 0
    return model


def _require_calibration(request) -> None:
    if request.calibration is None:
        raise BadInput("tflite int8 (static) needs calibration data: set [data] calibration or pass --calibration")


def _image_args(specs) -> list[int]:
    return [i for i, s in enumerate(specs) if len(s.shape) == 4]


def sample_inputs(specs, calibration) -> tuple:
    """The example the converter traces with: one sample, or the model's own fixed batch."""
    import torch

    return tuple(torch.from_numpy(x) for x in example_batch(specs, calibration, 1))


def _calibration_feeds(data, specs):
    """Calibration samples one at a time, or in chunks of a fixed-batch model's batch."""
    step = fixed_batch_of(specs) or 1
    for i in range(0, len(data), step):
        yield padded({s.name: data.inputs[s.name][i: i + step] for s in specs}, step)


def _as_tensors(specs, arrays: dict, channels_last: bool) -> tuple:
    import torch

    tensors = []
    for s in specs:
        a = arrays[s.name]
        if channels_last and a.ndim == 4:
            a = np.transpose(a, (0, 2, 3, 1))
        tensors.append(torch.from_numpy(np.ascontiguousarray(a)))
    return tuple(tensors)


def convert(module, sample, out: Path, channels_last: bool, specs) -> None:
    import litert_torch

    if channels_last:
        images = _image_args(specs)
        module = litert_torch.to_channel_last_io(module, args=images)
        sample = tuple(t.permute(0, 2, 3, 1).contiguous() if i in images else t for i, t in enumerate(sample))
    litert_torch.convert(module.eval(), sample).export(str(out))


def conversion_error(exc: Exception, reference: str, module, sample) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    if "DataDependent" in type(exc).__name__ or "data-dependent" in text:
        return (f"torch.export cannot trace {reference}: it branches on the values of its inputs "
                f"(data-dependent control flow) - {first}")
    unlowered = _unlowered_ops(module, sample)
    if unlowered:
        return f"litert-torch cannot convert {reference}: no LiteRT lowering for {', '.join(unlowered)}"
    return f"litert-torch cannot convert {reference} ({type(exc).__name__}: {first})"


def _unlowered_ops(module, sample) -> list[str]:
    """The ATen ops of the traced model that litert-torch has no lowering for (best effort)."""
    try:
        import torch
        from litert_torch.backend.lowerings import registry

        program = torch.export.export(module, sample).run_decompositions()
        ops = {n.target for n in program.graph.nodes if n.op == "call_function"}
        return sorted(str(op) for op in ops if isinstance(op, torch._ops.OpOverload) and registry.lookup(op) is None)
    except Exception:  # the model may not even trace; the caller reports the original error
        return []


def _keeping_float(qt, opts):
    """The quantizer with the keep_float ops left out (a later config overrides earlier ones; an op's
    scope is its output tensors' names, each followed by ";")."""
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.qtyping import TFLOperationName

    for name in opts["keep_float"]:
        qt.update_quantization_recipe(_scope(name), TFLOperationName.ALL_SUPPORTED,
                                      algorithm_key=AlgorithmName.NO_QUANTIZE)
    return qt


def _scope(name: str) -> str:
    """The regex of ai-edge-quantizer's op scope that matches exactly the op with this output tensor."""
    return f"(^|;){re.escape(name)};"


def _fc_layers_divisible_by(path: Path, block: int) -> list[str]:
    """Output tensor names of FULLY_CONNECTED ops whose weight depth the block size divides."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    names = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != fb.BuiltinOperator.FULLY_CONNECTED:
            continue
        weight = graph.tensors[op.inputs[1]]
        if len(weight.shape) == 2 and weight.shape[1] % block == 0:
            name = graph.tensors[op.outputs[0]].name
            names.append(name.decode() if isinstance(name, bytes) else name)
    return names


def _float_io(path: Path) -> None:
    """Give an integer-I/O model float inputs and outputs: a QUANTIZE after each integer input and
    a DEQUANTIZE before each integer output, as the TFLite converter does by default."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]

    def float_twin(index: int) -> int:
        tensor = graph.tensors[index]
        twin = fb.TensorT()
        twin.name, twin.shape, twin.shapeSignature = tensor.name, tensor.shape, tensor.shapeSignature
        twin.type = fb.TensorType.FLOAT32
        model.buffers.append(fb.BufferT())
        twin.buffer = len(model.buffers) - 1
        tensor.name = f"{_text(tensor.name)}_quantized"
        graph.tensors.append(twin)
        return len(graph.tensors) - 1

    integer = (fb.TensorType.INT8, fb.TensorType.UINT8)
    remap = {}

    def wrap(edges: list, builtin: int, is_input: bool) -> list:
        """Give each integer graph input (output) a float twin and a QUANTIZE (DEQUANTIZE) op."""
        ops = []
        for pos, index in enumerate(edges):
            tensor = graph.tensors[index]
            # only quantized tensors: a plain uint8 input (image bytes the model normalises) stays as it is
            if tensor.type in integer and tensor.quantization is not None and len(tensor.quantization.scale or []):
                remap[index] = twin = float_twin(index)
                op = fb.OperatorT()
                op.opcodeIndex = _opcode(model, builtin)
                op.inputs, op.outputs = ([twin], [index]) if is_input else ([index], [twin])
                ops.append(op)
                edges[pos] = twin
        return ops

    front = wrap(graph.inputs, fb.BuiltinOperator.QUANTIZE, is_input=True)
    back = wrap(graph.outputs, fb.BuiltinOperator.DEQUANTIZE, is_input=False)
    graph.operators = front + list(graph.operators) + back
    for signature in model.signatureDefs or []:
        for entry in list(signature.inputs or []) + list(signature.outputs or []):
            entry.tensorIndex = remap.get(entry.tensorIndex, entry.tensorIndex)
    flatbuffer_utils.write_model(model, str(path))


def name_signature(path: Path, specs) -> None:
    """litert-torch names signature inputs args_0, args_1...: use the model's input names."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for signature in model.signatureDefs or []:
        for entry, spec in zip(signature.inputs or [], specs):
            entry.name = spec.name
            model.subgraphs[signature.subgraphIndex].tensors[entry.tensorIndex].name = spec.name
    flatbuffer_utils.write_model(model, str(path))


def check_parity(path: Path, source, calibration, tolerance: float) -> float:
    if calibration is None:
        return float("nan")
    data = calibration.subset(np.arange(min(32, len(calibration))))
    out = TfliteRunner(path, 1).run({s.name: data.inputs[s.name] for s in source.inputs})[0]
    diff = float(np.max(np.abs(out - source.predict(data))))
    if not diff <= tolerance:
        path.unlink()
        raise ExportMismatch(f"the fp32 .tflite disagrees with the torch student: max |difference| {diff:.3g} on "
                             f"{len(data)} samples, tolerance {tolerance:g}", path=path,
                             hint="the bound is [export] tolerance, or the target's own option: [[targets]] "
                                  "name = \"tflite\", options = { tolerance = ... }")
    return diff
