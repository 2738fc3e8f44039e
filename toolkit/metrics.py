"""Task metrics, overall and per slice. Classification: top-1 against labels, the float student
and the teacher; weighted where the data carry per-sample weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Metrics:
    samples: int
    accuracy: float | None = None
    weighted_accuracy: float | None = None
    float_agreement: float | None = None
    teacher_agreement: float | None = None
    accuracy_drop: float | None = None  # float student's accuracy minus this one's
    max_abs_diff_vs_float: float | None = None

    def figures(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def classification(outputs: np.ndarray, *, labels=None, weights=None, float_outputs=None, teacher_outputs=None,
                   mask=None) -> Metrics:
    keep = np.ones(len(outputs), bool) if mask is None else mask
    pred = outputs[keep].argmax(axis=1)
    m = Metrics(samples=int(keep.sum()))
    if labels is not None:
        correct = pred == labels[keep]
        m.accuracy = _round(correct.mean())
        if weights is not None:
            m.weighted_accuracy = _round(np.average(correct, weights=weights[keep]))
    if float_outputs is not None:
        float_pred = float_outputs[keep].argmax(axis=1)
        m.float_agreement = _round((pred == float_pred).mean())
        m.max_abs_diff_vs_float = _round(np.abs(outputs[keep] - float_outputs[keep]).max())
        if labels is not None:
            m.accuracy_drop = _round((float_pred == labels[keep]).mean() - correct.mean())
    if teacher_outputs is not None:
        m.teacher_agreement = _round((pred == teacher_outputs[keep].argmax(axis=1)).mean())
    return m


def _round(x) -> float:
    return round(float(x), 6)


def parity(outputs: np.ndarray, reference: np.ndarray) -> dict:
    """How closely two runs of one artifact agree (e.g. aarch64 kernels against this host's)."""
    a, b = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    return {"top1_agreement": _round(np.mean(a.argmax(-1) == b.argmax(-1))),
            "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0, "samples": int(len(a))}
