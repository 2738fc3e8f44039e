"""Core ML for iOS and macOS: `.mlpackage` ML Programs, converted with coremltools from the torch
student (torch.export, run_decompositions({}), ct.convert; recurrent layers, which that frontend
does not convert, through coremltools' TorchScript frontend), every output, float32 inputs (int32
for token ids and masks: Core ML has no int64 input) and outputs, iOS17 by default and iOS18 where
the compression needs it (int4 per-block). A dynamic batch (1..4096, or the .pt2's own bound).

Precisions
  fp16        the Core ML default compute precision
  int8        weight-only, per-channel (linear_quantize_weights)
  int4        weight-only, per-block 32 (iOS18)
  palettize4  4-bit k-means lookup tables (palettize_weights; needs scikit-learn)
  w8a8        int8 weights and activations, calibrated on the torch side (coremltools' torch
              LinearQuantizer: prepare, calibration loop, finalize, then convert), because the
              post-conversion activation calibration needs Core ML predictions, i.e. macOS

Verification. Core ML runs only on Apple machines. On macOS (coremltools' native bridge present)
the runner predicts for real with the chosen compute units and times it. Anywhere else it runs a
reference evaluation of the saved ML program: the converted graph with its compressed weights,
op by op, with coremltools' own numpy kernels (and a few here). Its figures carry the provenance
`reference-mil`: they check conversion and compression, not Apple's kernels or the Neural Engine's
arithmetic, and they carry no latency.

Only weights with more than `weight_threshold` elements (coremltools' default: 2048) are compressed;
smaller ones stay fp16. The report lists weight bytes per dtype so this shows.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from edge_distill.errors import BadInput, CannotMeasure, MissingDependency

from .. import Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, check_raised, sqnr_db
from .build import (DESCRIPTIONS, CONVERSION_HINT, MAX_BATCH, compress, conversion_error, convert, convert_w8a8,
                    describe_model, example_inputs, annotate)
from .inspect import load_program, inspect_package
from .kernels import input_vars
from .pinned import COREMLTOOLS_VERSION, load_coremltools, quieted
from .runner import CoreMLRunner, ReferenceMilRunner, native_coreml_available

__all__ = ["COMPRESSED", "COREMLTOOLS_VERSION", "MAX_BATCH", "NE", "REFERENCE", "CoreMLRunner", "CoremlTarget",
           "ReferenceMilRunner", "annotate", "capabilities", "inspect_package", "native_coreml_available"]

COMPRESSED = ("int8", "int4", "palettize4")  # precisions that compress the converted program's weights
REFERENCE = "reference.fp16.mlpackage"  # in a build's work folder: the program before compression

NE = "neural engine"  # where Core ML runs a compressed model on an iPhone, as far as an estimate knows
capabilities = Capabilities(
    name="coreml",
    description="Core ML for iOS/macOS (.mlpackage ML Program via coremltools; reference MIL evaluation off macOS)",
    precisions=(Precision("fp16", 16, 16, "fp16", NE, help="the Core ML default compute precision"),
                Precision("int8", 8, 16, "int8", NE, help="weight-only, per-channel"),
                Precision("int4", 4, 16, "int8", NE, help="weight-only, per-block (iOS18)"),
                Precision("palettize4", 4, 16, "fp16", NE, help="4-bit k-means lookup tables"),
                Precision("w8a8", 8, 8, "int8", NE, calibrated=True, help="int8 weights and activations")),
    calibration_methods=("minmax",),
    extra="coreml",
    requires=("coremltools",),
    runtime=("coremltools",),
    suffixes=(".mlpackage",),
    sources=("torch", "exported"),  # coremltools converts torch programs; its ONNX route is gone
    options=(Option("deployment_target", str, "iOS17", "minimum deployment target (int4 always uses iOS18)",
                    choices=("iOS17", "iOS18")),
             Option("int4_block_size", int, 32, "int4 per-block size along the input dimension", minimum=1),
             Option("weight_threshold", int, 2048, "compress only weights with more elements than this",
                    minimum=0),
             Option("compute_units", str, "ALL", "which compute units the macOS runner lets Core ML use",
                    choices=("ALL", "CPU_ONLY", "CPU_AND_NE", "CPU_AND_GPU")),
             Option("keep_float", list, [], "ops (by MIL op name: linear_0_cast_fp16, ...) whose weights int8, int4 "
                    "and palettize4 leave in fp16 (coremltools' op_name_configs; what mixed precision chooses)"),
             Option("keep_int8", list, [], "int4 only: ops whose weights are quantized to int8 per channel instead "
                    "(mixed precision's step before float)")),
)


class CoremlTarget:
    capabilities = capabilities

    def build(self, request: BuildRequest) -> Artifact:
        if request.source.kind not in capabilities.sources:
            raise BadInput(f"{request.source.reference} is ONNX only; the coreml target converts from torch",
                           hint="give the torch student (module:factory + weights, or a .pt2 program)")
        request = dataclasses.replace(request, options=capabilities.options_with_defaults(request.options))
        ct = load_coremltools()
        opts = request.options
        precision = request.precision
        target_name = "iOS18" if precision == "int4" else str(opts["deployment_target"])
        deployment = getattr(ct.target, target_name)
        if request.source.module is None:
            raise BadInput(f"{request.source.reference} is ONNX only; the coreml target converts from torch",
                           hint="give the torch student (module:factory + weights, or a .pt2 program)")
        specs = request.source.inputs
        out = request.out_dir / f"model.{precision}.mlpackage"
        threshold = int(opts["weight_threshold"])
        check_raised(self, opts, precision)
        with quieted():
            try:
                if precision == "w8a8":
                    model = convert_w8a8(ct, request, deployment)
                else:
                    model = convert(ct, request, example_inputs(specs, request.calibration), deployment)
                    if precision in COMPRESSED:  # what the compression was given: tensor_errors' reference
                        model.save(str(request.work_dir / REFERENCE))
                    model = compress(ct, model, precision, threshold, int(opts["int4_block_size"]),
                                      opts["keep_float"], opts["keep_int8"])
            except (BadInput, MissingDependency):
                raise
            except Exception as exc:
                raise BadInput(conversion_error(exc, request.source.reference), hint=CONVERSION_HINT) from exc
        describe_model(model, request, precision)
        with quieted():
            model.save(str(out))
        info = inspect_package(out)
        compressed = {"int8": ("int8",), "int4": ("int4",), "palettize4": ("uint4", "uint8"), "w8a8": ("int8",)}
        wanted = compressed.get(precision, ())
        if wanted and not any(info["weight_bytes"].get(d) for d in wanted):
            shutil.rmtree(out)
            hint = ("no weight's input dimension is a multiple of the block: set the target option "
                    "int4_block_size (e.g. 16)" if precision == "int4" else
                    f"weights of weight_threshold ({threshold}) elements or fewer stay fp16")
            raise BadInput(f"coreml {precision} compressed no weight of {request.source.reference}", hint=hint)
        details = {"deployment_target": target_name, "weight_threshold": threshold,
                   "ops": info["ops"], "weight_bytes": info["weight_bytes"], "io": info["io"],
                   "quantization": DESCRIPTIONS[precision].replace("block 32", f"block {opts['int4_block_size']}")}
        return Artifact(target="coreml", precision=precision, path=out, files=[out], details=details)

    def open_runner(self, path: Path, threads: int, options: dict | None = None):
        if native_coreml_available():
            return CoreMLRunner(path, capabilities.options_with_defaults(options)["compute_units"])
        return ReferenceMilRunner(path)

    def inspect(self, path: Path) -> dict:
        return {**inspect_package(path), "coverage": self.coverage(path).to_dict()}

    def coverage(self, path: Path) -> Coverage:
        """By weight storage type only: a package's weights carry no op-level shapes here, so no MACs."""
        result = Coverage(quantized_macs=None, float_macs=None)
        per_element = {"fp32": 4, "fp16": 2, "int8": 1, "uint8": 1, "int4": 0.5, "uint4": 0.5}
        for dtype, size in inspect_package(path)["weight_bytes"].items():
            if dtype in per_element:
                quantized = per_element[dtype] < 2
                result.add(f"{dtype} weights", int(size / per_element[dtype]), None, quantized,
                           why="" if quantized else f"kept in {dtype} (under weight_threshold, or not compressible)",
                           bits=int(per_element[dtype] * 8) if quantized else None)
        return result

    def mixing_refused(self, precision: str, options: dict) -> str | None:
        if precision in COMPRESSED:
            return None
        return ("w8a8 quantizes on the torch side, before conversion: its per-op-name configs are not wired"
                if precision == "w8a8" else f"{precision} has no quantized layers")

    def layers(self, path: Path) -> list[Layer]:
        """The ops whose weights this package stores compressed (a constexpr_* op feeds them), by MIL op
        name (keep_float's names)."""
        found = []
        for op in load_program(path).functions["main"].operations:
            for var in input_vars(op):
                producer = var.op
                if producer is not None and producer.op_type.startswith("constexpr_"):
                    found.append(Layer(op.name, op.op_type, int(np.prod(var.shape))))
                    break
        return found

    # How tensor_errors measures, said beside its figures in the report.
    tensor_error_method = ("the reference MIL evaluator on the compressed package and on the uncompressed (fp16) "
                           "program the compression was given: each layer op's output, SQNR over every sample's "
                           "values together")

    def tensor_errors(self, path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
        """SQNR (dB) at each layer op's output: see tensor_error_method. {} when the evaluator cannot
        run the program (an op it has no kernel for)."""
        reference = next(iter(sorted(Path(work_dir).rglob(REFERENCE))), None)
        if reference is None:
            return {}
        quantized, float_program = ReferenceMilRunner(path), ReferenceMilRunner(reference)
        outputs = {op.name: op.outputs[0].name for op in quantized.function.operations if op.name in layers}
        feeds = {n: data.inputs[n] for n in quantized.input_names}
        try:
            got = quantized.tensors(feeds, list(outputs.values()))
            want = float_program.tensors(feeds, list(outputs.values()))
        except CannotMeasure:
            return {}
        return {layer: round(sqnr_db(want[t], got[t]), 2) for layer, t in outputs.items() if t in want}

    def record(self, path: Path, verified: dict) -> None:
        """Write what verification found (budgets, provenance) into the package's metadata."""
        annotate(path, verified)
