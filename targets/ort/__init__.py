"""ONNX Runtime Mobile: `.onnx` and `.ort` (Fixed optimization style) artifacts.

Precisions
  fp32          the verified export as it is
  int8          static QDQ: uint8 activations, int8 per-channel weights, after quant_pre_process,
                a Concat that writes a graph output left in float (a detector's boxes and scores),
                calibrated with minmax, percentile or entropy (entropy with 2048 real histogram bins,
                driven through the calibrator: quantize_static alone would return the min-max ranges);
                option int8_recipe names another recipe of STATIC_RECIPES, or "auto": check builds them all
                and keeps the best by the budgets (toolkit/recipes.py)
  int8-dynamic  weights int8 per-channel, activations quantized at run time (transformer MatMuls)
  int4          weight-only MatMulNBits, block 32, symmetric (Gemm is rewritten to MatMul first so
                Linear layers are covered; Conv stays fp32); option int4_gather also packs Gather tables;
                option keep_int8 packs the named layers in 8 bits instead (MatMulNBits bits=8)

The `.ort` file uses the Fixed style: Runtime-style files of QDQ models fail to load.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from edge_distill.errors import BadInput, MissingDependency
from edge_distill.files import working_in
from edge_distill.quiet import quiet

from .. import Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, check_raised
from .build import (PREPROCESSED, build_int4, build_int8, build_int8_dynamic, convert_to_ort, drop_pre_process_mark,
                    gemm_to_matmul, stable_hash, unloadable)
from .inspect import coverage, float_name, mobile_usability, op_counts, ort_file_contents, tensor_errors
from .recipes import ATTENTION_OPS, STATIC_RECIPES, StaticRecipe
from .runner import OrtRunner

__all__ = ["ATTENTION_OPS", "PREPROCESSED", "STATIC_RECIPES", "OrtRunner", "OrtTarget", "StaticRecipe", "capabilities",
           "coverage", "gemm_to_matmul", "mobile_usability", "op_counts"]


capabilities = Capabilities(
    name="ort",
    description="ONNX Runtime Mobile (.onnx + .ort, CPU EP; NNAPI / Core ML EP coverage reported)",
    precisions=(Precision("fp32", 32, 32, "fp32", help="the verified export as it is"),
                Precision("int8", 8, 8, "int8", calibrated=True, help="static QDQ, uint8 activations, int8 weights"),
                Precision("int8-dynamic", 8, 32, "int8", help="int8 weights, activations quantized at run time"),
                Precision("int4", 4, 32, "int8", help="weight-only MatMulNBits (Linear layers)",
                          weight_ops=("MatMul", "Gemm"))),
    calibration_methods=("minmax", "percentile", "entropy"),
    extra="ort",
    requires=("onnx", "onnxruntime"),
    suffixes=(".ort", ".onnx"),
    runtime=("onnxruntime",),
    options=(Option("int4_gather", bool, False, "int4 also packs Gather (embedding) tables with GatherBlockQuantized"),
             Option("int4_block_size", int, 32, "int4 block size", minimum=16),
             Option("int8_recipe", str, "onnxruntime",
                    "int8: which static recipe ('onnxruntime' is edge-distill's own, described above; the others "
                    "are listed in docs/int8-recipes.md), or 'auto': check builds and evaluates every one of them "
                    "and keeps the best by the budgets, then the task metric, then size. int8-dynamic: "
                    "onnxruntime's quantize_dynamic, or optimum's AutoQuantizationConfig for that CPU (needs the "
                    "optimum extra)",
                    choices=("onnxruntime", "auto", *list(STATIC_RECIPES)[1:], "optimum-arm64", "optimum-avx2",
                             "optimum-avx512", "optimum-avx512-vnni")),
             Option("int8_auto_recipes", list, [], "the candidates int8_recipe = 'auto' builds, in this order "
                    "(empty: every static recipe; entropy calibration is the slow one)"),
             Option("keep_float", list, [], "ONNX node names int8 and int4 leave in float (what mixed precision "
                    "chooses; `edge-distill sensitivity` lists the names)"),
             Option("keep_int8", list, [], "int4 only: ONNX node names packed in 8 bits instead of 4 (MatMulNBits "
                    "bits=8; mixed precision's step before float)")),
    app_runtime_package="onnxruntime",
)


# precision (as a Python name) -> its build: (request, the .onnx to write) -> details
BUILDERS = {"int8": build_int8, "int8_dynamic": build_int8_dynamic, "int4": build_int4}


class OrtTarget:
    capabilities = capabilities

    def build(self, request: BuildRequest) -> Artifact:
        request = dataclasses.replace(request, options=capabilities.options_with_defaults(request.options))
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise MissingDependency(exc.name or "onnxruntime", "ort", "the ort target") from exc
        precision = request.precision.replace("-", "_")
        check_raised(self, request.options, request.precision)
        onnx_out = request.out_dir / f"model.{request.precision}.onnx"
        details: dict = {}
        if precision == "fp32":
            shutil.copyfile(request.onnx_path, onnx_out)
        else:
            builder = BUILDERS[precision]
            with working_in(request.work_dir), quiet("", "ort_format_model.utils", "onnxruntime"):
                details.update(builder(request, onnx_out) or {})
            drop_pre_process_mark(onnx_out)
        ort_path = convert_to_ort(onnx_out, request.out_dir)
        unreadable = unloadable(ort_path)
        if unreadable:  # e.g. the int4 tables of GatherBlockQuantized: the ORT format has no 4-bit tensors
            for stale in [ort_path, *request.out_dir.glob(f"{onnx_out.stem}*.config")]:
                stale.unlink()
            details["notes"] = [f"no .ort for {request.precision}: onnxruntime cannot read back the ORT-format file "
                                f"({unreadable}); the artifact is the .onnx, which ORT Mobile's full build loads"]
            ort_path = onnx_out
        # The .ort's bytes change layout from run to run (same graph); the .onnx it is converted from
        # does not. This hash, of that .onnx and the converter's version, is the same on every run.
        details["stable_sha256"] = stable_hash(onnx_out)
        details["ops"] = op_counts(onnx_out)
        details["mobile_usability"] = mobile_usability(onnx_out)
        files = list(dict.fromkeys([ort_path, onnx_out, *sorted(request.out_dir.glob(f"{onnx_out.stem}*.config"))]))
        return Artifact(target="ort", precision=request.precision, path=ort_path, files=files, details=details)

    # -- options ------------------------------------------------------------------------------
    def recipe_candidates(self, precision: str, options: dict) -> tuple[str, ...]:
        """The int8_recipe values `check` builds and ranks when it is "auto" (none otherwise)."""
        if precision != "int8" or options.get("int8_recipe") != "auto":
            return ()
        listed = tuple(options.get("int8_auto_recipes") or STATIC_RECIPES)
        unknown = [name for name in listed if name not in STATIC_RECIPES]
        if unknown:
            raise BadInput(f"target 'ort': int8_auto_recipes names no static recipe {unknown[0]!r}",
                           hint=f"the recipes: {', '.join(STATIC_RECIPES)}")
        return listed

    # -- running and inspecting ---------------------------------------------------------------
    def open_runner(self, path: Path, threads: int, options: dict | None = None):
        return OrtRunner(path, threads)

    def coverage(self, path: Path) -> Coverage | None:
        onnx_path = path if path.suffix == ".onnx" else path.with_suffix(".onnx")  # the .ort's own graph
        return coverage(onnx_path) if onnx_path.is_file() else None

    def mixing_refused(self, precision: str, options: dict) -> str | None:
        return "fp32 has no quantized layers" if precision == "fp32" else None

    def layers(self, path: Path) -> list[Layer]:
        """The nodes this artifact quantized, named as before quantization (keep_float's names)."""
        found = self.coverage(path)
        return [Layer(float_name(name), op, elements, int8=op != "GatherBlockQuantized")  # its quantizer: 4 bits only
                for name, (op, elements, quantized) in (found.layers.items() if found else ()) if quantized]

    # How tensor_errors measures, said beside its figures in the report.
    tensor_error_method = ("each layer's output as the next layer reads it, in the quantized graph and in the "
                           "float graph its quantizer was given (paired by name, as onnxruntime's qdq_loss_debug "
                           "does): SQNR over every sample's values together")

    def tensor_errors(self, path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
        """SQNR (dB) at each layer's output, as the next layer reads it (after its QDQ pair): this quantized
        artifact against the float graph its quantizer was given (left in the build's `work_dir`), over
        `data`'s samples; the comparison of ORT's qdq_loss_debug, matched by node and tensor name, for
        QDQ, dynamic and MatMulNBits graphs alike. A layer whose output has no counterpart in the float
        graph is left out."""
        return tensor_errors(path, work_dir, data, layers)

    def inspect(self, path: Path) -> dict:
        onnx_path = path if path.suffix == ".onnx" else path.with_suffix(".onnx")
        info = {"file": str(path), "size_bytes": path.stat().st_size}
        if onnx_path.exists():
            info["ops"] = op_counts(onnx_path)
            info["mobile_usability"] = mobile_usability(onnx_path)
            info["coverage"] = coverage(onnx_path).to_dict()
        elif path.suffix == ".ort":  # an ORT-format file alone: what its flatbuffer says
            info.update(ort_file_contents(path))
        return info
