"""Raw detector heads: the artifact's detections scored against the float student's, as COCO scores
them (mAP@0.5 and mAP@0.5:0.95, faster-coco-eval). Both outputs go through the same decoding and NMS,
so only the network differs. The float student's detections above `conf` are the ground truth; the
artifact's are kept down to 0.001, as mAP integrates over the whole precision-recall curve.

Layouts (as the exporters write them):
  yolov8   [B, 4 + C, N]: cx, cy, w, h in pixels, then C class scores (already sigmoid; no objectness)
  yolov5   [B, N, 5 + C]: cx, cy, w, h, objectness, C class scores (score = objectness x class)
  end2end  [B, D, 6]: x1, y1, x2, y2, score, class (after the model's own top-k: no NMS)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import OutputKind, rounded

LOW_CONF = 0.001  # the artifact's detections kept for mAP (ultralytics' val threshold)


def decode(head: np.ndarray, settings: dict, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample's raw head -> (boxes xyxy [n, 4], scores [n], classes [n]) after NMS."""
    layout = settings["layout"]
    if layout == "end2end":
        keep = head[:, 4] >= conf
        return head[keep, :4], head[keep, 4], head[keep, 5].astype(np.int64)
    rows = head.T if layout == "yolov8" else head
    if layout == "yolov8":
        class_scores = rows[:, 4:]
    else:
        class_scores = rows[:, 5:] * rows[:, 4:5]
    classes, scores = class_scores.argmax(1), class_scores.max(1)
    keep = scores >= conf
    cx, cy, w, h = rows[keep, :4].T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    chosen = nms(boxes, scores[keep], classes[keep], settings["iou"])[: settings["max_det"]]
    return boxes[chosen], scores[keep][chosen], classes[keep][chosen]


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy class-aware NMS (each class offset apart, one pass), best first."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    # apart by the boxes' whole extent: the largest coordinate alone is not, when boxes reach below 0
    shifted = boxes + (classes[:, None] * (boxes.max() - boxes.min() + 1.0))
    order, kept = scores.argsort()[::-1], []
    while len(order):
        best, order = order[0], order[1:]
        kept.append(best)
        if len(order):
            order = order[_iou(shifted[best], shifted[order]) <= iou]
    return np.array(kept, np.int64)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    low, high = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(others) - inter, 1e-12)


def mean_average_precision(truth: list, found: list) -> tuple[float, float] | None:
    """(mAP@0.5:0.95, mAP@0.5) of `found` [(boxes, scores, classes)] against `truth`, per image; None
    when the truth holds no box at all."""
    from faster_coco_eval import COCO, COCOeval_faster

    images: list[dict] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image, ((t_boxes, _, t_classes), (f_boxes, f_scores, f_classes)) in enumerate(zip(truth, found), 1):
        images.append({"id": image})
        # one id per box: COCO matches by annotation id, and a shared id loses all but one of an image's boxes
        annotations += [{"id": len(annotations) + k, "image_id": image, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": _xywh(b), "area": float(np.prod(b[2:] - b[:2]))}
                        for k, (b, c) in enumerate(zip(t_boxes, t_classes), 1)]
        detections += [{"image_id": image, "category_id": int(c) + 1, "bbox": _xywh(b), "score": float(s)}
                       for b, s, c in zip(f_boxes, f_scores, f_classes)]
    if not annotations:
        return None
    classes = {a["category_id"] for a in annotations} | {d["category_id"] for d in detections}
    gt = COCO({"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(classes)]})
    evaluation = COCOeval_faster(gt, gt.loadRes(detections) if detections else COCO(), iouType="bbox",
                                 print_function=lambda *_: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return max(float(evaluation.stats[0]), 0.0), max(float(evaluation.stats[1]), 0.0)


def _xywh(box: np.ndarray) -> list[float]:
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    truth = [decode(np.asarray(r, np.float64), settings, settings["conf"]) for r in ref]
    found = [decode(np.asarray(o, np.float64), settings, LOW_CONF) for o in out]
    scores = mean_average_precision(truth, found)
    boxes = sum(len(t[0]) for t in truth)
    if scores is None:
        return {"reference_boxes": 0, "map_agreement.why": f"the float student detects nothing above conf "
                f"{settings['conf']}: there is nothing to agree with", "map50_agreement.why": "no reference box"}
    return {"map_agreement": rounded(scores[0]), "map50_agreement": rounded(scores[1]), "reference_boxes": boxes}


KIND = OutputKind("detection", "raw detector heads (layout = \"yolov8\" [B, 4+C, N], \"yolov5\" [B, N, 5+C] or "
                  "\"end2end\" [B, D, 6]): mAP@0.5:0.95 and mAP@0.5 of the artifact's detections against the float "
                  "student's (conf, iou for NMS, max_det)",
                  {"min_map_agreement": ("map_agreement", ">=", ""), "min_map50_agreement": ("map50_agreement", ">=", "")},
                  figures, {"layout": "yolov8", "conf": 0.25, "iou": 0.7, "max_det": 300},
                  choices={"layout": ("yolov8", "yolov5", "end2end")})
