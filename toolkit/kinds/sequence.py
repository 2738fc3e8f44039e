"""Per-position classes ([B, T, C], a text recognizer, a tagger): top-1 agreement per position, whole
sequences that match exactly, and the character error rate of the greedy CTC decoding (blank at index
`blank`, repeats collapsed: PaddleOCR's CTCLabelDecode) with the float student's text as the reference,
through jiwer (a corpus-level rate: edits over reference length)."""

from __future__ import annotations

import numpy as np

from .base import ERROR_KEYS, OutputKind, class_last, error_figures, rounded


def ctc_greedy(best: np.ndarray, blank: int) -> list[str]:
    """Each sample's best path, repeats collapsed and blanks dropped, as a string (one character per
    class index, from Unicode's private-use area, so any vocabulary size spells)."""
    texts = []
    for row in best:
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        texts.append("".join(chr(0xF0000 + int(c)) for c in row[keep & (row != blank)]))
    return texts


def character_error_rate(out_best: np.ndarray, ref_best: np.ndarray, blank: int) -> tuple[float | None, int]:
    """(CER over the samples whose float text is not empty, how many were left out as empty)."""
    import jiwer

    hyp, ref = ctc_greedy(out_best, blank), ctc_greedy(ref_best, blank)
    pairs = [(r, h) for r, h in zip(ref, hyp) if r]
    if not pairs:
        return None, len(ref)
    return rounded(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs])), len(ref) - len(pairs)


def figures(out: np.ndarray, ref: np.ndarray, settings: dict) -> dict:
    out_best = class_last(out, settings["axis"]).argmax(-1).reshape(len(out), -1)
    ref_best = class_last(ref, settings["axis"]).argmax(-1).reshape(len(ref), -1)
    same = out_best == ref_best
    found = {"position_agreement": rounded(same.mean()), "exact_match": rounded(same.all(axis=1).mean()),
             **error_figures(out, ref)}
    if settings["decode"] == "ctc":
        found["cer"], found["cer_empty_references"] = character_error_rate(out_best, ref_best, settings["blank"])
    return found


def per_sample(out: np.ndarray, ref: np.ndarray, settings: dict) -> np.ndarray:
    """The share of the sample's positions whose top-1 differs from the reference's."""
    axis = settings.get("axis", -1)
    a, b = (class_last(x, axis).argmax(-1).reshape(len(x), -1) for x in (out, ref))
    return (a != b).mean(axis=1)


KIND = OutputKind("sequence", "per-position classes [B, T, C]: position agreement, exact match, CER of the "
                  "CTC decoding (decode = \"ctc\" | \"none\", blank = 0, axis = -1)",
                  {"min_position_agreement": ("position_agreement", ">=", ""), "min_exact_match": ("exact_match", ">=", ""),
                   "max_cer": ("cer", "<=", ""), **ERROR_KEYS}, figures, {"axis": -1, "decode": "ctc", "blank": 0},
                  per_sample, choices={"decode": ("ctc", "none")})
