"""Embeddings: cosine similarity per sample with the float student's, averaged."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, error_figures
from .dense import cosine


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    return {"cosine": cosine(out, ref), **error_figures(out, ref)}


KIND = OutputKind("embedding", "vectors: cosine similarity per sample", {"min_cosine": ("cosine", ">=", ""),
                                                                         **ERROR_KEYS}, figures)
