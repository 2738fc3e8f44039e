"""A configured "<precision>-auto" (int8-auto, int4-auto): the mixed-precision search of mixed.py
run on one target, each trial a real build and evaluation; the chosen artifact lands in
<target>/<precision>-auto/ with the recipe that rebuilds it (recipe = ... in [[targets]]). A layer
is raised through the target's options: keep_float, and for int4 keep_int8 where the target has it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable, cast

from edge_distill.calibration import select_indices, select_samples
from edge_distill.targets import Layer, MixedPrecisionTarget, get_target

from .errors import BadInput
from .files import write_atomic
from .mixed import FLOAT, mendable, search
from .precision import base_of, is_auto
from .report import raised_summary
from .result import TargetResult

@dataclasses.dataclass(frozen=True)
class Where:
    """Where a search's files go: the output folder, the run's scratch folder, and under the output
    folder the one holding the target's folder (the ladder's subject; none for `check`)."""

    out: Path
    work: Path
    folder: Path = Path()


def build_auto(planned, precision: str, where: Where, build: Callable, progress, *,
               sensitivity_only: bool = False, data=None) -> TargetResult:
    """`build(planned, precision, out, folder, work)` builds and evaluates one artifact (the pipeline's
    build_and_measure); it runs once per trial, with the trial's layers in float. `sensitivity_only`
    (`edge-distill sensitivity`): the precision as asked, with its layers' sensitivity, no search.
    `data`: samples for the per-layer activation error, where the target measures it (`tensor_errors`)."""
    out, work, folder = where.out, where.work, where.folder
    tc, base = planned.config, base_of(precision)
    # plan_targets let an -auto precision through only for a target that mixes (mixing_refused said None)
    target = cast(MixedPrecisionTarget, get_target(tc.name))
    attempts = work / "-".join([*folder.parts, tc.name, precision])
    attempts.mkdir()
    trials: dict[int, Path] = {}

    members: dict[str, list[str]] = {}  # a group's name -> its layers (auto_groups)
    subset = _subset(tc, data)  # the trials' samples, or None: every sample

    steps = steps_up(target, base)

    def trial(raised: dict[str, str], every_sample: bool = False) -> TargetResult:
        k = len(trials)
        trials[k] = attempts / f"trial-{k}"
        (attempts / f"work-{k}").mkdir()
        options = {**tc.options, **_options(raised, members, steps)}
        tried = dataclasses.replace(planned, config=dataclasses.replace(tc, options=options))
        samples = {} if subset is None or every_sample else {"samples": subset}
        result = build(tried, base, attempts, f"trial-{k}", attempts / f"work-{k}", **samples)
        result.details["trial"] = k
        return result

    progress(f"{'sensitivity of' if sensitivity_only else 'searching'} {tc.name} {precision}: each layer of "
             f"{base} raised to {' then '.join(steps) if not sensitivity_only else FLOAT}")
    full: list[TargetResult] = []  # the precision as asked: the trial the activation error is measured on

    def layers_of(first: TargetResult) -> list[Layer]:
        full.append(first)
        grouped, found = group_layers(target.layers(attempts / first.artifact), tc.auto_groups)
        members.update(found)
        return grouped

    best, state = search(base, trial, layers_of, steps=steps,
                         floor=tc.auto_min_quantized_fraction, max_trials=tc.auto_max_evaluations,
                         sensitivity_only=sensitivity_only, progress=progress)
    if subset is not None:  # the choice, confirmed on every sample: that evaluation is the one reported
        progress(f"  confirming the choice on all {len(data)} samples (the search used {len(subset)})")
        best = trial(state.raised, every_sample=True)
    if data is not None and full and hasattr(target, "tensor_errors") and hasattr(target, "tensor_error_method"):
        progress(f"  activation error of each layer's output, {min(len(data), ERROR_SAMPLES)} samples")
        work_dir = attempts / f"work-{full[0].details['trial']}"  # where its build left the float graph it quantized
        _add_tensor_errors(state, members, target.tensor_errors(attempts / full[0].artifact, work_dir,
                                                                select_samples(data, ERROR_SAMPLES),
                                                                _all_layers(state, members)))
        state.activation_error = {"method": target.tensor_error_method, "samples": min(len(data), ERROR_SAMPLES)}
    folder = folder / tc.name / ("" if sensitivity_only else precision)
    best = _as_chosen(best, trials, out, folder, base if sensitivity_only else precision)
    best.details["mixed_precision"] = {**state.to_dict(), **_samples_note(subset, data, best)}
    if not sensitivity_only:
        _write_choice(best, state, members, out / folder, precision, subset is not None, progress)
    return best


def steps_up(target, base: str) -> tuple[str, ...]:
    """The precisions a search raises a layer to, in order: int4 goes to int8 first where the target
    can keep chosen layers in int8 (its keep_int8 option), then to float."""
    options = {o.name for o in target.capabilities.options}
    return ("int8", FLOAT) if base == "int4" and "keep_int8" in options else (FLOAT,)


def _options(raised: dict[str, str], members: dict, steps: tuple[str, ...]) -> dict:
    """A trial's target options: each step's layers (a group's: its members) as keep_<step>."""
    return {f"keep_{step}": [layer for name, s in raised.items() if s == step for layer in members.get(name, [name])]
            for step in steps}


def _as_chosen(best: TargetResult, trials: dict, out: Path, folder: Path, precision: str) -> TargetResult:
    """The chosen trial's files copied to `out/folder`, the result named as the artifact they now are."""
    shutil.copytree(trials[best.details.pop("trial")], out / folder, dirs_exist_ok=True, symlinks=True)
    trial_name = best.name
    best.precision = precision
    for check in best.checks:  # named as the artifact they judge: "ort-int4-auto/...", not the trial's "ort-int4/..."
        check.name = best.name + check.name[len(trial_name):] if check.name.startswith(trial_name + "/") else check.name
    best.warnings = [best.name + w[len(trial_name):] if w.startswith(trial_name + " ") else w for w in best.warnings]
    best.artifact = str(folder / Path(best.artifact).name)
    best.files = [str(folder / Path(f).name) for f in best.files]
    return best


def _samples_note(subset, data, best: TargetResult) -> dict:
    if subset is None:
        return {}
    return {"samples": {"trials": len(subset), "all": len(data), "stratified_by": "label and slice",
                        "confirmed": best.passed,
                        "note": "the sensitivity figures and their standard errors are the subset's; the artifact's "
                                "figures and checks are the confirmation's, on every sample"}}


def _write_choice(best: TargetResult, state, members: dict, folder: Path, precision: str, subset: bool,
                  progress) -> None:
    """recipe.toml beside the chosen artifact, and the search's verdict as the result's warning."""
    base = base_of(precision)
    write_recipe(folder / "recipe.toml", best.target, base, _options(state.raised, members, state.steps))
    best.files.append(str(Path(best.artifact).parent / "recipe.toml"))
    verdict = (f"{precision}: {raised_summary(state.to_dict())}; {state.trials} trials in {state.seconds:.0f} s "
               f"({state.stopped})")
    met = state.met and (best.passed or not subset)  # with a subset, as the confirmation on every sample says
    if state.met and not met:
        verdict += "; it met the budgets on the search's subset, not on every sample"
    progress(f"  {verdict}")
    if not met:  # a met search is the report's "Mixed precision" line, not a warning
        best.warnings.append(f"{verdict}: no configuration meets every budget; this is the closest attempt"
                             + _slower_note(best))


ERROR_SAMPLES = 64  # samples the per-layer activation error is measured on


def _subset(tc, data):
    """The stratified samples a search's trials are evaluated on (auto_sensitivity_samples), or None."""
    count = tc.auto_sensitivity_samples
    if data is None or count is None or count >= len(data):
        return None
    return select_indices(data, count, seed=0, by_label_and_slice=True)


def _all_layers(state, members: dict) -> list[str]:
    return [m for entry in state.layers for m in members.get(entry.name, [entry.name])]


def _add_tensor_errors(state, members: dict, errors: dict[str, float]) -> None:
    """Each layer's (a group's: its worst member's) SQNR at its output, with every layer quantized."""
    for entry in state.layers:
        found = [errors[m] for m in members.get(entry.name, [entry.name]) if m in errors]
        if found:
            entry.figures["sqnr_db"] = min(found)


def group_layers(layers: list[Layer], groups: dict[str, str]) -> tuple[list[Layer], dict[str, list[str]]]:
    """Layers whose names match a group's regex (the first that matches) become one layer of that
    name; the others stay as they are."""
    import re

    found: dict[str, list[Layer]] = {}
    out = []
    for layer in layers:
        group = next((g for g, pattern in groups.items() if re.search(pattern, layer.name)), None)
        if group is None:
            out.append(layer)
        else:
            found.setdefault(group, []).append(layer)
    out += [Layer(g, f"{len(ls)} x {'/'.join(sorted({x.op for x in ls}))}", sum(x.weights for x in ls),
                  int8=all(x.int8 for x in ls))
            for g, ls in found.items()]
    return out, {g: [x.name for x in ls] for g, ls in found.items()}


def _slower_note(result: TargetResult) -> str:
    if mendable(result):
        return ""
    broken = [c.metric for c in result.checks if c.passed is False]
    if not broken:
        return "; what does not hold could not be measured here (see the checks), which no layer's precision changes"
    if any(m.startswith("latency") or m == "speedup_vs_float" for m in broken):
        return ("; only speed, size or memory budgets break, and leaving layers in float cannot make it faster or "
                "smaller: ship fp32 here if it is faster, or a smaller student")
    return "; only size or memory budgets break, which layers left in float would make worse: a smaller student"


def write_recipe(path: Path, target: str, precision: str, options: dict[str, list[str]]) -> None:
    """What config.read_recipe reads back: the layers a search raised, as the target's keep_* options."""
    lines = ["# edge-distill mixed precision: the layers a search raised to a higher precision. Rebuild this",
             f'# artifact with recipe = "{path.name}" in a [[targets]] entry for {target} with precision {precision}.',
             f"target = {json.dumps(target)}", f"precision = {json.dumps(precision)}", "", "[options]",
             *(f"{name} = {json.dumps(layers)}" for name, layers in options.items())]
    write_atomic(path, "\n".join(lines) + "\n")


def refusal(target, precision: str, options: dict) -> str | None:
    """Why the target cannot leave chosen layers of `precision` in float with these options (None: it
    can). A targets.MixedPrecisionTarget says so through `mixing_refused`."""
    if not hasattr(target, "layers"):
        return "it cannot leave chosen layers in float"
    return target.mixing_refused(precision, target.capabilities.options_with_defaults(options))


def check_auto(target_name: str, precision: str, options: dict | None = None) -> None:
    """An "-auto" precision needs a target that can leave that precision's layers in float."""
    if not is_auto(precision):
        return
    why = refusal(get_target(target_name), base_of(precision), options or {})
    if why:
        raise BadInput(f"target '{target_name}' has no {precision}: {why}")
