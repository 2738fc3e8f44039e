"""The decision ladder: measure the cheapest rung first, climb only when it fails the budget.

Rungs, cheapest to adopt first: teacher fp32, teacher int8, teacher int4, an off-the-shelf model
(when given), student fp32, student int8, student int4. Quantizing what you have comes before
distilling; a distilled student is usually quantized too (distill, then quantize).

The cost model ([cost] in edge-distill.toml) prices each rung per call and the one-off cost of
distillation, and finds the monthly volume at which the student pays back against the cheapest
teacher-family rung that meets the budget.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .errors import BadInput
from .pipeline import Progress, build_and_measure, build_report, export_verified, load_inputs, plan_targets
from .report import Report, TargetResult
from .tomlfile import check_keys, expect

SUBJECT_ORDER = ("teacher", "off-the-shelf", "student")
PRECISION_ORDER = ("fp32", "int8", "int4")

COST_KEYS = {
    "teacher_cost_per_1k": "price of 1,000 teacher inferences, to label the distillation corpus",
    "label_corpus_size": "inputs labelled by the teacher for distillation",
    "training_hours": "hours of training to distill the student",
    "training_price_per_hour": "price of one training hour",
    "evaluation_cost": "one-off cost of evaluating the student",
    "upkeep_per_month": "monthly cost of keeping the student current (re-distilling when the teacher moves)",
    "price_per_device_second": "price of one second of inference on the serving device",
    "amortize_months": "months over which the one-off cost is spread (default 12)",
}
FIXED_KEYS = ("teacher_cost_per_1k", "label_corpus_size", "training_hours", "training_price_per_hour",
              "evaluation_cost", "upkeep_per_month")


@dataclass
class CostModel:
    values: dict[str, float]
    per_call: dict[str, float]  # explicit price per call for a rung, overriding the device-second price

    @property
    def fixed(self) -> float:
        v = self.values
        return (v["teacher_cost_per_1k"] * v["label_corpus_size"] / 1000
                + v["training_hours"] * v["training_price_per_hour"] + v["evaluation_cost"])

    def cost_per_call(self, rung: str, result: TargetResult | None) -> float | None:
        if rung in self.per_call:
            return self.per_call[rung]
        if result is None or result.latency is None or result.latency.p50_ms is None:
            return None
        if "price_per_device_second" not in self.values:
            raise BadInput(f"no price for rung '{rung}': set [cost] price_per_device_second, "
                           f"or price_per_call.\"{rung}\"")
        return result.latency.p50_ms / 1000 * self.values["price_per_device_second"]


def parse_cost(table: dict | None, path: Path) -> CostModel | None:
    if table is None:
        return None
    check_keys(table, set(COST_KEYS) | {"price_per_call"}, "cost", path)
    values = {}
    for key in COST_KEYS:
        if key in table:
            value = expect(table[key], (int, float), key, "cost", path)
            if value < 0:
                raise BadInput(f"'{key}' in [cost] must not be negative, got {value}", path=path)
            values[key] = float(value)
    missing = [k for k in FIXED_KEYS if k not in values]
    if missing:
        raise BadInput(f"[cost] is missing {', '.join(missing)} (a missing price is not a zero): "
                       + "; ".join(f"{k}: {COST_KEYS[k]}" for k in missing), path=path)
    values.setdefault("amortize_months", 12.0)
    if values["amortize_months"] <= 0:
        raise BadInput("'amortize_months' in [cost] must be positive", path=path)
    per_call = {k: float(expect(v, (int, float), k, "cost.price_per_call", path))
                for k, v in expect(table.get("price_per_call", {}), dict, "price_per_call", "cost", path).items()}
    return CostModel(values, per_call)


def run_ladder(cfg: Config, out: Path, progress: Progress, *, target: str | None = None,
               whole: bool = False) -> Report:
    plan = plan_targets(cfg, [target] if target else [cfg.targets[0].name] if cfg.targets else None)
    tc = plan[0][0]
    cost = cfg.cost
    loaded = load_inputs(cfg, progress)
    if loaded.teacher is None:
        raise BadInput("the ladder starts from the teacher: set [model] teacher", path=cfg.path)
    subjects = {"teacher": loaded.teacher, "student": loaded.student}
    if cfg.off_the_shelf:
        subjects["off-the-shelf"] = loaded.load_extra(cfg, cfg.off_the_shelf, cfg.off_the_shelf_weights)
    teacher_out = loaded.teacher.predict(loaded.evaluation)
    # int8 as the target's config asks for it: dynamic where static is not configured (transformers)
    int8 = "int8-dynamic" if "int8-dynamic" in tc.precisions and "int8" not in tc.precisions else "int8"
    precisions = tuple(int8 if p == "int8" else p for p in PRECISION_ORDER)
    order = [(s, p) for s in SUBJECT_ORDER if s in subjects
             for p in (precisions if s != "off-the-shelf" else ("fp32",))]
    results: list[TargetResult] = []
    rungs, chosen, exports = [], None, {}
    with tempfile.TemporaryDirectory(prefix="edge-distill-ladder-") as work:
        float_outputs, float_latency = {}, {}
        for subject, precision in order:
            name = f"{subject}/{tc.name}-{precision}"
            if chosen and not whole:
                rungs.append({"name": name, "measured": False, "meets_budget": None, "broken": [],
                              "cost_per_call": None, "note": f"not measured: {chosen} already meets the budget"})
                continue
            model = subjects[subject]
            if subject not in exports:
                exports[subject] = export_verified(cfg, model, loaded.evaluation, out, f"{subject}/onnx", progress)
                float_outputs[subject] = model.predict(loaded.evaluation)
            result = build_and_measure(cfg, tc, precision, model, out / subject / "onnx" / "model.onnx", out,
                                       f"{subject}/{tc.name}", Path(work), loaded, float_outputs[subject],
                                       teacher_out, float_latency.get(subject), progress, subject=subject,
                                       qualified=True)
            if precision == "fp32":
                float_latency[subject] = result.latency
            results.append(result)
            meets = all(c.passed for c in result.checks) if all(c.passed is not None for c in result.checks) \
                else None
            broken = [c.name[len(result.name) + 1:] for c in result.checks if c.passed is not True]
            rungs.append({"name": name, "measured": True, "meets_budget": meets, "broken": broken,
                          "cost_per_call": cost.cost_per_call(name, result) if cost else None, "note": ""})
            if meets and not chosen:
                chosen = name
    ladder = {"order": [f"{s}/{tc.name}-{p}" for s, p in order], "rungs": rungs, "chosen": chosen,
              "whole": whole, "verdict": _verdict(chosen, rungs), "cost": _cost_summary(cost, rungs)}
    student_out = float_outputs.get("student")
    return build_report("ladder", cfg, loaded, exports.get("student") or exports.get("teacher"), student_out,
                   teacher_out, results, ladder=ladder)


def _verdict(chosen: str | None, rungs: list[dict]) -> str:
    if chosen is None:
        return "no rung meets the budget: relax the budget, or distill a stronger or smaller student"
    subject = chosen.split("/")[0]
    advice = {"teacher": "quantizing the model you have is enough: no distillation needed",
              "off-the-shelf": "an off-the-shelf model is enough: no distillation needed",
              "student": "the distilled student is needed"}[subject]
    return f"{chosen} is the cheapest rung that meets every budget: {advice}"


def _cost_summary(cost: CostModel | None, rungs: list[dict]) -> dict | None:
    if cost is None:
        return None
    summary = {"fixed_cost_of_distillation": round(cost.fixed, 4),
               "upkeep_per_month": cost.values["upkeep_per_month"],
               "amortize_months": cost.values["amortize_months"], "payback_calls_per_month": None}
    meeting = [r for r in rungs if r["meets_budget"] and r["cost_per_call"] is not None]
    baseline = min((r for r in meeting if not r["name"].startswith("student/")),
                   key=lambda r: r["cost_per_call"], default=None)
    student = min((r for r in meeting if r["name"].startswith("student/")), key=lambda r: r["cost_per_call"],
                  default=None)
    if baseline is None:
        summary["payback_note"] = ("no measured teacher or off-the-shelf rung meets the budget: the student is "
                                   "needed whatever the volume")
    elif student is None:
        summary["payback_note"] = ("no measured student rung meets the budget (run `ladder --all` to measure "
                                   "them all)")
    else:
        saving = baseline["cost_per_call"] - student["cost_per_call"]
        summary.update(baseline=baseline["name"], student=student["name"], saving_per_call=saving)
        if saving <= 0:
            summary["payback_note"] = f"{student['name']} costs no less per call than {baseline['name']}: it never pays back"
        else:
            monthly = cost.fixed / cost.values["amortize_months"] + cost.values["upkeep_per_month"]
            summary["payback_calls_per_month"] = round(monthly / saving)
            summary["payback_note"] = (f"{student['name']} pays back against {baseline['name']} above "
                                       f"{round(monthly / saving):,} calls a month")
    return summary
