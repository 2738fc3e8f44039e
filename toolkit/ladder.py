"""The decision ladder: measure the cheapest rung first, climb only when it fails the budget.

Subjects, cheapest to adopt first: the teacher, an off-the-shelf model (when given), the distilled
student. Quantizing what you have comes before distilling; a distilled student is usually quantized
too (distill, then quantize). Each subject's precisions (fp32, int8, int4) are all built and then
ordered by what they measured, not by their names: smallest file first, then lowest p50 (size is
deterministic, latency is noisy). An int4 artifact that kept its convolutions in fp32 can be larger
than the int8 one; the ladder says so and never presents it as the cheaper rung. The climb stops at
the first subject with a rung that meets every budget (`--all` measures every subject).

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
    groups = [(s, precisions if s != "off-the-shelf" else ("fp32",)) for s in SUBJECT_ORDER if s in subjects]
    results: list[TargetResult] = []
    rungs, chosen, exports, float_outputs = [], None, {}, {}
    with tempfile.TemporaryDirectory(prefix="edge-distill-ladder-") as work:
        for subject, subject_precisions in groups:
            names = [f"{subject}/{tc.name}-{p}" for p in subject_precisions]
            if chosen and not whole:
                rungs += [{"name": n, "measured": False, "meets_budget": None, "broken": [], "cost_per_call": None,
                           "size_bytes": None, "p50_ms": None, "note": f"not measured: {chosen} already meets the "
                                                                     "budget"} for n in names]
                continue
            model = subjects[subject]
            exports[subject] = export_verified(cfg, model, loaded.evaluation, out, f"{subject}/onnx", progress)
            float_outputs[subject] = model.predict(loaded.evaluation)
            group, float_latency = [], None
            for name, precision in zip(names, subject_precisions):
                result = build_and_measure(cfg, tc, precision, model, out / subject / "onnx" / "model.onnx", out,
                                           f"{subject}/{tc.name}", Path(work), loaded, float_outputs[subject],
                                           teacher_out, float_latency, progress, subject=subject, qualified=True)
                if precision == "fp32":
                    float_latency = result.latency
                results.append(result)
                group.append(_rung(name, result, cost))
            group = order_by_measured_cost(group)
            rungs += group
            chosen = chosen or next((r["name"] for r in group if r["meets_budget"]), None)
    ladder = {"order": [r["name"] for r in rungs], "rungs": rungs, "chosen": chosen,
              "whole": whole, "verdict": _verdict(chosen, rungs), "cost": _cost_summary(cost, rungs, whole)}
    student_out = float_outputs.get("student")
    return build_report("ladder", cfg, loaded, exports.get("student") or exports.get("teacher"), student_out,
                        teacher_out, results, ladder=ladder)


def _rung(name: str, result: TargetResult, cost: CostModel | None) -> dict:
    meets = all(c.passed for c in result.checks) if all(c.passed is not None for c in result.checks) else None
    return {"name": name, "measured": True, "meets_budget": meets,
            "broken": [c.name[len(result.name) + 1:] for c in result.checks if c.passed is not True],
            "cost_per_call": cost.cost_per_call(name, result) if cost else None,
            "size_bytes": result.size_bytes, "p50_ms": result.latency.p50_ms if result.latency else None, "note": ""}


def order_by_measured_cost(group: list[dict]) -> list[dict]:
    """One subject's measured rungs, cheapest first by measured size, then p50 latency. A quantized
    rung no smaller than a less aggressive one of the same subject (int4 that kept every conv in
    fp32, say) gets a note saying it saved nothing; so does one no faster than fp32."""
    fp32 = group[0]  # the group comes as planned: fp32, int8, int4, each more aggressive than the one before
    for i, rung in enumerate(group):
        notes = []
        bigger_than = [g for g in group[:i] if rung["size_bytes"] >= g["size_bytes"]]
        if bigger_than:
            ref = min(bigger_than, key=lambda g: g["size_bytes"])
            notes.append(f"saved nothing in size: {rung['size_bytes']:,} bytes against {ref['size_bytes']:,} "
                         f"for {ref['name']}")
        if i and rung["p50_ms"] is not None and fp32["p50_ms"] is not None and rung["p50_ms"] >= fp32["p50_ms"]:
            notes.append(f"no faster than {fp32['name']}: p50 {rung['p50_ms']:.3g} ms against "
                         f"{fp32['p50_ms']:.3g} ms")
        rung["note"] = "; ".join(notes)
    # sorted() is stable: equal size and latency keep the planned order
    return sorted(group, key=lambda r: (r["size_bytes"], r["p50_ms"] if r["p50_ms"] is not None else float("inf")))


def _verdict(chosen: str | None, rungs: list[dict]) -> str:
    if chosen is None:
        return "no rung meets the budget: relax the budget, or distill a stronger or smaller student"
    subject = chosen.split("/")[0]
    advice = {"teacher": "quantizing the model you have is enough: no distillation needed",
              "off-the-shelf": "an off-the-shelf model is enough: no distillation needed",
              "student": "the distilled student is needed"}[subject]
    return f"{chosen} is the cheapest rung that meets every budget: {advice}"


def _cost_summary(cost: CostModel | None, rungs: list[dict], whole: bool) -> dict | None:
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
        summary["payback_note"] = "no measured student rung meets the budget" + (
            "" if whole else " (run `ladder --all` to measure them all)")
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
