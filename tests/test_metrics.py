"""Task metrics on small hand-made data, each figure worked out a second way (plain loops over the
samples, or by hand in the comment), not with the function under test. Fast: the mutation run of
toolkit/metrics.py (benchmarks/mutation.py) runs this file once per mutant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_distill import metrics

# 5 samples, 3 classes. Top-1 per row: outputs 0,1,2,1,0; float 0,1,2,2,0; teacher 0,1,1,1,2.
OUT = np.array([[5., 1, 0], [0, 4, 1], [1, 0, 3], [0, 2, 1], [3, 1, 2]])
FLOAT = np.array([[5., 1, 0], [0, 4, 1], [1, 0, 3], [0, 1, 2], [3.5, 1, 2]])
TEACHER = np.array([[9., 0, 0], [0, 9, 0], [0, 9, 0], [0, 9, 0], [0, 0, 9]])
LABELS = np.array([0, 1, 2, 2, 1])
WEIGHTS = np.array([1., 1, 1, 4, 2])


def test_accuracy_agreement_and_drop_against_a_loop():
    m = metrics.classification(OUT, labels=LABELS, weights=WEIGHTS, float_outputs=FLOAT, teacher_outputs=TEACHER)
    pred, fpred, tpred = [0, 1, 2, 1, 0], [0, 1, 2, 2, 0], [0, 1, 1, 1, 2]
    right = [p == y for p, y in zip(pred, LABELS)]  # T T T F F
    assert m.samples == 5
    assert m.accuracy == pytest.approx(3 / 5, abs=1e-6)
    # weighted: (1+1+1) of (1+1+1+4+2): the wrong rows weigh 6 of 9
    assert m.weighted_accuracy == pytest.approx(sum(w for w, r in zip(WEIGHTS, right) if r) / WEIGHTS.sum(), abs=1e-6)
    assert m.weighted_accuracy == pytest.approx(3 / 9, abs=1e-6)
    assert m.float_agreement == pytest.approx(4 / 5, abs=1e-6)
    assert m.teacher_agreement == pytest.approx(sum(p == t for p, t in zip(pred, tpred)) / 5, abs=1e-6)
    assert m.teacher_agreement == pytest.approx(3 / 5, abs=1e-6)
    # float student right on rows 0,1,2,3 (4/5), this one on 3/5: it dropped 0.2, a positive drop
    assert m.accuracy_drop == pytest.approx(sum(f == y for f, y in zip(fpred, LABELS)) / 5 - 3 / 5, abs=1e-6)
    assert m.accuracy_drop == pytest.approx(0.2, abs=1e-6)
    # largest |out - float|: row 3 differs by 1 in two cells, row 4 by 0.5
    assert m.max_abs_diff_vs_float == pytest.approx(1.0, abs=1e-6)


def test_figures_left_out_when_their_reference_is_missing():
    m = metrics.classification(OUT)
    assert (m.samples, m.accuracy, m.weighted_accuracy, m.float_agreement, m.teacher_agreement, m.accuracy_drop,
            m.max_abs_diff_vs_float) == (5, None, None, None, None, None, None)
    m = metrics.classification(OUT, labels=LABELS)
    assert (m.accuracy, m.weighted_accuracy) == (pytest.approx(0.6), None)
    m = metrics.classification(OUT, float_outputs=FLOAT)
    assert (m.float_agreement, m.accuracy_drop) == (pytest.approx(0.8), None)


def test_mask_keeps_only_its_samples():
    mask = np.array([False, False, True, True, True])
    m = metrics.classification(OUT, labels=LABELS, weights=WEIGHTS, float_outputs=FLOAT, teacher_outputs=TEACHER,
                               mask=mask)
    # rows 2,3,4: right T F F; weights 1,4,2; float right T T F; teacher 1,1,2 vs pred 2,1,0
    assert m.samples == 3
    assert m.accuracy == pytest.approx(1 / 3, abs=1e-6)
    assert m.weighted_accuracy == pytest.approx(1 / 7, abs=1e-6)
    assert m.float_agreement == pytest.approx(2 / 3, abs=1e-6)
    assert m.teacher_agreement == pytest.approx(1 / 3, abs=1e-6)
    assert m.accuracy_drop == pytest.approx(1 / 3, abs=1e-6)
    assert m.max_abs_diff_vs_float == pytest.approx(1.0, abs=1e-6)
    only_first = np.array([True, False, False, False, False])
    assert metrics.classification(OUT, float_outputs=FLOAT, mask=only_first).max_abs_diff_vs_float == 0.0


def test_class_axis_other_than_the_last():
    # channels first: (batch, classes, positions); top-1 per position along axis 1
    out = OUT[:, :, None].repeat(2, axis=2)
    labels = np.repeat(LABELS[:, None], 2, axis=1)
    assert metrics.classification(out, labels=labels, axis=1).accuracy == pytest.approx(0.6, abs=1e-6)


def _cos(a, b):
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


# 4 embeddings; nearest neighbour (by cosine, self excluded) worked out by hand below
EMB = np.array([[1., 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])      # neighbours 1,0,3,2
REF = np.array([[1., 0], [0, 1], [0.1, 0.9], [0.95, 0.05]])    # neighbours 3,2,1,0


def test_embedding_cosine_and_retrieval_against_a_loop():
    m = metrics.embedding(EMB, float_outputs=REF, teacher_outputs=EMB * 3)
    assert m.samples == 4
    assert m.float_cosine == pytest.approx(sum(_cos(a, b) for a, b in zip(EMB, REF)) / 4, abs=1e-6)
    assert m.float_retrieval_agreement == 0.0  # no sample keeps its neighbour
    assert m.teacher_cosine == pytest.approx(1.0, abs=1e-6)  # the same directions, scaled
    assert m.teacher_retrieval_agreement == 1.0
    assert m.max_abs_diff_vs_float == pytest.approx(0.9, abs=1e-6)  # row 1: |0.9 - 0| and |0.1 - 1|


def test_embedding_retrieval_counts_the_matching_neighbours():
    ref = np.array([[1., 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 1, 0]])  # neighbours 1,0,0,1: rows 0,1 agree
    m = metrics.embedding(EMB, teacher_outputs=ref)
    mine = [1, 0, 3, 2]
    theirs = [max((j for j in range(4) if j != i), key=lambda j: _cos(ref[i], ref[j])) for i in range(4)]
    assert m.teacher_retrieval_agreement == pytest.approx(sum(a == b for a, b in zip(mine, theirs)) / 4)
    assert m.teacher_retrieval_agreement == pytest.approx(0.5)
    assert (m.float_cosine, m.float_retrieval_agreement, m.max_abs_diff_vs_float) == (None, None, None)


def test_embedding_of_a_model_trained_apart_has_no_cosine():
    m = metrics.embedding(EMB, teacher_outputs=EMB, same_space_as_teacher=False)
    assert (m.teacher_cosine, m.teacher_retrieval_agreement) == (None, 1.0)
    m = metrics.embedding(EMB, teacher_outputs=np.hstack([EMB, EMB]))  # another width: no cosine either
    assert (m.teacher_cosine, m.teacher_retrieval_agreement) == (None, 1.0)


def test_embedding_mask_and_zero_vectors():
    mask = np.array([True, True, False, False])
    m = metrics.embedding(EMB, float_outputs=REF, mask=mask)
    assert m.samples == 2
    assert m.float_cosine == pytest.approx((_cos(EMB[0], REF[0]) + _cos(EMB[1], REF[1])) / 2, abs=1e-6)
    assert m.max_abs_diff_vs_float == pytest.approx(0.9, abs=1e-6)  # row 1: |0.1 - 1|
    zero = metrics.embedding(np.zeros((2, 2)), float_outputs=np.zeros((2, 2)))
    assert (zero.float_cosine, zero.max_abs_diff_vs_float) == (0.0, 0.0)  # no division by zero


def test_figures_leave_out_the_sample_count():
    m = metrics.Metrics(samples=3, accuracy=0.5)
    assert m.figures()["accuracy"] == 0.5 and "samples" not in m.figures() and len(m.figures()) == 10


def test_rounding_to_six_places():
    m = metrics.classification(np.eye(3)[[0, 1, 2]], labels=np.array([0, 1, 1]))
    assert m.accuracy == 0.666667


def test_why_not_task_metric_names_the_output_and_its_budget_keys():
    assert metrics.why_not_task_metric("logits", {"kind": "classification"}, "classification") == ""
    assert metrics.why_not_task_metric("e", {"kind": "dense"}, "embedding") == ""
    why = metrics.why_not_task_metric("boxes", {"kind": "detection"}, "classification")
    assert why.startswith("the first output 'boxes' is a detection output, not what the classification metric")
    assert "[budgets.outputs.boxes]" in why


def test_parity_between_two_runs():
    p = metrics.parity(OUT, FLOAT)
    assert p == {"top1_agreement": 0.8, "max_abs_diff": 1.0, "samples": 5}
    with pytest.warns(RuntimeWarning):  # numpy's mean of nothing
        empty = metrics.parity(np.zeros((0, 3)), np.zeros((0, 3)))
    assert (empty["max_abs_diff"], empty["samples"]) == (0.0, 0)


def test_disagreements_in_both_directions_of_the_class_index():
    # top-1: outputs 2,0; float 0,2; teacher 0,2; labels 1,1: nothing agrees with anything, nothing is right
    out, flt, labels = np.array([[0., 0, 1], [1, 0, 0]]), np.array([[1., 0, 0], [0, 0, 1]]), np.array([1, 1])
    m = metrics.classification(out, labels=labels, float_outputs=flt, teacher_outputs=flt)
    assert (m.accuracy, m.float_agreement, m.teacher_agreement, m.accuracy_drop) == (0.0, 0.0, 0.0, 0.0)
    assert metrics.parity(out, flt)["top1_agreement"] == 0.0


def test_arguments_after_the_outputs_are_keyword_only():
    # labels and weights are both 1-D arrays: a positional call could swap them unnoticed
    with pytest.raises(TypeError):
        metrics.classification(OUT, LABELS)
    with pytest.raises(TypeError):
        metrics.embedding(EMB, REF)


def test_classes_on_the_last_axis_by_default():
    # (batch 2, positions 3, classes 2): top-1 per position over the last axis
    out = np.array([[[1., 0], [0, 1], [1, 0]], [[0, 1], [0, 1], [1, 0]]])
    labels = np.array([[0, 1, 0], [1, 1, 1]])  # one wrong: sample 1, position 2
    assert metrics.classification(out, labels=labels).accuracy == pytest.approx(5 / 6, abs=1e-6)
    ref = out.copy()
    ref[0, 0] = [0, 1]  # one of the six positions changes its top-1
    assert metrics.parity(out, ref)["top1_agreement"] == pytest.approx(5 / 6, abs=1e-6)


def test_embeddings_of_more_than_one_axis_are_flattened():
    emb3 = EMB.reshape(4, 1, 2)
    m = metrics.embedding(emb3, float_outputs=REF.reshape(4, 2, 1))
    assert m.float_cosine == pytest.approx(sum(_cos(a, b) for a, b in zip(EMB, REF)) / 4, abs=1e-6)
    assert m.float_retrieval_agreement == 0.0


def test_a_narrower_teacher_has_no_cosine():
    m = metrics.embedding(EMB, teacher_outputs=EMB[:, :1] + 1)
    assert m.teacher_cosine is None


def test_a_sample_is_never_its_own_neighbour_even_when_all_others_point_away():
    # row 0's only neighbours point away from it (cosine -0.995 each); the reference's row 0 is near row 1
    emb = np.array([[1., 0], [-1, 0.1], [-1, -0.1]])     # neighbours 1 (first of a tie), 2, 1
    teacher = np.array([[1., 0], [0.5, 1], [0, 1]])      # neighbours 1, 2, 1
    assert metrics.embedding(emb, teacher_outputs=teacher, same_space_as_teacher=False) \
        .teacher_retrieval_agreement == 1.0
