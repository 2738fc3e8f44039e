"""report.html: one self-contained page (no script, no network at view time) drawn from a `Report`,
with matplotlib's SVG plots inline: latency distributions, size and latency against the budgets,
accuracy and agreement per slice, the size / accuracy / latency trade-off with its Pareto front, the
ladder, the sensitivity table, and trends from the results store when one is configured.

A broken budget is marked where it shows: a red verdict banner, red bars, red rows in the checks table.
"""

from __future__ import annotations

import contextlib
import html
import io
import math
import re

from .report import (HEADLINE, SENSITIVITY_SHOWN, _fmt, _limits, _p, _provenance_lines, _rows, _sentence,
                     chosen_precision, discovery_rows, discovery_summary, verdict_line, visible)
from .result import MB, Check, Report, SliceDiscovery, TargetResult

BROKEN, HOLDS, UNMEASURED, NEUTRAL = "#c62828", "#2e7d32", "#ef6c00", "#5c6bc0"
_RAISED_COLORS = {"float": BROKEN, "int8": "#f9a825"}  # a sensitivity bar by what the search chose for its layer
LATENCY_METRICS = ("latency.p50_ms", "latency.p90_ms", "latency.p95_ms", "latency.p99_ms")
ACCURACY_FIGURES = ("accuracy", "weighted_accuracy", "float_agreement", "teacher_agreement", "teacher_cosine",
                    "float_cosine", "teacher_retrieval_agreement", "float_retrieval_agreement")
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
.verdict { padding: 12px 16px; border-radius: 6px; font-size: 18px; font-weight: 600; color: #fff; }
.verdict.passed { background: #2e7d32; } .verdict.failed { background: #c62828; }
.verdict.incomplete { background: #ef6c00; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; white-space: nowrap; }
#checks td:last-child { white-space: normal; min-width: 320px; }
tr.broken td { background: #ffebee; color: #b71c1c; font-weight: 600; }
tr.unmeasured td { background: #fff3e0; }
figure.plot { margin: 12px 0 24px; } figure.plot svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 13px; } .note { color: #666; font-size: 12px; white-space: pre-wrap; }
"""


def to_html(report: Report, trends: dict[str, list[dict]] | None = None) -> str:
    """The page; `trends`: artifact name -> rows of `history.Store.trend` (the runs before this one).
    Names come from untrusted files: every cell is html.escape'd, the plots draw a name as its letters
    ("$\\undefinedmacro{$" is no mathtext to crash on) and no character that is not text reaches the page.
    A report with nothing to plot (no results, ladder or trends) is drawn without importing matplotlib."""
    plotted = report.results or report.ladder or trends  # every plot draws from one of these
    with _plot_settings() if plotted else contextlib.nullcontext():
        page = _page(report, trends)
    return visible(page, keep="\n\t\r")


def _plot_settings():
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False})  # read as each plot's texts are made


def warm_up() -> None:
    """Import matplotlib in a background thread while a run builds and measures (a second on a cold start,
    overlapping the run's waits on its subprocesses and native code instead of adding to the report's time)."""
    import threading

    def load():
        import matplotlib.backends.backend_svg  # noqa: F401
        import matplotlib.figure  # noqa: F401

    threading.Thread(target=load, name="edge-distill-matplotlib", daemon=True).start()


def _page(report: Report, trends: dict[str, list[dict]] | None) -> str:
    verdict, css = _verdict(report)
    parts = [f"<header class='verdict {css}' id='verdict'>{_h(verdict)}</header>", _intro(report),
             _results_table(report)]
    plots = [("latency", "Latency per run, each artifact (box: quartiles; whiskers: 1.5 IQR; dashed: the budget)",
              _latency_plot), ("budgets", "Size and latency against the budgets (red: a budget broken)", _budget_bars),
             ("slices", "Accuracy and agreement, overall and per slice", _slice_heatmap),
             ("tradeoff", "Size, accuracy and latency of every artifact (ringed: the Pareto front)", _tradeoff),
             ("ladder", "The ladder's rungs", _ladder_plot), ("sensitivity", "Sensitivity: gain of each layer left "
                                                                            "in float", _sensitivity_plot)]
    for key, caption, draw in plots:
        svg = draw(report)
        if svg:
            parts.append(_figure(key, caption, svg))
    parts.append(_sensitivity_table(report))
    for artifact, rows in (trends or {}).items():
        svg = _trend_plot(artifact, rows)
        if svg:
            parts.append(_figure(f"trend-{artifact}", f"Trend of {artifact} over the recorded runs", svg))
    provenance = "\n".join(map(_h, _provenance_lines(report)))  # shown line by line (pre-wrap)
    parts += [_discoveries(report), _checks_table(report), f"<h2>How the figures were obtained</h2><p class='note'>{provenance}</p>"]
    title = f"edge-distill {report.command}: {verdict}"
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{_h(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def _h(text) -> str:
    """A text in the page: HTML-escaped, on one line (`visible`)."""
    return html.escape(visible(text))


def _verdict(report: Report) -> tuple[str, str]:
    return verdict_line(report), {0: "passed", 1: "failed", 2: "failed", 3: "incomplete"}[report.exit_code]


def _intro(report: Report) -> str:
    teacher = (f", teacher <code>{_h(report.teacher['reference'])}</code> (sha256 "
               f"<code>{report.teacher['fingerprint'][:12]}</code>)") if report.teacher else ""
    return (f"<h1>edge-distill {_h(report.command)}</h1><p>Student <code>"
            f"{_h(report.student['reference'])}</code> (sha256 <code>{report.student['fingerprint'][:12]}"
            f"</code>){teacher}. Created {_h(report.created)} by edge-distill {report.tool_version}.</p>")


def _table(head: list[str], rows: list[list[str]], classes: list[str], table_id: str) -> str:
    cells = "".join(f"<th>{_h(h)}</th>" for h in head)
    body = "".join(f"<tr class='{c}'>" + "".join(f"<td>{_h(v)}</td>" for v in row) + "</tr>"
                   for row, c in zip(rows, classes))
    return f"<table id='{table_id}'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _results_table(report: Report) -> str:
    head, rows = _rows(report)
    classes = [""] * len(report.references) + [_state(r.checks) for r in report.results]
    return "<h2>Artifacts</h2>" + _table(head, rows, classes, "artifacts")


def _state(checks: list[Check]) -> str:
    if any(c.passed is False for c in checks):
        return "broken"
    return "unmeasured" if any(c.passed is None for c in checks) else "holds"


def _checks_table(report: Report) -> str:
    if not report.checks:
        return "<h2>Checks</h2><p>No budget was given, so nothing was checked.</p>"
    rows = [[c.name, _fmt(c.value, c.unit), f"{c.comparison} {_fmt(c.limit, c.unit)}",
             {True: "holds", False: "broken", None: "not measured"}[c.passed], c.provenance or "",
             _sentence(c) if c.passed is not True else c.message] for c in report.checks]
    classes = [_state([c]) for c in report.checks]
    return "<h2>Checks</h2>" + _table(["check", "value", "limit", "verdict", "provenance", "note"], rows, classes,
                                      "checks")


def _figure(key: str, caption: str, svg: str) -> str:
    return (f"<figure class='plot' id='plot-{_h(key)}'>{svg}<figcaption>{_h(caption)}"
            "</figcaption></figure>")


def _svg(fig) -> str:
    """The figure as inline SVG: text kept as text (small, searchable), no timestamp, stable ids."""
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "edge-distill"}):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.index("<svg"):]


def _new_figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _limit(result: TargetResult, metric: str) -> Check | None:
    return next((c for c in result.checks if c.metric == metric and c.slice is None), None)


def _latency_check(result: TargetResult) -> Check | None:
    """The result's latency budget, at the first percentile it is set on."""
    return next((c for m in LATENCY_METRICS if (c := _limit(result, m))), None)


def _budget_line(ax, limits: set[float], label: str, unit: str) -> None:
    """A dashed line at each budget inside the plotted range; one far above the data (100 ms over a model
    that takes 0.05) is named in the legend instead of squashing the plot."""
    top = ax.get_ylim()[1]
    for value in sorted(limits):
        if value <= 3 * top:
            ax.axhline(value, linestyle="--", color=BROKEN, linewidth=1, label=f"{label} {value:g} {unit}")
        else:
            ax.plot([], [], linestyle="--", color=BROKEN, label=f"{label} {value:g} {unit} (far above)")


def _colour(check: Check | None) -> str:
    return NEUTRAL if check is None else {True: HOLDS, False: BROKEN, None: UNMEASURED}[check.passed]


def _latency_plot(report: Report) -> str | None:
    measured = [r for r in report.results if r.latency and r.latency.samples_ms]
    estimated = [r for r in report.results if r.latency and not r.latency.samples_ms and r.latency.p50_ms is not None]
    if not measured and not estimated:
        return None
    fig, (ax,) = _new_figure(max(6.0, 0.9 * (len(measured) + len(estimated)) + 2), 3.6)
    names = [r.name for r in measured + estimated]
    if measured:
        boxes = ax.boxplot([r.latency.samples_ms for r in measured if r.latency], positions=range(len(measured)),
                           showfliers=False, patch_artist=True, widths=0.6)
        for patch, r in zip(boxes["boxes"], measured):
            patch.set_facecolor(_colour(_latency_check(r)))
            patch.set_alpha(0.55)
    for i, r in enumerate(estimated, start=len(measured)):
        lat = r.latency
        assert lat is not None and lat.p50_ms is not None  # `estimated` holds only these
        low, high = lat.low_ms or lat.p50_ms, lat.high_ms or lat.p50_ms
        ax.errorbar([i], [lat.p50_ms], yerr=[[lat.p50_ms - low], [high - lat.p50_ms]], fmt="D", capsize=4,
                    color=_colour(_latency_check(r)))
    for metric in LATENCY_METRICS:
        _budget_line(ax, {c.limit for r in report.results for c in r.checks if c.metric == metric and c.slice is None},
                     f"{metric.split('.')[1].replace('_ms', '')} budget", "ms")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("ms per run (estimates: point and range)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _svg(fig)


def _budget_bars(report: Report) -> str | None:
    results = report.results
    if not results:
        return None
    fig, (size_ax, lat_ax) = _new_figure(max(8.0, 1.2 * len(results) + 4), 3.4, columns=2)
    names = [r.name for r in results]
    budgeted = [c.metric for r in results if (c := _latency_check(r))]
    percentile = budgeted[0] if budgeted else "latency.p50_ms"  # the percentile the budget is set on
    key = percentile.split(".")[1]
    for ax, metric, values, label in (
            (size_ax, "size_mb", [r.size_bytes / MB for r in results], "size (MB)"),
            (lat_ax, percentile, [getattr(r.latency, key) if r.latency and getattr(r.latency, key) is not None
                                  else math.nan for r in results], f"{key.replace('_ms', '')} latency (ms)")):
        checks = [_limit(r, metric) for r in results]
        ax.bar(range(len(results)), values, color=[_colour(c) for c in checks])
        _budget_line(ax, {c.limit for c in checks if c is not None}, "budget", "MB" if metric == "size_mb" else "ms")
        ax.set_xticks(range(len(results)), names, rotation=30, ha="right")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _svg(fig)


def _slice_heatmap(report: Report) -> str | None:
    columns: list[tuple[str | None, str]] = [(None, f) for f in ACCURACY_FIGURES if any(getattr(r.metrics, f) is not None for r in report.results)]
    slices = sorted({s for r in report.results for s in r.slices})
    columns += [(s, f) for s in slices for f in ACCURACY_FIGURES
                if any(s in r.slices and getattr(r.slices[s], f) is not None for r in report.results)]
    if not columns or not report.results:
        return None
    import numpy as np

    grid = np.array([[_figure_of(r, s, f) for s, f in columns] for r in report.results], dtype=float)
    fig, (ax,) = _new_figure(max(6.0, 0.75 * len(columns) + 3), 0.45 * len(report.results) + 2.2)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="YlGnBu", vmin=np.nanmin(grid), vmax=np.nanmax(grid),
                      aspect="auto")
    broken = {(r.name, c.slice, c.metric) for r in report.results for c in r.checks if c.passed is False}
    low, high = np.nanmin(grid), np.nanmax(grid)
    for i, r in enumerate(report.results):
        for j, (s, f) in enumerate(columns):
            if not math.isnan(grid[i, j]):
                mark = (r.name, s, f) in broken
                ax.text(j, i, f"{grid[i, j]:.3f}" + (" ✗" if mark else ""), ha="center", va="center", fontsize=7,
                        color=BROKEN if mark else "white" if grid[i, j] > (low + high) / 2 else "black", fontweight="bold" if mark else "normal",
                        bbox={"facecolor": "white", "edgecolor": BROKEN} if mark else None)
    ax.set_xticks(range(len(columns)), [visible(f"{s or 'all'}: {f.replace('_', ' ')}") for s, f in columns],
                  rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(report.results)), [r.name for r in report.results], fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title("✗ in red: a budget broken", fontsize=8, loc="left")
    return _svg(fig)


def _figure_of(r: TargetResult, slice_name: str | None, figure: str) -> float:
    metrics = r.metrics if slice_name is None else r.slices.get(slice_name)
    value = getattr(metrics, figure, None) if metrics is not None else None
    return math.nan if value is None else float(value)


def _headline(report: Report, r: TargetResult) -> float:
    """The task's headline figure (the table's), else agreement with the float student."""
    value = getattr(r.metrics, HEADLINE[report.task][1])
    return value if value is not None else (r.metrics.float_agreement if r.metrics.float_agreement is not None
                                            else math.nan)


def _tradeoff(report: Report) -> str | None:
    points = [(r, r.size_bytes / MB, _headline(report, r), r.latency.p50_ms if r.latency else None)
              for r in report.results]
    points = [p for p in points if not math.isnan(p[2])]
    if len(points) < 2:
        return None
    front = [p for p in points if not any(_dominates(q, p) for q in points if q is not p)]
    fig, (ax,) = _new_figure(7.0, 4.2)
    latencies = [p[3] for p in points if p[3]]
    scale = 600 / max(latencies) if latencies else 1
    for r, size, value, p50 in points:
        ax.scatter([size], [value], s=40 + (p50 or 0) * scale, alpha=0.6, color=NEUTRAL if r.passed else BROKEN,
                   edgecolors="black" if any(p[0] is r for p in front) else "none", linewidths=2)
        ax.annotate(f"{r.name}\n{_fmt(p50, 'ms')}", (size, value), fontsize=7, textcoords="offset points",
                    xytext=(6, 4))
    front.sort(key=lambda p: p[1])
    ax.plot([p[1] for p in front], [p[2] for p in front], "k--", linewidth=1, label="Pareto front")
    ax.set_xlabel("size (MB)")
    ax.set_ylabel("retrieval agreement" if report.task == "embedding" else "accuracy (else float agreement)")
    ax.legend(fontsize=8)
    return _svg(fig)


def _dominates(q, p) -> bool:
    """q is at least as small, as accurate and as fast as p, and better in one."""
    q_lat, p_lat = q[3] if q[3] is not None else math.inf, p[3] if p[3] is not None else math.inf
    at_least = q[1] <= p[1] and q[2] >= p[2] and q_lat <= p_lat
    return at_least and (q[1] < p[1] or q[2] > p[2] or q_lat < p_lat)


def _ladder_plot(report: Report) -> str | None:
    rungs = [r for r in (report.ladder.rungs if report.ladder else []) if r.measured and r.size_bytes]
    if not rungs:
        return None
    fig, (size_ax, lat_ax) = _new_figure(10.0, 0.4 * len(rungs) + 1.8, columns=2)
    colours = [HOLDS if r.meets_budget else BROKEN if r.meets_budget is False else UNMEASURED for r in rungs]
    chosen = report.ladder.chosen if report.ladder else None
    names = [r.name + (" (chosen)" if r.name == chosen else "") for r in rungs]
    size_ax.barh(range(len(rungs)), [(r.size_bytes or 0) / MB for r in rungs], color=colours)
    lat_ax.barh(range(len(rungs)), [r.p50_ms if r.p50_ms is not None else math.nan for r in rungs], color=colours)
    size_ax.set_yticks(range(len(rungs)), names, fontsize=8)
    lat_ax.set_yticks(range(len(rungs)), [""] * len(rungs))
    size_ax.invert_yaxis()
    lat_ax.invert_yaxis()
    size_ax.set_xlabel("size (MB); green: meets every budget")
    lat_ax.set_xlabel("p50 latency (ms)")
    return _svg(fig)


def _mixed(report: Report) -> list[tuple[TargetResult, dict]]:
    return [(r, r.details["mixed_precision"]) for r in report.results if r.details.get("mixed_precision")]


def _sensitivity_plot(report: Report) -> str | None:
    """Each layer's gain, colored by what the search chose for it."""
    searches = _mixed(report)
    if not searches:
        return None
    fig, axes = _new_figure(6.0 * len(searches), 0.3 * max(len(m["sensitivity"]) for _, m in searches) + 1.6,
                            columns=len(searches))
    for ax, (r, m) in zip(axes, searches):
        rows = sorted(m["sensitivity"], key=lambda s: s["gain"])
        ax.barh(range(len(rows)), [s["gain"] for s in rows],
                color=[_RAISED_COLORS.get(chosen_precision(m, s["layer"]), NEUTRAL) for s in rows])
        ax.set_yticks(range(len(rows)), [visible(s["layer"][-40:]) for s in rows], fontsize=7)  # the model's names
        ax.set_title(f"{r.name} (red: raised to float, amber: to int8)", fontsize=9)
        ax.set_xlabel("gain")
    return _svg(fig)


def _sensitivity_table(report: Report) -> str:
    out = []
    for r, m in _mixed(report):
        shown = SENSITIVITY_SHOWN[report.task]
        rows = [[s["layer"], s["op"], f"{s['weight_share']:.1%}", f"{s['gain']:.3g}", _fmt(s.get("sqnr_db"), "dB")]
                + [_fmt(s.get(f)) for f in shown] + [_fmt(s.get(f"quantized alone: {f}")) for f in shown]
                + [s.get("raised_to", "float"), chosen_precision(m, s["layer"])]
                for s in sorted(m["sensitivity"], key=lambda s: -s["gain"])]
        head = (["layer", "op", "weights", "gain", "SQNR at its output, all quantized"]
                + [f"{f} (raised alone)" for f in shown]
                + [f"{f} (quantized alone)" for f in shown] + ["raised alone to", "chosen"])
        error = m.get("activation_error")
        out.append(f"<h2>Sensitivity of {_h(r.name)}</h2><p>{m['trials']} trials in {m['seconds']:.0f} s; "
                   f"stopped: {_h(str(m['stopped']))}</p>"
                   + (f"<p>SQNR, on {error['samples']} samples: {_h(error['method'])}</p>" if error else "")
                   + _table(head, rows, [""] * len(rows), f"sensitivity-{_h(r.name)}"))
    return "".join(out)


def _trend_plot(artifact: str, rows: list[dict]) -> str | None:
    from matplotlib.ticker import MaxNLocator

    series: dict[str, list[tuple]] = {}
    for row in rows:
        if row["slice"] is None and row["figure"] in ("latency.p50_ms", "accuracy", "size_bytes",
                                                      "teacher_retrieval_agreement"):
            series.setdefault(row["figure"], []).append((row["id"], row["value"]))
    if not any(len(v) > 1 for v in series.values()):
        return None
    fig, axes = _new_figure(4.0 * len(series), 2.8, columns=len(series))
    for ax, (figure, points) in zip(axes, sorted(series.items())):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=NEUTRAL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(figure, fontsize=9)
        ax.set_xlabel("run")
    return _svg(fig)


def discovery_html(d: SliceDiscovery) -> str:
    """report.html of `slices discover`: the proposed slices, then every candidate shown, ranked."""
    title = f"edge-distill slices discover: {len(d.proposed)} slice(s) proposed"
    parts = [f"<header class='verdict {'failed' if d.proposed else 'passed'}' id='verdict'>{_h(title)}</header>",
             *discovery_parts(d, "", "h2")]
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{_h(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def discovery_parts(d: SliceDiscovery, key: str, heading: str) -> list[str]:
    """One discovery as HTML under `heading` (h2) titles; `key` keeps the element ids apart when a page
    holds several ("proposed" alone, "proposed-ort-int8" beside others)."""
    ids = {k: f"{k}-{key}" if key else k for k in ("proposed", "candidates")}
    parts = ["<ul>" + "".join(f"<li>{_h(line)}</li>" for line in discovery_summary(d)) + "</ul>",
             f"<{heading}>Proposed slices</{heading}>"]
    if not d.proposed:
        parts.append("<p>No slice fails significantly more often than the rest.</p>")
    items = [f"<li><b>{_h(c.name)}</b> ({c.source}): {_h(c.description)}. {c.size} samples, "
             f"{c.error_rate:.1%} fail against {c.rest_error_rate:.1%} elsewhere; p = {_p(c.p_adjusted)} (Holm). "
             f"Budget: {_h(_limits(c.budget))}.</li>" for c in d.proposed]
    parts.append(f"<ul id='{_h(ids['proposed'])}'>" + "".join(items) + "</ul>" if items else "")
    if d.data_file:
        parts.append(f"<p class='note'>Masks in {_h(d.data_file)}; budget stanzas in {_h(d.budget_file)} (the float "
                     f"student's figure minus {d.margin:g}).</p>")
    head, rows, shown = discovery_rows(d)
    classes = ["broken" if c.proposed else "" for c in shown]
    parts += [f"<{heading}>Ranked candidates</{heading}>", _table(head, rows, classes, ids["candidates"])]
    return parts + [f"<p class='note'>warning: {_h(w)}</p>" for w in d.warnings]


def _discoveries(report: Report) -> str:
    """[slices.discover] in `check`: a section of the page, each artifact's search under its name."""
    if not report.discoveries:
        return ""
    parts = ["<h2 id='discovery'>Slice discovery</h2>"]
    for name, d in report.discoveries.items():
        parts += [f"<h3>{_h(name)}: {len(d.proposed)} slice(s) proposed</h3>",
                  *discovery_parts(d, re.sub(r"[^A-Za-z0-9_-]", "-", name), "h4")]
    return "\n".join(p for p in parts if p)
