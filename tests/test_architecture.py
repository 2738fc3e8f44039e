"""The house rules of ARCHITECTURE.md, checked over the code itself: the import graph (no circles,
each package importing only what it may), no target or device named outside its own module, no
function over 60 lines. The graph is read from the sources with `ast` (every import, including the
lazy ones inside functions), through the folder -> package map of pyproject.toml."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
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


def _imports(name: str, path: Path, top_level_only: bool = False) -> set[str]:
    """Modules of this project that `name` imports, anywhere in its body (or only at module level).
    `from edge_distill import places` imports edge_distill.places, not the package face."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
            if any(target not in MODULES for target in targets):
                targets.append(base)  # a name defined in `base` itself
        else:
            continue
        for target in targets:
            module = target
            while module and module not in MODULES:
                module = module.rpartition(".")[0]
            if module and module != name:
                out.add(module)
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


@dataclass(frozen=True)
class Rule:
    """One row of ARCHITECTURE.md's table: the modules it covers (a package covers its submodules) and
    what they may import besides each other. `lazily`: at module level they import only `at_top`."""

    modules: tuple[str, ...]
    may: frozenset[str] = frozenset()
    anything: bool = False
    except_: frozenset[str] = frozenset()
    lazily: bool = False
    at_top: frozenset[str] = frozenset()
    only: frozenset[str] = frozenset()  # modules of the row the rule is narrowed to (the leaves row)


def _ed(*names: str) -> frozenset[str]:
    return frozenset(f"edge_distill.{n}" if n != "edge_distill" else n for n in names)


LEAVES = ("errors", "files", "limits", "precision", "version", "provenance", "places", "quiet", "tomlfile")
ABOVE_THE_STAGES = _ed("cli", "__main__", "session")
RULES = [
    Rule(("edge_distill",), anything=True, lazily=True, at_top=_ed("version")),
    Rule(("cli", "__main__"), anything=True, lazily=True, at_top=_ed("errors", "limits", "cli")),
    Rule(("session",), anything=True, except_=_ed("cli", "__main__")),
    Rule(("pipeline", "ladder", "evaluate"), anything=True, except_=ABOVE_THE_STAGES),
    Rule(("scaffold",), _ed("models", "exporting", "kinds", "outputs", "files", "errors", "calibration",
                                   "targets", "precision")),
    Rule(("auto_precision",), _ed("mixed", "precision", "report", "result", "files", "errors", "targets",
                                   "calibration")),
    Rule(("slicefind",), _ed("result")),
    Rule(("recipes",), _ed("mixed", "kinds", "result", "errors")),
    Rule(("discover",), anything=True, except_=ABOVE_THE_STAGES),
    Rule(("mixed",), _ed("result")),
    Rule(("bundle", "outputs", "runtimes"), _ed("files", "errors", "config", "targets", "places", "calibration")),
    Rule(("config", "budgets", "cost"), _ed("result", "provenance", "errors", "tomlfile", "kinds", "calibration",
                                            "files", "places")),
    Rule(("kinds",)),
    Rule(("streaming",), _ed("calibration", "errors")),
    Rule(("regression",), _ed("budgets", "kinds", "result", "provenance", "errors", "targets", "calibration",
                               "devices")),
    Rule(("exporting", "models", "archives", "text"), _ed("calibration", "result", "files", "limits", "errors",
                                                            "quiet")),
    Rule(("cache",), _ed("result", "files", "errors", "places", "targets")),
    Rule(("devices",), _ed("result", "provenance", "files", "errors", "places", "quiet", "tomlfile", "progress",
                           "targets", "calibration", "metrics")),
    Rule(("targets",), _ed("errors", "files", "quiet", "version", "calibration")),
    Rule(("calibration",), _ed("errors", "limits")),
    Rule(("result",), _ed("metrics", "provenance")),
    Rule(("report",), _ed("result", "tables")),
    Rule(("html_report",), _ed("report", "result")),
    Rule(("shards",), _ed("result", "files", "errors")),
    Rule(("report_files",), _ed("report", "html_report", "result")),
    Rule(("history", "history_migrations"), _ed("errors")),
    Rule(("tables",)),
    Rule(("progress",), _ed("places", "tables")),
    Rule(("metrics",), _ed("kinds")),
    Rule(("advise",), _ed("errors")),
    Rule(("runtime_worker",)),  # runs in another Python (the emulator's, an app runtime's) without edge_distill
    Rule(LEAVES, only=_ed("errors", "precision", "version", "provenance", "places", "quiet")),
    Rule(LEAVES, _ed("errors"), only=_ed("files", "limits", "tomlfile")),
]


def _covers(prefix: str, module: str) -> bool:
    """`prefix` is `module` or a package holding it (the face, edge_distill, stands for itself only)."""
    return module == prefix or (prefix != "edge_distill" and module.startswith(prefix + "."))


def _rule_of(module: str) -> Rule | None:
    for rule in RULES:
        row = _ed(*rule.modules)
        if any(_covers(m, module) for m in row) and (not rule.only or module in rule.only):
            return rule
    return None


def violations(graph: dict[str, set[str]], top_level: dict[str, set[str]]) -> list[str]:
    """Each import a module's row does not allow, as "module -> imported"."""
    found = []
    for module, imported in sorted(graph.items()):
        rule = _rule_of(module)
        if rule is None:
            found.append(f"{module}: in no row of ARCHITECTURE.md's table")
            continue
        row = _ed(*rule.modules)
        for target in sorted(imported):
            if any(_covers(m, target) for m in row):
                continue  # its own row or package
            allowed = (not any(_covers(m, target) for m in rule.except_)) if rule.anything else \
                any(_covers(m, target) for m in rule.may)
            if not allowed:
                found.append(f"{module} -> {target}")
        if rule.lazily:
            found += [f"{module} -> {t} (at import time)" for t in sorted(top_level[module] - rule.at_top)]
    return found


TOP_LEVEL = {name: _imports(name, path, top_level_only=True) for name, path in MODULES.items()}


def test_every_module_imports_only_what_its_row_allows():
    assert violations(GRAPH, TOP_LEVEL) == []


@pytest.mark.parametrize("module, planted", [
    ("edge_distill.config", "edge_distill.report"),  # a config rendering a report
    ("edge_distill.devices.host", "edge_distill.report_files"),  # a device writing report files
    ("edge_distill.calibration.readers", "edge_distill.targets"),  # data readers knowing targets
    ("edge_distill.result", "edge_distill.pipeline"),  # the result object reaching up into a stage
    ("edge_distill.tables", "edge_distill.errors"),  # a leaf that imports nothing of the package
])
def test_a_planted_import_against_the_rules_is_found(module, planted):
    graph = {name: set(imported) for name, imported in GRAPH.items()}
    graph[module].add(planted)
    assert violations(graph, TOP_LEVEL) == [f"{module} -> {planted}"]


def test_the_face_and_the_cli_import_lazily():
    """A heavy module imported at the top of the face or of cli.py is found (it would slow `--help`)."""
    top = {name: set(imported) for name, imported in TOP_LEVEL.items()}
    top["edge_distill"].add("edge_distill.pipeline")
    top["edge_distill.cli"].add("edge_distill.config")
    assert violations(GRAPH, top) == ["edge_distill -> edge_distill.pipeline (at import time)",
                                      "edge_distill.cli -> edge_distill.config (at import time)"]


def _table_rows() -> list[frozenset[str]]:
    """The modules each row of ARCHITECTURE.md's import table names (backticked, parentheses left out)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text[text.index("| package / module |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cell = re.sub(r"\([^)]*\)", "", line.split("|")[1])
        names = [n.removesuffix(".py").removesuffix("/") for n in re.findall(r"`([^`]+)`", cell)]
        rows.append(_ed(*names))
    return rows


def test_every_row_of_the_table_is_a_rule_and_every_rule_a_row():
    assert set(_table_rows()) == {_ed(*rule.modules) for rule in RULES}


def _named(path: Path, names: set[str]) -> list[str]:
    """Comparisons with one of `names` as a literal (`x == "ort"`, `x in ("adb", ...)`) and prefix or
    suffix tests with one (`x.startswith("ort")`, `x.startswith(("tflite", ...))`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith", "removeprefix", "removesuffix")):
            parts = node.args
        else:
            continue
        for part in parts:
            literals = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
            found += [f"{path.name}:{node.lineno} {lit.value!r}" for lit in literals
                      if isinstance(lit, ast.Constant) and lit.value in names]
    return found


def test_a_planted_target_name_test_is_found(tmp_path):
    """The four forms, planted in a module outside the targets: each is found, and a name in a message is not."""
    planted = tmp_path / "planted.py"
    planted.write_text('def f(name, kind):\n'
                       '    if name.startswith("ort"):\n'
                       '        return name.endswith(("x", "tflite"))\n'
                       '    print("ort builds .ort files")\n'
                       '    return name == "coreml" or kind in ("host", "adb")\n')
    assert _named(planted, TARGET_NAMES) == ["planted.py:2 'ort'", "planted.py:3 'tflite'", "planted.py:5 'coreml'"]
    assert _named(planted, DEVICE_KINDS) == ["planted.py:5 'host'", "planted.py:5 'adb'"]


def test_no_module_names_a_target_or_a_device_kind_outside_its_own():
    for name, path in MODULES.items():
        if name.startswith("edge_distill.targets."):
            continue  # a target's own module
        assert not _named(path, TARGET_NAMES), f"{name} tests a target's name"
        if not name.startswith("edge_distill.devices"):
            assert not _named(path, DEVICE_KINDS), f"{name} tests a device kind"


MAX_PARAMETERS = 8


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Positional, keyword-only, *args and **kwargs, a method's self or cls left out."""
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def _is_click_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A click command or group takes one parameter per option: its decorators say it is one."""
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "group")
               for d in node.decorator_list)


def long_parameter_lists(sources: dict[str, str]) -> list[str]:
    """Functions (click commands aside) taking more than MAX_PARAMETERS parameters, as "module.name: N"."""
    found = []
    for name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_click_command(node) \
                    and _parameters(node) > MAX_PARAMETERS:
                found.append(f"{name}.{node.name}: {_parameters(node)}")
    return found


SOURCES_OF_TOOLKIT_AND_TARGETS = {name: path.read_text() for name, path in MODULES.items()
                                  if not name.startswith("edge_distill.calibration")}


def test_no_function_over_8_parameters():
    """The run's context travels as one object (session.Session, pipeline.Run), not as parameter lists."""
    assert long_parameter_lists(SOURCES_OF_TOOLKIT_AND_TARGETS) == []


def test_a_planted_long_parameter_list_is_found():
    """Nine parameters are found, in a method (self not counted) and with *args and **kwargs counted;
    eight are not, and a click command's nine are its options."""
    planted = {"edge_distill.planted": (
        "import click\n"
        "def nine(a, b, c, d, e, f, g, h, *, i): pass\n"
        "def eight(a, b, c, d, e, f, g, h): pass\n"
        "class K:\n"
        "    def method(self, a, b, c, d, e, f, g, *rest, **more): pass\n"
        "    def fine(self, a, b, c, d, e, f, g, h): pass\n"
        "@click.command()\n"
        "def command(a, b, c, d, e, f, g, h, i): pass\n")}
    assert long_parameter_lists(planted) == ["edge_distill.planted.nine: 9", "edge_distill.planted.method: 9"]


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


def test_no_module_takes_a_precision_name_apart_outside_precision_py():
    """"int4-auto" is read by `precision.PrecisionSpec` alone: a second reader (`endswith("-auto")`,
    `precision + "-auto"`) is how the suffix once drifted between modules."""
    offenders = []
    for path in sorted((ROOT / "toolkit").rglob("*.py")) + sorted((ROOT / "targets").rglob("*.py")):
        if path.name == "precision.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("-auto"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_a_precision_spec_reads_and_writes_the_configured_name():
    from edge_distill.precision import PrecisionSpec

    for name, base, auto in (("int4-auto", "int4", True), ("int8-dynamic", "int8-dynamic", False),
                             ("int8-dynamic-auto", "int8-dynamic", True), ("fp16", "fp16", False)):
        spec = PrecisionSpec.parse(name)
        assert (spec.base, spec.auto, spec.name) == (base, auto, name)
    assert PrecisionSpec.parse("int8").searched().name == "int8-auto"
    assert [PrecisionSpec.parse(n).eight_bit for n in ("int8", "int8-dynamic-auto", "int4", "fp32")] == \
        [True, True, False, False]
