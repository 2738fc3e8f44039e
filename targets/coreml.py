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

Only weights with at least `weight_threshold` elements (coremltools' default: 2048) are compressed;
smaller ones stay fp16. The report lists weight bytes per dtype so this shows.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_distill.calibration import fixed_batch_of, padded, run_in_batches
from edge_distill.errors import BadInput, CannotMeasure, MissingDependency
from edge_distill.files import write_atomic
from edge_distill.quiet import quiet

from . import (Artifact, BuildRequest, Capabilities, Coverage, Layer, Option, Precision, artifact_size, check_raised,
               inference_module, sqnr_db)

COREMLTOOLS_VERSION = "9.0"  # the evaluator leans on coremltools internals: pinned, and checked
MAX_BATCH = 4096
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
             Option("weight_threshold", int, 2048, "compress only weights with at least this many elements",
                    minimum=0),
             Option("compute_units", str, "ALL", "which compute units the macOS runner lets Core ML use",
                    choices=("ALL", "CPU_ONLY", "CPU_AND_NE", "CPU_AND_GPU")),
             Option("keep_float", list, [], "ops (by MIL op name: linear_0_cast_fp16, ...) whose weights int8, int4 "
                    "and palettize4 leave in fp16 (coremltools' op_name_configs; what mixed precision chooses)"),
             Option("keep_int8", list, [], "int4 only: ops whose weights are quantized to int8 per channel instead "
                    "(mixed precision's step before float)")),
)


def _quiet():
    """coremltools prints version warnings and progress bars; keep our output readable."""
    return quiet("coremltools", "torch", streams=True)


def _coremltools():
    try:
        with _quiet():
            import coremltools as ct
    except ImportError as exc:
        raise MissingDependency("coremltools", "coreml", "the coreml target") from exc
    if ct.__version__ != COREMLTOOLS_VERSION:
        raise MissingDependency(f"coremltools=={COREMLTOOLS_VERSION} (found {ct.__version__})", "coreml",
                                "the coreml target's reference evaluator")
    return ct


class CoremlTarget:
    capabilities = capabilities

    def build(self, request: BuildRequest) -> Artifact:
        if request.source.kind not in capabilities.sources:
            raise BadInput(f"{request.source.reference} is ONNX only; the coreml target converts from torch",
                           hint="give the torch student (module:factory + weights, or a .pt2 program)")
        request = dataclasses.replace(request, options=capabilities.options_with_defaults(request.options))
        ct = _coremltools()
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
        with _quiet():
            try:
                if precision == "w8a8":
                    model = self._convert_w8a8(ct, request, deployment)
                else:
                    model = _convert(ct, request, _example(specs, request.calibration), deployment)
                    if precision in COMPRESSED:  # what the compression was given: tensor_errors' reference
                        model.save(str(request.work_dir / REFERENCE))
                    model = _compress(ct, model, precision, threshold, int(opts["int4_block_size"]),
                                      opts["keep_float"], opts["keep_int8"])
            except (BadInput, MissingDependency):
                raise
            except Exception as exc:
                raise BadInput(_conversion_error(exc, request.source.reference), hint=CONVERSION_HINT) from exc
        _describe(model, request, precision)
        with _quiet():
            model.save(str(out))
        info = inspect_package(out)
        compressed = {"int8": ("int8",), "int4": ("int4",), "palettize4": ("uint4", "uint8"), "w8a8": ("int8",)}
        wanted = compressed.get(precision, ())
        if wanted and not any(info["weight_bytes"].get(d) for d in wanted):
            shutil.rmtree(out)
            hint = ("no weight's input dimension is a multiple of the block: set the target option "
                    "int4_block_size (e.g. 16)" if precision == "int4" else
                    f"weights smaller than weight_threshold ({threshold} elements) stay fp16")
            raise BadInput(f"coreml {precision} compressed no weight of {request.source.reference}", hint=hint)
        details = {"deployment_target": target_name, "weight_threshold": threshold,
                   "ops": info["ops"], "weight_bytes": info["weight_bytes"], "io": info["io"],
                   "quantization": _DESCRIPTIONS[precision].replace("block 32", f"block {opts['int4_block_size']}")}
        return Artifact(target="coreml", precision=precision, path=out, files=[out], details=details)

    def _convert_w8a8(self, ct, request: BuildRequest, deployment):
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
        example = _example(specs, data)
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
        return ct.convert(traced, inputs=_input_types(ct, specs, _max_batch(request.source)),
                          outputs=_output_types(ct, request), convert_to="mlprogram",
                          minimum_deployment_target=deployment)

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
        for op in _load_program(path).functions["main"].operations:
            for var in _vars(op):
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


_DESCRIPTIONS = {
    "fp16": "fp16 weights and compute (the Core ML default)",
    "int8": "weight-only int8, per-channel (linear_symmetric)",
    "int4": "weight-only int4, per-block 32 (linear_symmetric, iOS18)",  # the block size is filled in
    "palettize4": "4-bit k-means palettization (lookup tables)",
    "w8a8": "int8 weights and uint8 activations, calibrated on the torch side (LinearQuantizer)",
}


def _example(specs, calibration) -> tuple:
    """Two samples to trace a dynamic batch with, or the model's own fixed batch."""
    import torch

    size = fixed_batch_of(specs) or 2
    if calibration is not None:
        feeds = padded({s.name: calibration.inputs[s.name] for s in specs}, size)
        return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs)
    return tuple(torch.zeros(s.example_shape(size), dtype=getattr(torch, s.dtype)) for s in specs)


def _input_types(ct, specs, max_batch: int, fixed_shapes: list | None = None) -> list:
    """Float inputs as float32, integer ones (token ids, masks) as int32: Core ML has no int64 input.
    Named axes are ranges, unless `fixed_shapes` pins every input's shape."""
    def dim(d):
        return d if isinstance(d, int) else ct.RangeDim(1, max_batch, default=1)

    return [ct.TensorType(name=s.name, dtype=np.float32 if s.dtype.startswith("float") else np.int32,
                          shape=tuple(fixed_shapes[i]) if fixed_shapes else tuple(dim(d) for d in s.shape))
            for i, s in enumerate(specs)]


def _output_types(ct, request: BuildRequest) -> list:
    """Every output, named as in the verified ONNX export (what the other targets' artifacts call them)."""
    names = request.source.output_names
    if request.onnx_path is not None:
        import onnx

        names = [o.name for o in onnx.load(str(request.onnx_path), load_external_data=False).graph.output]
    return [ct.TensorType(name=name, dtype=np.float32) for name in names]


def _max_batch(source) -> int:
    """A .pt2 saved with a dynamic batch bounds it (`Dim(max=...)`): the package takes no more."""
    program = getattr(source, "exported", None)
    uppers = [r.upper for r in (program.range_constraints.values() if program is not None else ())]
    return min([MAX_BATCH, *(int(u) for u in uppers if u.is_number and u < MAX_BATCH)])


def _convert(ct, request: BuildRequest, example, deployment):
    """torch.export, then coremltools; recurrent layers (which coremltools' torch.export frontend
    does not convert) go through its TorchScript frontend instead."""
    import torch

    source = request.source
    specs, module, max_batch = source.inputs, inference_module(source).eval(), _max_batch(source)
    dims: dict[str, object] = {}
    dynamic = tuple({axis: dims.setdefault(d, torch.export.Dim(str(d).replace("-", "_"), min=1, max=max_batch))
                     for axis, d in enumerate(s.shape) if isinstance(d, str)} or None for s in specs)
    program = torch.export.export(module, example, dynamic_shapes=dynamic).run_decompositions({})
    inputs, outputs = _input_types(ct, specs, max_batch), _output_types(ct, request)
    try:
        return ct.convert(program, inputs=inputs, outputs=outputs, minimum_deployment_target=deployment)
    except NotImplementedError as exc:
        if "Unsupported fx node" not in str(exc):
            raise
        if source.exported is not None:  # a .pt2's graph holds its initial states at the traced batch: batch 1
            example = tuple(x[: fixed_batch_of(specs) or 1] for x in example)
            inputs = _input_types(ct, specs, max_batch, fixed_shapes=[tuple(x.shape) for x in example])
        traced = torch.jit.trace(module, example, check_trace=False)
        return ct.convert(traced, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                          minimum_deployment_target=deployment)


def _compress(ct, model, precision: str, threshold: int, block: int, keep_float=(), keep_int8=()):
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


def _conversion_error(exc: Exception, reference: str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    if "DataDependent" in type(exc).__name__ or "data-dependent" in text:
        return f"torch.export cannot trace {reference}: it branches on the values of its inputs - {first}"
    return f"coremltools cannot convert {reference}: {first}"


def _describe(model, request: BuildRequest, precision: str) -> None:
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
    ct = _coremltools()
    with _quiet():
        model = ct.models.MLModel(str(path), skip_model_load=True)
        for key, value in entries.items():
            model.user_defined_metadata[f"edge_distill.{key}"] = json.dumps(value)
        with tempfile.TemporaryDirectory(prefix="edge-distill-annotate-") as work:
            saved = Path(work) / path.name  # coremltools insists on the .mlpackage suffix
            model.save(str(saved))
            write_atomic(path, saved)


def native_coreml_available() -> bool:
    if sys.platform != "darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


# -- running ---------------------------------------------------------------------------------------
class ReferenceMilRunner:
    """Evaluates the saved ML program op by op in numpy: the converted graph with its compressed
    weights. Not Core ML: no Apple kernels, no Neural Engine arithmetic, no latency."""

    measures_latency = False
    why_no_latency = ("cannot measure: Core ML runs only on macOS (off macOS, coreml accuracy comes from the "
                      "reference MIL evaluator, and there is no latency or memory)")

    def __init__(self, path: Path):
        ct = _coremltools()
        from coremltools.converters.mil.frontend.milproto.load import load

        path = Path(path)
        with _quiet():
            try:
                spec = ct.utils.load_spec(str(path))
                program = load(spec, spec.specificationVersion,
                               file_weights_dir=str(path / "Data" / "com.apple.CoreML" / "weights"))
            except Exception as exc:
                raise BadInput(f"not a loadable ML program package: {str(exc).splitlines()[0]}", path=path) from exc
        self.function = program.functions["main"]
        self.input_names = list(self.function.inputs)
        self.fixed_batch = _fixed_batch(spec)
        self.output_names = [v.name for v in self.function.outputs]
        self._spec = spec
        self._constants = {}
        with _quiet():
            for op in self.function.operations:
                if op.op_type == "const":
                    self._constants[op.outputs[0].name] = _plain(op.outputs[0].val)
                elif op.op_type.startswith("constexpr_"):
                    self._constants[op.outputs[0].name] = op.materialized_val_inference()
        self._version = ct.__version__
        self._path = path
        self._unknown = sorted({op.op_type for op in self.function.operations
                                if op.op_type not in _KERNELS and not op.op_type.startswith("const")
                                and not _has_value_inference(op)})

    def run(self, feeds: dict) -> list:
        if self._unknown:  # raised here, not on opening: the package's size and coverage still count
            raise CannotMeasure(f"the reference MIL evaluator has no kernel for op(s) {', '.join(self._unknown)}",
                                path=self._path, hint="accuracy of this Core ML package can be measured on macOS only")
        return run_in_batches(self._run, feeds, self.fixed_batch)

    def tensors(self, feeds: dict, names: list[str]) -> dict[str, np.ndarray]:
        """The named intermediate values (MIL variable names) over `feeds`, as float32."""
        outputs = self.output_names
        self.output_names = outputs + [n for n in names if n not in outputs]
        try:
            values = self.run(feeds)
        finally:
            self.output_names, added = outputs, self.output_names
        return dict(zip(added, values))

    def _run(self, feeds: dict) -> list:
        from coremltools.converters.mil.mil import types

        env = dict(self._constants)
        for name, var in self.function.inputs.items():
            env[name] = np.asarray(feeds[name], dtype=np.int32 if types.is_int(var.dtype) else np.float32)
        with _quiet():
            for op in self.function.operations:
                if op.outputs[0].name in env:
                    continue
                args = {k: ([env.get(i.name, i.val) for i in v] if isinstance(v, (list, tuple))
                            else env.get(v.name, v.val)) for k, v in op.inputs.items()}
                try:
                    values = _KERNELS[op.op_type](args) if op.op_type in _KERNELS else _inferred(op, env)
                except Exception as exc:  # an op this evaluator cannot compute: the package's accuracy is unmeasured
                    raise CannotMeasure(f"the reference MIL evaluator cannot compute op '{op.op_type}' ({op.name}): "
                                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}",
                                        hint="Core ML's own predictions (macOS) measure this package") from None
                for var, value in zip(op.outputs, values if isinstance(values, tuple) else (values,)):
                    if value is None:
                        raise CannotMeasure(f"the reference MIL evaluator got no value from op '{op.op_type}' "
                                            f"({op.name})")
                    env[var.name] = value
        return [np.asarray(env[name], dtype=np.float32) for name in self.output_names]

    def input_specs(self) -> list:
        return _input_specs(self._spec)

    def describe(self) -> dict:
        return {"runtime": "coremltools reference MIL evaluator", "runtime_version": self._version,
                "execution_provider": "numpy (not Core ML)", "threads": 1, "kind": "reference-mil"}


class CoreMLRunner:
    """Real Core ML predictions on macOS, with the chosen compute units."""

    measures_latency = True
    why_no_latency = None

    def __init__(self, path: Path, compute_units: str = "ALL"):
        ct = _coremltools()
        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        spec = self.model.get_spec()
        self.input_names = [i.name for i in spec.description.input]
        self.output_names = [o.name for o in spec.description.output]
        self.fixed_batch = _fixed_batch(spec)
        self._units, self._version, self._spec = compute_units, ct.__version__, spec

    def run(self, feeds: dict) -> list:
        predict = lambda chunk: [self.model.predict(chunk)[name] for name in self.output_names]  # noqa: E731
        return run_in_batches(predict, feeds, self.fixed_batch or 1)

    def input_specs(self) -> list:
        return _input_specs(self._spec)

    def placement(self) -> dict:
        """Core ML's compute plan: the preferred compute device of each ML Program op (macOS 14.4+),
        and the share of ops on the Neural Engine. Counts ops, not work: an estimate of placement."""
        from collections import Counter

        import coremltools as ct

        units = getattr(ct.ComputeUnit, self._units)
        plan = ct.models.compute_plan.MLComputePlan.load_from_path(self.model.get_compiled_model_path(),
                                                                     compute_units=units)
        devices = {"MLNeuralEngineComputeDevice": "neural_engine", "MLGPUComputeDevice": "gpu",
                   "MLCPUComputeDevice": "cpu"}
        counts: Counter[str] = Counter()
        for op in plan.model_structure.program.functions["main"].block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            preferred = getattr(usage, "preferred_compute_device", None) if usage else None
            counts[devices.get(type(preferred).__name__, "unknown")] += 1
        total = sum(counts.values()) or 1
        return {"provenance": "estimated", "method": "MLComputePlan preferred device per op",
                "compute_units": self._units, "ops_per_device": dict(counts),
                "neural_engine_share": round(counts["neural_engine"] / total, 4)}

    def describe(self) -> dict:
        return {"runtime": "Core ML", "runtime_version": f"coremltools {self._version}",
                "execution_provider": f"compute units {self._units}", "threads": 1, "kind": "measured"}


def _fixed_batch(spec) -> int | None:
    """The batch a package was converted at, when its inputs take no other (no shape range)."""
    first = spec.description.input[0].type.multiArrayType
    return int(first.shape[0]) if first.WhichOneof("ShapeFlexibility") is None and first.shape else None


def _inferred(op, env: dict):
    """An op's value through coremltools' own value inference, its inputs bound to this run's values."""
    for var in _vars(op):
        value = env.get(var.name, var.val)
        if value is not None:
            holder = var.sym_type()
            holder.val = _plain(value)
            var._sym_val = holder
    return op.value_inference()


def _input_specs(spec) -> list:
    """Input specs of a package, read from its description (the batch axis is dynamic)."""
    from edge_distill.calibration import InputSpec

    from coremltools.proto import FeatureTypes_pb2

    int32 = FeatureTypes_pb2.ArrayFeatureType.INT32
    return [InputSpec(name=item.name, shape=tuple(["batch"] + [int(d) for d in list(item.type.multiArrayType.shape)[1:]]),
                      dtype="int32" if item.type.multiArrayType.dataType == int32 else "float32")
            for item in spec.description.input]


def _vars(op):
    for value in op.inputs.values():
        yield from (value if isinstance(value, (list, tuple)) else (value,))


def _plain(value):
    """numpy 2 rejects np.bool_ where Python wants a bool (keepdims=...)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == np.bool_:
        return bool(value)
    return value


def _has_value_inference(op) -> bool:
    from coremltools.converters.mil.mil.operation import Operation

    return type(op).value_inference is not Operation.value_inference


def _torch_nchw(fn):
    """Run a torch.nn.functional kernel in float32, keep the program's dtype."""
    def kernel(a):
        import torch

        x = a["x"]
        out = fn(torch.from_numpy(np.asarray(x, dtype=np.float32)), a)
        return out.numpy().astype(np.asarray(x).dtype)
    return kernel


def _padding(a):
    if a.get("pad_type") == "custom":
        return [int(p) for p in np.asarray(a["pad"])[::2]]
    if a.get("pad_type") == "same":
        return "same"
    return 0


def _conv(x, a):
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(np.asarray(a["weight"], dtype=np.float32))
    bias = None if a.get("bias") is None else torch.from_numpy(np.asarray(a["bias"], dtype=np.float32))
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[x.ndim]
    return fn(x, weight, bias, stride=tuple(int(s) for s in a["strides"]), padding=_padding(a),
              dilation=tuple(int(d) for d in a["dilations"]), groups=int(a["groups"]))


def _pool(kind):
    def pool(x, a):
        import torch.nn.functional as F

        args: dict[str, Any] = dict(kernel_size=tuple(int(k) for k in a["kernel_sizes"]),
                                    stride=tuple(int(s) for s in a["strides"]),
                                    padding=_padding(a) or 0, ceil_mode=bool(a.get("ceil_mode", False)))
        if kind == "max":
            return F.max_pool2d(x, **args)
        return F.avg_pool2d(x, count_include_pad=not bool(a.get("exclude_padding_from_average", False)), **args)
    return pool


def _batch_norm(x, a):
    import torch.nn.functional as F
    import torch

    t = {k: torch.from_numpy(np.asarray(a[k], dtype=np.float32)) if a.get(k) is not None else None
         for k in ("mean", "variance", "gamma", "beta")}
    return F.batch_norm(x, t["mean"], t["variance"], t["gamma"], t["beta"], training=False,
                        eps=float(a.get("epsilon", 1e-5)))


def _dequantize(a):
    x = np.asarray(a["input"]).astype(np.float32)
    zero: Any = 0 if a.get("zero_point") is None else np.asarray(a["zero_point"]).astype(np.float32)
    scale = np.asarray(a["scale"], dtype=np.float32)
    axis = a.get("axis")
    if axis is not None and scale.ndim == 1:
        shape = [1] * x.ndim
        shape[int(axis)] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if np.ndim(zero) == 1 else zero
    return ((x - zero) * scale).astype(np.float32)


_DTYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "int16": np.int16, "uint16": np.uint16,
           "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}
_ACTIVATIONS: dict[str, Callable[[Any], Any]] = {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
                "linear": lambda v: v}


def _lstm(a):
    """MIL's lstm (one direction): x <s, b, I>, gates stacked input, forget, output, cell."""
    direction = str(a.get("direction") or "forward")
    if direction == "bidirectional" or a.get("peephole") is not None or a.get("clip") is not None:
        raise NotImplementedError(f"lstm with direction {direction}, peepholes or a clip")
    gate, cell, out_act = (_ACTIVATIONS[str(a.get(k) or default)] for k, default in
                           (("recurrent_activation", "sigmoid"), ("cell_activation", "tanh"), ("activation", "tanh")))
    x, h, c = (np.asarray(a[k], dtype=np.float32) for k in ("x", "initial_h", "initial_c"))
    w_ih, w_hh = np.asarray(a["weight_ih"], np.float32), np.asarray(a["weight_hh"], np.float32)
    bias = np.zeros(w_ih.shape[0], np.float32) if a.get("bias") is None else np.asarray(a["bias"], np.float32)
    steps = []
    for t in (range(len(x)) if direction == "forward" else reversed(range(len(x)))):
        i, f, o, z = np.split(x[t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=-1)
        c = gate(f) * c + gate(i) * cell(z)
        h = gate(o) * out_act(c)
        steps.append(h)
    sequence = np.stack(steps if direction == "forward" else steps[::-1])
    return (sequence if a.get("output_sequence") else h[None]), h, c


_KERNELS = {
    "conv": _torch_nchw(_conv),
    "max_pool": _torch_nchw(_pool("max")),
    "avg_pool": _torch_nchw(_pool("avg")),
    "batch_norm": _torch_nchw(_batch_norm),
    "reshape": lambda a: np.reshape(a["x"], [int(d) for d in np.asarray(a["shape"])]),
    "dequantize": _dequantize,
    # coremltools' own value inference of the reductions passes keep_dims as numpy.bool, which numpy rejects
    "reduce_mean": lambda a: _reduce(np.mean, a),
    "reduce_sum": lambda a: _reduce(np.sum, a),
    "reduce_max": lambda a: _reduce(np.max, a),
    "reduce_l2_norm": lambda a: _reduce(_l2_norm, a),  # F.normalize: sentence embeddings (WordLlama)
    "expand_dims": lambda a: np.expand_dims(a["x"], tuple(int(d) for d in np.asarray(a["axes"]).ravel())),
    "squeeze": lambda a: np.squeeze(a["x"], None if a.get("axes") is None
                                    else tuple(int(d) for d in np.asarray(a["axes"]).ravel())),
    "lstm": _lstm,
    # value inference gives a dynamic batch's size as a symbol, and nothing for its cast
    "shape": lambda a: np.asarray(np.shape(a["x"]), dtype=np.int32),
    "cast": lambda a: np.asarray(a["x"]).astype(_DTYPES[str(a["dtype"])]),
    "silu": lambda a: a["x"] * _ACTIVATIONS["sigmoid"](np.asarray(a["x"], np.float32)),  # MobileViT, EfficientNet
}

def _reduce(fn, a):
    axes = a.get("axes")
    axis = None if axes is None else tuple(int(d) for d in np.asarray(axes).ravel())
    return fn(a["x"], axis=axis, keepdims=bool(a.get("keep_dims", False)))


def _l2_norm(x, axis, keepdims):
    x = np.asarray(x)
    return np.sqrt(np.sum(np.square(x.astype(np.float32)), axis=axis, keepdims=keepdims)).astype(x.dtype)


# -- inspecting ------------------------------------------------------------------------------------
def _load_program(path: Path):
    return _load_spec_and_program(_coremltools(), Path(path))[1]


def _load_spec_and_program(ct, path: Path):
    """A package's spec and its MIL program (with its weights), as the reference evaluator reads it."""
    from coremltools.converters.mil.frontend.milproto.load import load

    with _quiet():
        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as exc:
            raise BadInput(f"not a Core ML package: {str(exc).splitlines()[0]}", path=path) from exc
        return spec, load(spec, spec.specificationVersion,
                          file_weights_dir=str(path / "Data" / "com.apple.CoreML" / "weights"))


def inspect_package(path: Path) -> dict:
    """Ops and counts, weight bytes per dtype, inputs and outputs, size: on any OS."""
    ct = _coremltools()
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
            for var in ([v for v in _vars(op) if v.op is not None and v.op.op_type == "const"]
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
