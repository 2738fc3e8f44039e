"""The ORT runner: an onnxruntime CPU session over an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_distill.calibration import run_in_batches, whole_batches
from edge_distill.errors import BadInput


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

    @staticmethod
    def emulation_fallback(path: Path) -> Path | None:
        """A .ort file is written for the ORT release that made it; an older runtime (the emulator's) may
        not read it. The .onnx beside it is the same graph before ORT's own optimization."""
        source = Path(path).with_suffix(".onnx")
        return source if Path(path).suffix == ".ort" and source.is_file() else None

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
