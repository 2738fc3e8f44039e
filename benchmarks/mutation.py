"""Mutation score of the modules whose logic decides verdicts and files.

    python benchmarks/mutation.py                 # every module below, then the table
    python benchmarks/mutation.py budgets outputs # some of them

Cosmic Ray (pip install cosmic-ray; this script installs it when missing) changes one operator,
constant or comparison at a time in the module's source on disk, runs the module's fast unit tests,
and restores the file. A mutant is killed when a test fails. Two kinds are left out and counted
apart, never as survivors: mutations inside type annotations (under `from __future__ import
annotations` they are never evaluated, so no test can tell them apart) and, for modules where only
part of the file decides a verdict, mutations outside the listed functions.

Run it on a clean checkout: it edits the files it mutates (each is restored after every mutant, and
checked byte for byte at the end). Results go to benchmarks/mutation-results.md and are printed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "mutation-results.md"


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]
    only: tuple[str, ...] = ()  # function or method names; empty: the whole file
    why: str = ""


MODULES = {
    "budgets": Module("toolkit/budgets.py", ("tests/test_budgets.py",), why="budget parsing, layers, checks"),
    "exit-codes": Module("toolkit/result.py", ("tests/test_budgets.py",), only=("exit_code", "passed", "checks"),
                         why="the exit-code policy of a report and a ladder"),
    "outputs": Module("toolkit/outputs.py", ("tests/test_outputs.py",), why="atomic output folders, --force"),
    "readers": Module("calibration/readers.py", ("tests/test_calibration.py",), why="data files: inputs, labels, "
                                                                                    "slices, weights"),
    "selection": Module("calibration/selection.py", ("tests/test_calibration.py",),
                        why="seeded, stratified calibration samples"),
}


def annotation_spans(source: str) -> set[tuple[int, int]]:
    """(first line, first column, last line, last column) of every type annotation."""
    spans = set()
    for node in ast.walk(ast.parse(source)):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes += [a.annotation for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                                             node.args.vararg, node.args.kwarg) if a is not None and a.annotation]
            notes += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            spans.add((note.lineno, note.col_offset, note.end_lineno, note.end_col_offset))
    return spans


def inside(position, span) -> bool:
    (line, col), (l0, c0, l1, c1) = position, span
    return (l0, c0) <= (line, col) <= (l1, c1)


def run_module(name: str, module: Module, work: Path) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    path = ROOT / module.path
    original = path.read_bytes()
    tests = " ".join(module.tests)
    config = work / f"{name}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module.path}"\n'
        "timeout = 60.0\n"
        "excluded-modules = []\n"
        f'test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"\n'
        '[cosmic-ray.distributor]\nname = "local"\n')
    session = work / f"{name}.sqlite"
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic, "init", str(config), str(session)], cwd=ROOT, check=True)
    spans = annotation_spans(original.decode())
    left_out = {"annotation": 0, "outside": 0}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.work_items:
            mutation = item.mutations[0]
            start = tuple(mutation.start_pos)
            kind = ("annotation" if any(inside(start, s) for s in spans)
                    else "outside" if module.only and mutation.definition_name not in module.only else None)
            if kind:
                left_out[kind] += 1
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    start = time.perf_counter()
    try:
        subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=ROOT, check=True)
    finally:
        if path.read_bytes() != original:  # never leave a mutant behind
            path.write_bytes(original)
            raise SystemExit(f"{module.path} was left mutated; restored it")
    seconds = time.perf_counter() - start
    killed, survivors = 0, []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.is_killed:
                killed += 1
            else:
                m = item.mutations[0]
                survivors.append(f"{m.module_path}:{m.start_pos[0]} {m.definition_name} {m.operator_name}")
    total = killed + len(survivors)
    return {"module": name, "path": module.path, "why": module.why, "tests": list(module.tests),
            "killed": killed, "survived": len(survivors), "score": round(killed / total, 4) if total else None,
            "left_out": left_out, "seconds": round(seconds, 1), "survivors": survivors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(MODULES)} (default: all)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; known: {', '.join(MODULES)}")
    if importlib.util.find_spec("cosmic_ray") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "cosmic-ray==8.7.0"], check=True)
    names = args.modules or list(MODULES)
    with tempfile.TemporaryDirectory(prefix="edge-distill-mutation-") as work:
        rows = [run_module(n, MODULES[n], Path(work)) for n in names]
    lines = ["| module | file | killed | survived | score | left out (annotations / other code) | time |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['module']} ({r['why']}) | `{r['path']}` | {r['killed']} | {r['survived']} | "
                     f"{r['score']:.1%} | {r['left_out']['annotation']} / {r['left_out']['outside']} | "
                     f"{r['seconds']:.0f} s |")
    table = "\n".join(lines)
    print(table)
    for r in rows:
        for s in r["survivors"]:
            print(f"  survived: {s}")
    RESULTS.write_text("# Mutation score\n\n`python benchmarks/mutation.py` (Cosmic Ray 8.7.0), on this machine.\n\n"
                       + table + "\n\n## Survivors\n\n"
                       + "\n".join(f"- `{s}`" for r in rows for s in r["survivors"]) + "\n\n```json\n"
                       + json.dumps(rows, indent=1) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
