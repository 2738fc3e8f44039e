"""Fast unit tests of the sequence, segmentation and detection kinds (numpy arrays only, no model):
each figure against a loop written here or a worked example, so a changed operator or constant in the
kind's module changes a number these tests check (issue 31, mutation scores)."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from edge_distill.kinds import KINDS

RNG = np.random.default_rng(31)


def settings(kind: str, **over) -> dict:
    return {**KINDS[kind].settings, **over}


def one_hot(paths: list[list[int]], classes: int) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[np.array(paths)]  # [B, T, C]


# ---- sequence ----------------------------------------------------------------------------------------

def test_ctc_text_spells_every_class_as_its_own_private_use_character_up_to_the_last_one():
    from edge_distill.kinds.sequence import ctc_greedy

    # 0x1FFFD is the largest index whose character (0xF0000 + 0x1FFFD = 0x10FFFD) is still private use;
    # 0x10000 shares no bit pattern trick with 0: 0xF0000 | 0x10000 would be 0xF0000 again.
    path = [0, 1, 0x10000, 0x1FFFD]
    (text,) = ctc_greedy(np.array([path]), blank=2)
    assert [ord(ch) for ch in text] == [0xF0000, 0xF0001, 0x100000, 0x10FFFD]
    assert [unicodedata.category(ch) for ch in text] == ["Co"] * 4  # private use, as the docstring says


def test_ctc_drops_only_the_blank_whatever_its_index():
    from edge_distill.kinds.sequence import ctc_greedy

    # blank 2: indices below and above it are characters; repeats collapse, a blank separates them
    assert ctc_greedy(np.array([[0, 0, 2, 0, 3, 1, 2, 2]]), blank=2) == ["".join(chr(0xF0000 + c) for c in (0, 0, 3, 1))]


def test_cer_counts_the_samples_left_out_for_an_empty_float_text():
    from edge_distill.kinds.sequence import character_error_rate

    ref = np.array([[1, 2, 3], [0, 0, 0], [2, 2, 0], [0, 0, 0], [0, 0, 0]])  # "abc", "", "b", "", ""
    out = np.array([[1, 3, 3], [1, 0, 0], [2, 2, 0], [0, 0, 0], [3, 0, 0]])  # "ac", "a", "b", "", "c"
    cer, empty = character_error_rate(out, ref, blank=0)
    assert empty == 3  # three of five float texts are empty: left out
    assert cer == pytest.approx(1 / 4)  # one deletion over 3 + 1 reference characters


def test_sequence_figures_by_hand_on_a_batch_longer_than_its_sequences():
    # 4 samples of 2 positions, 3 classes: B != T, so an all() over the wrong axis shows
    ref = one_hot([[1, 2], [1, 2], [0, 1], [2, 2]], 3)
    out = one_hot([[1, 2], [1, 0], [0, 1], [1, 1]], 3)
    found = KINDS["sequence"].figures(out, ref, settings("sequence"))
    assert found["position_agreement"] == pytest.approx(5 / 8)  # 2 + 1 + 2 + 0 positions agree
    assert found["exact_match"] == pytest.approx(2 / 4)  # samples 0 and 2
    # texts: "ab" vs "ab", "ab" vs "a", "a" vs "a", "b" vs "a": 0 + 1 + 0 + 1 edits over 2 + 2 + 1 + 1
    assert found["cer"] == pytest.approx(2 / 6) and found["cer_empty_references"] == 0


def test_sequence_without_ctc_decoding_reports_no_cer():
    ref = one_hot([[1, 2], [0, 1]], 3)
    found = KINDS["sequence"].figures(ref, ref, settings("sequence", decode="none"))
    assert sorted(found) == ["exact_match", "max_abs_error", "mean_abs_error", "position_agreement",
                             "relative_error"]


def test_sequence_per_sample_is_each_samples_share_of_changed_positions():
    ref = RNG.normal(size=(5, 6, 4)).astype(np.float32)  # [B, T, C], T != C
    out = ref + RNG.normal(scale=0.7, size=ref.shape).astype(np.float32)
    expected = [sum(int(np.argmax(out[b, t]) != np.argmax(ref[b, t])) for t in range(6)) / 6 for b in range(5)]
    found = KINDS["sequence"].per_sample(out, ref, {})  # the default class axis: the last
    assert found.tolist() == pytest.approx(expected) and 0 < max(expected) and min(expected) < 1
    # classes on axis 1 ([B, C, T]) read the same when the axis is declared
    moved = KINDS["sequence"].per_sample(out.transpose(0, 2, 1), ref.transpose(0, 2, 1), {"axis": 1})
    assert moved.tolist() == pytest.approx(expected)


# ---- segmentation --------------------------------------------------------------------------------------

def test_segmentation_per_sample_is_each_images_share_of_changed_pixels():
    ref = RNG.normal(size=(4, 3, 5, 6)).astype(np.float32)  # [B, C, H, W]: the default class axis 1
    out = ref + RNG.normal(scale=0.8, size=ref.shape).astype(np.float32)
    expected = [np.mean([[np.argmax(out[b, :, y, x]) != np.argmax(ref[b, :, y, x]) for x in range(6)]
                         for y in range(5)]) for b in range(4)]
    found = KINDS["segmentation"].per_sample(out, ref, {})
    assert found.tolist() == pytest.approx(expected) and 0 < min(expected) and max(expected) < 1
    nhwc = KINDS["segmentation"].per_sample(out.transpose(0, 2, 3, 1), ref.transpose(0, 2, 3, 1), {"axis": -1})
    assert nhwc.tolist() == pytest.approx(expected)


def test_mean_iou_worked_by_hand_over_the_classes_of_either_map():
    from edge_distill.kinds.segmentation import mean_iou

    a = np.array([[0, 0, 1], [1, 2, 2]])
    b = np.array([[0, 1, 1], [1, 1, 3]])
    # class 0: 1/2, class 1: 2/4, class 2: 0/2, class 3: 0/1
    assert mean_iou(a, b) == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)
