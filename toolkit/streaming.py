"""A model's inputs and outputs as it lays them out, and streaming models that carry a state.

Data sets always hold samples on axis 0. A model may take its batch elsewhere (a recurrent state
`[layers, B, H]`: `[model] batch_axes = { state = 1 }`) or not at all (a 0-d sample rate, or
`batch_axes = { x = "none" }`: one value every sample of a run shares). `ModelIO` moves the batch
where the model wants it on the way in, and back to axis 0 on the way out.

A streaming model (`[model] state = { stateN = "state" }`: each state output fed back as the next
chunk's input) is evaluated over sequences: the data hold `[sequences, chunks, ...]` for every input
that has a batch axis (a no-batch input, one value per sequence), each state starts at zeros, and the
model runs chunk after chunk, every model (float student, teacher, artifact) carrying its own state
forward, never the float one's: the drift is what is measured. Outputs are judged per chunk (each
output's kind over sequences x chunks); latency is one chunk's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from edge_distill.calibration import Dataset, InputSpec, from_model_layout, to_model_layout

from .errors import BadInput

Step = Callable[[dict], list]  # sample-major feeds -> sample-major outputs, in output order


@dataclass(frozen=True)
class ModelIO:
    specs: tuple[InputSpec, ...]  # the model's inputs, each with its batch axis
    output_names: tuple[str, ...] = ()
    state: dict[str, str] = field(default_factory=dict)  # state output -> the input it feeds next

    @property
    def plain(self) -> bool:
        """Batch first everywhere and no state: data go to the model as they are."""
        return not self.state and all(s.axis == 0 for s in self.specs)

    def output_axes(self) -> list[int]:
        """Each output's batch axis: a state output has its input's; any other, axis 0."""
        by_name = {s.name: s for s in self.specs}
        return [by_name[self.state[name]].axis or 0 if name in self.state else 0 for name in self.output_names]

    def step(self, run: Callable[[dict], list]) -> Step:
        """`run` (model-layout feeds -> model-layout outputs) fed and read samples first."""
        axes = self.output_axes()
        return lambda feeds: from_model_layout(list(run(to_model_layout(feeds, self.specs))), axes)

    def data_specs(self) -> list[InputSpec]:
        """What a data file holds, samples first: per chunk `[sequences, chunks, ...]` for a streaming
        model (its state inputs left out: they start at zeros)."""
        fed_back = set(self.state.values())
        specs = [s.sample_major() for s in self.specs if s.name not in fed_back]
        if not self.state:
            return specs
        return [replace(sm, shape=(sm.shape[0], "chunks", *sm.shape[1:])) if spec.axis is not None else sm
                for sm, spec in zip(specs, (s for s in self.specs if s.name not in fed_back))]

    def check(self, data: Dataset, path) -> None:
        """An input with no batch axis takes one value per run: every sample must hold the same."""
        for spec in self.specs:
            if spec.axis is None and spec.name in data.inputs:
                values = np.unique(data.inputs[spec.name].reshape(len(data), -1), axis=0)
                if len(values) > 1:
                    raise BadInput(f"input '{spec.name}' has no batch axis (one value per run), but the samples "
                                   f"hold {len(values)} different values", path=path)

    def chunks(self, data: Dataset) -> Dataset:
        """Each sequence's first chunk with its state at zeros: what export parity, timing and the
        chunk-level views run on."""
        if not self.state:
            return data
        feeds = {name: v[:, 0] if self._has_time(name) else v for name, v in data.inputs.items()}
        return Dataset(data.source + " (first chunks)", {**feeds, **self._zero_states(len(data))}, data.labels,
                       data.slices, data.weights)

    def run(self, step: Step, data: Dataset) -> list[np.ndarray]:
        """Every output on every sample (a streaming model: on every chunk of every sequence, in
        order, sequences x chunks on axis 0). Each sequence streams alone, at batch 1, as an app runs
        it: a dynamically quantized model's scales would otherwise depend on the other sequences."""
        if not self.state:
            return step(dict(data.inputs))
        per_sequence = [self._stream(step, {k: v[i: i + 1] for k, v in data.inputs.items()}) for i in range(len(data))]
        return [np.concatenate([s[k] for s in per_sequence]) for k in range(len(per_sequence[0]))]

    def _stream(self, step: Step, inputs: dict) -> list[np.ndarray]:
        """One sequence, chunk after chunk, its state fed back: outputs [chunks, ...]."""
        count = next(v.shape[1] for name, v in inputs.items() if self._has_time(name))
        index = {name: i for i, name in enumerate(self.output_names)}
        state, per_chunk = self._zero_states(1), []
        for t in range(count):
            outputs = step({**{k: v[:, t] if self._has_time(k) else v for k, v in inputs.items()}, **state})
            state = {fed: np.asarray(outputs[index[out]]) for out, fed in self.state.items()}
            per_chunk.append(outputs)
        return [np.concatenate([np.asarray(o[i]) for o in per_chunk]) for i in range(len(per_chunk[0]))]

    def _has_time(self, name: str) -> bool:
        spec = next((s for s in self.specs if s.name == name), None)
        return spec is not None and spec.axis is not None and name not in self.state.values()

    def _zero_states(self, n: int) -> dict:
        states = {}
        for spec in (s for s in self.specs if s.name in self.state.values()):
            shape = spec.sample_major().shape[1:]
            if not all(isinstance(d, int) for d in shape):
                raise BadInput(f"state input '{spec.name}' {spec.describe()}: a state needs a fixed size apart from "
                               "its batch axis to start at zeros")
            states[spec.name] = np.zeros((n, *(int(d) for d in shape)), spec.dtype)
        return states


def model_io(specs: list[InputSpec], output_names: list[str], batch_axes: dict, state: dict, path) -> ModelIO:
    """The config's `[model] batch_axes` and `state` checked against the model's own inputs and outputs."""
    names = {s.name for s in specs}
    unknown = [n for n in (*batch_axes, *state.values()) if n not in names]
    if unknown:
        raise BadInput(f"[model] names no input {unknown[0]!r}; the model's inputs: {', '.join(sorted(names))}",
                       path=path)
    missing = [n for n in state if n not in output_names]
    if missing:
        raise BadInput(f"[model] state names no output {missing[0]!r}; the model's outputs: {', '.join(output_names)}",
                       path=path)
    laid = []
    for spec in specs:
        axis = batch_axes.get(spec.name, spec.batch_axis)
        if axis is not None and spec.shape and not 0 <= axis < len(spec.shape):
            raise BadInput(f"[model] batch_axes: input '{spec.name}' {spec.describe()} has no axis {axis}", path=path)
        laid.append(replace(spec, batch_axis=axis))
    return ModelIO(tuple(laid), tuple(output_names), dict(state))


class SampleMajorRunner:
    """A target's runner fed and read samples first, as data sets and devices hold them; the target's
    runner sees its model's own layout. What would bypass the layout (an emulator's own feeds, a compute
    plan) is not offered."""

    _HIDDEN = {"emulation_request", "from_emulated", "placement"}

    def __init__(self, runner, io: ModelIO):
        self._runner, self.io = runner, io
        self.run = io.step(runner.run)

    def input_specs(self) -> list[InputSpec]:
        return [s.sample_major() for s in self.io.specs]

    def in_model_layout(self, feeds: dict) -> dict:
        return to_model_layout(feeds, self.io.specs)

    def __getattr__(self, name):
        if name in self._HIDDEN:
            raise AttributeError(name)
        return getattr(self._runner, name)
