"""Mutation score of the modules that decide a verdict, a file or a trust boundary.

    python benchmarks/mutation.py                   # score every listed module that has tests (an hour or more)
    python benchmarks/mutation.py metrics budgets   # score these (names from mutation-modules.toml)
    python benchmarks/mutation.py --render          # only re-render the table in docs/testing.md

The modules, their files and the fast tests that cover each are data: benchmarks/mutation-modules.toml.
Cosmic Ray (pip install cosmic-ray==8.7.0; installed when missing) changes one operator, constant or
comparison at a time in the module's file on disk, runs that module's own fast tests (`-m "not slow"
-x`, a per-mutant timeout) and restores the file. A mutant is killed when a test fails or times out.

Left out, counted apart and never as survivors: mutations inside type annotations (never evaluated
under `from __future__ import annotations`), mutations outside a module's `only` functions, the
operators in LEFT_OUT_OPERATORS, and the equivalent mutants listed with their reason in
benchmarks/mutation-equivalent.toml. Each module's result (killed, survived, score, time, the file's
sha256, the date) goes to benchmarks/mutation-results.json; the table in docs/testing.md is rendered
from it. A row whose file changed since it was scored renders as "stale since <hash>", never as a score
(tests/test_mutation_table.py holds the table to that).

Run it on a clean checkout: it edits the file it mutates (restored after every mutant, and checked
byte for byte at the end).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES_FILE = ROOT / "benchmarks" / "mutation-modules.toml"
EQUIVALENT_FILE = ROOT / "benchmarks" / "mutation-equivalent.toml"
RESULTS_FILE = ROOT / "benchmarks" / "mutation-results.json"
DOC = ROOT / "docs" / "testing.md"
START, END = "<!-- mutation:start -->", "<!-- mutation:end -->"
COSMIC_RAY = "8.7.0"

# Operators not run, to keep a module's run within minutes on a shared 2-core machine (and reproducible).
LEFT_OUT_OPERATORS = (
    r"core/Variable(Inserter|Replacer)",  # pick a random operator or constant: not reproducible
    r"core/ReplaceComparisonOperator_\w+_(Is|IsNot)$",  # == -> is: equal on the small ints and None compared here
    r"core/ReplaceBinaryOperator_\w+_(Pow|Mod|FloorDiv|LShift|RShift|BitAnd|BitXor)$",  # +, -, *, / are kept
    r"core/RemoveDecorator",  # removing @dataclass or @property breaks every test at import
)


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    tests: tuple[str, ...]
    why: str
    only: tuple[str, ...] = ()  # function or method names; empty: the whole file


def load_modules() -> dict[str, Module]:
    data = tomllib.loads(MODULES_FILE.read_text())
    return {m["name"]: Module(m["name"], m["path"], tuple(m.get("tests", ())), m["why"], tuple(m.get("only", ())))
            for m in data["module"]}


def load_equivalent() -> list[dict]:
    return tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])


def load_results() -> dict[str, dict]:
    return json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}


def sha256(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


# ---- the table ----------------------------------------------------------------------------------------

def render_table(modules: dict[str, Module], results: dict[str, dict]) -> str:
    """One row per listed module; a score only where the file is byte for byte the one scored."""
    lines = ["| module | file | tests run per mutant | killed | survived | equivalent | score | time | scored at |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in modules.values():
        r = results.get(m.name)
        ran = r["tests"] if r is not None and r["sha256"] == sha256(m.path) else m.tests  # what the score rests on
        tests = ", ".join(f"`{t}`" for t in ran) or "none yet"
        head = f"| {m.name} ({m.why}) | `{m.path}` | {tests} |"
        if r is None:
            lines.append(f"{head} – | – | – | not yet scored | – | – |")
        elif r["sha256"] != sha256(m.path):
            lines.append(f"{head} – | – | – | stale since {r['sha256'][:12]} | – | {r['date']} |")
        else:
            score = r["killed"] / (r["killed"] + r["survived"])  # from the counts: the stored score is rounded
            lines.append(f"{head} {r['killed']} | {r['survived']} | {len(r['equivalent'])} | {score:.1%} | "
                         f"{r['seconds']:.0f} s | {r['date']}, sha256 {r['sha256'][:12]} |")
    survivors = [f"- {name}: `{s}`" for name, r in results.items() if name in modules
                 and r["sha256"] == sha256(modules[name].path) for s in r["survivors"]]
    equivalent = [f"- {name}: `{e['line']} {e['operator']}`: {e['reason']}" for name, r in results.items()
                  if name in modules and r["sha256"] == sha256(modules[name].path) for e in r["equivalent"]]
    return "\n".join(lines + ["", "Survivors:", ""] + (survivors or ["- none"])
                     + ["", "Equivalent mutants (left out of the score):", ""] + (equivalent or ["- none"]))


def rendered_block(doc_text: str) -> str:
    """The text between the markers of docs/testing.md."""
    return doc_text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def write_table(modules: dict[str, Module], results: dict[str, dict]) -> None:
    text = DOC.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{START}\n{render_table(modules, results)}\n{END}{tail}")


# ---- a run ------------------------------------------------------------------------------------------

def annotation_spans(source: str) -> set[tuple[int, int, int, int]]:
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


def run_module(module: Module, equivalent: list[dict], work: Path, timeout: float) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    if not module.tests:
        raise SystemExit(f"{module.name}: no tests listed in {MODULES_FILE.name}")
    path = ROOT / module.path
    original = path.read_bytes()
    test_command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                    *module.tests]
    baseline = subprocess.run(test_command, cwd=ROOT, capture_output=True, text=True)
    if baseline.returncode != 0:  # else every mutant would count as killed
        raise SystemExit(f"{module.name}: its tests fail unmutated:\n{baseline.stdout[-2000:]}")
    config = work / f"{module.name}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module.path}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(shlex.join(test_command))}\n"
        '[cosmic-ray.distributor]\nname = "local"\n')
    session = work / f"{module.name}.sqlite"
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cosmic, "init", str(config), str(session)], cwd=ROOT, check=True)
    spans = annotation_spans(original.decode())
    left_operators = re.compile("|".join(f"(?:{o})" for o in LEFT_OUT_OPERATORS))
    left_out = {"operator": 0, "annotation": 0, "outside": 0}
    equivalent_here = {(e["line"], e["operator"]): e for e in equivalent if e["module"] == module.name}
    found_equivalent = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.work_items:
            mutation = item.mutations[0]
            start = tuple(mutation.start_pos)
            key = (start[0], mutation.operator_name)
            if key in equivalent_here:
                found_equivalent.append(equivalent_here[key])
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
                continue
            kind = ("operator" if left_operators.match(mutation.operator_name)
                    else "annotation" if any(inside(start, s) for s in spans)
                    else "outside" if module.only and mutation.definition_name not in module.only else None)
            if kind:
                left_out[kind] += 1
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    started = time.perf_counter()
    try:
        subprocess.run([*cosmic, "exec", str(config), str(session)], cwd=ROOT, check=True)
    finally:
        if path.read_bytes() != original:  # never leave a mutant behind
            path.write_bytes(original)
            raise SystemExit(f"{module.path} was left mutated; restored it")
    seconds = time.perf_counter() - started
    killed, timed_out, survivors = 0, 0, []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.is_killed:
                killed += 1
                # Cosmic Ray counts a timeout as killed; on a loaded machine a slow test run can time
                # out too, so the count is kept to be read beside the score.
                timed_out += result.output == "timeout"
            else:
                m = item.mutations[0]
                survivors.append(f"{m.start_pos[0]} {m.definition_name} {m.operator_name}")
    total = killed + len(survivors)
    unique_equivalent = list({(e["line"], e["operator"]): e for e in found_equivalent}.values())
    return {"path": module.path, "sha256": hashlib.sha256(original).hexdigest(),
            "date": datetime.date.today().isoformat(), "tests": list(module.tests), "killed": killed,
            "timed_out": timed_out,
            "survived": len(survivors), "score": round(killed / total, 4) if total else None,
            "seconds": round(seconds, 1), "timeout": timeout, "cosmic_ray": COSMIC_RAY,
            "left_out_operators": list(LEFT_OUT_OPERATORS), "left_out": left_out,
            "equivalent": [{"line": e["line"], "operator": e["operator"], "reason": e["reason"]}
                           for e in unique_equivalent],
            "survivors": sorted(survivors, key=lambda s: int(s.split()[0]))}


def main() -> int:
    modules = load_modules()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"some of {', '.join(modules)}")
    parser.add_argument("--render", action="store_true", help="only re-render docs/testing.md from the results")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant's test run (default 60)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; known: {', '.join(modules)}")
    results = load_results()
    if not args.render:
        if importlib.util.find_spec("cosmic_ray") is None:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"cosmic-ray=={COSMIC_RAY}"], check=True)
        equivalent = load_equivalent()
        with tempfile.TemporaryDirectory(prefix="edge-distill-mutation-") as work:
            for name in args.modules or [n for n, m in modules.items() if m.tests]:
                results[name] = run_module(modules[name], equivalent, Path(work), args.timeout)
                r = results[name]
                print(f"{name}: {r['killed']} killed, {r['survived']} survived, score {r['score']}, "
                      f"{r['seconds']:.0f} s", flush=True)
                for s in r["survivors"]:
                    print(f"  survived: {s}")
                RESULTS_FILE.write_text(json.dumps(dict(sorted(results.items())), indent=1) + "\n")
    write_table(modules, results)
    print(render_table(modules, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
