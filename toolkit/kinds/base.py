"""What every output kind is made of: the interface, and the figures most kinds share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class OutputKind:
    name: str
    help: str
    # [budgets.outputs.NAME] keys this kind answers: key -> (figure, comparison, unit)
    budget_keys: dict[str, tuple[str, str, str]]
    # (artifact's output, float student's output, the output's declared settings) -> figures
    figures: Callable[[np.ndarray, np.ndarray, dict], dict]
    settings: dict = field(default_factory=dict)  # what [model.outputs.NAME] may set, with defaults
    # (artifact's output, reference output, settings) -> one error per sample, >= 0 (slice discovery);
    # 0/1 where the kind judges a sample as right or wrong
    per_sample: Callable[[np.ndarray, np.ndarray, dict], np.ndarray] | None = None
    choices: dict = field(default_factory=dict)  # setting -> the values it may take, where they are few


# Every float kind reports the error of its raw values too, so a budget on them reads the same anywhere.
ERROR_KEYS = {
    "max_max_abs_error": ("max_abs_error", "<=", ""),
    "max_mean_abs_error": ("mean_abs_error", "<=", ""),
    "max_relative_error": ("relative_error", "<=", ""),  # mean |error| / mean |float output|
}


def error_figures(out: np.ndarray, ref: np.ndarray) -> dict:
    error = np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
    return {"max_abs_error": rounded(error.max()), "mean_abs_error": rounded(error.mean()),
            "relative_error": rounded(error.mean() / max(float(np.abs(ref).mean()), 1e-12))}


def rounded(x) -> float:
    return round(float(x), 6)


def class_last(x: np.ndarray, axis: int) -> np.ndarray:
    """Per-sample arrays with the class axis moved last (axis counts the batch axis, as numpy's)."""
    return np.moveaxis(np.asarray(x), axis, -1)


def per_sample_abs_error(out: np.ndarray, ref: np.ndarray, settings: dict | None = None) -> np.ndarray:
    """Each sample's mean |error| over its values."""
    error = np.abs(np.asarray(out, np.float64) - np.asarray(ref, np.float64))
    return error.reshape(len(error), -1).mean(axis=1)
