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

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"

    @property
    def fixed_batch(self) -> int | None:
        """The batch the model was saved with, when its leading dimension is a number."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) else None

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
    """`count` samples of zeros in the model's input shapes (a symbolic axis taken as 1): what timing
    runs on when no data is given."""
    shape = lambda spec: [d if isinstance(d, int) else 1 for d in spec.shape][1:]  # noqa: E731
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


def whole_batches(feeds: dict, batch: int) -> dict:
    """`feeds` padded (by repeating the last sample) to a multiple of `batch` samples."""
    n = len(next(iter(feeds.values())))
    return padded(feeds, -(-n // batch) * batch)


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
