"""TFLite / LiteRT for Android: `.tflite` artifacts, converted straight from the torch student
with litert-torch (no TensorFlow), verified in the ai-edge-litert interpreter (XNNPACK).

Precisions
  fp32          litert_torch.convert; must match the torch student within the export tolerance
  fp16          fp16 weights (ai-edge-quantizer float casting), fp32 compute
  int8          static, calibrated: PT2E with litert-torch's PT2EQuantizer (symmetric, per-channel),
                a calibration loop over the calibration set; float I/O by default (a QUANTIZE and a
                DEQUANTIZE are added at the edges), integer I/O with the option integer_io
  int8-dynamic  ai-edge-quantizer dynamic_wi8_afp32: int8 weights, activations quantized at run time
  int4          ai-edge-quantizer, dynamic int4 activations by default: channelwise int4 weights, and
                blockwise (block 32) on FULLY_CONNECTED layers whose depth the block divides;
                option int4_recipe = "weight-only" keeps float compute (slower on XNNPACK); option
                keep_int8 quantizes the named ops' weights in 8 bits (channelwise) instead

The interpreter is ai-edge-litert, the maintained successor of tflite-runtime. tflite-runtime 2.14
needs numpy < 2, rejects current op versions and computes some dynamic-int8 models wrongly.

Every artifact carries an `edge_distill` metadata entry (JSON): input names and layouts, integer
I/O, precision. Evaluation data always come in the source model's layout (e.g. NCHW); the runner
transposes for a channels-last artifact.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edge_distill.errors import BadInput, MissingDependency
from edge_distill.quiet import native_output_silenced

from .. import Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, check_raised
from .build import (check_parity, conversion_error, convert, name_signature, pt2e_or_aeq, quantize_fp16,
                    quantize_int4, quantize_int8, quantize_int8_dynamic, sample_inputs, torch_module)
from .inspect import coverage, inspect_tflite, sqnr_per_tensor
from .metadata import METADATA_NAME, read_metadata, write_metadata
from .runner import TfliteRunner

__all__ = ["METADATA_NAME", "TfliteRunner", "TfliteTarget", "capabilities", "coverage", "inspect_tflite",
           "read_metadata"]


capabilities = Capabilities(
    name="tflite",
    description="TFLite / LiteRT for Android (.tflite via litert-torch, verified in ai-edge-litert with XNNPACK)",
    precisions=(Precision("fp32", 32, 32, "fp32", help="the torch student converted by litert-torch"),
                Precision("fp16", 16, 32, "fp32", help="fp16 weights (ai-edge-quantizer); XNNPACK computes in fp32"),
                Precision("int8", 8, 8, "int8", calibrated=True, help="int8 weights and activations, calibrated"),
                Precision("int8-dynamic", 8, 32, "int8", help="int8 weights, activations quantized at run time"),
                Precision("int4", 4, 32, "int8", help="blockwise int4 FULLY_CONNECTED weights",
                          weight_ops=("MatMul", "Gemm"))),
    calibration_methods=("minmax",),
    extra="tflite",
    requires=("litert_torch", "ai_edge_litert", "ai_edge_quantizer"),
    runtime=("ai_edge_litert",),
    suffixes=(".tflite",),
    options=(Option("integer_io", bool, False, "int8 with int8 inputs and outputs (some NPUs and delegates need it)"),
             Option("channels_last_io", bool, False,
                    "NHWC inputs for 4-D image inputs (the app's usual layout); NCHW otherwise"),
             Option("int8_recipe", str, "pt2e", "'pt2e' (litert-torch PT2E) or 'aeq' (ai-edge-quantizer "
                                                "static_wi8_ai8)", choices=("pt2e", "aeq")),
             Option("int4_recipe", str, "dynamic", "'dynamic' (int8 dynamic activations) or 'weight-only' "
                                                   "(float compute)", choices=("dynamic", "weight-only")),
             Option("int4_block_size", int, 32, "blockwise int4 block for FULLY_CONNECTED layers", minimum=16),
             Option("tolerance", float, 1e-4, "max |fp32 .tflite - torch| on real samples (default: [export] "
                    "tolerance)", minimum=0.0),
             Option("keep_float", list, [], "ops (by output tensor name) that the ai-edge-quantizer precisions "
                    "leave in float: what mixed precision chooses; `edge-distill sensitivity` lists the names"),
             Option("keep_int8", list, [], "int4 only: ops (by output tensor name) whose weights int4 quantizes in "
                    "8 bits, channelwise (mixed precision's step before float)")),
    app_runtime_package="ai-edge-litert",
    source_packages=(("onnx", "onnx2torch"),),
)


# precision (as a Python name) -> its quantizer of the fp32 .tflite: (fp32, out, options, details, request)
QUANTIZERS = {"int8": quantize_int8, "fp16": quantize_fp16, "int8_dynamic": quantize_int8_dynamic,
              "int4": quantize_int4}


class TfliteTarget:
    capabilities = capabilities

    def build(self, request: BuildRequest) -> Artifact:
        given = request.options
        request = dataclasses.replace(request, options=capabilities.options_with_defaults(request.options))
        missing = capabilities.missing_packages()
        if missing:
            raise MissingDependency(missing[0], "tflite", "the tflite target")
        opts = request.options
        tolerance = float(opts["tolerance"]) if "tolerance" in given else request.tolerance  # else [export]'s
        module, specs = torch_module(request.source), request.source.inputs
        channels_last = bool(opts["channels_last_io"])
        sample = sample_inputs(specs, request.calibration)
        out = request.out_dir / f"model.{request.precision}.tflite"
        fp32 = request.work_dir / "model.fp32.tflite"
        details: dict = {"layout": "NHWC" if channels_last else "source (NCHW for images)"}
        check_raised(self, opts, request.precision)
        with native_output_silenced():
            try:
                if request.precision == "int8" and opts["int8_recipe"] == "pt2e":
                    pt2e_or_aeq(module, sample, specs, request, out, fp32, details)
                else:
                    convert(module, sample, fp32, channels_last, specs)
                    name_signature(fp32, specs)
                    if request.precision == "fp32":
                        fp32.replace(out)
                    else:
                        quantize = QUANTIZERS[request.precision.replace("-", "_")]
                        quantize(fp32, out, opts, details, request)
            except (BadInput, MissingDependency):
                raise
            except Exception as exc:
                hint = None
                if request.source.kind == "onnx":
                    hint = ("the module onnx2torch made of this ONNX graph does not convert; give the torch "
                            "student instead (module:factory + weights, or a .pt2 program)")
                raise BadInput(conversion_error(exc, request.source.reference, module, sample), hint=hint) from exc
        name_signature(out, specs)
        write_metadata(out, specs, channels_last, request.precision)
        if request.precision == "fp32":
            details["parity_max_abs_diff"] = check_parity(out, request.source, request.calibration,
                                                           tolerance)
        info = inspect_tflite(out)
        if opts["integer_io"] and request.precision == "int8" and info["float_islands"]:
            out.unlink()
            raise BadInput("integer I/O was asked for, but the int8 model keeps float islands: "
                           + ", ".join(dict.fromkeys(info["float_islands"])),
                           hint="drop integer_io (float I/O), or make those ops quantizable")
        details.update({k: info[k] for k in ("ops", "integer_only", "float_islands", "io")})
        out.chmod(0o644)  # ai-edge-quantizer writes its files executable; a model is not a program
        return Artifact(target="tflite", precision=request.precision, path=out, files=[out], details=details)

    # -- running and inspecting ---------------------------------------------------------------
    def open_runner(self, path: Path, threads: int, options: dict | None = None):
        return TfliteRunner(path, threads)

    def inspect(self, path: Path) -> dict:
        return {**inspect_tflite(path), "coverage": coverage(path).to_dict()}

    def coverage(self, path: Path) -> Coverage:
        return coverage(path)

    def mixing_refused(self, precision: str, options: dict) -> str | None:
        if precision == "fp32":
            return "fp32 has no quantized layers"
        if precision == "int8" and options["int8_recipe"] == "pt2e":
            return "litert-torch's PT2E quantizer takes no per-layer exclusions here; set int8_recipe = 'aeq'"
        return None

    def layers(self, path: Path) -> list[Layer]:
        """The ops this artifact quantized, named by their output tensor (keep_float's names)."""
        return [Layer(name, op, elements) for name, (op, elements, quantized) in coverage(path).layers.items()
                if quantized]

    # How tensor_errors measures, said beside its figures in the report.
    tensor_error_method = ("ai-edge-quantizer's validator (model_validator.compare_model, every tensor kept): "
                           "each sample's SQNR at the op's output tensor against the fp32 model the quantizer "
                           "was given, averaged in dB over the samples")

    def tensor_errors(self, path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
        """SQNR (dB) at each layer's output tensor (its name is the layer's): see tensor_error_method. A
        model with integer inputs (integer_io) is not compared: the fp32 model would get them too."""
        return sqnr_per_tensor(path, work_dir, data, layers)
