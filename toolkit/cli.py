"""The command line: parse, call the library, print. Heavy imports happen inside commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .errors import EdgeDistillError

EXIT_CODES = """Exit codes: 0 every budget holds; 1 a budget is broken; 2 bad input or usage;
3 something could not be measured (the report says what)."""


def _fail(exc: EdgeDistillError):
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeDistillError as exc:
            _fail(exc)


@click.group(cls=_Group, epilog=EXIT_CODES)
@click.version_option(package_name="edge-distill")
def main():
    """edge-distill: export, quantize and verify a distilled student for phones (Core ML, LiteRT,
    ONNX Runtime Mobile), and fail the build when it breaks its budgets."""


_out = click.option("--out", "out", type=click.Path(path_type=Path), help="Folder to write into.")
_force = click.option("--force", is_flag=True, help="Write into --out even if it holds files edge-distill did not write.")
_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress lines.")


def _finish(report, folder: Path) -> None:
    from .report import to_table

    click.echo(to_table(report))
    click.echo(f"\nreports: {folder / 'report.json'}, {folder / 'junit.xml'}, {folder / 'report.md'}")
    sys.exit(report.exit_code)


def _check(config: Path, out: Path, force: bool, quiet: bool) -> None:
    from .config import load_config
    from .outputs import output_folder, write_reports
    from .pipeline import Progress, run_check

    cfg = load_config(config)
    with output_folder(out, force) as tmp:
        report = run_check(cfg, tmp, Progress(not quiet))
        write_reports(report, tmp)
    _finish(report, out)


@main.command(epilog=EXIT_CODES)
@click.argument("config", type=click.Path(path_type=Path), default="edge-distill.toml")
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-out"), show_default=True,
              help="Folder to write artifacts and reports into.")
@_force
@_quiet
def check(config, out, force, quiet):
    """Export, quantize and verify every target and precision in CONFIG against its budgets."""
    _check(config, out, force, quiet)


@main.command(epilog=EXIT_CODES)
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-demo"), show_default=True,
              help="Folder to write artifacts and reports into.")
@_force
@_quiet
def demo(out, force, quiet):
    """Run `check` on the bundled Fashion-MNIST example (a real distilled student), offline."""
    from importlib.resources import files

    config = Path(str(files("edge_distill.examples") / "fashion-mnist" / "edge-distill.toml"))
    _check(config, out, force, quiet)


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
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-export"), show_default=True)
@_force
@_quiet
def export(model, target, precision, weights, config, data, calibration, calibration_method, options, trust_pickle,
           out, force, quiet):
    """Export MODEL (module:factory, .pt2 or .onnx) to ONNX, verify it, and build a target artifact."""
    from .config import load_config
    from .outputs import output_folder
    from .pipeline import Progress, run_export

    cfg = load_config(config) if config else None
    with output_folder(out, force) as tmp:
        summary = run_export(model, target, tmp, precision=precision, weights=weights, cfg=cfg, data_path=data,
                             calibration_path=calibration, calibration_method=calibration_method,
                             options=_parse_options(options), trust_pickle=trust_pickle, progress=Progress(not quiet))
        (tmp / "export.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    e = summary["export"]
    click.echo(f"ONNX export: {out / 'model.onnx'} (opset {e['opset']}, max |difference| vs source "
               f"{e['parity_max_abs_diff']:.2e} on {e['parity_samples']} samples)")
    if summary["artifact"]:
        a = summary["artifact"]
        click.echo(f"{a['target']}-{a['precision']}: {Path(out) / Path(a['path']).relative_to(tmp)} "
                   f"({a['size_bytes'] / 1024:.1f} KB)")


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
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(1), default=20, show_default=True)
@click.option("--runs", type=click.IntRange(20), default=200, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("edge-distill-verify"), show_default=True)
@_force
@_quiet
def verify(artifact, data, budget, float_model, teacher, precision, threads, warmup, runs, out, force, quiet):
    """Measure ARTIFACT on this host (latency, memory, accuracy per slice) against a budget."""
    from .budgets import Budget, load_budget_file
    from .outputs import output_folder, write_reports
    from .pipeline import Progress, run_verify

    budget_obj = load_budget_file(budget) if budget else Budget()
    with output_folder(out, force) as tmp:
        report = run_verify(artifact, data, budget=budget_obj, float_model=float_model, teacher_model=teacher,
                            threads=threads, warmup=warmup, runs=runs, precision=precision,
                            progress=Progress(not quiet))
        write_reports(report, tmp)
    _finish(report, out)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the capabilities as JSON.")
def targets(as_json):
    """List targets and what they can do (no SDK is imported)."""
    from dataclasses import asdict

    from edge_distill.targets import available

    caps = available()
    if as_json:
        click.echo(json.dumps({n: {**asdict(c), "missing": c.missing_packages()} for n, c in caps.items()}, indent=2))
        return
    for name, c in caps.items():
        missing = c.missing_packages()
        state = "ready" if not missing else f"needs pip install 'edge-distill[{c.extra}]' (missing {', '.join(missing)})"
        click.echo(f"{name}: {c.description}\n  precisions: {', '.join(c.precisions)}\n"
                   f"  calibration: {', '.join(c.calibration_methods)}\n  files: {', '.join(c.suffixes)}\n"
                   f"  status: {state}")
        for key, text in c.options.items():
            click.echo(f"  option {key}: {text}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
def inspect(artifact):
    """Ops, sizes and mobile-EP coverage of an artifact."""
    from edge_distill.errors import BadInput
    from edge_distill.targets import get_target, target_for_file

    if not artifact.is_file():
        raise BadInput("artifact not found", path=artifact)
    click.echo(json.dumps(get_target(target_for_file(artifact)).inspect(artifact), indent=2))
