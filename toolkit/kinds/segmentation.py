"""Class scores per pixel ([B, C, H, W]): pixel agreement and mean IoU of the artifact's label map
against the float student's (classes present in either map, averaged)."""

from __future__ import annotations

import numpy as np

from .base import OutputKind, class_last, rounded


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    ious = []
    for c in np.union1d(np.unique(a), np.unique(b)):
        ious.append(np.sum((a == c) & (b == c)) / np.sum((a == c) | (b == c)))
    return rounded(np.mean(ious))


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    a, b = (class_last(x, settings["axis"]).argmax(-1) for x in (out, ref))
    return {"pixel_agreement": rounded((a == b).mean()), "mean_iou": mean_iou(a, b)}


def per_sample(out: np.ndarray, ref: np.ndarray, settings: dict) -> np.ndarray:
    """The share of the sample's pixels whose class differs from the reference's."""
    a, b = (class_last(x, settings.get("axis", 1)).argmax(-1).reshape(len(x), -1) for x in (out, ref))
    return (a != b).mean(axis=1)


KIND = OutputKind("segmentation", "class scores per pixel: pixel agreement and mean IoU (axis: the class axis, "
                  "default 1)", {"min_pixel_agreement": ("pixel_agreement", ">=", ""),
                                 "min_mean_iou": ("mean_iou", ">=", "")}, figures, {"axis": 1}, per_sample)
