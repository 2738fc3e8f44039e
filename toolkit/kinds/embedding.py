"""Embeddings: cosine similarity per sample with the float student's, averaged."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, error_figures
from .dense import cosine


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    return {"cosine": cosine(out, ref), **error_figures(out, ref)}


def per_sample(out: np.ndarray, ref: np.ndarray, settings: dict) -> np.ndarray:
    """1 - the cosine of each sample's vector with the reference's."""
    a, b = (np.asarray(x, np.float64).reshape(len(x), -1) for x in (out, ref))
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.clip(1.0 - np.sum(a * b, axis=1) / norms, 0.0, 2.0)


KIND = OutputKind("embedding", "vectors: cosine similarity per sample", {"min_cosine": ("cosine", ">=", ""),
                                                                         **ERROR_KEYS}, figures,
                  per_sample=per_sample)
