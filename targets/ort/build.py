"""ORT builds: each quantized precision's recipe (static QDQ, dynamic, weight-only MatMulNBits), the
Gemm rewrite int4 needs, and the conversion to the ORT format."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np

from edge_distill.calibration import fixed_batch_of, padded
from edge_distill.errors import BadInput, MissingDependency
from edge_distill.quiet import hush_torchao, quiet

from .. import BuildRequest
from .recipes import STATIC_RECIPES


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


def preprocessed(request: BuildRequest) -> Path:
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


# The key quant_pre_process stamps on its output (onnxruntime's quantizers read it, to not warn that the
# graph was not pre-processed); it rides into the quantized file, where no runtime reads it.
PRE_PROCESS_MARK = "onnx.quant.pre_process"


def drop_pre_process_mark(path: Path) -> None:
    """An artifact without quant_pre_process's stamp (64 bytes of Silero VAD's .ort); the weights stay
    where they are (external data is not loaded, so it is not rewritten)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != PRE_PROCESS_MARK]
    if len(kept) != len(model.metadata_props):
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        onnx.save(model, str(path))


def build_int8(request: BuildRequest, out: Path) -> dict:
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
    pre = preprocessed(request)
    names = [s.name for s in request.source.inputs]
    method = recipe.calibration or request.calibration_method
    activations = QuantType.QInt8 if recipe.activations == "int8" else QuantType.QUInt8
    left_float = [*request.options["keep_float"], *_nodes_of(pre, recipe.float_ops), *_output_concats(pre)]
    common = dict(quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel, activation_type=activations,
                  weight_type=QuantType.QInt8, nodes_to_exclude=left_float,
                  extra_options={"ActivationSymmetric": recipe.symmetric_activations})
    if method == "entropy":
        cache = entropy_ranges(pre, request, names)
        quantize_static(str(pre), str(out), None, calibrate_method=CalibrationMethod.Entropy,
                        calibration_cache_path=str(cache), **common)
    else:
        calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
        try:
            quantize_static(str(pre), str(out), _Reader(request.calibration, names,
                                                        fixed_batch_of(request.source.inputs)),
                            calibrate_method=calibrate, **common)
        except Exception as exc:  # a crash inside the static quantizer: the dynamic recipe, said so
            return dynamic_instead(request, out, exc)
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


def dynamic_instead(request: BuildRequest, out: Path, error: Exception) -> dict:
    why = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
    details = build_int8_dynamic(request, out)
    details["notes"] = [f"onnxruntime's static int8 quantizer failed on this model ({why}); built with "
                        "dynamic int8 (int8 weights, activations quantized at run time) instead"]
    details["recipe_fallback"] = {"asked": "static", "used": "dynamic", "why": why}
    return details


def entropy_ranges(model: Path, request: BuildRequest, names) -> Path:
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


def build_int8_dynamic(request: BuildRequest, out: Path) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if request.options["int8_recipe"].startswith("optimum-"):  # the static recipes' names: onnxruntime's
        return _optimum_dynamic(request, out, request.options["int8_recipe"])
    quantize_dynamic(str(preprocessed(request)), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=list(request.options["keep_float"]))
    return {"quantization": "dynamic: int8 per-channel weights, activations quantized at run time"}


def build_int4(request: BuildRequest, out: Path) -> dict:
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


def convert_to_ort(onnx_path: Path, out_dir: Path) -> Path:
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


def stable_hash(onnx_path: Path) -> str:
    import hashlib

    import onnxruntime as ort

    return hashlib.sha256(f"onnxruntime {ort.__version__} Fixed\n".encode() + onnx_path.read_bytes()).hexdigest()


def unloadable(path: Path) -> str | None:
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
