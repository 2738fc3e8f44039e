"""Readers for `.npz` files and folders of `.npy` files, validated against the model's inputs.

An `.npz` holds one array per model input (keyed by input name), and optionally:
  - `labels`: integer class per sample;
  - `slices`: a string name per sample (each distinct name becomes a slice), and/or
    `slice_<name>`: boolean masks (a sample may belong to several slices);
  - `weights`: a non-negative importance per sample.
A folder holds the same arrays as `<key>.npy` files.

Every array's header is read before the array: one declaring more than `limits.memory_bound()` (a quarter
of this machine's memory, or EDGE_DISTILL_MAX_ARRAY_BYTES) is refused, so a few bytes of crafted header
never make the reader allocate terabytes.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from edge_distill.errors import BadInput
from edge_distill.limits import memory_bound, raise_hint

from .dataset import Dataset, InputSpec

RESERVED = {"labels", "slices", "weights"}


def _check_declared_size(path: Path, name: str, stream, limit: int) -> None:
    """Read one .npy header from `stream` and refuse an array larger than `limit` bytes."""
    try:
        version = np.lib.format.read_magic(stream)
        # 3.0 differs from 2.0 only in the header's text encoding, which leaves shape and dtype readable
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    except ValueError as exc:
        raise BadInput(f"array '{name}' has no readable .npy header ({exc})", path=path) from exc
    size = math.prod(shape) * dtype.itemsize
    if size > limit:
        raise BadInput(f"array '{name}' declares shape {list(shape)} {dtype}: {size:,} bytes, more than the "
                       f"{limit:,} a data array may have; refused before reading it", path=path,
                       hint=raise_hint())


def _check_sizes(path: Path) -> None:
    """Every array of an .npz or a .npy, by its header, within the bound, before any is read."""
    limit = memory_bound()
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            _check_declared_size(path, path.stem, f, limit)
        return
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as f:
                _check_declared_size(path, info.filename.removesuffix(".npy"), f, limit)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise BadInput("data file not found", path=path)
    try:
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            if not files:
                raise BadInput("folder holds no .npy files", path=path)
            return {f.stem: _load_npy(f) for f in files}
        if path.suffix == ".npz":
            _check_sizes(path)
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        if path.suffix == ".npy":
            raise BadInput("a single .npy has no input names", path=path,
                           hint="use an .npz keyed by input name, or a folder of <input>.npy files")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BadInput(f"cannot read data file ({exc})", path=path) from exc
    raise BadInput(f"unsupported data format '{path.suffix}'", path=path, hint="use .npz or a folder of .npy files")


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a data file (.npz or a folder of .npy), as stored: inputs, labels, slices and any
    other per-sample column (metadata, which slice discovery reads)."""
    return _read_arrays(Path(path))


def _load_npy(path: Path) -> np.ndarray:
    try:
        _check_sizes(path)
        return np.load(path, allow_pickle=False)  # never unpickle: an object array is refused
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"cannot read data file ({exc})", path=path) from exc


def _check_input(path: Path, spec: InputSpec, array: np.ndarray) -> np.ndarray:
    if array.ndim != len(spec.shape):
        raise BadInput(f"input '{spec.name}' has shape {list(array.shape)}, the model expects "
                       f"{spec.describe()} ({len(spec.shape)} dimensions)", path=path)
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
        if isinstance(want, int) and axis > 0 and want != got:
            raise BadInput(f"input '{spec.name}' has shape {list(array.shape)}, the model expects "
                           f"{spec.describe()} (dimension {axis} is {got}, not {want})", path=path)
    want_dtype = np.dtype(spec.dtype)
    if array.dtype.kind in "iu" and want_dtype.kind == "f":  # raw pixels or ids cast to float would run unscaled
        raise BadInput(f"input '{spec.name}' holds integers ({array.dtype}), the model expects {want_dtype}; "
                       "integers are never cast to float silently", path=path,
                       hint="save the values the model was trained on (e.g. pixels scaled to 0..1) as float32")
    if array.dtype != want_dtype:
        same_kind = np.can_cast(array.dtype, want_dtype, casting="same_kind")
        if not same_kind:
            raise BadInput(f"input '{spec.name}' has dtype {array.dtype}, the model expects {want_dtype}", path=path)
        array = array.astype(want_dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
        raise BadInput(f"input '{spec.name}' contains NaN or Inf in {bad} sample(s)", path=path)
    return array


def load_dataset(path: str | Path, specs: list[InputSpec]) -> Dataset:
    """Read and validate a data set for a model with inputs `specs`."""
    path = Path(path)
    arrays = _read_arrays(path)
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        present = sorted(k for k in arrays if k not in RESERVED and not k.startswith("slice_"))
        raise BadInput(f"no array for model input(s) {missing}; the file holds {present}", path=path)
    inputs = {s.name: _check_input(path, s, arrays[s.name]) for s in specs}
    counts = {name: len(a) for name, a in inputs.items()}
    n = next(iter(counts.values()))
    if n == 0:
        raise BadInput("the data set is empty (0 samples)", path=path)
    if len(set(counts.values())) > 1:
        raise BadInput(f"inputs have different sample counts: {counts}", path=path)

    def per_sample(key: str) -> np.ndarray | None:
        if key not in arrays:
            return None
        a = arrays[key]
        if a.ndim != 1 or len(a) != n:
            raise BadInput(f"'{key}' must be one value per sample ({n}), got shape {list(a.shape)}", path=path)
        return a

    labels = per_sample("labels")
    if labels is not None:
        if labels.dtype.kind not in "iu":
            raise BadInput(f"'labels' must be integers (class indices), got {labels.dtype}", path=path)
        labels = labels.astype(np.int64)
    weights = per_sample("weights")
    if weights is not None:
        weights = weights.astype(np.float64)
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() == 0:
            raise BadInput("'weights' must be finite, non-negative and not all zero", path=path)

    slices: dict[str, np.ndarray] = {}
    names = per_sample("slices")
    if names is not None:
        names = names.astype(str)
        for name in sorted(set(names)):
            slices[name] = names == name
    for key in sorted(k for k in arrays if k.startswith("slice_")):
        mask = per_sample(key)
        assert mask is not None  # the key is one of arrays'
        if mask.dtype != np.bool_:
            raise BadInput(f"'{key}' must be a boolean mask, got {mask.dtype}", path=path)
        slices[key[len("slice_"):]] = mask
    for name, mask in slices.items():
        if not mask.any():
            raise BadInput(f"slice '{name}' holds no samples", path=path)
    return Dataset(source=str(path), inputs=inputs, labels=labels, slices=slices, weights=weights)


def check_labels(data: Dataset, classes: int) -> None:
    """Labels index the classes of the output they label (the first): one outside [0, classes) means
    the file lies (another class count, labels shifted or padded with -1), and every accuracy judged
    on it would be wrong, so the data are refused."""
    if data.labels is None:
        return
    bad = data.labels[(data.labels < 0) | (data.labels >= classes)]
    if len(bad):
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        raise BadInput(f"'labels' holds {shown} in {len(bad)} sample(s), outside [0, {classes}): the model's "
                       f"output has {classes} classes", path=data.source)
