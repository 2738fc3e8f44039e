"""Integer outputs (top-k indices, token ids, class ids): compared as what they are, never as floats.
Exact match: every element of the sample equal; top-k overlap: the share of the float student's
indices (along the last axis) that the artifact also returns, in any order."""

from __future__ import annotations

import numpy as np

from .base import OutputKind, rounded


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    a, b = (np.asarray(x).reshape(len(x), -1, np.shape(x)[-1] if np.ndim(x) > 1 else 1) for x in (out, ref))
    exact = (a == b).reshape(len(a), -1).all(axis=1)
    overlap = [len(set(x) & set(y)) / len(set(y)) for sa, sb in zip(a, b) for x, y in zip(sa, sb)]
    return {"exact_match": rounded(exact.mean()), "topk_overlap": rounded(np.mean(overlap))}


def per_sample(out: np.ndarray, ref: np.ndarray, settings: dict) -> np.ndarray:
    """1 where the sample's indices are not exactly the reference's."""
    a, b = (np.asarray(x).reshape(len(x), -1) for x in (out, ref))
    return (~(a == b).all(axis=1)).astype(np.float64)


KIND = OutputKind("indices", "integer outputs: exact match, top-k set overlap along the last axis",
                  {"min_exact_match": ("exact_match", ">=", ""), "min_topk_overlap": ("topk_overlap", ">=", "")},
                  figures, per_sample=per_sample)
