"""Maps, images and regressions: the error of the values, their cosine per sample, and PSNR with the
float student's range over the whole evaluation set as the data range (never a range per batch); a
stated `data_range` overrides it. Identical outputs report 200 dB (PSNR is infinite there, and JSON
has no infinity)."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, error_figures, per_sample_abs_error, rounded

IDENTICAL_DB = 200.0


def cosine(out: np.ndarray, ref: np.ndarray) -> float:
    a, b = (np.asarray(x, np.float64).reshape(len(x), -1) for x in (out, ref))
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return rounded((np.sum(a * b, axis=1) / norms).mean())


def psnr_db(out: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((np.asarray(out, np.float64) - np.asarray(ref, np.float64)) ** 2))
    if mse == 0 or data_range <= 0:
        return IDENTICAL_DB if mse == 0 else 0.0
    return rounded(min(IDENTICAL_DB, 10 * np.log10(data_range ** 2 / mse)))


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    data_range = settings.get("data_range") or float(np.max(ref) - np.min(ref))
    found = {**error_figures(out, ref), "psnr_db": psnr_db(out, ref, data_range), "psnr_data_range": rounded(data_range)}
    if np.prod(np.shape(ref)[1:], dtype=int) > 1:
        found["cosine"] = cosine(out, ref)
    else:  # the cosine of one value per sample is its sign, nothing more
        found["cosine.why"] = "one value per sample: its cosine says only its sign; budget its error instead"
    return found


KIND = OutputKind("dense", "maps, images, regressions: error, cosine and PSNR (data_range: 0, the default, takes "
                  "the float output's range over the evaluation set)",
                  {**ERROR_KEYS, "min_cosine": ("cosine", ">=", ""), "min_psnr_db": ("psnr_db", ">=", "dB")}, figures,
                  {"data_range": 0.0}, per_sample_abs_error)
