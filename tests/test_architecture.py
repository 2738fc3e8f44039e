"""The house rules of ARCHITECTURE.md, checked over the code itself: the import graph (no circles,
each package importing only what it may), no target or device named outside its own module, no
function over 60 lines. The graph is read from the sources with `ast` (every import, including the
lazy ones inside functions), through the folder -> package map of pyproject.toml."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"edge_distill": ROOT / "toolkit", "edge_distill.targets": ROOT / "targets",
            "edge_distill.calibration": ROOT / "calibration"}
TARGET_NAMES = {"ort", "tflite", "coreml"}
DEVICE_KINDS = {"host", "adb", "iphone", "emulated-arm64", "macos-local", "estimated", "qai-hub"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            if not any(name != other and name.startswith(other + ".") and folder != PACKAGES[other]
                       and path.is_relative_to(PACKAGES[other]) for other in PACKAGES):
                found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of this project that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert _cycles() == []


# A package-level import of the package face (edge_distill) is how a submodule is reached; the
# face itself imports only `version` at import time and the rest lazily.
MAY_IMPORT = {
    "edge_distill.result": {"edge_distill.metrics", "edge_distill.provenance"},
    "edge_distill.report": {"edge_distill.result", "edge_distill.tables"},
    "edge_distill.html_report": {"edge_distill.report", "edge_distill.result"},
    "edge_distill.report_files": {"edge_distill.report", "edge_distill.html_report", "edge_distill.result"},
    "edge_distill.history": {"edge_distill.errors"},
    "edge_distill.tables": set(),
    "edge_distill.progress": {"edge_distill.places", "edge_distill.tables"},
    "edge_distill.metrics": {"edge_distill.kinds"},
    "edge_distill.slicefind": {"edge_distill.result"},
}


def test_output_kinds_import_nothing_of_the_package_outside_kinds():
    for name, imported in GRAPH.items():
        if name.startswith("edge_distill.kinds"):
            assert all(m.startswith("edge_distill.kinds") for m in imported), f"{name} imports {imported}"


@pytest.mark.parametrize("module", sorted(MAY_IMPORT))
def test_leaf_modules_import_only_what_they_may(module):
    assert GRAPH[module] <= MAY_IMPORT[module], GRAPH[module] - MAY_IMPORT[module]


def test_targets_and_devices_stay_below_the_pipeline():
    above = {"edge_distill.pipeline", "edge_distill.evaluate", "edge_distill.ladder", "edge_distill.cli",
             "edge_distill.bundle", "edge_distill.config", "edge_distill.budgets"}
    for name, imported in GRAPH.items():
        if name.startswith(("edge_distill.targets", "edge_distill.devices", "edge_distill.calibration")):
            assert not imported & above, f"{name} imports {imported & above}"
    for name, imported in GRAPH.items():
        if name.startswith("edge_distill.targets"):
            inside = {m for m in imported if not m.startswith(("edge_distill.targets", "edge_distill.calibration"))}
            assert inside <= {"edge_distill.errors", "edge_distill.files", "edge_distill.quiet",
                              "edge_distill.version"}, f"{name} imports {inside}"


def _named(path: Path, names: set[str]) -> list[str]:
    """Comparisons with one of `names` as a literal: `x == "ort"`, `x in ("adb", ...)`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                literals = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                found += [f"{path.name}:{node.lineno} {lit.value!r}" for lit in literals
                          if isinstance(lit, ast.Constant) and lit.value in names]
    return found


def test_no_module_names_a_target_or_a_device_kind_outside_its_own():
    for name, path in MODULES.items():
        if name.startswith("edge_distill.targets."):
            continue  # a target's own module
        assert not _named(path, TARGET_NAMES), f"{name} tests a target's name"
        if not name.startswith("edge_distill.devices"):
            assert not _named(path, DEVICE_KINDS), f"{name} tests a device kind"


def test_no_function_over_60_lines():
    long = []
    for name, path in MODULES.items():
        if name.startswith("edge_distill.calibration"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_every_import_of_our_own_names_resolves():
    """Lazy imports inside functions run only when their branch does: check them all here."""
    import importlib

    missing = []
    for name, path in MODULES.items():
        if name.endswith("runtime_worker"):
            continue  # runs inside the emulated aarch64 Python, without edge_distill
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base not in MODULES:
                continue
            module = importlib.import_module(base)
            for alias in node.names:
                if not hasattr(module, alias.name) and f"{base}.{alias.name}" not in MODULES:
                    missing.append(f"{name}:{node.lineno} from {base} import {alias.name}")
    assert missing == []


def test_the_result_module_mirrors_the_report_schema():
    """Field for field: a field added to a result dataclass and not to the schema (or the reverse) fails."""
    import dataclasses
    import json

    from edge_distill import result
    from edge_distill.provenance import RANK, Provenance

    schema = json.loads((ROOT / "toolkit" / "schemas" / "report.schema.json").read_text())
    defs = schema["$defs"]
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    properties = lambda spec: set(spec["properties"])  # noqa: E731
    one_of = lambda spec: next(s for s in spec["oneOf"] if s.get("type") != "null")  # noqa: E731
    assert fields(result.Report) | {"passed", "exit_code"} == properties(schema)
    assert fields(result.TargetResult) | {"name", "passed"} == properties(defs["result"])
    assert fields(result.Check) == properties(defs["check"])
    assert fields(result.Latency) == properties(one_of(defs["result"]["properties"]["latency"]))
    assert fields(result.Memory) == properties(defs["result"]["properties"]["memory"])
    assert fields(result.ExportInfo) == properties(one_of(schema["properties"]["export"]))
    assert fields(result.Ladder) == properties(defs["ladder"])
    assert fields(result.Rung) == properties(defs["ladder"]["properties"]["rungs"]["items"])
    assert fields(Provenance) == properties(defs["provenance"])
    assert set(RANK) == set(defs["provenance"]["properties"]["kind"]["enum"])
    from edge_distill.metrics import Metrics

    assert fields(Metrics) == properties(defs["metrics"])
    assert fields(result.SliceDiscovery) | {"proposed"} == properties(defs["discovery"])
    assert fields(result.FoundSlice) == properties(defs["found_slice"])
