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

import contextlib
import dataclasses
import shutil
from pathlib import Path

import numpy as np

from edge_distill.calibration import fixed_batch_of, padded, run_in_batches, whole_batches
from edge_distill.errors import BadInput, MissingDependency
from edge_distill.files import working_in
from edge_distill.quiet import hush_torchao, quiet

from . import Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, check_raised, sqnr_db

@dataclasses.dataclass(frozen=True)
class StaticRecipe:
    """One static int8 recipe: what int8_recipe names and `auto` tries."""

    help: str
    per_channel: bool = True
    activations: str = "uint8"  # "int8": signed activations
    symmetric_activations: bool = False
    calibration: str | None = None  # None: the configured calibration method
    float_ops: tuple[str, ...] = ()  # ops left in float: an op type, or "MatMul of activations", "Add of activations"


ATTENTION_OPS = ("Softmax", "LayerNormalization", "MatMul of activations", "Add of activations")
# The candidates `int8_recipe = "auto"` builds, in order: on a tie the earlier one is kept.
STATIC_RECIPES = {
    "onnxruntime": StaticRecipe("edge-distill's default: uint8 asymmetric activations, int8 per-channel weights"),
    "ort-defaults": StaticRecipe("onnxruntime quantize_static's defaults: int8 activations, int8 per-tensor weights, "
                                 "min-max", per_channel=False, activations="int8", calibration="minmax"),
    "per-tensor": StaticRecipe("uint8 activations, int8 per-tensor weights", per_channel=False),
    "symmetric": StaticRecipe("int8 symmetric activations, int8 per-channel weights", activations="int8",
                              symmetric_activations=True),
    "percentile": StaticRecipe("the default with percentile calibration (99.999%)", calibration="percentile"),
    "entropy": StaticRecipe("the default with entropy calibration (2048 bins)", calibration="entropy"),
    "attention-float": StaticRecipe("the default with attention blocks' Softmax, LayerNormalization, MatMul and Add "
                                    "of two activations left in float", float_ops=ATTENTION_OPS),
}


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


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a Dataset: one sample at a time, or chunks of
    a fixed-batch model's batch (the last one padded with its last sample)."""

    def __init__(self, data, input_names, batch: int | None = None):
        self._data, self._names, self._step = data, input_names, batch or 1
        self.rewind()

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self.set_range(0, len(self._data))

    def __len__(self):
        return -(-len(self._data) // self._step)

    def set_range(self, start_index: int, end_index: int):
        step, end = self._step, min(end_index * self._step, len(self._data))
        self._iter = (padded({n: self._data.inputs[n][i: i + step] for n in self._names}, step)
                      for i in range(start_index * step, end, step))


PREPROCESSED = "preprocessed.onnx"  # in a build's work folder: the float graph its quantizer was given


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
            builder = getattr(self, f"_build_{precision}")
            with working_in(request.work_dir), quiet("", "ort_format_model.utils", "onnxruntime"):
                details.update(builder(request, onnx_out) or {})
        ort_path = _convert_to_ort(onnx_out, request.out_dir)
        unreadable = _unloadable(ort_path)
        if unreadable:  # e.g. the int4 tables of GatherBlockQuantized: the ORT format has no 4-bit tensors
            for stale in [ort_path, *request.out_dir.glob(f"{onnx_out.stem}*.config")]:
                stale.unlink()
            details["notes"] = [f"no .ort for {request.precision}: onnxruntime cannot read back the ORT-format file "
                                f"({unreadable}); the artifact is the .onnx, which ORT Mobile's full build loads"]
            ort_path = onnx_out
        # The .ort's bytes change layout from run to run (same graph); the .onnx it is converted from
        # does not. This hash, of that .onnx and the converter's version, is the same on every run.
        details["stable_sha256"] = _stable_hash(onnx_out)
        details["ops"] = op_counts(onnx_out)
        details["mobile_usability"] = mobile_usability(onnx_out)
        files = list(dict.fromkeys([ort_path, onnx_out, *sorted(request.out_dir.glob(f"{onnx_out.stem}*.config"))]))
        return Artifact(target="ort", precision=request.precision, path=ort_path, files=files, details=details)

    # -- precisions ---------------------------------------------------------------------------
    def _preprocessed(self, request: BuildRequest) -> Path:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = request.work_dir / PREPROCESSED
        try:
            quant_pre_process(str(request.onnx_path), str(pre))
        except Exception:
            # Symbolic shape inference fails on some transformer graphs; ONNX shape inference suffices.
            quant_pre_process(str(request.onnx_path), str(pre), skip_symbolic_shape=True)
        if pre.stat().st_size > 1.05 * request.onnx_path.stat().st_size:
            # Its optimizer copied weights into If branches (Silero VAD: 1.29 -> 1.80 MB), where they stay
            # float and the int8 file grows by their size: the graph without that step.
            quant_pre_process(str(request.onnx_path), str(pre), skip_symbolic_shape=True, skip_optimization=True)
        return pre

    def _build_int8(self, request: BuildRequest, out: Path) -> dict:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        name = request.options["int8_recipe"]
        if name == "auto":
            raise BadInput("int8_recipe = 'auto' is resolved by `check`, which builds every candidate recipe; here "
                           "one recipe is built", hint=f"name one: {', '.join(STATIC_RECIPES)}")
        if name not in STATIC_RECIPES:
            raise BadInput(f"int8_recipe = {name!r} builds int8-dynamic only: optimum's "
                           "static recipe calibrates through the `datasets` library, which edge-distill does not use",
                           hint="ask for int8-dynamic with this recipe, or int8 with int8_recipe = 'onnxruntime'")
        if request.calibration is None:
            raise BadInput("int8 (static) needs calibration data: set [data] calibration or pass --calibration")
        recipe = STATIC_RECIPES[name]
        pre = self._preprocessed(request)
        names = [s.name for s in request.source.inputs]
        method = recipe.calibration or request.calibration_method
        activations = QuantType.QInt8 if recipe.activations == "int8" else QuantType.QUInt8
        left_float = [*request.options["keep_float"], *_nodes_of(pre, recipe.float_ops), *_output_concats(pre)]
        common = dict(quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel, activation_type=activations,
                      weight_type=QuantType.QInt8, nodes_to_exclude=left_float,
                      extra_options={"ActivationSymmetric": recipe.symmetric_activations})
        if method == "entropy":
            cache = self._entropy_ranges(pre, request, names)
            quantize_static(str(pre), str(out), None, calibrate_method=CalibrationMethod.Entropy,
                            calibration_cache_path=str(cache), **common)
        else:
            calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
            try:
                quantize_static(str(pre), str(out), _Reader(request.calibration, names,
                                                            fixed_batch_of(request.source.inputs)),
                                calibrate_method=calibrate, **common)
            except Exception as exc:  # a crash inside the static quantizer: the dynamic recipe, said so
                return self._dynamic_instead(request, out, exc)
        details = {"calibration": {"method": method, "samples": len(request.calibration),
                                   "source": request.calibration.source},
                   "quantization": f"QDQ, recipe {name!r}: {recipe.help}"
                   + (f"; {len(left_float)} node(s) left in float" if left_float else ""),
                   "int8_recipe": name}
        masks = [s.name for s in request.source.inputs if "mask" in s.name.lower() and s.dtype.startswith(("int", "bool"))]
        if masks:
            details["notes"] = [f"static int8 on a model with an attention mask ({', '.join(masks)}): activation "
                                "ranges come from the calibration texts, and padded positions can fall outside them "
                                "(top-1 agreement 0.45-0.71 on padded inputs measured on a BERT-like encoder); "
                                "int8-dynamic is the safer recipe for transformers"]
        return details

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

    def _dynamic_instead(self, request: BuildRequest, out: Path, error: Exception) -> dict:
        why = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
        details = self._build_int8_dynamic(request, out)
        details["notes"] = [f"onnxruntime's static int8 quantizer failed on this model ({why}); built with "
                            "dynamic int8 (int8 weights, activations quantized at run time) instead"]
        details["recipe_fallback"] = {"asked": "static", "used": "dynamic", "why": why}
        return details

    def _entropy_ranges(self, model: Path, request: BuildRequest, names) -> Path:
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

        calibrator = create_calibrator(str(model), None, augmented_model_path=str(request.work_dir / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy,
                                       extra_options={"num_bins": 2048, "num_quantized_bins": 128})
        try:
            calibrator.collect_data(_Reader(request.calibration, names, fixed_batch_of(request.source.inputs)))
            ranges = calibrator.compute_data()
        except ValueError as exc:
            raise BadInput(f"entropy calibration failed on this model ({exc}); use minmax or percentile") from exc
        cache = request.work_dir / "entropy_ranges.json"
        save_tensors_data(ranges, cache)
        return cache

    def _build_int8_dynamic(self, request: BuildRequest, out: Path) -> dict:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if request.options["int8_recipe"].startswith("optimum-"):  # the static recipes' names: onnxruntime's
            return _optimum_dynamic(request, out, request.options["int8_recipe"])
        quantize_dynamic(str(self._preprocessed(request)), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=list(request.options["keep_float"]))
        return {"quantization": "dynamic: int8 per-channel weights, activations quantized at run time"}

    def _build_int4(self, request: BuildRequest, out: Path) -> dict:
        import onnx

        block = int(request.options["int4_block_size"])
        op_types = ("MatMul", "Gather") if request.options["int4_gather"] else ("MatMul",)
        model = onnx.load(str(request.onnx_path))
        rewritten = gemm_to_matmul(model)
        onnx.save(model, str(request.work_dir / PREPROCESSED))  # the float graph quantized: tensor_errors' reference
        keep_float, keep_int8 = set(request.options["keep_float"]), set(request.options["keep_int8"])
        if keep_int8:  # first the 8-bit layers; the 4-bit pass then leaves them be (MatMulNBits, no MatMul)
            others = {n.name for n in model.graph.node if n.name not in keep_int8}
            model = _matmul_nbits(model, 8, block, op_types, others).model
        quantized = _matmul_nbits(model, 4, block, op_types, keep_float | keep_int8)
        quantized.save_model_to_file(str(out), use_external_data_format=False)
        packed = sum(1 for n in quantized.model.graph.node if n.op_type in ("MatMulNBits", "GatherBlockQuantized"))
        if packed == 0:
            raise BadInput("int4 weight-only found no MatMul/Gemm with constant weights to quantize in this model",
                           hint="int4 here covers Linear layers; use int8 for convolution-only models")
        return {"quantization": f"weight-only int4, block {block}, symmetric, accuracy level 4"
                + (f"; {len(keep_int8)} layer(s) in 8 bits" if keep_int8 else ""),
                "int4_nodes": packed, "gemm_rewritten_to_matmul": rewritten}

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
        return [Layer(_float_name(name), op, elements, int8=op != "GatherBlockQuantized")  # its quantizer: 4 bits only
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
            name, out = _float_name(node.name), node.output[0] if node.output else ""
            ref = out.removesuffix("_QuantizeLinear_Input")
            if ref not in float_tensors:  # dynamic: the float node's output, rebuilt after its integer op
                ref = float_output.get(name, "")
            # What the next layer reads: after a QDQ pair (a fused ReLU lives in its quantization range).
            seen = next((t for t in (f"{ref}_DequantizeLinear_Output", ref, out) if t in produced), out)
            if name in layers and ref in float_tensors:
                pairs[name] = (seen, ref)
        if not pairs:
            return {}
        got = _intermediate(quantized, [q for q, _ in pairs.values()], data)
        want = _intermediate(float_model, [f for _, f in pairs.values()], data)
        return {layer: round(sqnr_db(want[f], got[q]), 2) for layer, (q, f) in pairs.items()}

    def inspect(self, path: Path) -> dict:
        onnx_path = path if path.suffix == ".onnx" else path.with_suffix(".onnx")
        info = {"file": str(path), "size_bytes": path.stat().st_size}
        if onnx_path.exists():
            info["ops"] = op_counts(onnx_path)
            info["mobile_usability"] = mobile_usability(onnx_path)
            info["coverage"] = coverage(onnx_path).to_dict()
        elif path.suffix == ".ort":  # an ORT-format file alone: what its flatbuffer says
            info.update(_ort_file_contents(path))
        return info


def _nodes_of(model_path: Path, kinds: tuple[str, ...]) -> list[str]:
    """Names of the nodes a recipe leaves in float: by op type, or a MatMul / Add whose two inputs are
    both activations (attention's scores and values, residual sums) rather than a weight."""
    if not kinds:
        return []
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    constant = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    found = []
    for node in graph.node:
        of_activations = len(node.input) == 2 and not any(i in constant for i in node.input)
        if node.op_type in kinds or (of_activations and f"{node.op_type} of activations" in kinds):
            found.append(node.name)
    return found


def _output_concats(model_path: Path) -> list[str]:
    """Concat nodes that write a graph output, left in float by every static recipe: a detector's head
    (YOLOv8) concatenates box pixels (0..320) and class scores (0..1) into one output, and one activation
    scale over both rounds every score to 0. In float, each branch keeps its own scale; a Concat only
    moves data, so nothing is lost in size or speed."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if n.op_type == "Concat" and any(o in outputs for o in n.output)]


def _matmul_nbits(model, bits: int, block: int, op_types: tuple, exclude: set):
    """onnxruntime's weight-only quantizer over `model` (a ModelProto), leaving out the `exclude` nodes;
    returns its ONNXModel."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4,
                                          op_types_to_quantize=op_types, bits=bits)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=True, accuracy_level=4,
                                     op_types_to_quantize=op_types, algo_config=config, nodes_to_exclude=list(exclude))
    quantizer.process()
    return quantizer.model


def _float_name(node_name: str) -> str:
    """A quantized node's name as it was before quantization (what keep_float names): MatMulNBits adds
    "_Q4" (or "_Q8"), the dynamic quantizer "_quant"."""
    return node_name.removesuffix("_Q4").removesuffix("_Q8").removesuffix("_quant")


def _intermediate(model, tensors: list[str], data) -> dict[str, np.ndarray]:
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


def _optimum_dynamic(request: BuildRequest, out: Path, recipe: str) -> dict:
    """Dynamic int8 as optimum configures it for a CPU family (`AutoQuantizationConfig.arm64` and
    the like: its operator list, symmetric weights, per-channel), applied by optimum's ORTQuantizer
    to the verified export."""
    hush_torchao()
    try:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
        from optimum.version import __version__
    except ImportError as exc:
        raise MissingDependency("optimum-onnx", "optimum", f"int8_recipe = {recipe!r}") from exc
    cpu = recipe.removeprefix("optimum-").replace("-", "_")
    config = getattr(AutoQuantizationConfig, cpu)(is_static=False)
    model = request.work_dir / "optimum-input" / "model.onnx"
    model.parent.mkdir()
    shutil.copyfile(request.onnx_path, model)  # ORTQuantizer reads a folder; the export's holds other files
    saved = Path(ORTQuantizer.from_pretrained(model.parent, file_name=model.name)
                 .quantize(save_dir=request.work_dir / "optimum-output", quantization_config=config))
    shutil.move(saved / "model_quantized.onnx", out)
    return {"quantization": f"optimum {__version__} AutoQuantizationConfig.{cpu}(is_static=False): "
                            f"{config.weights_dtype.name} weights ({'per-channel' if config.per_channel else 'per-tensor'}"
                            f", {'symmetric' if config.weights_symmetric else 'asymmetric'}), activations quantized "
                            f"at run time; ops {', '.join(config.operators_to_quantize)}",
            "recipe": recipe}


class OrtRunner:
    measures_latency, why_no_latency = True, None

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadInput(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}", path=path) from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        # saved with a fixed batch: fed in chunks of it, whatever the caller passes. Only when every input
        # has it first: a state [2, B, 128] or a 0-d sample rate says nothing of the batch
        leading = {i.shape[0] if i.shape else None for i in self.session.get_inputs()}
        self.fixed_batch = leading.pop() if len(leading) == 1 and isinstance(next(iter(leading)), int) else None
        self.threads = threads
        self._version = ort.__version__

    def run(self, feeds: dict) -> list:
        if self.fixed_batch and len(next(iter(feeds.values()))) != self.fixed_batch:
            return run_in_batches(lambda chunk: self.session.run(None, chunk), feeds, self.fixed_batch)
        return self.session.run(None, feeds)

    def emulation_request(self, feeds: dict) -> tuple[dict, dict]:
        n, step = len(next(iter(feeds.values()))), self.fixed_batch or 256
        whole = whole_batches(feeds, step)  # the worker drops the padding's outputs
        arrays = {k: np.ascontiguousarray(whole[k]) for k in self.input_names}
        return {"runtime": "ort", "batch": step, "samples": n}, arrays

    def from_emulated(self, outputs: list) -> list:
        return outputs

    def input_specs(self) -> list:
        from edge_distill.calibration import InputSpec

        dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
                  "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
        return [InputSpec(name=i.name, shape=tuple(d if isinstance(d, int) else (d or f"dim{k}")
                                                   for k, d in enumerate(i.shape)),
                          dtype=dtypes.get(i.type, "float32")) for i in self.session.get_inputs()]

    def describe(self) -> dict:
        return {"runtime": "onnxruntime", "runtime_version": self._version,
                "execution_provider": "CPUExecutionProvider", "threads": self.threads}


def _convert_to_ort(onnx_path: Path, out_dir: Path) -> Path:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with contextlib.redirect_stdout(None), quiet("", "ort_format_model.utils", "onnxruntime"):
        convert_onnx_models_to_ort(onnx_path, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed],
                                   enable_type_reduction=True)
    ort_path = out_dir / f"{onnx_path.stem}.ort"
    if not ort_path.exists():
        raise BadInput(f"ORT format conversion produced no {ort_path.name}", path=onnx_path)
    for config in out_dir.glob(f"{onnx_path.stem}*.config"):  # its comment names the build's temporary path
        config.write_text("".join(f"# - {ort_path.name}\n" if line.startswith("# - ") else line
                                  for line in config.read_text().splitlines(keepends=True)))
    return ort_path


def _stable_hash(onnx_path: Path) -> str:
    import hashlib

    import onnxruntime as ort

    return hashlib.sha256(f"onnxruntime {ort.__version__} Fixed\n".encode() + onnx_path.read_bytes()).hexdigest()


def _ort_file_contents(path: Path) -> dict:
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


def _unloadable(path: Path) -> str | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
        return " ".join(str(exc).split(":")[-2:]).strip()[:200]
    return None


def gemm_to_matmul(model) -> int:
    """Rewrite Gemm(A, constant B, C) with alpha=beta=1 as MatMul + Add, in place, so that
    MatMulNBits (which takes only MatMul) covers Linear layers. Returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = np.ascontiguousarray(weight.T)
        name = f"{node.input[1]}_kn"
        model.graph.initializer.append(numpy_helper.from_array(weight, name))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [mm_out], name=f"{node.name}_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name}_Add"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return count


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
