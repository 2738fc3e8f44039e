"""Mixed precision: which layers a precision should return to a higher one for every budget to hold.

The algorithm only (as NNCF splits its algorithms from their backends): a target that can leave
named layers in float (targets.MixedPrecisionTarget: `layers`, the `keep_float` option; for int4,
`keep_int8` too) supplies the layers, and the caller supplies `trial(raised) -> TargetResult`, one
build and evaluation with the named layers raised to a higher precision (`{"fc1": "int8"}`).

1. The precision as asked (nothing raised). If every budget holds, there is nothing to search.
2. Sensitivity: each quantized layer raised alone to the first step up (int8 for int4 where the
   target can, for that layer; float otherwise), one trial each; a layer's gain is how much closer
   that brings the checks to holding (`shortfall`, the relative distance of the broken checks from
   their limits: accuracy, slices, agreement, latency, size alike).
3. Step by step (int4: int8, then float), layers are raised in order of gain (the lighter first among
   equals) until every budget holds or the trials run out. Before the greedy walk of a step that is
   not the last, one trial raises every layer to it: if even that fails, the walk is skipped and the
   next step starts from there. A layer that would take the quantized share of the weights below the
   floor stays quantized (int8 is quantized: the floor binds float only).
Trials grow linearly with the layers: at most 2 + 3 x layers. `edge-distill sensitivity` runs step 2
alone, to float, with a second view: each layer quantized alone (every other layer in float).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .result import TargetResult

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


FLOAT = "float"


@dataclass
class LayerSensitivity:
    name: str
    op: str
    weights: int
    weight_share: float  # of the quantized weights
    shortfall_when_raised: float  # the checks' shortfall with only this layer raised (to `raised_to`)
    gain: float  # the full precision's shortfall minus that
    figures: dict = field(default_factory=dict)  # accuracy overall and per slice with this layer raised
    raised_to: str = FLOAT  # the first step this layer can take
    int8: bool = True  # whether it can be raised to int8 at all (targets.Layer.int8)


@dataclass
class Search:
    precision: str  # the base precision searched ("int4")
    floor: float  # min share of the weights that stays quantized
    max_trials: int
    steps: tuple[str, ...] = (FLOAT,)  # the precisions a layer may be raised to, in order ("int8", "float")
    baseline_shortfall: float = 0.0
    layers: list[LayerSensitivity] = field(default_factory=list)
    raised: dict[str, str] = field(default_factory=dict)  # the chosen layers -> their step
    quantized_share: float = 1.0  # of the weights the full precision quantizes, still quantized (any bits)
    base_share: float = 1.0  # of those weights, still at the base precision
    trials: int = 0
    seconds: float = 0.0
    stopped: str = ""  # "met at full precision" | "met" | "floor" | "trials" | "every layer tried" |
    # "sensitivity only" | "nothing float layers can mend"
    met: bool = False
    activation_error: dict | None = None  # how the layers' sqnr_db were measured (method, samples)

    @property
    def keep_float(self) -> list[str]:
        return [name for name, step in self.raised.items() if step == FLOAT]

    def to_dict(self) -> dict:
        return {"precision": self.precision, "met": self.met, "stopped": self.stopped, "steps": list(self.steps),
                "keep_float": self.keep_float, "raised": dict(self.raised),
                "quantized_share": round(self.quantized_share, 4), "base_share": round(self.base_share, 4),
                "floor": self.floor, "trials": self.trials,
                "max_trials": self.max_trials, "seconds": round(self.seconds, 2),
                "baseline_shortfall": round(self.baseline_shortfall, 6),
                **({"activation_error": self.activation_error} if self.activation_error else {}),
                "sensitivity": [{"layer": s.name, "op": s.op, "weights": s.weights,
                                 "weight_share": round(s.weight_share, 4), "gain": round(s.gain, 6),
                                 "raised_to": s.raised_to, "shortfall_when_raised": round(s.shortfall_when_raised, 6),
                                 **s.figures}
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


def sensitivity(trial: Callable[[dict], TargetResult], layers: list, state: Search, tried: dict, *,
                both_views: bool = False, progress: Callable[[str], None] = lambda message: None) -> None:
    """Each layer raised alone to its first step (and, with `both_views`, quantized alone: every other
    layer in float), one trial each, into `state.layers`; the trials into `tried` (keys: `_key`)."""
    total = sum(layer.weights for layer in layers) or 1
    names = [layer.name for layer in layers]
    planned = min(state.max_trials, 1 + len(layers) * (2 if both_views else 1))
    for layer in layers:
        if state.trials >= state.max_trials:
            state.stopped = "trials"  # the budget ended before every layer was measured
            break
        step = next(s for s in state.steps if s == FLOAT or layer.int8)
        progress(f"  sensitivity: {layer.name} in {step} ({state.trials + 1}/{planned})")
        raised = {layer.name: step}
        result = tried[_key(raised)] = trial(raised)
        state.trials += 1
        entry = LayerSensitivity(layer.name, layer.op, layer.weights, layer.weights / total, shortfall(result),
                                 state.baseline_shortfall - shortfall(result), figures(result), step, layer.int8)
        if both_views and state.trials < state.max_trials:
            progress(f"  sensitivity: {layer.name} quantized alone ({state.trials + 1}/{planned})")
            alone = trial({n: FLOAT for n in names if n != layer.name})
            state.trials += 1
            entry.figures.update({f"quantized alone: {k}": v for k, v in figures(alone).items()})
        state.layers.append(entry)


def _key(raised: dict[str, str]) -> tuple:
    return tuple(sorted(raised.items()))


def search(precision: str, trial: Callable[[dict], TargetResult], layers_of: Callable[[TargetResult], list],
           *, steps: tuple[str, ...] = (FLOAT,), floor: float = 0.5, max_trials: int = 32,
           sensitivity_only: bool = False,
           progress: Callable[[str], None] = lambda message: None) -> tuple[TargetResult, Search]:
    """The trial that meets every budget with the most weights quantized (else the closest one),
    and how the search went. `sensitivity_only`: both views of every layer, and no search."""
    start = time.perf_counter()
    state = Search(precision, floor, max_trials, (FLOAT,) if sensitivity_only else tuple(steps))
    full = trial({})
    state.trials, state.baseline_shortfall = 1, shortfall(full)
    if full.passed and not sensitivity_only:
        state.stopped, state.met = "met at full precision", True
        return full, _done(state, start)
    if not mendable(full) and not sensitivity_only:
        state.stopped = "nothing float layers can mend"  # only size, memory or speed budgets break
        return full, _done(state, start)
    layers = layers_of(full)
    tried: dict[tuple, TargetResult] = {(): full}
    sensitivity(trial, layers, state, tried, both_views=sensitivity_only, progress=progress)
    if sensitivity_only:
        state.stopped, state.met = "sensitivity only", full.passed
        return full, _done(state, start)
    ranked = sorted(state.layers, key=lambda s: (-s.gain, s.weights))
    _walk(ranked, state, tried, trial, progress)
    weights = {s.name: s.weights for s in state.layers}
    state.raised = dict(_best(tried, state, weights))
    total = sum(weights.values()) or 1
    state.quantized_share = 1 - sum(weights[n] for n in state.keep_float) / total
    state.base_share = 1 - sum(weights[n] for n in state.raised) / total
    return tried[_key(state.raised)], _done(state, start)


def _walk(ranked: list[LayerSensitivity], state: Search, tried: dict, trial: Callable, progress) -> None:
    """Step by step, raise layers in order of gain until a trial meets every budget (see the module's
    docstring); every trial lands in `tried`, the reason the walk ended in `state.stopped`."""
    total = sum(s.weights for s in ranked) or 1
    raised: dict[str, str] = {}

    def attempt(candidate: dict[str, str], what: str) -> bool | None:
        """Whether `candidate` meets every budget; None when the trials are spent."""
        if _key(candidate) not in tried:
            if state.trials >= state.max_trials:
                state.stopped = "trials"
                return None
            progress(f"  mixed precision: {what}")
            tried[_key(candidate)] = trial(dict(candidate))
            state.trials += 1
        return tried[_key(candidate)].passed

    for step in state.steps:
        met_here = any(result.passed for key, result in tried.items() if key and all(s == step for _, s in key))
        if step != state.steps[-1] and not met_here:  # can this step meet the budgets at all? If not, on to the next
            every = {**raised, **{s.name: step for s in ranked if s.name not in raised and s.int8}}
            outcome = attempt(every, f"every layer in {step}")
            if outcome is None:
                return
            if not outcome:
                raised = every
                continue
        for s in ranked:
            if raised.get(s.name) == step or (step != FLOAT and not s.int8):
                continue
            in_float = sum(x.weights for x in ranked if raised.get(x.name) == FLOAT)
            if step == FLOAT and (in_float + s.weights) / total > 1 - state.floor:
                state.stopped = "floor"  # this layer would take the quantized share under the floor: the next may not
                continue
            raised[s.name] = step
            outcome = attempt(raised, f"{sum(1 for v in raised.values() if v == step)} layer(s) in {step}")
            if outcome is None:
                return
            if outcome:
                state.stopped, state.met = "met", True
                return
    state.stopped = state.stopped or "every layer tried"


def _best(tried: dict, state: Search, weights: dict[str, int]) -> tuple:
    """Among the trials above the floor that meet every budget, the one with the most weights
    quantized, then the most at the base precision; else the one closest to meeting them."""
    total = sum(weights.values()) or 1

    def share(key, steps) -> float:
        return 1 - sum(weights.get(n, 0) for n, step in key if step in steps) / total

    allowed = [key for key in tried if share(key, {FLOAT}) >= state.floor]  # a sensitivity trial may be under it
    passing = [key for key in allowed if tried[key].passed]
    if passing:
        state.met = True
        return max(passing, key=lambda key: (share(key, {FLOAT}), share(key, set(state.steps)), -len(key)))
    state.met = False
    return min(allowed, key=lambda key: (shortfall(tried[key]), -share(key, {FLOAT}), -share(key, set(state.steps))))


def _done(state: Search, start: float) -> Search:
    state.seconds = time.perf_counter() - start
    return state
