"""calibration/selection.py on worked examples: how many samples each stratum gets, worked out by hand
from the proportional rule (at least one each, largest remainders first), whatever the seed picks
inside a stratum (issue 31)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_distill.calibration import select_indices, select_samples
from edge_distill.calibration.dataset import Dataset


def data_of(labels=None, **slices) -> Dataset:
    n = len(labels) if labels is not None else len(next(iter(slices.values())))
    return Dataset(source="d.npz", inputs={"x": np.arange(n, dtype=np.float32)[:, None]},
                   labels=None if labels is None else np.array(labels), slices={k: np.array(v) for k, v in slices.items()})


def per_label(sizes: list[int], count: int, seed: int = 0) -> list[int]:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    picked = select_indices(data_of(labels), count, seed)
    assert len(picked) == count and len(set(picked.tolist())) == count and picked.tolist() == sorted(picked.tolist())
    return [int((labels[picked] == c).sum()) for c in range(len(sizes))]


@pytest.mark.parametrize("sizes, count, expected", [
    # quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6); the largest remainder, .5, gets the 7th
    ([5, 3, 2], 7, [4, 2, 1]),
    # quotas 3, 1.5, .5 -> 3, 1, 0, and the rare class is raised to one: 5 exactly
    ([6, 3, 1], 5, [3, 1, 1]),
    # quotas .9, 3.6, 4.5 -> 1 (raised), 3, 4 (8); the largest remainder's class holds 1 sample, all taken,
    # so the next largest (.6) gets the 9th
    ([1, 4, 5], 9, [1, 4, 4]),
    # quotas .3, .3, .3, 2.1 -> raised to 1, 1, 1, 2 (5) for 3: the largest share gives way first, then
    # the first of equals
    ([1, 1, 1, 7], 3, [0, 1, 1, 1]),
])
def test_each_class_gets_its_share_worked_out_by_hand(sizes, count, expected):
    for seed in (0, 1, 2):
        assert per_label(sizes, count, seed) == expected


def test_asking_for_all_or_more_returns_every_sample_in_order():
    data = data_of([0, 1, 1, 0, 2])
    assert select_indices(data, 5).tolist() == [0, 1, 2, 3, 4]
    assert select_indices(data, 9).tolist() == [0, 1, 2, 3, 4]
    assert select_samples(data, 5) is data and len(select_samples(data, 4)) == 4


def test_the_default_seed_is_0_and_another_seed_picks_others():
    data = data_of(None, a=[True] * 10 + [False] * 30)
    assert select_indices(data, 8).tolist() == select_indices(data, 8, seed=0).tolist()
    picks = {tuple(select_indices(data, 8, seed=s).tolist()) for s in range(5)}
    assert len(picks) > 1


def test_without_labels_each_slice_pattern_is_a_stratum():
    # slices a (20 samples) and b (10, 5 of them also in a): strata a only 15, a and b 5, b only 5, neither 15
    a = np.array([True] * 20 + [False] * 20)
    b = np.array([False] * 15 + [True] * 10 + [False] * 15)
    picked = select_indices(data_of(None, a=a, b=b), 8)
    got = [int((a[picked] & ~b[picked]).sum()), int((a[picked] & b[picked]).sum()),
           int((~a[picked] & b[picked]).sum()), int((~a[picked] & ~b[picked]).sum())]
    assert got == [3, 1, 1, 3]  # quotas 3, 1, 1, 3 of 8 (40 samples)


def test_labels_alone_decide_the_strata_unless_slices_are_asked_for_too():
    # label 0: 10 samples, label 1: 10; a slice inside label 0 holds 2 of them
    labels = np.repeat([0, 1], 10)
    rare = np.zeros(20, bool)
    rare[[0, 1]] = True
    data = data_of(labels, rare=rare)
    by_label = [select_indices(data, 4, seed=s) for s in range(6)]
    assert all([(labels[p] == 0).sum(), (labels[p] == 1).sum()] == [2, 2] for p in by_label)
    # labels and slice together: strata (0, rare) 2, (0, not rare) 8, (1, not rare) 10 -> quotas .4, 1.6, 2,
    # raised and rounded to 1, 1, 2: the rare slice always keeps a sample
    for seed in range(6):
        p = select_indices(data, 4, seed=seed, by_label_and_slice=True)
        assert [int((labels[p] == 0).sum()), int(rare[p].sum()), int((labels[p] == 1).sum())] == [2, 1, 2]


def test_label_and_slice_codes_do_not_collide_across_labels():
    # label 1 with no slice must not share a stratum with label 0 in slice s (code 1 << 0 = 1): the label
    # is shifted past the slice bits. Strata: (0, s) 4, (0, -) 4, (1, -) 4, (1, s) 4 of 16; 4 asked: one each
    labels = np.repeat([0, 1], 8)
    s = np.array(([True] * 4 + [False] * 4) * 2)
    for seed in range(4):
        p = select_indices(data_of(labels, s=s), 4, seed=seed, by_label_and_slice=True)
        got = [int(((labels[p] == la) & (s[p] == sl)).sum()) for la in (0, 1) for sl in (True, False)]
        assert got == [1, 1, 1, 1]


def test_three_labels_and_two_slices_are_twelve_strata_apart():
    # labels 0..2, slices a and b: each (label, a, b) holds 2 samples, 24 in all; 12 asked: one per stratum,
    # which only holds when no two (label, slice pattern) pairs share a stratum code
    labels = np.repeat([0, 1, 2], 8)
    a = np.tile([True, True, False, False], 6)
    b = np.tile([True, False, True, False], 6)
    for seed in range(3):
        p = select_indices(data_of(labels, a=a, b=b), 12, seed=seed, by_label_and_slice=True)
        got = sorted((int(labels[i]), bool(a[i]), bool(b[i])) for i in p)
        assert got == sorted((la, sa, sb) for la in (0, 1, 2) for sa in (True, False) for sb in (True, False))


def test_three_labels_and_one_slice_are_six_strata_apart():
    labels = np.repeat([0, 1, 2], 4)  # with a slice of one bit, label 2 without it must not meet label 0 in it
    s = np.tile([True, True, False, False], 3)
    for seed in range(3):
        p = select_indices(data_of(labels, s=s), 6, seed=seed, by_label_and_slice=True)
        assert sorted((int(labels[i]), bool(s[i])) for i in p) == sorted((la, x) for la in (0, 1, 2) for x in (True, False))
