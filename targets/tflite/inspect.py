"""What a .tflite holds: ops, I/O, float islands, weight coverage and MACs per op, whether the interpreter
prepares it, and each layer's activation error against the fp32 model the quantizer was given."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edge_distill.calibration import whole_batches
from edge_distill.errors import BadInput, MissingDependency
from edge_distill.quiet import native_output_silenced

from .. import Coverage, sqnr_db
from .metadata import read_metadata
from .runner import TfliteRunner


class NotPrepared(Exception):
    """A built .tflite the interpreter refuses at allocate_tensors (its message is LiteRT's)."""


def why_unprepared(path: Path) -> str | None:
    """Why LiteRT's interpreter cannot prepare this file (its first line), or None when it can."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_path=str(path)).allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        return " ".join(str(exc).split())[:240]
    return None


def inspect_tflite(path: Path) -> dict:
    """Ops and counts (before delegation), I/O dtypes, integer-only or not, float islands, size."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:
        raise MissingDependency("ai-edge-litert", "tflite", "inspecting .tflite files") from exc
    try:
        it = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BadInput(f"not a loadable .tflite model: {str(exc).splitlines()[0]}", path=path) from exc
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    constant = _constant_tensors(path)
    activations = [i for i in tensors if i not in constant]
    quantized = any(tensors[i]["dtype"] in (np.int8, np.uint8) for i in activations)
    # In a model with integer activations, any other op that reads or writes a float activation is
    # a float island (the QUANTIZE / DEQUANTIZE at the edges are the float I/O, not islands).
    islands = []
    if quantized:
        for op in ops:
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            touched = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0 and i not in constant]
            if any(tensors[i]["dtype"] == np.float32 for i in touched):
                islands.append(op["op_name"])
    edges = [d["index"] for d in it.get_input_details()] + [d["index"] for d in it.get_output_details()]
    io = {"inputs": [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                     for d in it.get_input_details()],
          "outputs": [{"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
                      for d in it.get_output_details()]}
    integer_only = quantized and not islands and all(tensors[i]["dtype"] != np.float32 for i in edges)
    return {"file": str(path), "size_bytes": Path(path).stat().st_size, "ops": dict(sorted(counts.items())),
            "integer_only": bool(integer_only), "float_islands": islands, "io": io,
            "metadata": read_metadata(path)}


def _constant_tensors(path: Path) -> set[int]:
    """Indices of the tensors of subgraph 0 that hold data in the file (weights, constants)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    constant = set()
    for i in range(graph.TensorsLength()):
        buffer = model.Buffers(graph.Tensors(i).Buffer())
        if buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1):
            constant.add(i)
    return constant


# op -> indices of its weight inputs; recurrent ops hold their gate weights in inputs 1-8
_WEIGHTED = {"FULLY_CONNECTED": (1,), "CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "TRANSPOSE_CONV": (1,),
             "BATCH_MATMUL": (1,), "EMBEDDING_LOOKUP": (1,), "UNIDIRECTIONAL_SEQUENCE_LSTM": tuple(range(1, 9)),
             "UNIDIRECTIONAL_SEQUENCE_RNN": (1, 2)}
_INTEGER_TYPES = {3: "uint8", 9: "int8", 17: "int4"}  # TensorType of the flatbuffer schema


def coverage(path: Path) -> Coverage:
    """Weights of a .tflite file by storage type, following DEQUANTIZE ops back to their constant
    (weight-only and dynamic recipes keep int8 weights and dequantize them at run time)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    graph = fb.Model.GetRootAs(Path(path).read_bytes(), 0).Subgraphs(0)
    types = {i: graph.Tensors(i).Type() for i in range(graph.TensorsLength())}
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    dequantized = {int(op["outputs"][0]): int(op["inputs"][0]) for op in ops if op["op_name"] == "DEQUANTIZE"}
    constant = _constant_tensors(path)
    result = Coverage()
    for op in ops:
        for position in _WEIGHTED.get(op["op_name"], ()):
            if position >= len(op["inputs"]) or op["inputs"][position] < 0:
                continue
            index = dequantized.get(int(op["inputs"][position]), int(op["inputs"][position]))
            if index not in constant:
                continue  # an activation (BATCH_MATMUL of two activations)
            shape = [int(x) for x in tensors[index]["shape"]]
            elements = int(np.prod(shape)) if shape else 1
            out = [int(x) for x in tensors[int(op["outputs"][0])]["shape"]]
            macs = 0 if op["op_name"] == "EMBEDDING_LOOKUP" else _tflite_macs(op["op_name"], out, shape, elements)
            stored = _INTEGER_TYPES.get(types.get(index, -1))  # -1: no type, not an integer one
            result.add(op["op_name"], elements, macs, stored is not None, f"#{op['index']}",
                       "kept in float by the recipe", layer=tensors[int(op["outputs"][0])]["name"],
                       bits=None if stored is None else (4 if stored == "int4" else 8))
    return result


def _tflite_macs(op: str, out: list[int], weight: list[int], elements: int) -> int:
    if op in ("CONV_2D", "TRANSPOSE_CONV"):
        return int(np.prod(out[1:3])) * elements  # NHWC: every weight at every output pixel
    if op == "DEPTHWISE_CONV_2D":
        return int(np.prod(out[1:3])) * elements
    if op.startswith("UNIDIRECTIONAL_SEQUENCE"):
        return int(out[1] if len(out) > 2 else 1) * elements
    return int(np.prod(out[1:-1])) * elements  # FULLY_CONNECTED / BATCH_MATMUL: once per row of a sample


def sqnr_per_tensor(path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
    """SQNR (dB) at each layer's output tensor (its name is the layer's): see tensor_error_method. A
    model with integer inputs (integer_io) is not compared: the fp32 model would get them too."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import model_validator
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

    reference = next(iter(sorted(Path(work_dir).rglob("model.fp32.tflite"))), None)  # in the build's own folder
    if reference is None:
        return {}
    runner, float_model = TfliteRunner(path, 1), Interpreter(model_path=str(reference))
    float_inputs = float_model.get_signature_runner().get_input_details()
    if any(float_inputs[n]["dtype"] != d["dtype"] for n, d in runner._inputs.items()):
        return {}
    feeds = whole_batches({n: data.inputs[n] for n in runner.input_names}, runner.batch)
    samples = [{n: runner._feed(n, v[i:i + runner.batch]) for n, v in feeds.items()}
               for i in range(0, len(next(iter(feeds.values()))), runner.batch)]
    key = next(iter(float_model.get_signature_list()))
    with native_output_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental_preserve_all_tensors ... for debugging": what it is for
        compared = model_validator.compare_model(reference.read_bytes(), Path(path).read_bytes(), {key: samples},
                                                 [ValidationErrorMetric.SNR], [lambda q, r: sqnr_db(r, q)],
                                                 num_threads=1)
    found = compared.get_all_tensor_results()
    return {layer: round(found[layer]["snr"], 2) for layer in layers if layer in found}
