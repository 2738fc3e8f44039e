"""Dense outputs (maps, images, regressions): cosine per sample and PSNR against values worked out by
hand. Fast: the mutation run of toolkit/kinds/dense.py runs this file once per mutant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_distill.kinds.dense import IDENTICAL_DB, cosine, figures, psnr_db


def test_cosine_per_sample_then_averaged():
    # sample 0: (1,0) vs (1,1): 1/sqrt(2); sample 1: (0,2) vs (0,-3): -1; sample 2 has 2x2 values, flattened
    out = np.array([[1., 0, 0, 0], [0, 2, 0, 0], [1, 2, 3, 4]])
    ref = np.array([[1., 1, 0, 0], [0, -3, 0, 0], [2, 4, 6, 8]])
    assert cosine(out, ref) == pytest.approx((1 / math.sqrt(2) - 1 + 1) / 3, abs=1e-6)
    assert cosine(out.reshape(3, 2, 2), ref.reshape(3, 2, 2)) == pytest.approx((1 / math.sqrt(2)) / 3, abs=1e-6)
    assert cosine(np.zeros((2, 3)), np.ones((2, 3))) == 0.0  # a zero vector: no division by zero


def test_psnr_by_hand():
    out, ref = np.array([[0., 0], [0, 0]]), np.array([[1., 1], [1, 1]])
    # mse 1, range 10: 10 log10(100 / 1) = 20 dB
    assert psnr_db(out, ref, 10.0) == pytest.approx(20.0, abs=1e-6)
    assert psnr_db(out, ref * 0.5, 2.0) == pytest.approx(10 * math.log10(4 / 0.25), abs=1e-6)  # 12.04 dB
    assert psnr_db(ref, ref, 10.0) == IDENTICAL_DB == 200.0
    assert psnr_db(ref, ref, 0.0) == 200.0  # identical, whatever the range
    assert psnr_db(out, ref, 0.0) == 0.0  # a constant reference: no range to speak of
    assert psnr_db(out, ref * 1e-12, 1e6) == 200.0  # capped at the identical value


def test_figures_with_the_float_outputs_range_and_a_stated_one():
    ref = np.array([[0., 4], [2, 2]])  # range 4
    out = ref + np.array([[1., 0], [0, -1]])  # mse 0.5
    found = figures(out, ref, {"data_range": 0.0})
    assert found["psnr_data_range"] == 4.0
    assert found["psnr_db"] == pytest.approx(10 * math.log10(16 / 0.5), abs=1e-5)
    assert found["cosine"] == pytest.approx((_cos([1, 4], [0, 4]) + _cos([2, 1], [2, 2])) / 2, abs=1e-6)
    assert "cosine.why" not in found
    stated = figures(out, ref, {"data_range": 8.0})
    assert (stated["psnr_data_range"], stated["psnr_db"]) == (8.0, pytest.approx(10 * math.log10(64 / 0.5), abs=1e-5))


def test_one_value_per_sample_has_no_cosine():
    found = figures(np.array([[1.], [2.]]), np.array([[1.5], [2.]]), {"data_range": 0.0})
    assert "cosine" not in found
    assert found["cosine.why"] == "one value per sample: its cosine says only its sign; budget its error instead"
    assert "cosine" in figures(np.ones((2, 2)), np.ones((2, 2)), {})


def _cos(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))
