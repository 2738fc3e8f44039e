"""A check split across CI jobs: `check --shard i/N` runs a deterministic share of the cells (target x
precision x device, in the config's order: cell k goes to shard k mod N + 1, GitLab's CI_NODE_INDEX
rule), and `merge-reports` puts the shards' reports back together as the one run's report.

A shard measures a target's float baseline whenever it has one of that target's cells, reported or
not: the speedups and the "no smaller than fp32" warnings of its cells are then the unsharded run's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput
from .files import sha256_file
from .result import Report, report_from_dict, result_label


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    total: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, total = text.partition("/")
        if not (sep and index.isdigit() and total.isdigit() and 1 <= int(index) <= int(total)):
            raise BadInput(f"--shard {text}: expected I/N with 1 <= I <= N (e.g. 2/3)")
        return cls(int(index), int(total))


def share(plan: list, baselines: list[str | None], shard: Shard | None) -> tuple[set, set, list[str]]:
    """What this shard reports and what it runs, as (plan index, precision) pairs, and every cell's
    label in the unsharded order."""
    every = [(k, p) for k, planned in enumerate(plan) for p in planned.precisions]
    mine = {cell for i, cell in enumerate(every) if shard is None or i % shard.total == shard.index - 1}
    runs = mine | {(k, baselines[k]) for k, _ in mine if baselines[k] in plan[k].precisions}
    order = [result_label("student", plan[k].config.name, p) for k, p in every]
    return mine, runs, order


def stamp(report: Report, shard: Shard, config: Path, reported: list[str], order: list[str]) -> None:
    """What merge-reports checks a shard by: which one it is, of what config, and the cells it holds."""
    report.data["shard"] = {"index": shard.index, "total": shard.total, "config_sha256": sha256_file(config),
                            "cells": reported, "order": order}


def read_shard(folder: Path) -> Report:
    path = Path(folder) / "report.json"
    try:
        report = report_from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise BadInput(f"not an edge-distill report ({exc})", path=path) from exc
    if "shard" not in report.data:
        raise BadInput("not a shard's report: `check --shard I/N` writes one", path=path)
    return report


def merge(folders: list[Path]) -> Report:
    """The shards' reports as one: results in the unsharded order, warnings once each. Shards of
    different configs, models or versions, or a set of shards with one missing or repeated, are refused."""
    reports = [read_shard(f) for f in folders]
    first = reports[0]
    same = {"config": lambda r: r.data["shard"]["config_sha256"], "model": lambda r: r.student["fingerprint"],
            "edge-distill version": lambda r: r.tool_version, "shard count": lambda r: r.data["shard"]["total"]}
    for folder, report in zip(folders[1:], reports[1:]):
        for what, of in same.items():
            if of(report) != of(first):
                raise BadInput(f"{folder} is a shard of another run than {folders[0]}: its {what} differs "
                               f"({of(report)} against {of(first)})")
    total, indexes = first.data["shard"]["total"], sorted(r.data["shard"]["index"] for r in reports)
    if indexes != list(range(1, total + 1)):
        missing = sorted(set(range(1, total + 1)) - set(indexes))
        twice = sorted({i for i in indexes if indexes.count(i) > 1})
        raise BadInput(f"merge-reports needs shards 1 to {total} once each: "
                       + "; ".join(filter(None, (f"missing {', '.join(map(str, missing))}" if missing else None,
                                                 f"given twice {', '.join(map(str, twice))}" if twice else None))))
    order = first.data["shard"]["order"]
    results = sorted((r for report in reports for r in report.results), key=lambda r: order.index(r.name))
    warnings = list(dict.fromkeys(w for report in reports for w in report.warnings))
    data = {k: v for k, v in first.data.items() if k != "shard"}
    discoveries = {name: report.discoveries[name] for name in order for report in reports
                   if name in report.discoveries}
    return dataclasses.replace(first, results=results, warnings=warnings, data=data, discoveries=discoveries,
                               created=max(r.created for r in reports))
