"""Task metrics, overall and per slice.

Classification: top-1 against labels, the float student and the teacher; weighted where the data
carry per-sample weights. Embedding: cosine similarity to the teacher's and the float student's
embeddings of the same text, and retrieval agreement: each evaluation text as a query, is its
nearest neighbour in the evaluation corpus (itself excluded) the same as the reference's? Retrieval
agreement does not depend on the embedding space, so it also compares a model trained apart
(an off-the-shelf one), where cosine to the teacher would mean nothing."""

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
    teacher_cosine: float | None = None  # embedding: mean cosine similarity to the teacher's
    float_cosine: float | None = None
    teacher_retrieval_agreement: float | None = None  # same nearest neighbour as under the teacher
    float_retrieval_agreement: float | None = None

    def figures(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def classification(outputs: np.ndarray, *, labels=None, weights=None, float_outputs=None, teacher_outputs=None,
                   mask=None, axis: int = -1, **_) -> Metrics:
    """Top-1 on the class axis (`axis`, numpy's numbering with the batch axis first)."""
    keep = np.ones(len(outputs), bool) if mask is None else mask
    top1 = lambda x: np.asarray(x).argmax(axis=axis)  # noqa: E731 - the class axis, wherever it is
    pred = top1(outputs[keep])
    m = Metrics(samples=int(keep.sum()))
    if labels is not None:
        correct = pred == labels[keep]
        m.accuracy = _round(correct.mean())
        if weights is not None:
            m.weighted_accuracy = _round(np.average(correct, weights=weights[keep]))
    if float_outputs is not None:
        float_pred = top1(float_outputs[keep])
        m.float_agreement = _round((pred == float_pred).mean())
        m.max_abs_diff_vs_float = _round(np.abs(outputs[keep] - float_outputs[keep]).max())
        if labels is not None:
            m.accuracy_drop = _round((float_pred == labels[keep]).mean() - correct.mean())
    if teacher_outputs is not None:
        m.teacher_agreement = _round((pred == top1(teacher_outputs[keep])).mean())
    return m


def embedding(outputs: np.ndarray, *, float_outputs=None, teacher_outputs=None, mask=None,
              same_space_as_teacher: bool = True, **_) -> Metrics:
    keep = np.ones(len(outputs), bool) if mask is None else mask
    m = Metrics(samples=int(keep.sum()))
    out = _unit(outputs)
    mine = _neighbours(out)
    for given, cosine, agreement, same_space in ((float_outputs, "float_cosine", "float_retrieval_agreement", True),
                                                 (teacher_outputs, "teacher_cosine", "teacher_retrieval_agreement",
                                                  same_space_as_teacher)):
        if given is None:
            continue
        ref = _unit(given)
        if same_space and ref.shape == out.shape:
            setattr(m, cosine, _round(np.sum(out[keep] * ref[keep], axis=1).mean()))
        setattr(m, agreement, _round((mine[keep] == _neighbours(ref)[keep]).mean()))
    if float_outputs is not None:
        m.max_abs_diff_vs_float = _round(np.abs(outputs[keep] - float_outputs[keep]).max())
    return m


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbours(unit: np.ndarray) -> np.ndarray:
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


TASK_METRICS = {"classification": classification, "embedding": embedding}
# The kinds of first output each task's metric reads; any other first output is judged by its kind alone.
TASK_KINDS = {"classification": ("classification",), "embedding": ("embedding", "dense")}


def why_not_task_metric(name: str, spec: dict, task: str) -> str:
    """Why the task metric (accuracy, agreement, ...) is not computed on this first output; "" if it is."""
    if spec["kind"] in TASK_KINDS[task]:
        return ""
    from .kinds import get_kind

    keys = ", ".join(get_kind(spec["kind"]).budget_keys)
    return (f"the first output '{name}' is a {spec['kind']} output, not what the {task} metric reads: it is judged "
            f"by [budgets.outputs.{name}] ({keys})")


def _round(x) -> float:
    return round(float(x), 6)


def parity(outputs: np.ndarray, reference: np.ndarray) -> dict:
    """How closely two runs of one artifact agree (e.g. aarch64 kernels against this host's)."""
    a, b = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
    return {"top1_agreement": _round(np.mean(a.argmax(-1) == b.argmax(-1))),
            "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0, "samples": int(len(a))}
