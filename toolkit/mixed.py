"""Mixed precision: which layers a precision should leave in float for every budget to hold.

The algorithm only (as NNCF splits its algorithms from their backends): a target that can leave
named layers in float (targets.MixedPrecisionTarget: `layers`, the `keep_float` option) supplies the
layers, and the caller supplies `trial(keep_float) -> TargetResult`, one build and evaluation.

1. The precision as asked (nothing in float). If every budget holds, there is nothing to search.
2. Sensitivity: each quantized layer left in float alone, one trial each; a layer's gain is how much
   closer that brings the checks to holding (`shortfall`, the relative distance of the broken
   checks from their limits: accuracy, slices, agreement, latency, size alike).
3. Layers go back to float in order of gain (the lighter first among equals) until every budget
   holds or the trials run out; a layer that would take the quantized share of the weights below
   the floor is passed over.
Trials grow linearly with the layers: at most 1 + 2 x layers. `edge-distill sensitivity` runs step 2
alone, with a second view: each layer quantized alone (every other layer in float).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .result import TargetResult

AUTO = "-auto"


def base_precision(name: str) -> str:
    """"int4-auto" -> "int4"; a plain precision is its own base."""
    return name.removesuffix(AUTO)


def shortfall(result: TargetResult) -> float:
    """How far the broken checks are from their limits, each relative to its limit; 0 when all hold."""
    total = 0.0
    for check in result.checks:
        if check.passed is not False or check.value is None:
            continue
        scale = max(abs(check.limit), 1e-9)
        gap = check.limit - check.value if check.comparison in (">=", ">") else check.value - check.limit
        total += max(gap, 0.0) / scale + 1e-6  # a failure that rounds to nothing still counts
    return total


# What leaving layers in float cannot mend: it makes an artifact larger and (usually) slower.
UNMENDABLE = ("size_mb", "peak_memory_mb", "speedup_vs_float", "quantized_fraction", "latency")


def mendable(result: TargetResult) -> bool:
    """Whether a broken check is one float layers can move (accuracy, agreement, slices, outputs)."""
    return any(c.passed is False and not c.metric.startswith(UNMENDABLE) for c in result.checks)


@dataclass
class LayerSensitivity:
    name: str
    op: str
    weights: int
    weight_share: float  # of the quantized weights
    shortfall_when_float: float  # the checks' shortfall with only this layer left in float
    gain: float  # the full precision's shortfall minus that
    figures: dict = field(default_factory=dict)  # accuracy overall and per slice with this layer in float


@dataclass
class Search:
    precision: str  # the base precision searched ("int4")
    floor: float  # min share of the weights that stays quantized
    max_trials: int
    baseline_shortfall: float = 0.0
    layers: list[LayerSensitivity] = field(default_factory=list)
    keep_float: list[str] = field(default_factory=list)  # the chosen layers
    quantized_share: float = 1.0  # of the weights the full precision quantizes, still quantized
    trials: int = 0
    seconds: float = 0.0
    stopped: str = ""  # "met at full precision" | "met" | "floor" | "trials" | "every layer tried" |
    # "sensitivity only" | "nothing float layers can mend"
    met: bool = False

    def to_dict(self) -> dict:
        return {"precision": self.precision, "met": self.met, "stopped": self.stopped, "keep_float": self.keep_float,
                "quantized_share": round(self.quantized_share, 4), "floor": self.floor, "trials": self.trials,
                "max_trials": self.max_trials, "seconds": round(self.seconds, 2),
                "baseline_shortfall": round(self.baseline_shortfall, 6),
                "sensitivity": [{"layer": s.name, "op": s.op, "weights": s.weights,
                                 "weight_share": round(s.weight_share, 4), "gain": round(s.gain, 6),
                                 "shortfall_when_float": round(s.shortfall_when_float, 6), **s.figures}
                                for s in self.layers]}


SENSITIVITY_FIGURES = ("accuracy", "weighted_accuracy", "float_agreement", "teacher_agreement", "float_cosine",
                       "teacher_cosine", "float_retrieval_agreement", "teacher_retrieval_agreement")
PROPORTIONS = {"accuracy", "float_agreement", "teacher_agreement", "float_retrieval_agreement",
               "teacher_retrieval_agreement"}  # shares of samples: they carry a binomial standard error


def figures(result: TargetResult) -> dict:
    """The task's figures overall ("accuracy") and per slice ("rare_topic.teacher_retrieval_agreement"),
    each share of samples with its binomial standard error (how much it moves by chance on this many
    samples: a gain smaller than it is noise)."""
    out = {}
    for name, m in [(None, result.metrics), *result.slices.items()]:
        for figure in SENSITIVITY_FIGURES:
            value = getattr(m, figure)
            if value is None or not m.samples:
                continue
            key = f"{name}.{figure}" if name else figure
            out[key] = value
            if figure in PROPORTIONS:
                out[f"{key}_se"] = round((value * (1 - value) / m.samples) ** 0.5, 6)
    return out


def sensitivity(trial: Callable[[list[str]], TargetResult], layers: list, state: Search, tried: dict, *,
                both_views: bool = False, progress: Callable[[str], None] = lambda message: None) -> None:
    """Each layer left in float alone (and, with `both_views`, quantized alone: every other layer in
    float), one trial each, into `state.layers`; the trials into `tried` (keys: sorted float layers)."""
    total = sum(layer.weights for layer in layers) or 1
    names = [layer.name for layer in layers]
    planned = min(state.max_trials, 1 + len(layers) * (2 if both_views else 1))
    for layer in layers:
        if state.trials >= state.max_trials:
            break
        progress(f"  sensitivity: {layer.name} in float ({state.trials + 1}/{planned})")
        result = tried[(layer.name,)] = trial([layer.name])
        state.trials += 1
        entry = LayerSensitivity(layer.name, layer.op, layer.weights, layer.weights / total, shortfall(result),
                                 state.baseline_shortfall - shortfall(result), figures(result))
        if both_views and state.trials < state.max_trials:
            progress(f"  sensitivity: {layer.name} quantized alone ({state.trials + 1}/{planned})")
            alone = trial([n for n in names if n != layer.name])
            state.trials += 1
            entry.figures.update({f"quantized alone: {k}": v for k, v in figures(alone).items()})
        state.layers.append(entry)


def search(precision: str, trial: Callable[[list[str]], TargetResult], layers_of: Callable[[TargetResult], list],
           *, floor: float = 0.5, max_trials: int = 32, sensitivity_only: bool = False,
           progress: Callable[[str], None] = lambda message: None) -> tuple[TargetResult, Search]:
    """The trial that meets every budget with the most weights quantized (else the closest one),
    and how the search went. `sensitivity_only`: both views of every layer, and no search."""
    start, state = time.perf_counter(), Search(precision, floor, max_trials)
    full = trial([])
    state.trials, state.baseline_shortfall = 1, shortfall(full)
    if full.passed and not sensitivity_only:
        state.stopped, state.met = "met at full precision", True
        return full, _done(state, start)
    if not mendable(full) and not sensitivity_only:
        state.stopped = "nothing float layers can mend"  # only size, memory or speed budgets break
        return full, _done(state, start)
    layers = layers_of(full)
    total = sum(layer.weights for layer in layers) or 1
    tried: dict[tuple, TargetResult] = {(): full}
    sensitivity(trial, layers, state, tried, both_views=sensitivity_only, progress=progress)
    if sensitivity_only:
        state.stopped, state.met = "sensitivity only", full.passed
        return full, _done(state, start)
    ranked = sorted(state.layers, key=lambda s: (-s.gain, s.weights))
    keep: list[str] = []
    for s in ranked:
        if (sum(x.weights for x in ranked if x.name in keep) + s.weights) / total > 1 - floor:
            state.stopped = "floor"  # this layer would take the quantized share under the floor: the next may not
            continue
        keep.append(s.name)
        key = tuple(sorted(keep))
        if key not in tried:
            if state.trials >= max_trials:
                state.stopped = "trials"
                break
            progress(f"  mixed precision: {len(keep)} layer(s) in float")
            tried[key] = trial(list(keep))
            state.trials += 1
        if tried[key].passed:
            state.stopped, state.met = "met", True
            break
    else:
        state.stopped = state.stopped or "every layer tried"
    best_key = _best(tried, state, total)
    state.keep_float = list(best_key)
    state.quantized_share = 1 - sum(s.weights for s in state.layers if s.name in best_key) / total
    return tried[best_key], _done(state, start)


def _best(tried: dict, state: Search, total: int) -> tuple:
    """Among the trials above the floor that meet every budget, the one with the most weights
    quantized; else the one closest to meeting them."""
    weights = {s.name: s.weights for s in state.layers}
    share = lambda key: 1 - sum(weights.get(n, 0) for n in key) / total  # noqa: E731
    allowed = [key for key in tried if share(key) >= state.floor]  # a sensitivity trial may be under the floor
    passing = [key for key in allowed if tried[key].passed]
    if passing:
        state.met = True
        return max(passing, key=lambda key: (share(key), -len(key)))
    state.met = False
    return min(allowed, key=lambda key: (shortfall(tried[key]), -share(key)))


def _done(state: Search, start: float) -> Search:
    state.seconds = time.perf_counter() - start
    return state
