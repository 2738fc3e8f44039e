"""A recurrent state an artifact hands back: judged by its error only (what it means is the next
chunk's business)."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, error_figures, per_sample_abs_error


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    return error_figures(out, ref)


KIND = OutputKind("state", "recurrent state: error of its values", dict(ERROR_KEYS), figures,
                  per_sample=per_sample_abs_error)
