"""Class scores per sample: the same top-1 as the float student's, on the class axis (default last)."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, class_last, error_figures, rounded


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    axis = settings["axis"]
    same = class_last(out, axis).argmax(-1) == class_last(ref, axis).argmax(-1)
    return {"float_agreement": rounded(same.reshape(len(same), -1).all(axis=1).mean()), **error_figures(out, ref)}


def per_sample(out: np.ndarray, ref: np.ndarray, settings: dict) -> np.ndarray:
    """1 where the sample's top-1 differs from the reference's (any position, for a per-position output)."""
    axis = settings.get("axis", -1)
    same = class_last(out, axis).argmax(-1) == class_last(ref, axis).argmax(-1)
    return (~same.reshape(len(same), -1).all(axis=1)).astype(np.float64)


KIND = OutputKind("classification", "class scores: top-1 agreement on the class axis (axis, default -1)",
                  {"min_float_agreement": ("float_agreement", ">=", ""), **ERROR_KEYS}, figures, {"axis": -1}, per_sample)
