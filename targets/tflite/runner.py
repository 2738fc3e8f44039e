"""The LiteRT runner: ai-edge-litert's Interpreter over a .tflite artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_distill.calibration import run_in_batches, whole_batches
from edge_distill.errors import BadInput, MissingDependency
from edge_distill.quiet import native_output_silenced

from .metadata import read_metadata


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
