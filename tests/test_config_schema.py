"""toolkit/schemas/config.schema.json against the config loader, both ways: every key the schema lists,
written into a config of its own, is accepted by load_config (and by plan_targets, which checks a
target's precisions and options before any work); an unknown key planted in any table is refused by
both the schema and the loader (exit 2). Every config in examples/, README.md and docs/ validates; the
schema's defaults are what load_config fills in; the committed schema and docs/configuration-reference.md
are what benchmarks/config_reference.py writes."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from conftest import EXAMPLE, ROOT
from edge_distill.config import load_config
from edge_distill.errors import BadInput

_spec = importlib.util.spec_from_file_location("config_reference", ROOT / "benchmarks" / "config_reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

SCHEMA = json.loads((ROOT / "toolkit" / "schemas" / "config.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
BUDGET_FILE = jsonschema.Draft202012Validator({"$ref": "#/$defs/budget_file", "$defs": SCHEMA["$defs"]})
PLANTED = "colour"  # a key no table has


# ---- the schema's tables, walked, and a config built around one of them ----

def _deref(node: dict) -> dict:
    return SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node


def sample(node: dict):
    """A value the schema allows for this key: its default, its example, else the least its type takes."""
    node = _deref(node)
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        return node["examples"][0]  # a named table's example entry, e.g. { high_risk = { min_accuracy = 0.72 } }
    if "properties" in node:
        return minimal(node)
    for word in ("default", "const"):
        if word in node:
            return node[word]
    if "examples" in node:
        return node["examples"][0]
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        return sample(node["anyOf"][0])
    kind = node["type"] if isinstance(node["type"], str) else node["type"][0]
    least = max(node.get("minimum", 1), node.get("exclusiveMinimum", 0) + 1)
    return {"string": "x", "integer": least, "number": float(least), "boolean": True, "object": {},
            "array": [sample(node["items"])] if "items" in node else []}[kind]


def minimal(table: dict) -> dict:
    return {k: sample(table["properties"][k]) for k in table.get("required", [])}


def _branch_values(branch: dict) -> dict:
    """What a [[targets]] branch fixes: the name it applies to, and a precision and method it allows."""
    fixed = {k: v["const"] for k, v in branch["if"]["properties"].items()}
    for k, v in branch["then"]["properties"].items():
        if "enum" in v:
            fixed[k] = v["enum"][0]
        elif "enum" in v.get("items", {}):
            fixed[k] = [v["items"]["enum"][0]]
    return fixed


def _id(trail, node) -> str:
    """A table's place: its keys from the top, a [[targets]] branch's target and an output's kind named."""
    steps = [f"{s}({fx['name']})" if "name" in fx else str(s) for _, fx, s in trail]
    kind = node["properties"].get("kind", {}).get("enum", [""])[0]
    return ".".join(steps) + (f"({kind})" if kind else "") or "top level"


def tables(node=None, trail=(), fixed=None):
    """(id, trail, table, values it must hold) for every table of the schema, reached from the top; a
    trail step is (enclosing table or None, values it must hold, key, "[]" for an array's item, or a name)."""
    node = SCHEMA if node is None else _deref(node)
    if "properties" in node:
        yield _id(trail, node), trail, node, fixed or {}
        for k, sub in node["properties"].items():
            yield from tables(sub, (*trail, (node, fixed or {}, k)))
        for branch in node.get("allOf", ()):
            for k, sub in branch["then"]["properties"].items():
                if "$ref" in sub:
                    yield from tables(sub, (*trail, (node, _branch_values(branch), k)))
        return
    if "items" in node:
        yield from tables(node["items"], (*trail, (None, {}, "[]")))
    if isinstance(node.get("additionalProperties"), dict):
        yield from tables(node["additionalProperties"], (*trail, (None, {}, next(iter(node["examples"][0])))))
    for alternative in node.get("anyOf", ()):
        yield from tables(alternative, trail, fixed)


def embed(trail, value) -> dict:
    """A whole config holding `value` at the end of `trail`, every enclosing table with what it requires."""
    for table, fixed, step in reversed(trail):
        if step == "[]":
            value = [value]
        elif table is None:
            value = {step: value}
        else:
            value = {**minimal(table), **fixed, step: value}
    return value


TABLES = list(tables())
KEYS = [(k if table is SCHEMA else f"{where}.{k}", trail, table, fixed, k) for where, trail, table, fixed in TABLES
        for k in table["properties"]]


def toml(value, top: bool = True) -> str:
    """A config as TOML text, every table inline (enough for these configs; checked by reading it back)."""
    if isinstance(value, dict):
        pairs = [f"{json.dumps(k)} = {toml(v, False)}" for k, v in value.items()]
        return "\n".join(pairs) + "\n" if top else "{ " + ", ".join(pairs) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v, False) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans as JSON spells them are TOML


def load_and_plan(doc: dict, folder: Path):
    """What `check` does with a config before any work: load it, then plan its targets."""
    from edge_distill.pipeline import plan_targets

    path = folder / "edge-distill.toml"
    text = toml(doc)
    assert tomllib.loads(text) == doc
    path.write_text(text)
    for target in doc.get("targets") if isinstance(doc.get("targets"), list) else ():
        if isinstance(target.get("recipe"), str):  # a recipe is read when the config is: it must exist
            recipe = folder / target["recipe"]
            recipe.parent.mkdir(parents=True, exist_ok=True)
            recipe.write_text(f'target = "{target["name"]}"\nprecision = "{target.get("precisions", ["fp32"])[0]}"\n')
    cfg = load_config(path)
    if cfg.targets:
        plan_targets(cfg)
    return cfg


def test_the_walk_reaches_every_table_of_the_reference():
    """The tables the tests below plant keys in are the ones the reference page documents."""
    titled = {"top level" if t is SCHEMA else t["title"] for _, _, t, _ in TABLES}
    assert titled == {s["title"] for s in reference.sections(SCHEMA)}
    assert {"[model.normalization]", '[model.outputs.NAME] kind = "detection"', '[[targets]] options, name = "coreml"',
            "[measure.qai_hub]", "[budgets.regression.slices.NAME]", "[slices.discover]"} < titled
    # the slice and output tables twice: in [budgets] and in a precision's layer
    assert len(TABLES) == len(titled) + 2


# ---- both ways ----

@pytest.mark.parametrize("where, trail, table, fixed, key", KEYS, ids=[k[0] for k in KEYS])
def test_every_key_the_schema_lists_is_accepted_by_the_loader(tmp_path, where, trail, table, fixed, key):
    doc = embed(trail, {**minimal(table), **fixed, key: sample(table["properties"][key])})
    assert [e.message for e in VALIDATOR.iter_errors(doc)] == [], doc
    load_and_plan(doc, tmp_path)


PLANTS = [pytest.param(trail, table, fixed, id=where) for where, trail, table, fixed in TABLES]


@pytest.mark.parametrize("trail, table, fixed", PLANTS)
def test_a_key_the_schema_lacks_is_refused_by_the_schema_and_the_loader(tmp_path, trail, table, fixed):
    doc = embed(trail, {**minimal(table), **fixed, PLANTED: 1})
    errors = list(VALIDATOR.iter_errors(doc))
    assert errors and all(PLANTED in e.message or e.validator in ("anyOf", "oneOf") for e in errors), errors
    try:
        load_and_plan(doc, tmp_path)
    except BadInput as exc:
        assert exc.exit_code == 2 and PLANTED in str(exc), str(exc)
    else:
        raise AssertionError(f"load_config and plan_targets accepted {PLANTED!r}: {doc}")


def test_a_target_entry_without_precisions_builds_its_float_baseline(tmp_path):
    cfg = load_and_plan({"model": {"student": "m:f"}, "targets": [{"name": "coreml"}]}, tmp_path)
    assert cfg.targets[0].precisions == ["fp16"]


def _where(table_id: str) -> str:
    """The name load_config gives a table in its messages (its check_keys `where`) for a table's place."""
    return re.sub(r"\([^)]*\)$", "", table_id).replace(".[]", "[0]")


@pytest.mark.parametrize("where, trail, table, fixed", [
    pytest.param(*t, id=t[0]) for t in TABLES if not t[0].startswith("targets.[].options(")])
def test_the_loader_allows_exactly_the_keys_the_schema_lists(tmp_path, monkeypatch, where, trail, table, fixed):
    """The key lists config.py, budgets.py and cost.py hand to check_keys, recorded as they load a config
    holding this table, against the table's keys in the schema: a key added to either side alone fails.
    (A target's options are checked by its Capabilities, the table the schema's are built from.)"""
    from edge_distill import budgets, config, cost, tomlfile

    seen: dict[str, set] = {}

    def recording(table_, allowed, where_, path):
        seen.setdefault(where_, set()).update(allowed)
        return tomlfile.check_keys(table_, allowed, where_, path)

    for module in (config, budgets, cost):
        monkeypatch.setattr(module, "check_keys", recording)
    load_and_plan(embed(trail, {**minimal(table), **fixed}), tmp_path)
    assert _where(where) in seen, f"load_config checks no keys in [{_where(where)}]: any key passes"
    popped = {"slices"} if where == "budgets.regression" else set()  # _regression takes its slices out first
    assert seen[_where(where)] | popped == set(table["properties"])


def _wrong(node: dict):
    """A value of the wrong type for this key: a string for a boolean, a boolean for anything else."""
    return "yes" if _deref(node).get("type") == "boolean" else True


WRONG_TYPES = [pytest.param(*k, id=k[0]) for k in KEYS]


@pytest.mark.parametrize("where, trail, table, fixed, key", WRONG_TYPES)
def test_a_value_of_the_wrong_type_is_refused_by_the_schema_and_the_loader(tmp_path, where, trail, table, fixed, key):
    doc = embed(trail, {**minimal(table), **fixed, key: _wrong(table["properties"][key])})
    assert list(VALIDATOR.iter_errors(doc)), doc
    try:
        load_and_plan(doc, tmp_path)
    except BadInput as exc:
        assert exc.exit_code == 2, str(exc)
    else:
        raise AssertionError(f"load_config and plan_targets accepted {key} = {_wrong(table['properties'][key])!r}")


def test_a_planted_typo_in_the_example_fails_the_schema_and_check_exits_2(tmp_path):
    from edge_distill.cli import main

    text = (EXAMPLE / "edge-distill.toml").read_text()
    assert text.count("calibration_samples = 256") == 1
    config = tmp_path / "edge-distill.toml"
    config.write_text(text.replace("calibration_samples = 256", "calibration_sampels = 256"))
    (error,) = VALIDATOR.iter_errors(tomllib.loads(config.read_text()))
    assert list(error.absolute_path) == ["data"] and "'calibration_sampels' was unexpected" in error.message
    done = CliRunner().invoke(main, ["check", str(config), "--out", str(tmp_path / "out")])
    assert done.exit_code == 2, done.output
    assert "unknown key 'calibration_sampels' in [data]" in done.output and "did you mean 'calibration_samples'" \
        in done.output and str(config) in done.output
    assert not (tmp_path / "out").exists()


def test_the_validation_command_in_the_docs_passes_the_example_and_fails_a_typo(tmp_path):
    """docs/configuration.md's command, run as shown (its `python` is this one) in a copy of the example."""
    import shutil
    import subprocess
    import sys

    text = (ROOT / "docs" / "configuration.md").read_text()
    (command,) = re.findall(r"^```bash\n(python -c .*?config\.schema\.json.*?)\n```", text, flags=re.M)
    argv = [sys.executable, "-c", re.fullmatch(r'python -c "(.*)"', command).group(1)]
    shutil.copy(EXAMPLE / "edge-distill.toml", tmp_path)
    assert subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True).returncode == 0
    config = tmp_path / "edge-distill.toml"
    config.write_text(config.read_text().replace("calibration_samples = 256", "calibration_sampels = 256"))
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "'calibration_sampels' was unexpected" in done.stderr, done.stderr


# ---- the configs the project shows ----

EXAMPLES = sorted((ROOT / "examples").rglob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_every_example_config_validates(path):
    """A project file against the schema; a budget file (no [model]: ladder --budget) against its part."""
    from edge_distill.budgets import load_budget_file

    doc = tomllib.loads(path.read_text())
    if "model" in doc:
        assert [e.message for e in VALIDATOR.iter_errors(doc)] == []
        assert load_config(path).model.student
    else:
        assert [e.message for e in BUDGET_FILE.iter_errors(doc)] == []
        assert load_budget_file(path).limits


def _doc_blocks() -> list[tuple[str, dict]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [(f"{page.name}:{page.read_text()[:m.start()].count(chr(10)) + 1}", tomllib.loads(m.group(1)))
            for page in pages for m in re.finditer(r"^```toml\n(.*?)^```", page.read_text(), flags=re.S | re.M)]


NOT_CONFIGS = {"project"}  # pyproject.toml's entry-point table (docs/testing.md): a plugin's, not a config


@pytest.mark.parametrize("where, doc", _doc_blocks(), ids=[w for w, _ in _doc_blocks()])
def test_every_config_shown_in_the_readme_and_the_docs_validates(where, doc):
    """A fragment (a [budgets] or [measure.adb] block alone) is validated with a stand-in [model]."""
    if set(doc) <= NOT_CONFIGS:
        return
    assert set(doc) <= set(SCHEMA["properties"]), f"{where}: neither a config nor a known other file: {set(doc)}"
    full = {"model": {"student": "stand_in:factory"}, **doc}
    assert [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(full)] == [], where


# ---- the defaults, read back from the loader ----

def _loaded_default(where: str, key: str, tmp_path: Path):
    """The value load_config gives `key` of table `where` when the table is there and the key is not."""
    doc = {"model": {"student": "m:f", "inputs": [{"name": "x", "shape": [1]}]}, "targets": [{"name": "ort"}],
           "slices": {"discover": {}}, "cost": minimal(SCHEMA["$defs"]["cost"])}
    cfg = load_and_plan(doc, tmp_path)
    read = {"model": lambda: getattr(cfg.model, key), "model.inputs.[]": lambda: getattr(cfg.model.inputs[0], key),
            "data": lambda: getattr(cfg, key), "export": lambda: getattr(cfg, key),
            "measure": lambda: getattr(cfg, key), "targets.[]": lambda: getattr(cfg.targets[0], key),
            "slices.discover": lambda: cfg.slices_discover[key], "cost": lambda: cfg.cost.values[key]}
    return read[where]() if where in read else NotImplemented


# Defaults the loader does not fill in: their readers take them from the same table the schema is built from
# (budgets.evaluate reads a missing estimate as "point"; regression.py, the kinds and the targets fill theirs in
# from REGRESSION_LIMITS, each kind's settings and each Option's default, the tables the schema is built from)
READ_ELSEWHERE = ("budgets.estimate", "budgets.precisions.int4.estimate", "budgets.regression.",
                  "model.outputs.logits(", "targets.[].options(")
DEFAULTED = [k for k in KEYS if "default" in k[2]["properties"][k[4]]]


@pytest.mark.parametrize("where, trail, table, fixed, key", DEFAULTED, ids=[k[0] for k in DEFAULTED])
def test_the_schema_defaults_are_what_the_loader_fills_in(tmp_path, where, trail, table, fixed, key):
    loaded = _loaded_default(where.rsplit(".", 1)[0], key, tmp_path)
    if loaded is NotImplemented:
        assert where.startswith(READ_ELSEWHERE), f"{where}: no reader for its default"
        return
    assert loaded == table["properties"][key]["default"], where


# ---- generated files ----

def test_the_committed_schema_is_what_the_generator_builds():
    assert reference.SCHEMA.read_text() == reference.schema_text(reference.build_schema()), \
        "run python benchmarks/config_reference.py"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_committed_reference_page_is_what_the_generator_writes():
    assert reference.PAGE.read_text() == reference.render(SCHEMA), "run python benchmarks/config_reference.py"
    page = reference.PAGE.read_text()
    for where, _, table, _ in TABLES:  # one table per TOML table, every key a row
        title = "top level" if table is SCHEMA else table["title"]
        section = page.split(f"## `{title}`\n", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `(\w+)` \|", section, re.M)
        assert rows == list(table["properties"]), where
        for key, example in re.findall(r"^\| `(\w+)` \|.*; e\.g\. `([^`]*)` \|$", section, re.M):
            assert tomllib.loads(example) == {key: table["properties"][key]["examples"][0]}, example
