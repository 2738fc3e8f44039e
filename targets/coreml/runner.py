"""Core ML runners: real predictions on macOS, and off macOS the reference MIL evaluator (the saved
program op by op in numpy, with the kernels of kernels.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edge_distill.calibration import run_in_batches
from edge_distill.errors import BadInput, CannotMeasure

from .kernels import KERNELS, has_value_inference, inferred, plain
from .pinned import load_coremltools, quieted


def native_coreml_available() -> bool:
    if sys.platform != "darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


class ReferenceMilRunner:
    """Evaluates the saved ML program op by op in numpy: the converted graph with its compressed
    weights. Not Core ML: no Apple kernels, no Neural Engine arithmetic, no latency."""

    measures_latency = False
    why_no_latency = ("cannot measure: Core ML runs only on macOS (off macOS, coreml accuracy comes from the "
                      "reference MIL evaluator, and there is no latency or memory)")

    def __init__(self, path: Path):
        ct = load_coremltools()
        from coremltools.converters.mil.frontend.milproto.load import load

        path = Path(path)
        with quieted():
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
        with quieted():
            for op in self.function.operations:
                if op.op_type == "const":
                    self._constants[op.outputs[0].name] = plain(op.outputs[0].val)
                elif op.op_type.startswith("constexpr_"):
                    self._constants[op.outputs[0].name] = op.materialized_val_inference()
        self._version = ct.__version__
        self._path = path
        self._unknown = sorted({op.op_type for op in self.function.operations
                                if op.op_type not in KERNELS and not op.op_type.startswith("const")
                                and not has_value_inference(op)})

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
        with quieted():
            for op in self.function.operations:
                if op.outputs[0].name in env:
                    continue
                args = {k: ([env.get(i.name, i.val) for i in v] if isinstance(v, (list, tuple))
                            else env.get(v.name, v.val)) for k, v in op.inputs.items()}
                try:
                    values = KERNELS[op.op_type](args) if op.op_type in KERNELS else inferred(op, env)
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
        ct = load_coremltools()
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


def _input_specs(spec) -> list:
    """Input specs of a package, read from its description (the batch axis is dynamic)."""
    from edge_distill.calibration import InputSpec

    from coremltools.proto import FeatureTypes_pb2

    int32 = FeatureTypes_pb2.ArrayFeatureType.INT32
    return [InputSpec(name=item.name, shape=tuple(["batch"] + [int(d) for d in list(item.type.multiArrayType.shape)[1:]]),
                      dtype="int32" if item.type.multiArrayType.dataType == int32 else "float32")
            for item in spec.description.input]
