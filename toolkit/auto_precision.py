"""A configured "<precision>-auto" (int8-auto, int4-auto): the mixed-precision search of mixed.py
run on one target, each trial a real build and evaluation; the chosen artifact lands in
<target>/<precision>-auto/ with the recipe that rebuilds it (recipe = ... in [[targets]])."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

from edge_distill.targets import Layer, get_target

from .errors import BadInput
from .files import write_atomic
from .mixed import AUTO, base_precision, mendable, search
from .result import TargetResult

def build_auto(planned, precision: str, out: Path, work: Path, build: Callable, progress, *,
               sensitivity_only: bool = False, folder: Path = Path()) -> TargetResult:
    """`build(planned, precision, out, folder, work)` builds and evaluates one artifact (the pipeline's
    build_and_measure); it runs once per trial, with the trial's layers in float. `sensitivity_only`
    (`edge-distill sensitivity`): the precision as asked, with its layers' sensitivity, no search.
    `folder`: under `out`, where the target's folder is (the ladder's subject)."""
    tc, base = planned.config, base_precision(precision)
    target = get_target(tc.name)
    attempts = work / "-".join([*folder.parts, tc.name, precision])
    attempts.mkdir()
    trials: dict[int, Path] = {}

    members: dict[str, list[str]] = {}  # a group's name -> its layers (auto_groups)

    def trial(keep_float: list[str]) -> TargetResult:
        keep_float = [layer for name in keep_float for layer in members.get(name, [name])]
        k = len(trials)
        trials[k] = attempts / f"trial-{k}"
        (attempts / f"work-{k}").mkdir()
        options = {**tc.options, "keep_float": keep_float}
        tried = dataclasses.replace(planned, config=dataclasses.replace(tc, options=options))
        result = build(tried, base, attempts, f"trial-{k}", attempts / f"work-{k}")
        result.details["trial"] = k
        return result

    progress(f"{'sensitivity of' if sensitivity_only else 'searching'} {tc.name} {precision}: each layer of "
             f"{base} left in float")
    def layers_of(full: TargetResult) -> list[Layer]:
        grouped, found = group_layers(target.layers(attempts / full.artifact), tc.auto_groups)
        members.update(found)
        return grouped

    best, state = search(base, trial, layers_of,
                         floor=tc.auto_min_quantized_fraction, max_trials=tc.auto_max_evaluations,
                         sensitivity_only=sensitivity_only, progress=progress)
    folder = folder / tc.name / ("" if sensitivity_only else precision)
    chosen = trials[best.details.pop("trial")]
    shutil.copytree(chosen, out / folder, dirs_exist_ok=True)
    trial_name = best.name
    best.precision = base if sensitivity_only else precision
    for check in best.checks:  # named as the artifact they judge: "ort-int4-auto/...", not the trial's "ort-int4/..."
        check.name = best.name + check.name[len(trial_name):] if check.name.startswith(trial_name + "/") else check.name
    best.artifact = str(folder / Path(best.artifact).name)
    best.files = [str(folder / Path(f).name) for f in best.files]
    best.details["mixed_precision"] = state.to_dict()
    if sensitivity_only:
        return best
    recipe = out / folder / "recipe.toml"
    write_recipe(recipe, tc.name, base, [layer for name in state.keep_float for layer in members.get(name, [name])])
    best.files.append(str(folder / "recipe.toml"))
    verdict = (f"{precision}: {len(state.keep_float)} layer(s) left in float, {state.quantized_share:.0%} of the "
               f"weights still {base}; {state.trials} trials in {state.seconds:.0f} s ({state.stopped})")
    progress(f"  {verdict}")
    best.warnings.append(verdict if state.met else f"{verdict}: no configuration meets every budget; this is "
                         "the closest attempt" + _slower_note(best))
    return best


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
    out += [Layer(g, f"{len(ls)} x {'/'.join(sorted({x.op for x in ls}))}", sum(x.weights for x in ls))
            for g, ls in found.items()]
    return out, {g: [x.name for x in ls] for g, ls in found.items()}


def _slower_note(result: TargetResult) -> str:
    if mendable(result):
        return ""
    broken = [c.metric for c in result.checks if c.passed is False]
    if any(m.startswith("latency") or m == "speedup_vs_float" for m in broken):
        return ("; only speed, size or memory budgets break, and leaving layers in float cannot make it faster or "
                "smaller: ship fp32 here if it is faster, or a smaller student")
    return "; only size or memory budgets break, which layers left in float would make worse: a smaller student"


def write_recipe(path: Path, target: str, precision: str, keep_float: list[str]) -> None:
    """What config.read_recipe reads back."""
    lines = ["# edge-distill mixed precision: the layers a search left in float. Rebuild this artifact with",
             f'# recipe = "{path.name}" in a [[targets]] entry for {target} with precision {precision}.',
             f"target = {json.dumps(target)}", f"precision = {json.dumps(precision)}", "", "[options]",
             f"keep_float = {json.dumps(keep_float)}"]
    write_atomic(path, "\n".join(lines) + "\n")


def keeps_float(target) -> bool:
    """Whether the target can leave chosen layers in float (a targets.MixedPrecisionTarget)."""
    return hasattr(target, "layers")


def check_auto(target_name: str, precision: str) -> None:
    """An "-auto" precision needs a target that can leave layers in float."""
    if precision.endswith(AUTO) and not keeps_float(get_target(target_name)):
        raise BadInput(f"target '{target_name}' cannot leave chosen layers in float, so it has no {precision}",
                       hint="mixed precision runs on ort and tflite")
