"""A target option set to "auto" (ORT's int8_recipe): every candidate recipe the target declares
(`recipe_candidates`) built and evaluated like any artifact, the best by the budgets kept. Best is:
every budget holds, then the smallest shortfall, then the task metric, then the smallest file, then
the earlier candidate. Each candidate's figures and seconds are recorded in the chosen result."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable

from .errors import BadInput, CannotMeasure
from .kinds import get_kind
from .mixed import shortfall
from .result import TargetResult

OPTION = "int8_recipe"


def quality(result: TargetResult) -> tuple[str, float, bool] | None:
    """The task metric (figure, value, whether higher is better): accuracy against labels, else agreement
    with the float model, else the first output's first figure its kind budgets from below, else one
    it budgets from above (an error)."""
    for figure in ("accuracy", "float_agreement", "float_cosine"):
        value = getattr(result.metrics, figure)
        if value is not None:
            return figure, float(value), True
    first = next(iter(result.outputs.values()), None)
    if not first or "kind" not in first:
        return None
    keys = get_kind(first["kind"]).budget_keys.values()
    for figure, comparison, _ in sorted(keys, key=lambda k: k[1] != ">="):
        if first.get(figure) is not None:
            return figure, float(first[figure]), comparison == ">="
    return None


def rank(result: TargetResult) -> tuple:
    """Sort key, smaller is better. Agreement with the float model settles a tie on accuracy."""
    measured = quality(result)
    better = (measured[1] if measured[2] else -measured[1]) if measured else 0.0
    return (not result.passed, round(shortfall(result), 9), -better, -(result.metrics.float_agreement or 0.0),
            result.size_bytes)


def build_best_recipe(planned, precision: str, candidates: tuple[str, ...], out: Path, work: Path,
                      build: Callable, progress) -> TargetResult:
    """`build(planned, precision, out, folder, work)` is the pipeline's build_and_measure for one
    target entry; it runs once per candidate, with int8_recipe set to it."""
    tc = planned.config
    attempts = work / f"{tc.name}-{precision}-recipes"
    attempts.mkdir()
    progress(f"{tc.name} {precision}: {OPTION} = 'auto', {len(candidates)} candidate recipes")
    tried: list[tuple[int, str, TargetResult]] = []
    rows: list[dict] = []  # each candidate's figures, or its error, and its seconds
    for k, name in enumerate(candidates):
        (attempts / f"work-{k}").mkdir()
        progress(f"  recipe {k + 1} of {len(candidates)}: {name}")
        options = {**tc.options, OPTION: name}
        one = dataclasses.replace(planned, config=dataclasses.replace(tc, options=options))
        start = time.perf_counter()
        try:
            result = build(one, precision, attempts, f"recipe-{k}", attempts / f"work-{k}")
        except (BadInput, CannotMeasure) as exc:  # a recipe this model cannot take: said, the others go on
            rows.append({"recipe": name, "error": str(exc), "seconds": round(time.perf_counter() - start, 2)})
            continue
        rows.append(_row(name, result, time.perf_counter() - start))
        tried.append((k, name, result))
        progress(f"  {name}: " + _summary(rows[-1]))
    if not tried:
        raise BadInput(f"{OPTION} = 'auto': no candidate recipe built on this model: "
                       + "; ".join(f"{r['recipe']}: {r['error']}" for r in rows))
    k, chosen, best = min(tried, key=lambda t: (rank(t[2]), t[0]))
    progress(f"  chosen: {chosen}")
    best = _as_chosen(best, attempts / f"recipe-{k}", out, tc.name)
    best.details["int8_recipes"] = {"option": OPTION, "chosen": chosen, "candidates": rows,
                                    "seconds": round(sum(r["seconds"] for r in rows), 2),
                                    "rank": "every budget holds, then the smallest shortfall, then the task metric (on a tie "
                                            "of accuracy, agreement with the float model), then the smallest "
                                            "file, then the earlier candidate",
                                    "rebuild": f"options = {{ {OPTION} = \"{chosen}\" }}"}
    return best


def _row(name: str, result: TargetResult, seconds: float) -> dict:
    measured = quality(result)
    return {"recipe": name, "passed": result.passed, "shortfall": round(shortfall(result), 6),
            "float_agreement": result.metrics.float_agreement,
            "metric": measured[0] if measured else None,
            "value": measured[1] if measured else None, "size_bytes": result.size_bytes,
            "broken": [c.name.rpartition("/")[2] for c in result.checks if c.passed is False],
            "seconds": round(seconds, 2)}


def _summary(row: dict) -> str:
    figure = f"{row['metric']} {row['value']:.4g}, " if row["metric"] else ""
    return (f"{figure}{row['size_bytes'] / 1e6:.2f} MB, "
            + ("every budget holds" if row["passed"] else "breaks " + ", ".join(row["broken"]))
            + f" ({row['seconds']:.1f} s)")


def _as_chosen(best: TargetResult, folder: Path, out: Path, name: str) -> TargetResult:
    """The chosen candidate's files moved where a plain build puts them (out/<target>/)."""
    shutil.copytree(folder, out / name, dirs_exist_ok=True, symlinks=True)
    best.artifact = str(Path(name) / Path(best.artifact).name)
    best.files = [str(Path(name) / Path(f).name) for f in best.files]
    return best
