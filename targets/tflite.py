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
import json
import re
import warnings
from pathlib import Path

import numpy as np

from edge_distill.calibration import fixed_batch_of, padded, run_in_batches, whole_batches
from edge_distill.errors import BadInput, ExportMismatch, MissingDependency
from edge_distill.quiet import native_output_silenced

from . import (Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, check_raised, inference_module,
               sqnr_db)

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

METADATA_NAME = "edge_distill"


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
        module, specs = _torch_module(request.source), request.source.inputs
        channels_last = bool(opts["channels_last_io"])
        sample = _sample_inputs(specs, request.calibration)
        out = request.out_dir / f"model.{request.precision}.tflite"
        fp32 = request.work_dir / "model.fp32.tflite"
        details: dict = {"layout": "NHWC" if channels_last else "source (NCHW for images)"}
        check_raised(self, opts, request.precision)
        with native_output_silenced():
            try:
                if request.precision == "int8" and opts["int8_recipe"] == "pt2e":
                    self._pt2e_or_aeq(module, sample, specs, request, out, fp32, details)
                else:
                    _convert(module, sample, fp32, channels_last, specs)
                    _name_signature(fp32, specs)
                    if request.precision == "fp32":
                        fp32.replace(out)
                    else:
                        quantize = getattr(self, "_quantize_" + request.precision.replace("-", "_"))
                        quantize(fp32, out, opts, details, request)
            except (BadInput, MissingDependency):
                raise
            except Exception as exc:
                hint = None
                if request.source.kind == "onnx":
                    hint = ("the module onnx2torch made of this ONNX graph does not convert; give the torch "
                            "student instead (module:factory + weights, or a .pt2 program)")
                raise BadInput(_conversion_error(exc, request.source.reference, module, sample), hint=hint) from exc
        _name_signature(out, specs)
        _write_metadata(out, specs, channels_last, request.precision)
        if request.precision == "fp32":
            details["parity_max_abs_diff"] = _check_parity(out, request.source, request.calibration,
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

    # -- precisions ---------------------------------------------------------------------------
    def _convert_int8(self, module, sample, specs, request, out, channels_last):
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
        prepared = prepare_pt2e(torch.export.export(module, sample).module(), quantizer)
        with torch.no_grad():
            for feeds in _calibration_feeds(request.calibration, specs):
                prepared(*_as_tensors(specs, feeds, channels_last))
        converted = convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(out))
        if not request.options["integer_io"]:
            _float_io(out)

    def _pt2e_or_aeq(self, module, sample, specs, request, out: Path, fp32: Path, details: dict) -> None:
        """litert-torch's PT2E quantizer, and ai-edge-quantizer's static recipe when PT2E crashes (its GRU
        annotation raises IndexError, for one) or builds a file the interpreter cannot prepare (a QUANTIZE
        without a quantization of its output, for one): the fallback is said, never silent."""
        channels_last = bool(request.options["channels_last_io"])
        try:
            self._convert_int8(module, sample, specs, request, out, channels_last)
            unprepared = _unprepared(out)
            if unprepared:
                raise _NotPrepared(unprepared)
        except (BadInput, MissingDependency):
            raise
        except Exception as exc:
            failed = ("artifact did not prepare in the LiteRT interpreter" if isinstance(exc, _NotPrepared)
                      else "quantizer failed on this model")
            why = (str(exc) if isinstance(exc, _NotPrepared)  # LiteRT's own words, first
                   else f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
            _convert(module, sample, fp32, channels_last, specs)
            _name_signature(fp32, specs)
            self._quantize_int8(fp32, out, request.options, details, request)
            also = _unprepared(out)
            if also:
                out.unlink()
                raise BadInput(f"no int8 artifact of this model prepares in the LiteRT interpreter: litert-torch's "
                               f"PT2E int8 {failed} ({why}); ai-edge-quantizer's static one did not prepare either ({also})",
                               hint="int8-dynamic or fp16 keep float activations") from exc
            details.setdefault("notes", []).append(
                f"litert-torch's PT2E int8 {failed} ({why}); built with ai-edge-quantizer's static "
                "recipe instead (the int8_recipe = \"aeq\" option)")
            details["recipe_fallback"] = {"asked": "pt2e", "used": "aeq", "why": why}

    def _quantize_int8(self, fp32: Path, out: Path, opts, details, request):
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

    def _quantize_fp16(self, fp32: Path, out: Path, opts, details, request=None):
        from ai_edge_quantizer import quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

        qt = quantizer.Quantizer(str(fp32))
        qt.add_weight_only_config(".*", TFLOperationName.ALL_SUPPORTED, 16, QuantGranularity.TENSORWISE,
                                  AlgorithmName.FLOAT_CASTING)
        _keeping_float(qt, opts).quantize().export_model(str(out), overwrite=True)
        details["quantization"] = "fp16 weights, fp32 compute (ai-edge-quantizer float casting)"

    def _quantize_int8_dynamic(self, fp32: Path, out: Path, opts, details, request=None):
        from ai_edge_quantizer import quantizer, recipe

        qt = _keeping_float(quantizer.Quantizer(str(fp32), recipe.dynamic_wi8_afp32()), opts)
        qt.quantize().export_model(str(out), overwrite=True)
        details["quantization"] = "ai-edge-quantizer dynamic_wi8_afp32: int8 channelwise weights, dynamic activations"

    def _quantize_int4(self, fp32: Path, out: Path, opts, details, request=None):
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
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import model_validator
        from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric

        reference = next(iter(sorted(Path(work_dir).rglob("model.fp32.tflite"))), None)  # in the build's own folder
        if reference is None:
            return {}
        runner, float_model = self.open_runner(path, 1), Interpreter(model_path=str(reference))
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


class TfliteRunner:
    """ai-edge-litert's Interpreter (XNNPACK by default), batch by batch of the model's own batch
    size, quantizing integer inputs and dequantizing integer outputs from the tensor details."""

    measures_latency, why_no_latency = True, None

    def __init__(self, path: Path, threads: int):
        try:
            from ai_edge_litert import __version__ as version
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise MissingDependency("ai-edge-litert", "tflite", "running .tflite files") from exc
        try:
            with native_output_silenced():  # "Created TensorFlow Lite XNNPACK delegate" on every load
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
            runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"the LiteRT interpreter cannot load the model: {str(exc).splitlines()[0]}",
                           path=path) from exc
        meta = read_metadata(path)
        self._inputs = runner.get_input_details()  # name -> details, in signature order
        self._outputs = list(runner.get_output_details().values())
        self.input_names = list(self._inputs)
        self._layouts = {i["name"]: i.get("layout", "source") for i in meta.get("inputs", [])}
        self.threads, self._version = threads, version

    def _feed(self, name: str, array: np.ndarray) -> np.ndarray:
        if self._layouts.get(name) == "NHWC" and array.ndim == 4:
            array = np.transpose(array, (0, 2, 3, 1))
        d = self._inputs[name]
        if np.issubdtype(d["dtype"], np.integer) and array.dtype.kind == "f":
            scale, zero = d["quantization"]
            info = np.iinfo(d["dtype"])
            array = np.clip(np.round(array / scale + zero), info.min, info.max)
        return np.ascontiguousarray(array.astype(d["dtype"]))

    @staticmethod
    def _dequantized(d: dict, value: np.ndarray) -> np.ndarray:
        if np.issubdtype(value.dtype, np.integer) and d["quantization"][0]:
            scale, zero = d["quantization"]
            return (value.astype(np.float32) - zero) * scale
        return value.copy()

    @property
    def batch(self) -> int:
        return int(next(iter(self._inputs.values()))["shape"][0]) or 1

    @property
    def fixed_batch(self) -> int:
        return self.batch  # a .tflite file always has one

    @property
    def output_indices(self) -> list[int]:
        return [int(d["index"]) for d in self._outputs]

    def raw_inputs(self, feeds: dict) -> dict[int, np.ndarray]:
        """Inputs as the interpreter takes them (layout, integer quantization), by tensor index:
        what another interpreter of this file (e.g. the aarch64 one) is fed."""
        return {int(d["index"]): self._feed(name, feeds[name]) for name, d in self._inputs.items()}

    def from_raw(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return [self._dequantized(d, value) for d, value in zip(self._outputs, outputs)]

    def emulation_request(self, feeds: dict) -> tuple[dict, dict]:
        """The aarch64 interpreter gets the raw tensors, so the worker holds no conversion logic."""
        n = len(next(iter(feeds.values())))
        whole = whole_batches(feeds, self.batch)  # the worker drops the padding's outputs
        arrays = {f"t{index}": array for index, array in self.raw_inputs(whole).items()}
        return {"runtime": "litert", "batch": self.batch, "outputs": self.output_indices, "samples": n}, arrays

    def from_emulated(self, outputs: list) -> list:
        return self.from_raw(outputs)

    def run(self, feeds: dict) -> list:
        return run_in_batches(self._invoke, feeds, self.batch)

    def _invoke(self, feeds: dict) -> list:
        for index, value in self.raw_inputs(feeds).items():
            self.interpreter.set_tensor(index, value)
        self.interpreter.invoke()
        return self.from_raw([self.interpreter.get_tensor(i) for i in self.output_indices])

    def input_specs(self) -> list:
        from edge_distill.calibration import InputSpec

        specs = []
        for name, d in self._inputs.items():
            shape = [int(x) for x in d["shape"]]
            if self._layouts.get(name) == "NHWC" and len(shape) == 4:
                shape = [shape[0], shape[3], shape[1], shape[2]]
            ids = np.issubdtype(d["dtype"], np.integer) and not d["quantization"][0]  # token ids, not int8 I/O
            specs.append(InputSpec(name=name, shape=("batch", *shape[1:]),
                                   dtype=np.dtype(d["dtype"]).name if ids else "float32"))
        return specs

    def describe(self) -> dict:
        return {"runtime": "ai-edge-litert", "runtime_version": self._version,
                "execution_provider": "XNNPACK (default delegate)", "threads": self.threads}


# -- conversion helpers ---------------------------------------------------------------------------
def _torch_module(source):
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


def _sample_inputs(specs, calibration) -> tuple:
    """The example the converter traces with: one sample, or the model's own fixed batch."""
    import torch

    size = fixed_batch_of(specs) or 1
    if calibration is not None:
        feeds = padded({s.name: calibration.inputs[s.name] for s in specs}, size)
        return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs)
    return tuple(torch.zeros(s.example_shape(size), dtype=getattr(torch, s.dtype)) for s in specs)


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


def _convert(module, sample, out: Path, channels_last: bool, specs) -> None:
    import litert_torch

    if channels_last:
        images = _image_args(specs)
        module = litert_torch.to_channel_last_io(module, args=images)
        sample = tuple(t.permute(0, 2, 3, 1).contiguous() if i in images else t for i, t in enumerate(sample))
    litert_torch.convert(module.eval(), sample).export(str(out))


def _conversion_error(exc: Exception, reference: str, module, sample) -> str:
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

    def opcode(builtin: int) -> int:
        for i, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        code = fb.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def float_twin(index: int) -> int:
        tensor = graph.tensors[index]
        twin = fb.TensorT()
        twin.name, twin.shape, twin.shapeSignature = tensor.name, tensor.shape, tensor.shapeSignature
        twin.type = fb.TensorType.FLOAT32
        model.buffers.append(fb.BufferT())
        twin.buffer = len(model.buffers) - 1
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        tensor.name = f"{name}_quantized"
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
                op.opcodeIndex = opcode(builtin)
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


def _name_signature(path: Path, specs) -> None:
    """litert-torch names signature inputs args_0, args_1...: use the model's input names."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for signature in model.signatureDefs or []:
        for entry, spec in zip(signature.inputs or [], specs):
            entry.name = spec.name
            model.subgraphs[signature.subgraphIndex].tensors[entry.tensorIndex].name = spec.name
    flatbuffer_utils.write_model(model, str(path))


def _write_metadata(path: Path, specs, channels_last: bool, precision: str) -> None:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    meta = {"precision": precision, "inputs": [
        {"name": s.name, "shape": list(s.shape), "layout": "NHWC" if channels_last and len(s.shape) == 4 else "source"}
        for s in specs]}
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    flatbuffer_utils.write_model(model, str(path))


def read_metadata(path: Path) -> dict:
    """The edge_distill metadata entry, read without unpacking the whole model."""
    from ai_edge_litert import schema_py_generated as fb

    data = Path(path).read_bytes()
    model = fb.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() in (METADATA_NAME, METADATA_NAME.encode()):
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


def _check_parity(path: Path, source, calibration, tolerance: float) -> float:
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


class _NotPrepared(Exception):
    """A built .tflite the interpreter refuses at allocate_tensors (its message is LiteRT's)."""


def _unprepared(path: Path) -> str | None:
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
