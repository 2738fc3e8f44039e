"""A run against a baseline report: what got worse, as checks ([budgets.regression]).

Every artifact of the run is matched by name with the baseline's. Size and accuracy figures are
deterministic and compared as they are: size relative to the baseline's, accuracy and agreement
(overall and per slice) as absolute drops. Latency is noisy. Where the baseline's artifacts are still
beside its report (CI keeps the last passing run's output), both artifacts are timed again on this host
in turns, and a paired bootstrap judges the growth: load that comes and goes weighs on both alike.
Otherwise the stored figures are compared: a p50 counts as a regression only when it
grew by more than the limit *and* the growth is beyond the run-to-run noise, judged on both runs' raw
per-run times (a seeded bootstrap of the ratio of medians: p = the share of resamples whose ratio stays
within the limit), each divided by the host's speed when it ran (a fixed numpy workload timed
between the model's runs: a shared machine's load moves between runs). Latencies of different provenance (an estimate and a measurement, two CPUs, two
runtime versions) are reported, never compared.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np

from .budgets import REGRESSION_LIMITS
from .errors import BadInput
from .kinds import all_budget_keys
from .result import Check, Report, TargetResult

ACCURACY_FIGURES = ("accuracy", "weighted_accuracy", "float_agreement", "teacher_agreement")
# an output's figures that a drop makes worse (its kind's ">=" budget keys), compared as accuracy is
HIGHER_IS_BETTER = tuple(dict.fromkeys(figure for figure, comparison, _ in all_budget_keys().values()
                                       if comparison == ">=" and figure != "psnr_db"))
SIGNIFICANCE, RESAMPLES, SEED = 0.05, 2000, 0


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"not an edge-distill report to compare with ({exc})", path=path) from exc
    return baseline_of(data, Path(path))


def baseline_of(data: dict, path: Path, label: str | None = None) -> dict:
    """A baseline from a report's data; `path` is where its report.json was written (its artifacts
    beside it, if they remain, are timed again side by side)."""
    try:
        results = {r["name"]: r for r in data["results"]}
    except (KeyError, TypeError) as exc:
        raise BadInput(f"not an edge-distill report to compare with (no {exc})", path=label or path) from exc
    for name, result in results.items():
        why = _implausible(result)
        if why:
            raise BadInput(f"result {name!r} of the baseline is not one a run writes: {why}", path=label or path)
    return {"path": str(path), "label": label or str(path), "created": data.get("created"), "results": results}


def _implausible(result) -> str:
    """Why a baseline result cannot be a run's (a figure out of its range, a path out of its folder): a
    crafted or damaged baseline is refused, never compared."""
    if not isinstance(result, dict) or not isinstance(result.get("name"), str):
        return "not a result"
    size = result.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 10 ** 13:
        return f"size_bytes {size!r} is not a size in bytes"
    artifact = PurePosixPath(str(result.get("artifact", "")))
    if artifact.is_absolute() or ".." in artifact.parts:
        return f"its artifact {str(artifact)!r} is outside the report's folder"
    figures = [(f"metrics.{k}", v) for k, v in (result.get("metrics") or {}).items() if k in ACCURACY_FIGURES]
    figures += [(f"slices.{s}.{k}", v) for s, m in (result.get("slices") or {}).items() for k, v in (m or {}).items()
                if k in ACCURACY_FIGURES]
    for where, value in figures:
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value <= 1):  # NaN fails too
            return f"{where} = {value!r} is not a share between 0 and 1"
    latency = result.get("latency") or {}
    for key in ("p50_ms", "p95_ms", "reference_ms"):
        value = latency.get(key)
        if value is not None and (not isinstance(value, (int, float)) or not 0 < value < 1e7):
            return f"latency.{key} = {value!r} is not a time in milliseconds"
    return ""


def compare(report: Report, baseline: dict, limits: dict | None = None, run_dir: Path | None = None,
            any_cpu: bool = False) -> None:
    """Add each result's regression checks (and warnings for what is not compared) to `report`.
    `run_dir`: where this run's artifacts are; with the baseline's artifacts still beside its report,
    host latencies are measured again side by side, interleaved (what a shared machine allows).
    `any_cpu`: compare stored latencies measured on another CPU too (forced; said in the check)."""
    limits = {**REGRESSION_LIMITS, **(limits or {})}
    for result in report.results:
        before = baseline["results"].get(result.name)
        if result.failure or (before or {}).get("failure"):
            continue  # an artifact that was not built has nothing to compare; its own row says why
        if before is None:
            result.warnings.append(f"{result.name}: not in the baseline ({baseline['label']}): nothing to compare")
            continue
        result.checks += (_size(result, before, limits) + _accuracy(result, before, limits)
                          + _outputs(result, before, limits) + _memory(result, before, limits))
        pair = _side_by_side(result, before, run_dir, Path(baseline["path"]).parent) if run_dir else None
        for q in (50, 95):
            check, why_not = _latency(result, before, limits, pair, q, any_cpu)
            if check:
                result.checks.append(check)
            if why_not and q == 50:  # one warning for both percentiles
                result.warnings.append(f"{result.name}: latency not compared with the baseline: {why_not}")


def _check(result: TargetResult, what: str, value: float, limit: float, unit: str, message: str,
           passed: bool | None = None, slice_name: str | None = None) -> Check:
    return Check(f"{result.name}/regression/{what}", f"regression.{what}", "<=", limit, round(value, 6), unit,
                 value <= limit if passed is None else passed, slice_name, "measured", message)


def _size(result: TargetResult, before: dict, limits: dict) -> list[Check]:
    old, new = before.get("size_bytes"), result.size_bytes
    if not old:
        return []
    growth = new / old - 1
    return [_check(result, "size", growth, limits["max_size_increase"], "",
                   f"size {old:,} -> {new:,} bytes ({growth:+.1%})")]


def _accuracy(result: TargetResult, before: dict, limits: dict) -> list[Check]:
    checks = []
    pairs: list[tuple[str | None, dict, dict]] = [(None, vars(result.metrics), before.get("metrics") or {})]
    pairs += [(name, vars(m), (before.get("slices") or {}).get(name) or {}) for name, m in result.slices.items()]
    for slice_name, now, then in pairs:
        for figure in ACCURACY_FIGURES:
            if now.get(figure) is None or then.get(figure) is None:
                continue
            drop = then[figure] - now[figure]
            where = f"slice[{slice_name}]/{figure}" if slice_name else figure
            limit = limits.get("slices", {}).get(slice_name, {}).get("max_accuracy_decrease",
                                                                     limits["max_accuracy_decrease"])
            checks.append(_check(result, where, drop, limit, "",
                                 f"{where} {then[figure]:.4g} -> {now[figure]:.4g} ({-drop:+.4g})",
                                 slice_name=slice_name))
    return checks


def _side_by_side(result: TargetResult, before: dict, run_dir: Path, baseline_dir: Path, runs: int = 200):
    """(this run's, the baseline's) per-run times of the two artifacts timed in turns on this host, or
    None where that cannot be done (not a host measurement, or the baseline's artifact is gone)."""
    from edge_distill.calibration import zeros
    from edge_distill.targets import get_target

    from .devices.host import side_by_side
    from .provenance import host_cpu

    prov = result.latency.provenance if result.latency else None
    old, new = baseline_dir / before.get("artifact", "-"), run_dir / result.artifact
    # only a figure measured on this machine's CPU can be measured again here
    if prov is None or prov.kind != "measured" or prov.cpu != host_cpu() or not old.exists() or not new.exists():
        return None
    target = get_target(result.target)
    runners = [target.open_runner(path, prov.threads or 1) for path in (new, old)]
    times = side_by_side(runners, zeros(runners[0].input_specs(), 1).inputs, runs=runs)
    return times[0], times[1]


def _latency(result: TargetResult, before: dict, limits: dict, pair=None, q: int = 50,
             any_cpu: bool = False) -> tuple[Check | None, str]:
    """The q-th percentile's growth (p50 against max_latency_increase, p95 against max_p95_increase),
    judged beyond the runs' noise; across CPUs only when forced (`any_cpu`)."""
    key, limit = f"p{q}", limits["max_latency_increase" if q == 50 else "max_p95_increase"]
    statistic = "medians" if q == 50 else f"{q}th percentiles"
    then, now = before.get("latency") or {}, result.latency
    if now is None or getattr(now, f"{key}_ms") is None or then.get(f"{key}_ms") is None:
        return None, "" if now is None and not then else f"one of the two runs has no {key}"
    old_prov, new_prov = then.get("provenance") or {}, vars(now.provenance)
    differ = [k for k in ("kind", "device", "cpu", "threads", "runtime", "runtime_version") if old_prov.get(k) != new_prov.get(k)]
    forced = any_cpu and "cpu" in differ and pair is None
    if forced:
        differ.remove("cpu")
    if differ:
        return None, "different provenance (" + ", ".join(f"{k}: {old_prov.get(k)} -> {new_prov.get(k)}" for k in differ) + ")"
    if pair is not None:
        new, old = pair
        growth = float(np.percentile(new, q) / np.percentile(old, q)) - 1
        p = _p_within_limit(old, new, limit, q, paired=True)
        regressed = growth > limit and p < SIGNIFICANCE
        return _check(result, f"latency.{key}", growth, limit, "", f"side by side with the baseline's artifact on this "
                      f"host, {len(new)} interleaved runs each: {key} {np.percentile(old, q):.4g} -> "
                      f"{np.percentile(new, q):.4g} ms ({growth:+.1%}); paired bootstrap of the ratio of {statistic}, "
                      f"{RESAMPLES} resamples: p = {p:.3g} that it grew no more than {limit:.0%}", passed=not regressed), ""
    # Divided by the host's speed at the time (a fixed workload timed between the runs), where both have it.
    old_ref, new_ref = then.get("reference_ms"), now.reference_ms
    scale_old, scale_new = (old_ref, new_ref) if old_ref and new_ref else (1.0, 1.0)
    growth = (getattr(now, f"{key}_ms") / scale_new) / (then[f"{key}_ms"] / scale_old) - 1
    normalized = f", each divided by the host's reference time ({old_ref:.4g} -> {new_ref:.4g} ms)" if old_ref and new_ref else ""
    old_samples, new_samples = then.get("samples_ms"), now.samples_ms
    head = f"{key} {then[f'{key}_ms']:.4g} -> {getattr(now, f'{key}_ms'):.4g} ms{normalized}: {growth:+.1%}"
    if forced:
        head += f" (forced across CPUs: {old_prov.get('cpu')} -> {new_prov.get('cpu')})"
    if not old_samples or not new_samples:
        return _check(result, f"latency.{key}", growth, limit, "", f"{head}; no raw runs in one of the reports, so "
                      "noise is not judged"), ""
    p = _p_within_limit(np.asarray(old_samples) / scale_old, np.asarray(new_samples) / scale_new, limit, q)
    regressed = growth > limit and p < SIGNIFICANCE
    return _check(result, f"latency.{key}", growth, limit, "", f"{head}; bootstrap of the ratio of {statistic} over "
                  f"{len(old_samples)} and {len(new_samples)} runs, {RESAMPLES} resamples: p = {p:.3g} that it grew no "
                  f"more than {limit:.0%}" + ("" if regressed or growth <= limit else " (within the noise: not a regression)"),
                  passed=not regressed), ""


def _memory(result: TargetResult, before: dict, limits: dict) -> list[Check]:
    """Peak memory's growth, where both runs measured it the same way."""
    then, now = before.get("memory") or {}, result.memory
    old_kind = (then.get("provenance") or {}).get("kind")
    if not then.get("peak_mb") or now.peak_mb is None or now.provenance is None or old_kind != now.provenance.kind:
        return []
    growth = now.peak_mb / then["peak_mb"] - 1
    return [_check(result, "peak_memory", growth, limits["max_memory_increase"], "",
                   f"peak memory {then['peak_mb']:.4g} -> {now.peak_mb:.4g} MB ({growth:+.1%})")]


def _outputs(result: TargetResult, before: dict, limits: dict) -> list[Check]:
    """A multi-output model's other outputs: their agreement with the float student's, as accuracy is."""
    checks = []
    for name, now in result.outputs_beyond_the_task.items():
        then = (before.get("outputs") or {}).get(name) or {}
        for figure in HIGHER_IS_BETTER:
            if now.get(figure) is not None and then.get(figure) is not None:
                drop = then[figure] - now[figure]
                checks.append(_check(result, f"output[{name}]/{figure}", drop, limits["max_accuracy_decrease"], "",
                                     f"output {name} {figure} {then[figure]:.4g} -> {now[figure]:.4g} ({-drop:+.4g})"))
    return checks


def _p_within_limit(old: np.ndarray, new: np.ndarray, limit: float, q: int = 50, paired: bool = False) -> float:
    """The share of bootstrap resamples in which the q-th percentile of new over old's is <= 1 + limit
    (paired: the same rounds drawn for both, so a moment of load weighs on both alike)."""
    rng = np.random.default_rng(SEED)
    pick_old = rng.integers(0, len(old), (RESAMPLES, len(old)))
    pick_new = pick_old if paired else rng.integers(0, len(new), (RESAMPLES, len(new)))
    ratio = np.percentile(new[pick_new], q, axis=1) / np.percentile(old[pick_old], q, axis=1)
    return float(np.mean(ratio <= 1 + limit))
