"""The in-memory form of a calibration or evaluation set."""

from __future__ import annotations

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
