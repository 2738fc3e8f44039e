"""The decision ladder: measure the cheapest rung first, climb only when it fails the budget.

Subjects, cheapest to adopt first: the teacher, an off-the-shelf model (when given), the distilled
student. Quantizing what you have comes before distilling; a distilled student is usually quantized
too (distill, then quantize). Each subject's precisions (fp32, int8, int4) are all built and then
ordered by what they measured, not by their names: smallest file first, then lowest p50 (size is
deterministic, latency is noisy). An int4 artifact that kept its convolutions in fp32 can be larger
than the int8 one; the ladder says so and never presents it as the cheaper rung. The climb stops at
the first subject with a rung that meets every budget (`--all` measures every subject). Where the
8-bit rung breaks a budget and the target can leave layers in float, an "int8-auto" rung (mixed
precision, auto_precision.py) is measured too, before the 4-bit one is relied on.

The cost model ([cost] in edge-distill.toml) prices each rung per call and the one-off cost of
distillation, and finds the monthly volume at which the student pays back against the cheapest
teacher-family rung that meets the budget.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from edge_distill.targets import get_target

from .auto_precision import Where, build_auto, refusal
from .config import Config
from .cost import CostModel
from .errors import BadInput
from .pipeline import (PlannedTarget, Progress, Run, Subject, attempted, build_and_measure, build_report,
                       export_verified, labels_match, load_inputs, plan_targets, recipe_candidates, searched_recipe,
                       trial_builder)
from .mixed import mendable
from .precision import PrecisionSpec, auto_of, base_of
from .result import Ladder, Report, Rung, TargetResult
from .evaluate import References

SUBJECT_ORDER = ("teacher", "off-the-shelf", "student")

def run_ladder(cfg: Config, out: Path, progress: Progress = Progress(False), *, target: str | None = None,
               whole: bool = False, device: str | None = None) -> Report:
    plan = plan_targets(cfg, [target] if target else [cfg.targets[0].name] if cfg.targets else None, device=device)
    loaded = load_inputs(cfg, progress)
    if loaded.teacher is None:
        raise BadInput("the ladder starts from the teacher: set [model] teacher", path=cfg.path)
    subjects = {"teacher": loaded.teacher, "student": loaded.student}
    if cfg.off_the_shelf:
        subjects["off-the-shelf"] = loaded.load_extra(cfg, cfg.off_the_shelf, cfg.off_the_shelf_weights)
    teacher_out = loaded.teacher.predict(loaded.evaluation)
    labels_match(loaded, teacher_out, cfg.model.task)  # before any rung is built
    precisions = rung_precisions(plan[0])
    searched = next((p for p in precisions if recipe_candidates(plan[0], p)), None)
    if searched:  # one build per rung: refused before any, not at the rung's build
        raise BadInput(f"the ladder builds one recipe per rung, and {plan[0].config.name} {searched} has "
                       f"{searched_recipe(plan[0].config, searched)} = \"auto\", a search over recipes",
                       path=cfg.path, hint="run check to choose the recipe (the report's int8_recipes.rebuild names "
                                           "it), then name that recipe here")
    results: list[TargetResult] = []
    rungs, chosen, exports, float_outputs = [], None, {}, {}
    with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as work:  # inside out: one folder to clean
        run = Run(cfg, loaded, out, Path(work), progress)
        for subject in (s for s in SUBJECT_ORDER if s in subjects):
            subject_precisions = precisions if subject != "off-the-shelf" else precisions[:1]
            names = [f"{subject}/{plan[0].config.name}-{p}" for p in subject_precisions]
            if chosen and not whole:
                rungs += [Rung(n, measured=False, meets_budget=None,
                               note=f"not measured: {chosen} already meets the budget") for n in names]
                continue
            model = subjects[subject]
            exports[subject] = export_verified(cfg, model, loaded.evaluation, out, f"{subject}/onnx", progress)
            float_outputs[subject] = model.predict(loaded.evaluation)
            built_from = Subject(model, out / subject / "onnx" / "model.onnx", f"{subject}/{plan[0].config.name}",
                                 subject, qualified=True)
            group = _climb(run, plan[0], built_from, subject_precisions,
                           References(float_outputs[subject], teacher_out), results)
            rungs += group
            chosen = chosen or next((r.name for r in group if r.meets_budget), None)
    ladder = Ladder(order=[r.name for r in rungs], rungs=rungs, chosen=chosen, whole=whole,
                    verdict=_verdict(chosen, rungs), cost=_cost_summary(cfg.cost, rungs, whole))
    return build_report("ladder", cfg, loaded, exports.get("student") or exports.get("teacher"),
                        References(float_outputs.get("student"), teacher_out), results, ladder=ladder)


def rung_precisions(planned: PlannedTarget) -> tuple[str, ...]:
    """The target's widest precision, then its 8-bit, then its 4-bit one, as the target declares them;
    where it has two of a width, the one the config asks for (int8-dynamic for a transformer)."""
    declared = get_target(planned.config.name).capabilities.precisions
    chosen = []
    for bits in sorted({p.weight_bits for p in declared}, reverse=True):
        if bits not in (max(p.weight_bits for p in declared), 8, 4):
            continue
        width = [p.name for p in declared if p.weight_bits == bits]
        # "int8-auto" asks for the int8 rung: the ladder adds its -auto rung where int8 breaks a budget
        configured = [name for name in width if name in {base_of(p) for p in planned.config.precisions}]
        chosen.append(configured[0] if configured else width[0])
    return tuple(chosen)


def _climb(run: Run, planned: PlannedTarget, subject: Subject, precisions, refs: References,
           results: list) -> list[Rung]:
    """Build and measure every precision of one subject; its rungs, cheapest first."""
    group = []
    target = get_target(planned.config.name)
    baseline = target.capabilities.float_baseline()
    cost = run.cfg.cost
    for precision in precisions:
        result = attempted(partial(build_and_measure, run, planned, precision, subject, refs),
                           run.out, subject.folder, subject.name, planned.config.name, precision, qualified=True)
        if precision == baseline:
            refs.float_latency, refs.float_size = result.latency, result.size_bytes
        results.append(result)
        group.append(_rung(result.name, result, cost))
        if PrecisionSpec.parse(precision).eight_bit and mendable(result) and not refusal(target, precision, planned.config.options):
            # The 8-bit rung breaks a budget float layers can mend: its mixed-precision rung, before 4 bits.
            build = trial_builder(run, subject, refs)
            auto = build_auto(planned, auto_of(precision), Where(run.out, run.work, Path(subject.name)), build,
                              run.progress)
            results.append(auto)
            group.append(_rung(auto.name, auto, cost))
    return order_by_measured_cost(group)


def _rung(name: str, result: TargetResult, cost: CostModel | None) -> Rung:
    meets = all(c.passed for c in result.checks) if all(c.passed is not None for c in result.checks) else None
    return Rung(name, measured=True, meets_budget=meets,
                broken=[c.name[len(result.name) + 1:] for c in result.checks if c.passed is not True],
                cost_per_call=cost.cost_per_call(name, result) if cost else None,
                size_bytes=result.size_bytes, p50_ms=result.latency.p50_ms if result.latency else None)


def order_by_measured_cost(group: list[Rung]) -> list[Rung]:
    """One subject's measured rungs, cheapest first by measured size, then p50 latency. A quantized
    rung no smaller than a less aggressive one of the same subject (int4 that kept every conv in
    fp32, say) gets a note saying it saved nothing; so does one no faster than fp32."""
    widest = group[0]  # the group comes as planned: widest, 8-bit, 4-bit, each more aggressive than the one before
    for i, rung in enumerate(group):
        notes = []
        bigger_than = [g for g in group[:i] if _size(rung) >= _size(g)]
        if bigger_than:
            ref = min(bigger_than, key=_size)
            notes.append(f"saved nothing in size: {rung.size_bytes:,} bytes against {ref.size_bytes:,} "
                         f"for {ref.name}")
        if i and rung.p50_ms is not None and widest.p50_ms is not None and rung.p50_ms >= widest.p50_ms:
            notes.append(f"no faster than {widest.name}: p50 {rung.p50_ms:.3g} ms against {widest.p50_ms:.3g} ms")
        rung.note = "; ".join(notes)
    # sorted() is stable: equal size and latency keep the planned order
    return sorted(group, key=lambda r: (_size(r), r.p50_ms if r.p50_ms is not None else float("inf")))


def _size(rung: Rung) -> int:
    assert rung.size_bytes is not None  # a measured rung has its artifact's size
    return rung.size_bytes


def _per_call(rung: Rung) -> float:
    assert rung.cost_per_call is not None  # only rungs with a cost are compared by it
    return rung.cost_per_call


def _verdict(chosen: str | None, rungs: list[Rung]) -> str:
    if chosen is None:
        return "no rung meets the budget: relax the budget, or distill a stronger or smaller student"
    subject = chosen.split("/")[0]
    advice = {"teacher": "quantizing the model you have is enough: no distillation needed",
              "off-the-shelf": "an off-the-shelf model is enough: no distillation needed",
              "student": "the distilled student is needed"}[subject]
    return f"{chosen} is the cheapest rung that meets every budget: {advice}"


def _cost_summary(cost: CostModel | None, rungs: list[Rung], whole: bool) -> dict | None:
    if cost is None:
        return None
    summary: dict[str, object] = {"fixed_cost_of_distillation": round(cost.fixed, 4),
               "upkeep_per_month": cost.values["upkeep_per_month"],
               "amortize_months": cost.values["amortize_months"], "payback_calls_per_month": None}
    meeting = [r for r in rungs if r.meets_budget and r.cost_per_call is not None]
    baseline = min((r for r in meeting if not r.name.startswith("student/")), key=_per_call, default=None)
    student = min((r for r in meeting if r.name.startswith("student/")), key=_per_call, default=None)
    if baseline is None:
        summary["payback_note"] = ("no measured teacher or off-the-shelf rung meets the budget: the student is "
                                   "needed whatever the volume")
    elif student is None:
        summary["payback_note"] = "no measured student rung meets the budget" + (
            "" if whole else " (run `ladder --all` to measure them all)")
    else:
        saving = _per_call(baseline) - _per_call(student)
        summary.update(baseline=baseline.name, student=student.name, saving_per_call=saving)
        if saving <= 0:
            summary["payback_note"] = f"{student.name} costs no less per call than {baseline.name}: it never pays back"
        else:
            monthly = cost.fixed / cost.values["amortize_months"] + cost.values["upkeep_per_month"]
            summary["payback_calls_per_month"] = round(monthly / saving)
            summary["payback_note"] = (f"{student.name} pays back against {baseline.name} above "
                                       f"{round(monthly / saving):,} calls a month")
    return summary
