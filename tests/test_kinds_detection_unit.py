"""Fast unit tests of the detection kind (numpy heads, no model): the confidence edge, max_det, NMS at
its IoU edge and across classes, and COCO mAP on worked examples (issue 31, mutation scores)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_distill.kinds import KINDS
from edge_distill.kinds.detection import decode, nms


def settings(**over) -> dict:
    return {**KINDS["detection"].settings, **over}


def yolov8(*boxes, classes: int = 2, anchors: int = 4) -> np.ndarray:
    """One sample's [4 + C, N] head from (cx, cy, w, h, class, score); the other anchors score 0."""
    head = np.zeros((4 + classes, anchors), np.float64)
    for i, (cx, cy, w, h, c, s) in enumerate(boxes):
        head[:4, i] = [cx, cy, w, h]
        head[4 + c, i] = s
    return head


def test_a_score_exactly_at_conf_is_kept_in_every_layout():
    boxes, scores, classes = decode(yolov8((50, 50, 20, 20, 1, 0.25), (10, 10, 4, 4, 0, 0.2499)), settings(), 0.25)
    assert boxes.tolist() == [[40, 40, 60, 60]] and scores.tolist() == [0.25] and classes.tolist() == [1]
    e2e = np.array([[0, 0, 10, 10, 0.25, 3], [5, 5, 8, 8, 0.2499, 1]])
    boxes, scores, classes = decode(e2e, settings(layout="end2end"), 0.25)
    assert boxes.tolist() == [[0, 0, 10, 10]] and scores.tolist() == [0.25] and classes.tolist() == [3]


def test_max_det_keeps_the_best_scored_boxes():
    head = yolov8((10, 10, 4, 4, 0, 0.5), (30, 30, 4, 4, 0, 0.9), (50, 50, 4, 4, 1, 0.7))  # apart: no suppression
    boxes, scores, _ = decode(head, settings(max_det=2), 0.25)
    assert scores.tolist() == [0.9, 0.7] and boxes.tolist() == [[28, 28, 32, 32], [48, 48, 52, 52]]


def test_nothing_above_conf_decodes_to_empty_arrays():
    boxes, scores, classes = decode(yolov8((10, 10, 4, 4, 0, 0.1)), settings(), 0.25)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).dtype == np.int64


def test_nms_keeps_a_box_whose_iou_is_exactly_the_threshold():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 6]], np.float64)  # IoU with the first: .5, .6
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3, np.int64), 0.5)
    assert kept.tolist() == [0, 1]  # 50 / 100 = .5 is not above .5; 60 / 100 is


@pytest.mark.parametrize("off_image", [
    [-51, -51, -1, -1],  # lands on the other box if classes were offset by the largest coordinate + 1 (91)
    [-25.5, -25.5, 24.5, 24.5],  # lands on it if offset by largest + smallest + 1 (90 - 25.5 + 1 = 65.5)
])
def test_nms_never_suppresses_across_classes_even_left_of_and_above_the_image(off_image):
    boxes = np.array([[40, 40, 90, 90], off_image], np.float64)  # a box off the image's top-left, another class
    assert nms(boxes, np.array([0.9, 0.8]), np.array([0, 1]), 0.7).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), np.array([0, 0]), 0.7).tolist() == [0, 1]  # apart as they are


def figures(out, ref, **over):
    return KINDS["detection"].figures(np.asarray(out), np.asarray(ref), settings(**over))


def test_a_float_student_that_detects_nothing_has_nothing_to_agree_with():
    ref = np.stack([yolov8((10, 10, 4, 4, 0, 0.2))])
    assert figures(ref, ref) == {"reference_boxes": 0, "map_agreement.why": "the float student detects nothing above "
                                 "conf 0.25: there is nothing to agree with", "map50_agreement.why": "no reference box"}


def test_an_artifact_that_detects_nothing_scores_zero():
    ref = np.stack([yolov8((30, 30, 20, 20, 0, 0.9)), yolov8((60, 60, 20, 20, 1, 0.8))])
    assert figures(np.zeros_like(ref), ref) == {"map_agreement": 0.0, "map50_agreement": 0.0, "reference_boxes": 2}


def test_one_class_found_and_one_missed_average_to_a_half():
    # class 0: found exactly (AP 1 at every IoU threshold); class 1: only a box far from the truth (AP 0)
    ref = np.stack([yolov8((30, 30, 20, 20, 0, 0.9), (70, 70, 20, 10, 1, 0.8))])
    out = np.stack([yolov8((30, 30, 20, 20, 0, 0.9), (10, 90, 20, 10, 1, 0.8))])
    assert figures(out, ref) == {"map_agreement": 0.5, "map50_agreement": 0.5, "reference_boxes": 2}


def test_the_artifacts_low_scored_detections_count_down_to_0_001():
    ref = np.stack([yolov8((30, 30, 20, 20, 0, 0.9))])
    out = np.stack([yolov8((30, 30, 20, 20, 0, 0.002))])  # below conf, above 0.001: still the right box
    assert figures(out, ref) == {"map_agreement": 1.0, "map50_agreement": 1.0, "reference_boxes": 1}
    too_low = np.stack([yolov8((30, 30, 20, 20, 0, 0.0009))])
    assert figures(too_low, ref)["map50_agreement"] == 0.0


@pytest.mark.parametrize("shift, map50, map_", [
    # a 20 x 20 box moved right by 4 px: IoU 16 * 20 / (2 * 400 - 320) = 2 / 3, a hit at thresholds .5 .. .65
    # (4 of the 10), so mAP@.5:.95 = 4/10 and mAP@.5 = 1
    (4, 1.0, 0.4),
    # moved by 8 px: IoU 12 * 20 / (800 - 240) = 3 / 7 = .43 < .5: missed everywhere
    (8, 0.0, 0.0),
])
def test_map_over_iou_thresholds_worked_by_hand(shift, map50, map_):
    ref = np.stack([yolov8((30, 30, 20, 20, 0, 0.9))])
    out = np.stack([yolov8((30 + shift, 30, 20, 20, 0, 0.9))])
    assert figures(out, ref) == {"map_agreement": map_, "map50_agreement": map50, "reference_boxes": 1}


def test_nms_on_normalized_coordinates_suppresses_by_iou_too():
    # heads that give coordinates in 0..1: boxes of far less than a square pixel, IoU .8 and .25
    boxes = np.array([[0.1, 0.1, 0.6, 0.6], [0.1, 0.1, 0.6, 0.5], [0.1, 0.1, 0.35, 0.35]])
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3, np.int64), 0.5).tolist() == [0, 2]


def test_every_box_of_every_image_counts_once():
    # image 1 holds one box, image 2 two, image 3 three: all found exactly, so mAP is 1 only if no
    # annotation shares an id with another
    heads = [yolov8((30, 30, 20, 20, 0, 0.9)),
             yolov8((30, 30, 20, 20, 0, 0.9), (70, 70, 20, 20, 1, 0.9)),
             yolov8((30, 30, 20, 20, 0, 0.9), (70, 70, 20, 20, 1, 0.9), (30, 80, 20, 10, 1, 0.9))]
    ref = np.stack(heads)
    assert figures(ref, ref) == {"map_agreement": 1.0, "map50_agreement": 1.0, "reference_boxes": 6}
    moved = ref.copy()
    moved[2, :4, 2], moved[2, 5, 2] = [80, 20, 20, 10], 0.5  # image 3's last box moved off, scored lowest
    # class 0: AP 1; class 1: two of three found at precision 1, recall 2/3 never passed: COCO's 101
    # recall points 0, .01 .. .66 have precision 1, so AP = 67 / 101 at every IoU threshold
    expected = round((1 + 67 / 101) / 2, 6)
    assert figures(moved, ref) == {"map_agreement": expected, "map50_agreement": expected, "reference_boxes": 6}
