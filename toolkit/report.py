"""Renderers: every report is drawn from one `result.Report`: JSON (canonical, with a schema),
JUnit XML, Markdown, and the terminal table (HTML: html_report.py; the files: report_files.py).
Nothing here measures or decides; the exit code is the result's."""

from __future__ import annotations

import html
import json
import math
import re

from .result import KB, MB, Check, FoundSlice, Report, SliceDiscovery
from .tables import visible


def to_json(report: Report) -> str:
    """Canonical JSON: NaN and infinities (not JSON) become null, so any JSON reader takes the report."""
    return json.dumps(_finite(report.to_dict()), indent=2, default=str, allow_nan=False) + "\n"


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _ladder_suite(report: Report):
    """A ladder's rungs below the chosen one are findings: skipped, not failed. Only 'no rung meets
    the budget' fails the build."""
    from junitparser import Failure, Skipped, TestCase, TestSuite

    suite = TestSuite(f"edge-distill {report.command} ladder")
    ladder = report.ladder
    assert ladder is not None  # called for a ladder's report only
    for rung in ladder.rungs:
        case = TestCase(visible(rung.name), "edge-distill.ladder")
        why = rung.note if not rung.measured else None if rung.meets_budget else "does not meet: " + ", ".join(rung.broken)
        if why:
            skipped = Skipped()  # Jenkins' schema gives <skipped> text, no message attribute
            skipped.text = visible(why)
            case.result = [skipped]
        suite.add_testcase(case)
    verdict = TestCase("verdict", "edge-distill.ladder")
    if ladder.chosen is None:
        verdict.result = [Failure(visible(ladder.verdict))]
    suite.add_testcase(verdict)
    return suite


def _case(check: Check):
    from junitparser import Error, Failure, TestCase

    classname, _, name = visible(check.name).partition("/")
    case = TestCase(name, "edge-distill." + classname)
    sentence = visible(_sentence(check))
    if check.passed is False:
        failure = Failure(sentence)
        failure.text = sentence
        case.result = [failure]
    elif check.passed is None:
        case.result = [Error(sentence, "cannot-measure")]
    return case


def to_junit(report: Report) -> str:
    """JUnit XML through junitparser: one test suite per artifact (its properties: target, precision,
    sha256, size, the latency's and the outputs' provenance), one test case per check; the run's own
    checks (a stale teacher) and a ladder's rungs in suites of their own. Validated against Jenkins'
    JUnit schema in the tests. Every text goes in through `visible`: XML 1.0 forbids most control
    characters, and one in a slice name would make the whole file unreadable to CI."""
    from junitparser import JUnitXml, TestSuite

    xml = JUnitXml("edge-distill")
    suites = []
    if report.ladder is not None:
        suites.append(_ladder_suite(report))
    if report.gate_checks:
        suites.append(TestSuite(f"edge-distill {report.command}"))
        for check in report.gate_checks:
            suites[-1].add_testcase(_case(check))
    for r in report.results if report.ladder is None else []:
        suite = TestSuite(visible(f"edge-distill {report.command} {r.name}"))
        for key, value in _properties(r).items():
            suite.add_property(key, visible(value))
        for check in r.checks:
            suite.add_testcase(_case(check))
        suites.append(suite)
    for suite in suites:
        suite.timestamp = report.created
        suite.update_statistics()
        xml.add_testsuite(suite)
    # Totals set by hand: junitparser's update_statistics adds a `skipped` count to <testsuites>,
    # which Jenkins' schema does not allow there.
    xml.tests, xml.failures, xml.errors = (sum(getattr(s, k) for s in suites) for k in ("tests", "failures", "errors"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml.tostring().decode() + "\n"


def _properties(r) -> dict[str, str]:
    props = {"artifact": r.artifact, "target": r.target, "precision": r.precision, "sha256": r.sha256,
             "size_bytes": str(r.size_bytes), "evaluation": r.evaluation.get("kind", "")}
    if r.latency:
        p = r.latency.provenance
        props.update({"latency.provenance": p.kind, "latency.device": p.device,
                      "latency.runtime": f"{p.runtime} {p.runtime_version}", "latency.cpu": p.cpu,
                      "latency.threads": str(p.threads)})
    return props


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _sentence_parts(check: Check) -> tuple[str, str, str]:
    """(the figure against its limit and the verdict, " [provenance]", ": message"), each possibly empty."""
    if check.metric == "built":  # an artifact that was never built has no figure to show
        return f"{check.name}: not built", "", f": {check.message}"
    verdict = {True: "holds", False: "BROKEN", None: "NOT MEASURED"}[check.passed]
    head = f"{check.name}: {_fmt(check.value, check.unit)} (limit {check.comparison} {_fmt(check.limit, check.unit)}) {verdict}"
    return head, f" [{check.provenance}]" if check.provenance else "", f": {check.message}" if check.message else ""


def _sentence(check: Check) -> str:
    return "".join(_sentence_parts(check))


# (column, Metrics field) per task; slices repeat the task's headline metric
COLUMNS = {"classification": [("accuracy", "accuracy"), ("drop", "accuracy_drop"), ("float agr", "float_agreement"),
                              ("teacher agr", "teacher_agreement")],
           "embedding": [("teacher cos", "teacher_cosine"), ("float cos", "float_cosine"),
                         ("retrieval agr", "teacher_retrieval_agreement"),
                         ("float retr agr", "float_retrieval_agreement")]}
HEADLINE = {"classification": ("acc", "accuracy"), "embedding": ("retr agr", "teacher_retrieval_agreement")}


def _rows(report: Report) -> tuple[list[str], list[list[str]]]:
    columns, (slice_head, slice_field) = COLUMNS[report.task], HEADLINE[report.task]
    head = ["artifact", "size", "int8/4 wts", "p50 ms", "p95 ms", "peak MB", "speedup"] + [c for c, _ in columns]
    slice_names = sorted({s for r in report.results for s in r.slices})
    head += [f"{s} {slice_head}" for s in slice_names] + ["budgets"]
    rows = []
    for name, ref in report.references.items():
        m = ref["overall"]
        rows.append([f"({name})", "", "", "", "", "", ""]
                    + [_fmt(getattr(m, f)) if f in ("accuracy", "teacher_agreement", "teacher_retrieval_agreement",
                                                     "teacher_cosine") else "" for _, f in columns]
                    + [_fmt(getattr(ref["slices"][s], slice_field)) if s in ref["slices"] else ""
                       for s in slice_names] + [""])
    for r in report.results:
        lat = r.latency
        verdict = "pass" if r.passed else ("FAIL" if any(c.passed is False for c in r.checks) else "UNMEASURED")
        if r.failure:
            rows.append([r.name] + [""] * (len(head) - 2) + ["REFUSED" if r.failure["exit_code"] == 2 else "NOT BUILT"])
            continue
        rows.append([r.name, _size(r.size_bytes), _share(r), _fmt(lat and lat.p50_ms), _fmt(lat and lat.p95_ms),
                     _fmt(r.memory.peak_mb), _fmt(r.speedup_vs_float, "x") if r.speedup_vs_float else "-"]
                    + [_fmt(getattr(r.metrics, f)) for _, f in columns]
                    + [_fmt(getattr(r.slices[s], slice_field)) if s in r.slices else "" for s in slice_names]
                    + [f"{verdict} ({sum(bool(c.passed) for c in r.checks)}/{len(r.checks)})"])
    return head, rows


def _output_lines(report: Report) -> list[str]:
    """Each output judged by its kind, against the float student's same output."""
    lines = []
    for r in report.results:
        for name, f in r.outputs_beyond_the_task.items():
            cells = [f"{key} {_fmt(f[key])}" for key in FIGURE_ORDER if f.get(key) is not None]
            lines.append(f"  {r.name} {name} ({f['kind']}{', inferred' if f['inferred'] else ''}): "
                         + (", ".join(cells) or "no float output to compare"))
    return (["Outputs (against the float student's):"] + lines) if lines else []


# the figures an output's line shows, most telling first
FIGURE_ORDER = ("float_agreement", "position_agreement", "exact_match", "cer", "pixel_agreement", "mean_iou",
                "topk_overlap", "psnr_db", "cosine", "mean_abs_error", "max_abs_error", "relative_error")


def _share(r) -> str:
    """The share of a quantized artifact's weights stored in int8/int4 ("-" for a float one), and of
    int8 where it mixes the two."""
    fraction = (r.coverage or {}).get("quantized_weight_fraction")
    int8 = (r.coverage or {}).get("by_precision", {}).get("int8", {}).get("weight_fraction")
    mixed = int8 and fraction and int8 < fraction  # int4 and int8 side by side (an int4-auto's raised layers)
    return "-" if fraction is None else f"{fraction:.0%}" + (f" ({int8:.0%} int8)" if mixed else "")


def _batch_lines(report: Report) -> list[str]:
    """A fixed-batch model's latency is per run of its batch: say so, and give it per sample."""
    return [f"  {r.name}: one run is the model's fixed batch of {r.latency.batch} samples; per sample "
            f"p50 {_fmt(r.latency.per_sample_p50_ms)} / p95 {_fmt(r.latency.per_sample_p95_ms)} ms"
            for r in report.results if r.latency and r.latency.batch > 1]


def _range_lines(report: Report) -> list[str]:
    """An estimate is a point inside a range its profile's validation gives: say the range."""
    return [f"  {r.name}: estimated p50 {_fmt(r.latency.p50_ms)} ms, {_fmt(r.latency.low_ms)}-{_fmt(r.latency.high_ms)} "
            "ms if it errs as the profile's published runs did"
            for r in report.results if r.latency and r.latency.low_ms is not None]


def _length_lines(report: Report) -> list[str]:
    """Latency at each sequence length, for text models."""
    lines = []
    for r in report.results:
        by_length = r.details.get("latency_by_length")
        if by_length:
            cells = [f"{n} tokens: " + (f"p50 {_fmt(v['p50_ms'])} / p95 {_fmt(v['p95_ms'])} ms" if "p95_ms" in v
                                        else "n/a") for n, v in sorted(by_length.items(), key=lambda kv: int(kv[0]))]
            lines.append(f"  {r.name}: " + "; ".join(cells))
    return (["Latency by sequence length (batch 1):"] + lines) if lines else []


def _mixed_lines(report: Report) -> list[str]:
    """Each -auto precision's search: its layers by gain, which went back to float, what it cost."""
    lines = []
    for r in report.results:
        m = r.details.get("mixed_precision")
        if not m:
            continue
        if m["stopped"] == "sensitivity only":
            lines.append(f"Sensitivity, {r.name}: each layer in float alone, and quantized alone; "
                         f"{m['trials']} trials in {m['seconds']:.0f} s (gain: how much closer to holding the "
                         "budgets a layer in float brings them; SQNR: at the layer's output with every layer "
                         "quantized, against the float graph)")
        else:
            lines.append(f"Mixed precision, {r.name}: {raised_summary(m)}; {m['trials']} trials "
                         f"in {m['seconds']:.0f} s; stopped: {m['stopped']}"
                         + ("" if m["met"] else " (no configuration meets every budget)"))
        if m.get("activation_error"):
            lines.append(f"  SQNR, on {m['activation_error']['samples']} samples: {m['activation_error']['method']}")
        if m.get("samples"):
            n = m["samples"]
            lines.append(f"  trials on {n['trials']} of {n['all']} samples (stratified by {n['stratified_by']}; the "
                         f"standard errors below are the subset's); on all {n['all']}: "
                         + ("every budget holds" if n["confirmed"] else "a budget breaks (see the checks)"))
        shown = SENSITIVITY_SHOWN[report.task]
        for s in sorted(m["sensitivity"], key=lambda s: -s["gain"]):
            name = s["layer"] if len(s["layer"]) <= 48 else "..." + s["layer"][-45:]
            raised = ", ".join(f"{k} {v:.4g}" + (f" ± {s[k + '_se']:.2g}" if k + "_se" in s else "")
                                 for k, v in s.items() if k.rpartition(".")[2] in shown and ":" not in k)
            alone = ", ".join(f"{k.split(': ', 1)[1]} {v:.4g}" for k, v in s.items() if k.startswith("quantized alone: ")
                              and k.split(": ", 1)[1].rpartition(".")[2] in shown)
            lines.append(f"  {chosen_precision(m, s['layer']):5}  {name:48}  {s['op']:16} "
                         f"{s['weight_share']:6.1%} of weights  gain {s['gain']:.3g}"
                         + (f"  SQNR {s['sqnr_db']:.1f} dB" if "sqnr_db" in s else "")
                         + f"  (in {s.get('raised_to', 'float')} alone: {raised}"
                         + (f"; quantized alone: {alone})" if alone else ")"))
    return lines


def _recipe_lines(report: Report) -> list[str]:
    """An option set to "auto" (int8_recipe): every candidate recipe's figures, and the one kept."""
    lines = []
    for r in report.results:
        m = r.details.get("int8_recipes")
        if not m:
            continue
        lines.append(f"Recipes, {r.name}: {m['option']} = 'auto' chose {m['chosen']!r} of {len(m['candidates'])} "
                     f"candidates in {m['seconds']:.0f} s ({m['rank']}); {m['rebuild']} rebuilds it")
        for c in m["candidates"]:
            if "error" in c:
                lines.append(f"  {c['recipe']}: not built: {c['error']} ({c['seconds']:.1f} s)")
                continue
            figure = f"{c['metric']} {c['value']:.4g}, " if c["metric"] else ""
            lines.append(f"  {c['recipe']}{' (chosen)' if c['recipe'] == m['chosen'] else ''}: {figure}"
                         f"{c['size_bytes'] / 1e6:.3f} MB, "
                         + ("every budget holds" if c["passed"] else "breaks " + ", ".join(c["broken"]))
                         + f" ({c['seconds']:.1f} s)")
    return lines


def _raised(m: dict) -> dict[str, str]:
    """A search's raised layers -> their precision (a stored report from before int8 steps: its float ones)."""
    return m.get("raised", {name: "float" for name in m["keep_float"]})


def chosen_precision(m: dict, layer: str) -> str:
    """What an -auto search did with a layer: the precision it raised it to, or its base precision."""
    return _raised(m).get(layer, m["precision"])


def raised_summary(m: dict) -> str:
    """"2 layer(s) in int8, 1 in float: 71% of the weights still int4, 94% quantized"."""
    steps = m.get("steps", ["float"])
    raised = _raised(m)
    counts = ", ".join(f"{sum(1 for v in raised.values() if v == step)}{' layer(s)' if i == 0 else ''} in {step}"
                       for i, step in enumerate(steps))
    share = m.get("base_share", m["quantized_share"])
    return (f"{counts}: {share:.1%} of the weights still {m['precision']}"
            + (f", {m['quantized_share']:.1%} quantized" if len(steps) > 1 else ""))


# the figures a sensitivity table shows per task, overall and per slice ("rare_topic.float_cosine")
SENSITIVITY_SHOWN = {"classification": ("accuracy", "weighted_accuracy"),
                     "embedding": ("float_cosine", "float_retrieval_agreement")}


def _size(n: int) -> str:
    return f"{n / KB:.1f} KB" if n < MB else f"{n / MB:.2f} MB"


def _provenance_lines(report: Report) -> list[str]:
    """One line per distinct way the latency figures were obtained."""
    seen: dict[tuple, list[str]] = {}
    for r in report.results:
        if r.latency:
            p = r.latency.provenance
            key = (p.kind, p.device, p.cpu, p.threads, p.runtime, p.runtime_version, p.method)
            seen.setdefault(key, []).append(r.target)
    lines = [f"Latency and memory of {', '.join(dict.fromkeys(targets))}: {kind} on {device} ({cpu}, "
             f"{f'{threads} thread(s)' if threads else 'threads as the runtime chooses'}, {runtime} {version}); {method}."
             for (kind, device, cpu, threads, runtime, version, method), targets in seen.items()]
    reference = {(r.target, r.evaluation["runtime"], r.evaluation.get("runtime_version", ""))
                 for r in report.results if r.evaluation.get("kind") == "reference-mil"}
    lines += [f"Accuracy of {target}: reference-mil ({runtime} {version}): the saved program evaluated in numpy, "
              "not Core ML's kernels." for target, runtime, version in sorted(reference)]
    emulated = [r for r in report.results if r.evaluation.get("kind") == "emulated"]
    for r in emulated:
        parity = r.details.get("arm64_vs_host")
        lines.append(f"Accuracy of {r.name}: " + (
            f"emulated on aarch64 ({r.evaluation['runtime']} {r.evaluation['runtime_version']} under qemu-user), "
            f"the kernels a phone's CPU runs; top-1 agreement with this host's x86 run {parity['top1_agreement']:.4g}, "
            f"max |difference| {parity['max_abs_diff']:.2g}." if parity else "not measured on aarch64 (see below)."))
    for r in report.results:  # a device cloud's sample run on the phone, against this host's
        cloud, parity = r.details.get("qai_hub"), r.details.get("arm64_vs_host")
        if cloud and parity:
            lines.append(f"Outputs of {r.name} on {parity['device']}: {parity['samples']} samples run on the phone "
                         f"(inference job {cloud['inference_job']['id']}); top-1 agreement with this host's run "
                         f"{parity['top1_agreement']:.4g}, max |difference| {parity['max_abs_diff']:.2g}.")
    if emulated:
        lines.append("The emulator gives numerics only: latency and memory above are this host's, never the "
                     "emulator's timing.")
    return lines + _cache_lines(report)


def _cache_lines(report: Report) -> list[str]:
    """What this run took from the cache instead of computing it again (none with --no-cache)."""
    reused = [(f"the ONNX export {report.export.path}", report.export.reused)] if report.export else []
    reused += [("the float student's and teacher's outputs", report.references_reused)]
    reused += [(f"the artifact {r.name} (build seconds: the copy's)", r.reused) for r in report.results]
    return [f"Reused, unchanged since an earlier run: {what}, {note}; every figure above is measured in this run."
            for what, note in reused if note]


def to_table(report: Report, colour: bool | None = None) -> str:
    """The terminal's view: the artifacts table (rich: width-aware; rows with a broken budget in red,
    the references dim), notes, the broken checks with their limits (provenance dim), the verdict.
    Plain text off a terminal or with NO_COLOR."""
    from .tables import colour_wanted, paint, table

    colour = colour_wanted() if colour is None else colour
    head, rows = _rows(report)
    styles = ["dim"] * len(report.references) + [
        "red" if any(c.passed is False for c in r.checks) else "yellow" if any(c.passed is None for c in r.checks)
        else None for r in report.results]
    out = [table(head, rows, styles, colour)]
    broken = [c for c in report.checks if c.passed is not True]
    out.append("")
    # every line is one line of text (`visible`; paint makes its text visible too): a name never moves
    # the cursor, colours the log or forges a verdict line
    out.extend(map(visible, [*_batch_lines(report), *_range_lines(report), *_length_lines(report),
                             *_output_lines(report), *_mixed_lines(report), *_recipe_lines(report),
                             *_provenance_lines(report)]))
    for w in dict.fromkeys(report.warnings + [w for r in report.results for w in r.warnings]):
        out.append(paint(f"warning: {w}", "yellow", colour))
    if broken:
        out.append("")
        for c in broken:
            sentence, provenance, message = _sentence_parts(c)
            out.append("  " + paint(sentence, "red" if c.passed is False else "yellow", colour)
                       + (paint(provenance, "dim", colour) if provenance else "") + visible(message))
    out.append("")
    if report.ladder is not None:
        out.extend(map(visible, _ladder_lines(report)))
    out.append(paint(verdict_line(report), {0: "bold green", 1: "bold red", 2: "bold red", 3: "bold yellow"}[report.exit_code],
                     colour))
    return "\n".join(out)


def verdict_line(report: Report) -> str:
    """The run's verdict in one line: the table's last, report.html's banner."""
    word = {0: "PASSED", 1: "FAILED", 2: "REFUSED", 3: "INCOMPLETE"}[report.exit_code]
    if report.ladder is not None:
        return f"{word}: {report.ladder.verdict}"
    if not report.checks:
        return "PASSED: no budget was given, so nothing was checked (a [budgets] table, or verify --budget FILE)"
    return (word + {0: ": every budget holds", 1: ": a budget is broken", 2: ": a target refused an artifact (see its row)",
                   3: ": something could not be measured"}
            [report.exit_code] + f" ({sum(bool(c.passed) for c in report.checks)}/{len(report.checks)} checks hold)")


def _ladder_lines(report: Report) -> list[str]:
    lines = ["Ladder (subjects in adoption order, each one's rungs by measured size then p50):"]
    ladder = report.ladder
    assert ladder is not None  # called for a ladder's report only
    for rung in ladder.rungs:
        if not rung.measured:
            state = rung.note
        elif rung.meets_budget:
            state = "meets every budget"
        else:
            state = "does not meet: " + ", ".join(rung.broken)
        size = f", {_size(rung.size_bytes)}" if rung.size_bytes is not None else ""
        price = f", {rung.cost_per_call:.3g} per call" if rung.cost_per_call is not None else ""
        note = f"; {rung.note}" if rung.measured and rung.note else ""
        lines.append(f"  {rung.name}: {state}{size}{price}{note}")
    cost = ladder.cost
    if cost:
        lines.append(f"Cost: distillation {cost['fixed_cost_of_distillation']:.2f} once + "
                     f"{cost['upkeep_per_month']:.2f} a month (spread over {cost['amortize_months']:g} months); "
                     + cost.get("payback_note", ""))
    else:
        lines.append("Cost: no [cost] table in the config, so no per-call prices or payback volume.")
    lines.append("")
    return lines


def _md(text) -> str:
    """Text in Markdown as the letters it holds: one line (`visible`), HTML inert (<script>, <!--), and
    no Markdown syntax (a link, emphasis, a table cell's end) made of a name's punctuation."""
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", html.escape(visible(text), quote=False))


def _md_code(text) -> str:
    """Text as a code span; one holding what a code span would end on (a backtick, a table's pipe) or
    show raw to a renderer that reads HTML first (<, &) as `_md` text instead."""
    text = visible(text)
    return _md(text) if re.search("[`|<>&]", text) else f"`{text}`"


def to_markdown(report: Report) -> str:
    """report.md. Every text not this tool's own goes through `_md` or `_md_code`."""
    head, rows = _rows(report)
    status = {0: "✅ passed", 1: "❌ budget broken", 2: "⛔ artifact refused", 3: "⚠️ could not measure"}[report.exit_code]
    if report.ladder is not None:
        status = "✅ " + _md(report.ladder.chosen) if report.ladder.chosen else "❌ no rung meets the budget"
    out = [f"# edge-distill {report.command}: {status}", "",
           f"Student {_md_code(report.student['reference'])} (sha256 `{report.student['fingerprint'][:12]}`)"
           + (f", teacher {_md_code(report.teacher['reference'])} (sha256 `{report.teacher['fingerprint'][:12]}`)"
              if report.teacher else "") + ".", ""]
    out += ["| " + " | ".join(map(_md, head)) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(_md, r)) + " |" for r in rows]
    out += ["", *map(_md, [*_batch_lines(report), *_range_lines(report), *_length_lines(report),
                           *_output_lines(report), *_provenance_lines(report)]), ""]
    mixed = _mixed_lines(report)
    if mixed:
        out += ["## Mixed precision", ""] + [f"- {_md(line.strip())}" if line.startswith("  ") else _md(line)
                                             for line in mixed] + [""]
    recipes = _recipe_lines(report)
    if recipes:
        out += ["## Recipes", ""] + [f"- {_md(line.strip())}" if line.startswith("  ") else _md(line)
                                     for line in recipes] + [""]
    for w in dict.fromkeys(report.warnings + [w for r in report.results for w in r.warnings]):
        out.append(f"> **warning:** {_md(w)}")
    if report.ladder is not None:
        out += ["", "## Ladder", "", f"**{_md(report.ladder.verdict)}**", ""] + [
            f"- {_md(line.strip())}" for line in _ladder_lines(report)[1:] if line.strip()]
    if report.discoveries:  # [slices.discover]: each artifact's search, from the same result object
        out += ["", "## Slice discovery", ""]
        for name, d in report.discoveries.items():
            out += [f"### {_md_code(name)}: {len(d.proposed)} slice(s) proposed", "", *discovery_lines(d, "####")]
    out += ["", "## Checks", "", "| check | value | limit | verdict |", "|---|---|---|---|"]
    for c in report.checks:
        verdict = {True: "holds", False: "**broken**", None: "**not measured**"}[c.passed]
        note = f" ({_md(c.message)})" if c.message else ""
        out.append(f"| {_md_code(c.name)} | {_fmt(c.value, c.unit)} | {c.comparison} {_fmt(c.limit, c.unit)} | "
                   f"{verdict}{note} |")
    return "\n".join(out) + "\n"


DISCOVERY_SHOWN = 10  # ranked candidates a discovery report lists (the proposed ones always)


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-300 else "< 1e-300"


def _limits(budget: dict) -> str:
    return ", ".join(f"{k} = {v:g}" for k, v in budget.items()) or "none (no per-slice key for this kind)"


def discovery_summary(d: SliceDiscovery) -> list[str]:
    """The lines that say what was compared, how, and how long it took."""
    per_10k = d.seconds * 10_000 / max(d.samples, 1)
    lines = [f"{d.subject} against the {d.reference}, output `{d.output}` ({d.kind}), on {d.samples} samples: "
             f"{d.failures} fail ({d.failure_rule}).",
             f"Searched {d.hypotheses} hypotheses; significant: adjusted p <= {d.alpha:g} ({d.correction}); slices of "
             f"at least {d.min_size} samples and at most half the data; seed {d.seed}.",
             f"Search time {d.seconds:.2f} s for {d.samples} samples (the models' runs not counted; about "
             f"{per_10k:.1f} s per 10,000 samples if it grew linearly, as k-means and the tests do)."]
    lines += [f"{source}: {note}" for source, note in d.searched.items()]
    if d.null_check:
        n = d.null_check
        lines.append(f"Null check: with the errors shuffled (no slice real), {n['with_a_slice']} of {n['shuffles']} "
                     f"searches found a significant slice (smallest adjusted p {n['smallest_p_adjusted']:.2g}).")
    return lines


def discovery_rows(d: SliceDiscovery) -> tuple[list[str], list[list[str]], list[FoundSlice]]:
    """The ranked candidates' table (the shown ones and every proposed one), and the rows' slices."""
    shown = [c for c in d.candidates if c.rank <= DISCOVERY_SHOWN or c.proposed]
    head = ["rank", "slice", "source", "samples", "failing", "failing elsewhere", "mean error (rest)", "p", "p (Holm)",
            "verdict"]
    rows = []
    for c in shown:
        verdict = "proposed" if c.proposed else f"held by {c.same_as}" if c.same_as else \
            "significant" if c.significant else "not significant"
        rows.append([str(c.rank), c.name, c.source, str(c.size), f"{c.failures} ({c.error_rate:.1%})",
                     f"{c.rest_error_rate:.1%}", f"{c.mean_error:.4g} ({c.rest_mean_error:.4g})", _p(c.p_value),
                     _p(c.p_adjusted), verdict])
    return head, rows, shown


def discovery_markdown(d: SliceDiscovery) -> str:
    """report.md of `slices discover`."""
    title = f"# edge-distill slices discover: {len(d.proposed)} slice(s) proposed"
    return "\n".join([title, "", *discovery_lines(d, "##")]) + "\n"


def discovery_lines(d: SliceDiscovery, level: str) -> list[str]:
    """One discovery in Markdown under headings of `level` ("##"): what was searched, the proposed
    slices, the ranked candidates. Names and descriptions come from the user's data: escaped."""
    out = [f"- {_md(line)}" for line in discovery_summary(d)] + ["", f"{level} Proposed slices", ""]
    if not d.proposed:
        out += ["No slice fails significantly more often than the rest.", ""]
    for c in d.proposed:
        out += [f"- **{_md_code(c.name)}** ({c.source}): {_md(c.description)}. {c.size} samples, {c.error_rate:.1%} "
                f"fail against {c.rest_error_rate:.1%} elsewhere; p = {_p(c.p_adjusted)} (Holm). Budget: "
                f"{_md(_limits(c.budget))}."]
    if d.data_file:
        out += ["", f"The slices are masks (`slice_<name>`) in {_md_code(d.data_file)}, beside the data's own arrays; "
                f"the budget stanzas (the float student's figure on each slice minus {d.margin:g}) are in "
                f"{_md_code(d.budget_file)}."]
    head, rows, _ = discovery_rows(d)
    out += ["", f"{level} Ranked candidates", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md_code(x) if k == 1 else _md(x) for k, x in enumerate(r)) + " |" for r in rows]
    return out + [""] + [f"> **warning:** {_md(w)}" for w in d.warnings]
