"""The command line: parse, call the library, print. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from . import limits
from .errors import CannotMeasure, EdgeDistillError

EXIT_CODES = """Exit codes: 0 every budget holds; 1 a budget is broken; 2 bad input or usage, or a
target refused an artifact (its row says why); 3 something could not be measured (the report says
what)."""


def _fail(exc: EdgeDistillError):
    from .tables import visible

    message, hint_line, hint = str(exc).partition("\n  hint: ")  # the one line break the message may hold
    click.echo(f"error: {visible(message)}{hint_line}{visible(hint)}", err=True)
    sys.exit(exc.exit_code)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeDistillError as exc:
            _fail(exc)
        except OSError as exc:  # a file or folder the user named, or a full disk: never "internal"
            from .outputs import os_error

            _fail(os_error(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort):  # --help, usage errors (exit 2)
            raise
        except KeyboardInterrupt:  # Ctrl-C: not a verdict (click would exit 1, "a budget is broken")
            click.echo("\ninterrupted: the output folder is as it was before this run", err=True)
            sys.exit(130)
        except MemoryError:  # an allocation the model or its data asked for, beyond what this machine gives
            _fail(CannotMeasure("this machine ran out of memory for the model or its data; "
                                f"inputs whose headers declare more than {limits.memory_bound():,} bytes are "
                                "refused before reading, but this one asked for memory while running"))
        except Exception as exc:  # a bug or an unforeseen tool failure: never exit 1 (a budget verdict)
            if os.environ.get("EDGE_DISTILL_DEBUG"):
                raise
            allocation = re.search(r"Failed to allocate memory for requested buffer of size (\d+)", str(exc))
            if allocation:  # onnxruntime's arena refused a buffer a dynamic shape asked for while running
                _fail(CannotMeasure(f"onnxruntime could not allocate {int(allocation[1]):,} bytes "
                                    "while running the model (a shape its inputs make at run time)"))
            from .tables import visible

            click.echo(f"error: could not finish: {type(exc).__name__}: {visible(exc)}\n"
                       "  (an internal error; set EDGE_DISTILL_DEBUG=1 for the traceback)", err=True)
            sys.exit(3)


@click.group(cls=_Group, epilog=EXIT_CODES)
@click.version_option(package_name="edge-distill")
def main():
    """edge-distill: export, quantize and verify a distilled student for phones (Core ML, LiteRT,
    ONNX Runtime Mobile), and fail the build when it breaks its budgets."""
    import signal

    # A CI job cancelled with SIGTERM unwinds like Ctrl-C: temporary output folders are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


_out = click.option("--out", "out", type=click.Path(path_type=Path), help="Folder to write into.")
_force = click.option("--force", is_flag=True, help="Write into --out even if it holds files edge-distill did not write.")
_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
_json = click.option("--json", "as_json", is_flag=True, help="Print the report (report.json's document) on stdout "
                                                             "instead of the table.")
_device_option = click.option("--device", help="Where figures come from: host (the default), a profile "
                                               "(estimated), emulated-arm64, adb[:SERIAL], qai-hub:NAME (a phone of "
                                               "Qualcomm AI Hub's); overrides the config's "
                                               "devices. See `edge-distill devices`.")


def _bypass_cache(ctx, _param, value: bool) -> None:
    """--no-cache: the command's run bypasses the cache (a context held until the command ends)."""
    if value:
        from .cache import bypassed

        ctx.with_resource(bypassed())


_no_cache = click.option("--no-cache", is_flag=True, expose_value=False, callback=_bypass_cache,
                         help="Compute the ONNX export and the float student's and teacher's outputs afresh, and "
                              "store nothing: by default they are reused from edge-distill's cache when the model, "
                              "teacher, data and versions are unchanged (also: EDGE_DISTILL_NO_CACHE=1).")
_history = click.option("--history", "history", metavar="STORE",
                        help="Record the report in this results store (a SQLite file, or postgresql://...); "
                             "default: the config's `history`, else $EDGE_DISTILL_HISTORY. See `edge-distill history`.")


def _open_store(option: str | None):
    """The results store --store names (else $EDGE_DISTILL_HISTORY), opened and migrated, or None."""
    from .history import Store, store_url

    url = store_url(option)
    return Store(url) if url else None


def _finish(outcome, as_json: bool = False) -> None:
    from .report import to_json, to_table

    report, folder = outcome.report, outcome.folder
    if outcome.run_id is not None:  # on stderr: --json keeps stdout one document
        click.echo(f"recorded as run {outcome.run_id} in {outcome.store_url}", err=True)
    if as_json:  # the report.json document alone on stdout (progress stays on stderr)
        click.echo(to_json(report))
    else:
        click.echo(to_table(report))
        click.echo(f"\nreports: {folder / 'report.json'}, {folder / 'junit.xml'}, {folder / 'report.md'}, "
                   f"{folder / 'report.html'}")
    sys.exit(report.exit_code)


def _check(config: Path, out: Path, quiet: bool, as_json: bool, options) -> None:
    from .progress import Progress

    with Progress(not quiet) as progress:
        progress(f"reading {config}")  # before the heavy imports (torch, onnx): a few seconds on a cold start
        from .session import Session

        outcome = Session.open(config, out, options, progress).check()
    _finish(outcome, as_json)


@main.command(epilog=EXIT_CODES)
@click.argument("config", type=click.Path(path_type=Path), default="edge-distill.toml")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-out"), show_default=True,
              help="Folder to write artifacts and reports into.")
@click.option("--baseline", metavar="REPORT|RUN|latest-passing[@BRANCH]",
              help="A report.json, a run of the results store, or its newest passing run of this model (on BRANCH) to "
                   "compare with: regressions in size, accuracy (per slice) and latency (beyond noise) fail as budgets "
                   "do ([budgets.regression]).")
@click.option("--baseline-any-cpu", "any_cpu", is_flag=True,
              help="Compare latencies with a baseline measured on another CPU too (by default reported, not compared).")
@click.option("--resume", is_flag=True,
              help="Pick up the device cloud's jobs an interrupted run left unfinished, by their ids, instead of "
                   "submitting new ones (finished jobs are always read back from the cache).")
@click.option("--shard", metavar="I/N", help="Run shard I of N: every Nth cell (target x precision x device) from "
                                             "the I-th; `merge-reports` combines the shards' --out folders.")
@_force
@_quiet
@_json
@_device_option
@_history
@_no_cache
def check(config, out, force, quiet, device, baseline, any_cpu, resume, shard, as_json, history):
    """Export, quantize and verify every target and precision in CONFIG against its budgets."""
    from .session import Options

    _check(config, out, quiet, as_json, Options(force=force, device=device, baseline=baseline, history=history,
                                                any_cpu=any_cpu, resume=resume, shard=shard))


@main.command("merge-reports", epilog=EXIT_CODES)
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@_force
@_json
def merge_reports(out, shards, force, as_json):
    """Combine the --out folders of `check --shard I/N` runs (SHARDS) into one report in OUT: report.json,
    junit.xml, report.md and report.html, and the exit code the unsharded run would give."""
    from .session import Options, Session

    _finish(Session.open(None, out, Options(force=force, record=False)).merge(list(shards)), as_json)


@main.command(epilog=EXIT_CODES)
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-demo"), show_default=True,
              help="Folder to write artifacts and reports into.")
@_force
@_quiet
@_json
def demo(out, force, quiet, as_json):
    """Run `check` on the bundled Fashion-MNIST example (a real distilled student), offline."""
    from importlib.resources import files

    from .session import Options

    config = Path(str(files("edge_distill.examples") / "fashion-mnist" / "edge-distill.toml"))
    _check(config, out, quiet, as_json, Options(force=force))


@main.command(epilog=EXIT_CODES)
@click.argument("model")
@click.option("--data", "data_dir", type=click.Path(path_type=Path),
              help="A folder of real samples (.npz): the first file holding every input is the evaluation set, a "
                   "calibration* file the calibration set; their shapes fill the model's free dimensions.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-init"), show_default=True,
              help="Folder to write edge-distill.toml (and sample.npz) into; never the model's own folder.")
@click.option("--weights", help="Weights for a module:factory MODEL that does not load its own.")
@_force
def init(model, data_dir, out, weights, force):
    """Read MODEL (.onnx, .pt2, Hugging Face folder, module:factory): its inputs (batch axes, states),
    outputs (kinds), opset, and the targets and precisions it can take; write a commented edge-distill.toml (and a sample
    .npz of its shapes) that `check` runs as it is."""
    from .scaffold import run_init

    plan = run_init(model, out, data_dir, force, weights)
    for i in plan.inputs:
        click.echo(f"input  {i.spec.describe()} batch axis {i.spec.axis if i.spec.axis is not None else 'none'}: "
                   f"{i.note}")
    for name, shape, dtype, kind, _ in plan.outputs:
        click.echo(f"output {name}[B, {', '.join(map(str, shape))}] {dtype}: {kind}")
    for name, (kept, refused) in plan.targets.items():
        click.echo(f"target {name}: {', '.join(kept) or 'no precision'}"
                   + "".join(f"\n  {note}" for note in plan.notes.get(name, []))
                   + "".join(f"\n  not {p}: {why}" for p, why in refused.items()))
    for name, why in plan.unavailable.items():
        click.echo(f"target {name}: none ({why})")
    click.echo(f"\nwrote {out / 'edge-distill.toml'}" + ("" if plan.data else f" and {out / 'sample.npz'}")
               + f"; next: edge-distill check {out / 'edge-distill.toml'}")


@main.command()
@click.argument("model")
@click.option("--target", "target", default="onnx", show_default=True,
              help="onnx (the fp32 export only), or a target, optionally with its precision: ort, ort-int8, ...")
@click.option("--quant", "precision", help="Precision: fp32, int8, int8-dynamic, int4 (see `edge-distill targets`).")
@click.option("--weights", help="Weights for a module:factory MODEL (.safetensors or a state dict).")
@click.option("--config", type=click.Path(path_type=Path), help="edge-distill.toml giving inputs and export settings.")
@click.option("--data", type=click.Path(path_type=Path), help="Real samples (.npz) for the export parity check.")
@click.option("--calibration", type=click.Path(path_type=Path), help="Calibration samples (.npz) for int8.")
@click.option("--calibration-method", default="minmax", show_default=True)
@click.option("--option", "options", multiple=True, help="Target option KEY=VALUE (e.g. int4_gather=true).")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled .pt model (it runs code when loaded).")
@click.option("--auto", is_flag=True,
              help="Mixed precision: return the layers that break a budget of --config to a higher precision (int4: "
                   "int8, then float) until every budget holds; writes the reports and exits as `check` does.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-export"), show_default=True)
@_force
@_quiet
@_no_cache
def export(model, target, precision, weights, config, data, calibration, calibration_method, options, trust_pickle,
           auto, out, force, quiet):
    """Export MODEL (module:factory, .pt2 or .onnx) to ONNX, verify it, and build a target artifact."""
    from .errors import BadInput
    from .pipeline import ExportRequest
    from .progress import Progress
    from .session import Options, Session

    request = ExportRequest(model, target=target, precision=precision, weights=weights, data_path=data,
                            calibration_path=calibration, calibration_method=calibration_method,
                            options=_parse_options(options), trust_pickle=trust_pickle)
    if auto and config is None:
        raise BadInput("export --auto searches for the precisions that meet a config's budgets: pass --config",
                       hint="edge-distill.toml with [data] evaluation and [budgets]")
    with Progress(not quiet) as progress:
        if auto:  # `check` of one target at its -auto precision, with the config's data and budgets
            progress(f"reading {config}")
            outcome = Session.open(config, out, Options(force=force, record=False), progress).export_auto(request)
        else:
            summary = Session.open(config, out, Options(force=force, record=False), progress).export(request)
    if auto:
        _finish(outcome)
    e = summary["export"]
    click.echo(f"ONNX export: {out / 'model.onnx'} (opset {e['opset']}, max |difference| vs source "
               f"{e['parity_max_abs_diff']:.2e} on {e['parity_samples']} samples)")
    if summary["artifact"]:
        a = summary["artifact"]
        click.echo(f"{a['target']}-{a['precision']}: {Path(out) / a['path']} "
                   f"({a['size_bytes'] / 1000:.1f} KB)")


def _parse_options(items) -> dict:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        options[key] = {"true": True, "false": False}.get(value.lower(), int(value) if value.isdigit() else value)
    return options


@main.command(epilog=EXIT_CODES)
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Evaluation data (.npz).")
@click.option("--budget", type=click.Path(path_type=Path), help="Budget file (TOML).")
@click.option("--float", "float_model", help="The float student (.onnx or .pt2), for agreement, drop and speedup.")
@click.option("--teacher", help="The teacher (.onnx or .pt2), for teacher agreement.")
@click.option("--precision", help="The artifact's precision (read from names like model.int8.ort).")
@click.option("--kind", "kinds", multiple=True, metavar="OUTPUT=KIND[,KEY=VALUE...]",
              help="What an output is, as [model.outputs.OUTPUT] says it (e.g. out=detection,layout=yolov8); "
                   "undeclared outputs' kinds are inferred from their shape.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(1), default=20, show_default=True)
@click.option("--runs", type=click.IntRange(20), default=200, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-verify"), show_default=True)
@_force
@_quiet
@_json
@_device_option
@_history
def verify(artifact, data, budget, float_model, teacher, precision, kinds, threads, warmup, runs, out, force, quiet,
           as_json, device, history):
    """Measure ARTIFACT on this host (latency, memory, accuracy per slice) against a budget."""
    from .budgets import Budget, load_budget_file
    from .config import output_kinds
    from .pipeline import Timing, Verification
    from .progress import Progress
    from .session import Options, Session

    request = Verification(artifact, data, budget=load_budget_file(budget) if budget else Budget(),
                           float_model=float_model, teacher_model=teacher, precision=precision,
                           kinds=output_kinds(kinds),
                           timing=Timing(device=device or "host", threads=threads, warmup=warmup, runs=runs))
    with Progress(not quiet) as progress:
        outcome = Session.open(None, out, Options(force=force, history=history), progress).verify(request)
    _finish(outcome, as_json)


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="Input samples (.npz); default: zeros of the "
                                                              "model's input shapes.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(1), default=20, show_default=True)
@click.option("--runs", type=click.IntRange(20), default=200, show_default=True)
@click.option("--float", "float_model", help="The float model as .onnx: the graph a device estimate counts.")
@click.option("--json", "as_json", is_flag=True, help="Print the latency record as JSON.")
@_quiet
@_device_option
def bench(artifact, data, threads, warmup, runs, float_model, as_json, quiet, device):
    """Latency percentiles and peak memory of ARTIFACT on a device (no accuracy, no budget; exit 0,
    or 3 when it cannot be measured there). A phone's benchmark binary comes from
    $EDGE_DISTILL_BENCHMARK_MODEL / $EDGE_DISTILL_ORT_PERF_TEST."""
    from dataclasses import asdict

    from .pipeline import Timing, run_bench
    from .progress import Progress
    from .report import _fmt

    timing = Timing(device=device or "host", threads=threads, warmup=warmup, runs=runs)
    with Progress(not quiet) as progress:
        lat, mem, target = run_bench(artifact, timing=timing, data_path=data, float_model=float_model,
                                     progress=progress)
    if as_json:
        click.echo(json.dumps({"artifact": str(artifact), "target": target, "latency": asdict(lat),
                               "memory": asdict(mem)}, indent=2))
        return
    p = lat.provenance
    click.echo(f"{artifact.name} ({target}) on {p.device}: p50 {_fmt(lat.p50_ms, 'ms')}, p90 {_fmt(lat.p90_ms, 'ms')}, "
               f"p95 {_fmt(lat.p95_ms, 'ms')}, p99 {_fmt(lat.p99_ms, 'ms')}, peak memory {_fmt(mem.peak_mb, 'MB')}")
    click.echo(f"{p.kind}: {p.runtime} {p.runtime_version}, {p.cpu}, {p.threads} thread(s); {p.method}."
               + (f" {lat.missing}." if lat.missing else ""))


@main.command(epilog=EXIT_CODES)
@click.argument("config", type=click.Path(path_type=Path), default="edge-distill.toml")
@click.option("--target", help="Which configured target to climb on (default: the first).")
@click.option("--all", "whole", is_flag=True, help="Measure every rung, not only up to the first that meets the budget.")
@click.option("--budget", type=click.Path(path_type=Path), help="Budget file (TOML) instead of the config's [budgets].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-ladder"), show_default=True)
@_force
@_quiet
@_json
@_device_option
@_history
def ladder(config, target, whole, budget, out, force, quiet, as_json, device, history):
    """Measure teacher fp32/int8/int4, an off-the-shelf model, then student fp32/int8/int4, cheapest
    first; stop at the first rung that meets every budget. Exit 1 when none does."""
    from .progress import Progress
    from .session import Options, Session

    options = Options(force=force, device=device, history=history, budget=budget)
    with Progress(not quiet) as progress:
        outcome = Session.open(config, out, options, progress).ladder(target, whole)
    _finish(outcome, as_json)


@main.command(epilog=EXIT_CODES)
@click.argument("config", type=click.Path(path_type=Path), default="edge-distill.toml")
@click.option("--target", required=True, help="A configured target that can leave layers in float (ort, tflite).")
@click.option("--precision", required=True, help="The quantized precision to analyse (int8, int4, ...).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-sensitivity"), show_default=True)
@_force
@_quiet
@_json
@_device_option
def sensitivity(config, target, precision, out, force, quiet, as_json, device):
    """Per layer of one target's precision: the budgets' figures with that layer left in float alone,
    and with it quantized alone; a table ranked by how much closer to holding each brings the budgets.
    Exit codes as `check`, for the precision as asked."""
    from .progress import Progress
    from .session import Options, Session

    with Progress(not quiet) as progress:
        outcome = Session.open(config, out, Options(force=force, device=device, record=False),
                               progress).sensitivity(target, precision)
    _finish(outcome, as_json)



@main.group(cls=_Group)
def slices():
    """Slices of the evaluation data: where a student or its artifact fails."""


@slices.command("discover", epilog=EXIT_CODES)
@click.argument("config", type=click.Path(path_type=Path), default="edge-distill.toml")
@click.option("--against", type=click.Choice(["teacher", "float"]), default="teacher", show_default=True,
              help="The reference each sample's output is compared with.")
@click.option("--artifact", type=click.Path(path_type=Path),
              help="An artifact file (.onnx, .ort, .tflite, ...) to judge; without it, the float student.")
@click.option("--output", "output_name", help="Which output to compare (default: the first).")
@click.option("--margin", type=click.FloatRange(0, 1), default=0.03, show_default=True,
              help="A proposed slice budget is the float student's figure on the slice minus this.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.01, show_default=True,
              help="Family-wise significance level (Holm over every hypothesis searched).")
@click.option("--min-size", type=click.IntRange(2), default=20, show_default=True, help="Smallest slice tested.")
@click.option("--seed", type=int, help="Seed of the clustering (default: the config's [data] seed).")
@click.option("--sources", default="metadata,clusters,confidence,labels", show_default=True,
              help="Where to look, comma-separated: metadata (the data file's extra columns), clusters (of the "
                   "reference's outputs), confidence (its margin), labels (labels and its top-1 class).")
@click.option("--null-check", "null_checks", type=click.IntRange(0), default=0,
              help="Run the search again on N shuffles of the errors and report how often it finds a slice anyway.")
@click.option("--fail-above", type=click.FloatRange(0), help="A continuous error (1 - cosine, mean |error|) fails "
              "above this; default: its 90th percentile, never below 1e-5.")
@click.option("--fail-on-found", is_flag=True, help="Exit 1 when a slice is proposed (a gate in CI).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-slices"), show_default=True)
@_force
@_quiet
@click.option("--json", "as_json", is_flag=True, help="Print discovery.json's document on stdout instead.")
def slices_discover(config, against, artifact, output_name, margin, alpha, min_size, seed, sources, null_checks,
                    fail_above, fail_on_found, out, force, quiet, as_json):
    """Search the evaluation data for groups where the artifact (or the float student) fails more
    often than elsewhere: metadata columns of the data file (SliceLine), clusters of the reference's
    outputs, its confidence, the labels. Writes the data with the proposed slices as masks, a budget
    stanza per slice, report.md and report.html into --out; the data file given is never written."""
    from .progress import Progress

    with Progress(not quiet) as progress:
        from .discover import Question
        from .report import discovery_markdown
        from .errors import BadInput
        from .session import Options, Session
        from .slicefind import SOURCES, Settings

        chosen = tuple(s.strip() for s in sources.split(",") if s.strip())
        unknown = [s for s in chosen if s not in SOURCES]
        if unknown or not chosen:
            raise BadInput(f"--sources takes {', '.join(SOURCES)}; not {', '.join(unknown) or 'nothing'}")
        question = Question(against=against, artifact=artifact and artifact.absolute(), output=output_name,
                            margin=margin, null_checks=null_checks,
                            settings=Settings(alpha=alpha, min_size=min_size, sources=chosen, fail_above=fail_above))
        found = Session.open(config, out, Options(force=force, record=False), progress).discover(question, seed)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=1))
    else:
        click.echo(discovery_markdown(found))
        click.echo(f"files: {out / 'slices.npz'}, {out / 'slices-budget.toml'}, {out / 'report.md'}, "
                   f"{out / 'report.html'}")
    sys.exit(1 if fail_on_found and found.proposed else 0)

ADVISE_QUESTIONS: dict[str, tuple[str, Any]] = {  # option -> (prompt, type); asked only when missing and a person is at the terminal
    "latency_budget_ms": ("Latency budget (ms)", float),
    "monthly_calls": ("Calls per month", click.IntRange(0)),
    "task": ("Task breadth", click.Choice(["narrow", "broad"])),
    "teacher": ("Teacher quality", click.Choice(["strong", "weak", "none"])),
    "teacher_stable": ("Is the teacher stable?", bool),
    "tolerance": ("Tolerance for quality loss", click.Choice(["low", "medium", "high"])),
    "data": ("Representative inputs at hand", click.Choice(["none", "unlabelled", "labelled"])),
    "off_the_shelf": ("Is there a small off-the-shelf model for the task?", bool),
}


@main.command()
@click.option("--latency-budget-ms", type=float)
@click.option("--current-latency-ms", type=float, default=None, help="Today's latency, if measured.")
@click.option("--monthly-calls", type=click.IntRange(0))
@click.option("--task", type=click.Choice(["narrow", "broad"]))
@click.option("--teacher", type=click.Choice(["strong", "weak", "none"]), help="Teacher quality.")
@click.option("--teacher-stable/--teacher-moves", default=None)
@click.option("--tolerance", type=click.Choice(["low", "medium", "high"]), help="Tolerance for quality loss.")
@click.option("--data", type=click.Choice(["none", "unlabelled", "labelled"]), help="Representative inputs at hand.")
@click.option("--off-the-shelf/--no-off-the-shelf", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
def advise(as_json, **answers):
    """Where to start on the ladder, before anything is measured. Flags for CI; a person at a
    terminal is asked for what the flags leave out."""
    from .advise import Answers
    from .advise import advise as decide
    from .errors import BadInput

    for key, (question, kind) in ADVISE_QUESTIONS.items():
        if answers[key] is None:
            if not sys.stdin.isatty():
                raise BadInput(f"missing --{key.replace('_', '-')} (and no terminal to ask)")
            answers[key] = click.confirm(question) if kind is bool else click.prompt(question, type=kind)
    advice = decide(Answers(**answers))
    if as_json:
        click.echo(json.dumps({"start_at": advice.rung, "confirm_with": advice.confirm,
                               "steps": [{"question": q, "answer": a} for q, a in advice.steps]}, indent=2))
        return
    for question, answer in advice.steps:
        click.echo(f"{question}\n   {answer}")
    click.echo(f"\nStart at: {advice.rung}\nConfirm with: {advice.confirm}")


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--config", type=click.Path(path_type=Path), help="Write it as [model] distilled_from in this config.")
def fingerprint(model, config):
    """The content hash (sha256) of a teacher's weights or ONNX file: record it when you distill, so a
    stale student shows."""
    from .config import record_fingerprint
    from .errors import BadInput
    from .files import sha256_file

    if not model.is_file():
        raise BadInput("file not found", path=model)
    digest = sha256_file(model)
    click.echo(digest)
    if config:
        record_fingerprint(config, digest)
        click.echo(f"recorded as distilled_from in {config}")


@main.command(epilog=EXIT_CODES)
@click.argument("source", type=click.Path(path_type=Path), default="edge-distill-demo")
@click.option("--app", type=click.Path(path_type=Path), required=True,
              help="The app folder (android-demo, ios-demo, or one with an edge-distill-app.json).")
@click.option("--allow-failed", is_flag=True, help="Bundle models that broke their budgets too (loudly).")
def bundle(source, app, allow_failed):
    """Put the verified artifacts of a check's --out folder SOURCE, with one model.json each, into an app."""
    from .bundle import bundle as run_bundle

    outcome = run_bundle(source, app, allow_failed=allow_failed, progress=click.echo)
    for item in outcome.unloadable:
        click.echo(("WARNING: bundled although it does not load in the app: " if allow_failed else
                    "error: refused, it does not load in the app (--allow-failed to bundle it anyway): ") + item,
                   err=True)
    for item in outcome.refused:
        click.echo(("WARNING: bundled although it broke its budget: " if allow_failed else
                    "refused (broke its budget; --allow-failed to bundle it anyway): ") + item, err=True)
    sys.exit(outcome.exit_code)


@main.group(invoke_without_command=True, epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
@click.pass_context
def devices(ctx, as_json):
    """Devices a figure can come from: this host (measured), estimated profiles, the arm64 emulator,
    attached phones. `devices setup emulated-arm64` prepares the emulator; `devices correct`
    corrects a profile from a real measurement."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from .devices import list_devices

    found = list_devices()
    if as_json:
        click.echo(json.dumps([asdict(d) for d in found], indent=2))
        return
    width = max(len(d.name) for d in found) + 1
    for d in found:
        measures = ", ".join(d.measures) or "nothing yet"
        click.echo(f"{d.name:{width}} {d.kind:10} measures: {measures}\n{'':{width}} {d.note}")


@devices.command("setup")
@click.argument("name", type=click.Choice(["emulated-arm64"]))
def devices_setup(name):
    """Prepare a device once: for emulated-arm64, Debian's qemu-user-static (apt-get), an arm64
    Python 3.11 unpacked from Debian packages, and aarch64 wheels of numpy, onnxruntime and
    ai-edge-litert, all in the cache folder ($EDGE_DISTILL_CACHE or ~/.cache/edge-distill)."""
    from .devices.emulated import Emulator

    state = Emulator.setup(progress=click.echo)
    click.echo(f"{name}: {state.note}")


@click.argument("profile")
@click.option("--from", "report", type=click.Path(path_type=Path), required=True,
              help="A report.json whose latencies were measured on the real device (e.g. check --device adb).")
def devices_correct(profile, report):
    """Store measured/estimated latency for PROFILE (the median over the report's results); later
    estimates on PROFILE are multiplied by it. Kept in $EDGE_DISTILL_CONFIG or ~/.config/edge-distill.
    (`devices calibrate` is the old name of this command.)"""
    from .devices.profiles import correct, correction_file

    info = correct(profile, report)
    click.echo(f"{profile}: correction {info['correction']:g} (median of {len(info['ratios'])} measured/estimated "
               f"ratios, measured on {', '.join(info['measured_on'])}); stored in {correction_file(profile)}")


correct_command = click.command("correct")(devices_correct)
devices.add_command(correct_command, "correct")
devices.add_command(correct_command, "calibrate")  # the old spelling, kept working


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the capabilities as JSON.")
def targets(as_json):
    """List targets and what they can do (no SDK is imported)."""
    from edge_distill.targets import available, describe_capabilities

    caps = available()
    if as_json:
        click.echo(json.dumps({n: describe_capabilities(c) for n, c in caps.items()}, indent=2))
        return
    for name, c in caps.items():
        missing = c.missing_packages()
        state = "ready" if not missing else f"needs pip install 'edge-distill[{c.extra}]' (missing {', '.join(missing)})"
        click.echo(f"{name}: {c.description}\n  precisions: {', '.join(c.precision_names)}\n"
                   f"  calibration: {', '.join(c.calibration_methods)}\n  files: {', '.join(c.suffixes)}\n"
                   f"  status: {state}")
        for o in c.options:
            click.echo(f"  option {o.name} ({o.type.__name__}, default {o.default!r}): {o.help}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Accepted for symmetry: inspect always prints JSON.")
def inspect(artifact, as_json):
    """Ops, sizes and mobile-EP coverage of an artifact (JSON)."""
    from edge_distill.errors import BadInput
    from edge_distill.targets import get_target, target_for_file

    if not artifact.exists():
        raise BadInput("artifact not found", path=artifact)
    click.echo(json.dumps(get_target(target_for_file(artifact)).inspect(artifact), indent=2, default=str))


_store_option = click.option("--store", metavar="STORE", help="The results store (a SQLite file or postgresql://...); "
                                                              "default: $EDGE_DISTILL_HISTORY.")


@main.group(cls=_Group, invoke_without_command=True)
@_store_option
@click.option("--model", help="Only runs whose model reference contains this text.")
@click.option("--target", help="Only runs with an artifact for this target.")
@click.option("--since", help="Only runs recorded on or after this date (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.pass_context
def history(ctx, store, model, target, since, limit, as_json):
    """Runs recorded in the results store, newest first (`check`, `verify` and `ladder` record theirs when
    a store is configured). `history show RUN` prints a run's report again."""
    ctx.obj = store
    if ctx.invoked_subcommand:
        return
    from dataclasses import asdict

    from .tables import table

    runs = _require_store(store).list(model=model, target=target, since=since, limit=limit)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in runs], indent=2))
        return
    click.echo(table(["run", "recorded", "command", "model", "targets", "branch", "commit", "verdict"],
                     [[str(r.id), r.recorded, r.command, r.model, r.targets, r.branch or "", (r.commit or "")[:10],
                       "passed" if r.passed else f"exit {r.exit_code}"] for r in runs]) if runs else "no runs recorded")


def _require_store(option: str | None):
    from .errors import BadInput

    store = _open_store(option)
    if store is None:
        raise BadInput("no results store: pass --store, or set $EDGE_DISTILL_HISTORY")
    return store


@history.command("show")
@click.argument("run", type=click.IntRange(1))
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON document.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@click.pass_context
def history_show(ctx, run, store, as_json, markdown):
    """Print recorded RUN's report again: the table (or its JSON, or Markdown)."""
    from .result import report_from_dict

    data, _ = _require_store(store or ctx.obj).report(run)
    _print_report(report_from_dict(data), as_json, markdown)


def _print_report(report, as_json: bool, markdown: bool) -> None:
    from .report import to_json, to_markdown, to_table

    click.echo(to_json(report) if as_json else to_markdown(report) if markdown else to_table(report))


@main.command("report")
@click.argument("report_json", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--html", "html_out", is_flag=True, help="Write report.html beside REPORT.json.")
@click.option("--markdown", is_flag=True, help="Print the report as Markdown.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON document (canonical).")
def report_command(report_json, html_out, markdown, as_json):
    """Render an existing report.json again: the table (default), Markdown, JSON, or report.html beside it."""
    from .errors import BadInput
    from .files import write_atomic
    from .html_report import to_html
    from .result import report_from_dict

    try:
        report = report_from_dict(json.loads(report_json.read_text()))
    except (OSError, ValueError) as exc:
        raise BadInput(f"not an edge-distill report ({exc})", path=report_json) from exc
    if html_out:
        target = report_json.parent / "report.html"
        write_atomic(target, to_html(report))
        click.echo(f"wrote {target}", err=as_json or markdown)
    if as_json or markdown or not html_out:
        _print_report(report, as_json, markdown)
