"""The in-memory form of a calibration or evaluation set."""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """One model input. A dimension is an int (static) or a name (dynamic, e.g. "batch")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    # where the model takes the batch: axis 0 for most inputs, 1 for a recurrent state [layers, B, H],
    # None for an input with no batch axis (a scalar sample rate: one value for every sample of a run)
    batch_axis: int | None = 0

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"

    @property
    def axis(self) -> int | None:
        """The batch axis as the model has it (a 0-d input has none, whatever was declared)."""
        return self.batch_axis if self.shape else None

    def sample_major(self) -> InputSpec:
        """This input as data sets hold it: samples on axis 0, whatever the model's layout."""
        if self.axis == 0:
            return self
        rest = [d for i, d in enumerate(self.shape) if i != self.axis]
        return InputSpec(self.name, ("batch", *rest), self.dtype)

    @property
    def fixed_batch(self) -> int | None:
        """The batch the model was saved with, when its leading dimension is a number."""
        if self.axis is None or len(self.shape) <= self.axis:
            return None
        size = self.shape[self.axis]
        return size if isinstance(size, int) else None

    def example_shape(self, batch: int) -> tuple[int, ...]:
        """A concrete shape: the leading dynamic dim becomes `batch`, other dynamic dims 1."""
        out = []
        for i, d in enumerate(self.shape):
            out.append(d if isinstance(d, int) else (batch if i == 0 else 1))
        return tuple(out)


@dataclass
class Dataset:
    """Samples along axis 0 of every input array, with optional labels, slices and weights."""

    source: str
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    slices: dict[str, np.ndarray] = field(default_factory=dict)  # name -> boolean mask
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(
            source=self.source,
            inputs={k: v[index] for k, v in self.inputs.items()},
            labels=None if self.labels is None else self.labels[index],
            slices={k: v[index] for k, v in self.slices.items()},
            weights=None if self.weights is None else self.weights[index],
        )

    def batches(self, size: int):
        """Yield dicts of input arrays, `size` samples at a time, in order."""
        for start in range(0, len(self), size):
            yield {k: v[start: start + size] for k, v in self.inputs.items()}


def zeros(specs, count: int) -> Dataset:
    """`count` samples of zeros in the model's input shapes, samples first (a symbolic axis taken as
    1): what timing runs on when no data is given."""
    shape = lambda spec: [d if isinstance(d, int) else 1 for d in spec.sample_major().shape][1:]  # noqa: E731
    return Dataset(source="zeros", inputs={s.name: np.zeros([count, *shape(s)], s.dtype) for s in specs})


def fixed_batch_of(specs) -> int | None:
    """A model's fixed batch: the leading dimension its inputs were saved with (None: dynamic)."""
    return next((s.fixed_batch for s in specs if s.fixed_batch), None)


def padded(feeds: dict, size: int) -> dict:
    """`feeds` with exactly `size` samples: cut, or filled by repeating the last sample."""
    n = len(next(iter(feeds.values())))
    if n >= size:
        return {k: v[:size] for k, v in feeds.items()}
    return {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in feeds.items()}


def example_batch(specs, calibration, size: int) -> list[np.ndarray]:
    """What a converter traces with, one array per input in order: the calibration data's first samples
    (the model's own fixed batch of them, else `size`), or zeros of each input's example shape."""
    size = fixed_batch_of(specs) or size
    if calibration is not None:
        feeds = padded({s.name: calibration.inputs[s.name] for s in specs}, size)
        return [np.ascontiguousarray(feeds[s.name]) for s in specs]
    return [np.zeros(s.example_shape(size), dtype=s.dtype) for s in specs]


def whole_batches(feeds: dict, batch: int) -> dict:
    """`feeds` padded (by repeating the last sample) to a multiple of `batch` samples."""
    n = len(next(iter(feeds.values())))
    return padded(feeds, -(-n // batch) * batch)


def to_model_layout(feeds: dict, specs) -> dict:
    """Sample-major feeds in the layout the model takes: the batch moved to each input's batch axis;
    an input with no batch axis given the one value all the samples share."""
    out = dict(feeds)
    for spec in specs:
        if spec.name in out and spec.axis != 0:
            value = out[spec.name]
            out[spec.name] = np.asarray(value[0]) if spec.axis is None else np.moveaxis(value, 0, spec.axis)
    return out


def from_model_layout(outputs: list, batch_axes: list[int]) -> list:
    """A model's outputs with their batch axis moved first (`batch_axes`: per output, in order)."""
    return [o if axis == 0 else np.moveaxis(np.asarray(o), axis, 0) for o, axis in zip(outputs, batch_axes)]


_CHUNK_HOOKS: list = []


@contextlib.contextmanager
def on_each_chunk(callback):
    """Inside this block, `callback(samples)` hears of each chunk `run_in_batches` has run (a progress bar)."""
    _CHUNK_HOOKS.append(callback)
    try:
        yield
    finally:
        _CHUNK_HOOKS.remove(callback)


def run_in_batches(run, feeds: dict, batch: int | None, chunk: int = 256) -> list:
    """`run(feeds) -> [outputs]` over any number of samples. A model with a fixed batch gets chunks of
    exactly that size (the last one padded with its last sample, the padding's outputs dropped);
    a dynamic one gets chunks of `chunk`."""
    n = len(next(iter(feeds.values())))
    step, parts = batch or chunk, []
    for start in range(0, n, step):
        part = {k: v[start: start + step] for k, v in feeds.items()}
        real = len(next(iter(part.values())))
        outputs = run(padded(part, batch) if batch else part)
        parts.append([np.asarray(o)[:real] for o in outputs])
        for hook in _CHUNK_HOOKS:
            hook(real)
    return [np.concatenate(p) for p in zip(*parts)]
