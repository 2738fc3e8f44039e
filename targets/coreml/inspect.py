"""What a Core ML package holds, read on any OS: its spec and MIL program, ops, weight bytes per dtype, I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_distill.errors import BadInput

from .. import artifact_size
from .kernels import input_vars
from .pinned import load_coremltools, quieted


def load_program(path: Path):
    return _load_spec_and_program(load_coremltools(), Path(path))[1]


def _load_spec_and_program(ct, path: Path):
    """A package's spec and its MIL program (with its weights), as the reference evaluator reads it."""
    from coremltools.converters.mil.frontend.milproto.load import load

    with quieted():
        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as exc:
            raise BadInput(f"not a Core ML package: {str(exc).splitlines()[0]}", path=path) from exc
        return spec, load(spec, spec.specificationVersion,
                          file_weights_dir=str(path / "Data" / "com.apple.CoreML" / "weights"))


def inspect_package(path: Path) -> dict:
    """Ops and counts, weight bytes per dtype, inputs and outputs, size: on any OS."""
    ct = load_coremltools()
    from coremltools.converters.mil.mil import types

    path = Path(path)
    spec, program = _load_spec_and_program(ct, path)
    counts: dict[str, int] = {}
    weight_bytes: dict[str, int] = {}
    for op in program.functions["main"].operations:
        counts[op.op_type] = counts.get(op.op_type, 0) + 1
        if op.op_type == "const" and all(child.op_type.startswith("constexpr_") for v in op.outputs
                                         for child in v.child_ops) and any(v.child_ops for v in op.outputs):
            continue  # a compressed weight's data, counted below with its constexpr op
        if op.op_type == "const" or op.op_type.startswith("constexpr_"):
            for var in ([v for v in input_vars(op) if v.op is not None and v.op.op_type == "const"]
                        if op.op_type.startswith("constexpr_") else op.outputs):
                value = var.val
                if isinstance(value, np.ndarray) and value.size > 1:
                    dtype = types.builtin_to_string(var.dtype)
                    bits = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "fp16": 16, "fp32": 32}.get(dtype, 32)
                    weight_bytes[dtype] = weight_bytes.get(dtype, 0) + value.size * bits // 8
    desc = spec.description
    io = {"inputs": [{"name": i.name, "shape": list(i.type.multiArrayType.shape)} for i in desc.input],
          "outputs": [{"name": o.name} for o in desc.output]}
    return {"file": str(path), "size_bytes": artifact_size(path), "spec_version": spec.specificationVersion,
            "ops": dict(sorted(counts.items())), "weight_bytes": dict(sorted(weight_bytes.items())), "io": io,
            "metadata": dict(desc.metadata.userDefined), "author": desc.metadata.author}
