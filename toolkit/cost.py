"""The cost model of the ladder ([cost] in edge-distill.toml): what a rung costs per call, and the
one-off cost of distilling. Its own module so that the config can parse it without the ladder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput
from .result import TargetResult
from .tomlfile import check_keys, expect

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
