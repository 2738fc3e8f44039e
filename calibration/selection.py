"""Deterministic sample selection: the same seed and data give the same samples, on any machine."""

from __future__ import annotations

import numpy as np

from .dataset import Dataset


def select_samples(data: Dataset, count: int, seed: int = 0) -> Dataset:
    """Pick `count` samples, stratified by label (or else by slice) when the data carry them,
    so that rare classes still reach the calibrator. Returns all samples if `count >= len(data)`."""
    return data if count >= len(data) else data.subset(select_indices(data, count, seed))


def select_indices(data: Dataset, count: int, seed: int = 0, by_label_and_slice: bool = False) -> np.ndarray:
    """The indices `select_samples` picks (sorted); `by_label_and_slice`: strata are the label and slice
    membership together (an evaluation subset whose slices keep their shares)."""
    n = len(data)
    if count >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    strata = _strata(data, by_label_and_slice)
    if strata is None:
        return np.sort(rng.choice(n, count, replace=False))
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    # Proportional allocation, at least one per group, largest remainders first.
    quota = np.array([count * len(g) / n for g in groups])
    take = np.maximum(1, np.floor(quota)).astype(int)
    order = np.argsort(-(quota - np.floor(quota)))
    i = 0
    while take.sum() < count:
        g = order[i % len(groups)]
        if take[g] < len(groups[g]):
            take[g] += 1
        i += 1
    while take.sum() > count:
        take[np.argmax(take)] -= 1
    chosen = np.concatenate([rng.choice(g, t, replace=False) for g, t in zip(groups, take)])
    return np.sort(chosen)


def _strata(data: Dataset, both: bool = False) -> np.ndarray | None:
    codes = None
    if data.slices and (both or data.labels is None):
        # Each sample's stratum is the set of slices it belongs to, encoded as a bit pattern.
        codes = np.zeros(len(data), dtype=np.int64)
        for bit, mask in enumerate(data.slices.values()):
            codes |= mask.astype(np.int64) << bit
    if data.labels is None:
        return codes
    labels = np.asarray(data.labels).astype(np.int64)
    return labels if codes is None else labels * (1 << len(data.slices)) + codes
