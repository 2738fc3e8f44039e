"""Core ML builds: the torch student converted by coremltools (torch.export, or TorchScript for recurrent
layers), then compressed as the precision and the options (weight_threshold, int4_block_size,
keep_float, keep_int8) ask; w8a8 quantized on the torch side first. The package's descriptions and
metadata."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edge_distill.calibration import example_batch, fixed_batch_of, padded
from edge_distill.errors import BadInput, MissingDependency
from edge_distill.files import write_atomic

from .. import BuildRequest, inference_module
from .pinned import load_coremltools, quieted

MAX_BATCH = 4096


DESCRIPTIONS = {
    "fp16": "fp16 weights and compute (the Core ML default)",
    "int8": "weight-only int8, per-channel (linear_symmetric)",
    "int4": "weight-only int4, per-block 32 (linear_symmetric, iOS18)",  # the block size is filled in
    "palettize4": "4-bit k-means palettization (lookup tables)",
    "w8a8": "int8 weights and uint8 activations, calibrated on the torch side (LinearQuantizer)",
}


def convert_w8a8(ct, request: BuildRequest, deployment):
    import torch
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)

    if request.calibration is None:
        raise BadInput("coreml w8a8 needs calibration data: set [data] calibration or pass --calibration")
    specs, data = request.source.inputs, request.calibration
    config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", weight_dtype="qint8", activation_dtype="quint8",
        weight_per_channel=True, milestones=[0, 0, 10000, 0]))  # observe, fake-quantize, never freeze
    import copy

    quantizer = LinearQuantizer(copy.deepcopy(request.source.module).eval(), config)
    example = example_inputs(specs, data)
    prepared = quantizer.prepare(example_inputs=example, inplace=False)
    quantizer.step()
    prepared.eval()
    fixed = fixed_batch_of(specs)  # a fixed-batch model takes exactly its batch; others chunks of 32
    with torch.no_grad():
        for start in range(0, len(data), fixed or 32):
            feeds = {s.name: data.inputs[s.name][start: start + (fixed or 32)] for s in specs}
            feeds = padded(feeds, fixed) if fixed else feeds
            prepared(*[torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs])
    final = quantizer.finalize(inplace=False).eval()
    traced = torch.jit.trace(final, example, check_trace=False)  # torch.export cannot take quantized tensors
    return ct.convert(traced, inputs=input_types(ct, specs, batch_bound(request.source)),
                      outputs=output_types(ct, request), convert_to="mlprogram",
                      minimum_deployment_target=deployment)


def example_inputs(specs, calibration) -> tuple:
    """Two samples to trace a dynamic batch with, or the model's own fixed batch."""
    import torch

    return tuple(torch.from_numpy(x) for x in example_batch(specs, calibration, 2))


def input_types(ct, specs, max_batch: int, fixed_shapes: list | None = None) -> list:
    """Float inputs as float32, integer ones (token ids, masks) as int32: Core ML has no int64 input.
    Named axes are ranges, unless `fixed_shapes` pins every input's shape."""
    def dim(d):
        return d if isinstance(d, int) else ct.RangeDim(1, max_batch, default=1)

    return [ct.TensorType(name=s.name, dtype=np.float32 if s.dtype.startswith("float") else np.int32,
                          shape=tuple(fixed_shapes[i]) if fixed_shapes else tuple(dim(d) for d in s.shape))
            for i, s in enumerate(specs)]


def output_types(ct, request: BuildRequest) -> list:
    """Every output, named as in the verified ONNX export (what the other targets' artifacts call them)."""
    names = request.source.output_names
    if request.onnx_path is not None:
        import onnx

        names = [o.name for o in onnx.load(str(request.onnx_path), load_external_data=False).graph.output]
    return [ct.TensorType(name=name, dtype=np.float32) for name in names]


def batch_bound(source) -> int:
    """A .pt2 saved with a dynamic batch bounds it (`Dim(max=...)`): the package takes no more."""
    program = getattr(source, "exported", None)
    uppers = [r.upper for r in (program.range_constraints.values() if program is not None else ())]
    return min([MAX_BATCH, *(int(u) for u in uppers if u.is_number and u < MAX_BATCH)])


def convert(ct, request: BuildRequest, example, deployment):
    """torch.export, then coremltools; recurrent layers (which coremltools' torch.export frontend
    does not convert) go through its TorchScript frontend instead."""
    import torch

    source = request.source
    specs, module, max_batch = source.inputs, inference_module(source).eval(), batch_bound(source)
    dims: dict[str, object] = {}
    dynamic = tuple({axis: dims.setdefault(d, torch.export.Dim(str(d).replace("-", "_"), min=1, max=max_batch))
                     for axis, d in enumerate(s.shape) if isinstance(d, str)} or None for s in specs)
    program = torch.export.export(module, example, dynamic_shapes=dynamic).run_decompositions({})
    inputs, outputs = input_types(ct, specs, max_batch), output_types(ct, request)
    try:
        return ct.convert(program, inputs=inputs, outputs=outputs, minimum_deployment_target=deployment)
    except NotImplementedError as exc:
        if "Unsupported fx node" not in str(exc):
            raise
        if source.exported is not None:  # a .pt2's graph holds its initial states at the traced batch: batch 1
            example = tuple(x[: fixed_batch_of(specs) or 1] for x in example)
            inputs = input_types(ct, specs, max_batch, fixed_shapes=[tuple(x.shape) for x in example])
        traced = torch.jit.trace(module, example, check_trace=False)
        return ct.convert(traced, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                          minimum_deployment_target=deployment)


def compress(ct, model, precision: str, threshold: int, block: int, keep_float=(), keep_int8=()):
    """coremltools' weight compression, layered as its configs are: the precision globally, then per op
    name (keep_float: none; keep_int8: int8 per channel)."""
    import coremltools.optimize as cto

    if precision == "fp16":
        return model
    int8 = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                              weight_threshold=threshold)
    by_name = {**{name: int8 for name in keep_int8}, **{name: None for name in keep_float}}

    def config(op):
        return cto.coreml.OptimizationConfig(global_config=op, op_name_configs=by_name or None)

    if precision == "int8":
        return cto.coreml.linear_quantize_weights(model, config(int8))
    if precision == "int4":
        op = cto.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                                block_size=block, weight_threshold=threshold)
        return cto.coreml.linear_quantize_weights(model, config(op))
    if precision == "palettize4":
        try:
            import sklearn  # noqa: F401
        except ImportError as exc:
            raise MissingDependency("scikit-learn", "coreml", "k-means palettization") from exc
        op = cto.coreml.OpPalettizerConfig(nbits=4, mode="kmeans", weight_threshold=threshold)
        return cto.coreml.palettize_weights(model, config(op))
    raise BadInput(f"unknown coreml precision {precision!r}")


# A conversion failure is the model's op against coremltools, not a setting: say which line drops the target.
CONVERSION_HINT = ('remove "coreml" from this model\'s [[targets]] in edge-distill.toml, or change the op in '
                   "the model; the other targets do not depend on it")


def conversion_error(exc: Exception, reference: str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    if "DataDependent" in type(exc).__name__ or "data-dependent" in text:
        return f"torch.export cannot trace {reference}: it branches on the values of its inputs - {first}"
    return f"coremltools cannot convert {reference}: {first}"


def describe_model(model, request: BuildRequest, precision: str) -> None:
    from edge_distill.version import __version__

    source = request.source
    model.author = "edge-distill"
    model.version = __version__
    model.short_description = f"{source.reference} ({precision}), built and verified by edge-distill"
    for spec in source.inputs:
        kind = "float32" if spec.dtype.startswith("float") else "int32"
        model.input_description[spec.name] = f"{spec.describe()}, {kind}"
    outputs = [o.name for o in model.get_spec().description.output]
    for name in outputs:
        model.output_description[name] = f"the model's output {name}"
    meta = model.user_defined_metadata
    meta["edge_distill.precision"] = precision
    meta["edge_distill.source_sha256"] = source.fingerprint
    for key, value in request.metadata.items():
        meta[f"edge_distill.{key}"] = json.dumps(value)
    labels = request.metadata.get("labels")
    if labels:
        model.output_description[outputs[0]] = f"logits over {len(labels)} classes: {', '.join(labels)}"


def annotate(path: Path, entries: dict) -> None:
    """Write verified results (budgets, provenance) into the package's metadata, atomically."""
    ct = load_coremltools()
    with quieted():
        model = ct.models.MLModel(str(path), skip_model_load=True)
        for key, value in entries.items():
            model.user_defined_metadata[f"edge_distill.{key}"] = json.dumps(value)
        with tempfile.TemporaryDirectory(prefix="edge-distill-annotate-") as work:
            saved = Path(work) / path.name  # coremltools insists on the .mlpackage suffix
            model.save(str(saved))
            write_atomic(path, saved)
