"""--json: every command that prints results prints one JSON document on stdout, and nothing else."""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE, ROOT, edit_config, run_cli

pytestmark = pytest.mark.slow  # every test runs the CLI end to end

ADVICE = ["--latency-budget-ms", "50", "--monthly-calls", "1000", "--task", "narrow", "--teacher", "strong",
          "--teacher-stable", "--tolerance", "low", "--data", "labelled", "--no-off-the-shelf"]


def _document(proc) -> object:
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every run here holds its budgets (or has none)
    return json.loads(proc.stdout)  # the whole of stdout parses: nothing printed beside the document


def test_report_commands_print_the_report(example, tmp_path, demo_run):
    config = edit_config(example, targets=("ort",), precisions=["fp32"])
    checked = _document(run_cli("check", config, "--out", tmp_path / "c", "--json"))
    assert checked == json.loads((tmp_path / "c" / "report.json").read_text())
    _, demo = demo_run
    verified = _document(run_cli("verify", demo / "ort" / "model.int8.ort", "--data", EXAMPLE / "eval.npz",
                                 "--runs", "20", "--out", tmp_path / "v", "--json"))
    assert verified["command"] == "verify" and verified["results"][0]["precision"] == "int8"


def test_targets_json_lists_each_target_with_its_precisions():
    from edge_distill.targets.coreml import CoremlTarget
    from edge_distill.targets.ort import OrtTarget
    from edge_distill.targets.tflite import TfliteTarget

    listed = _document(run_cli("targets", "--json"))
    # worked out apart: the built-in classes' own capabilities, not the registry the command reads
    expected = {c.capabilities.name: [p.name for p in c.capabilities.precisions]
                for c in (CoremlTarget, OrtTarget, TfliteTarget)}
    assert {name: entry["precisions"] for name, entry in listed.items()} == expected


def test_devices_json_lists_the_host_every_profile_the_emulator_and_the_cloud():
    # no adb and no Xcode on PATH: no attached phone joins the list
    env = {"EDGE_DISTILL_ADB": "", "EDGE_DISTILL_XCRUN": "", "PATH": str(Path(sys.executable).parent)}
    listed = _document(run_cli("devices", "--json", env=env))
    profiles = sorted(p.stem for p in (ROOT / "toolkit" / "device_profiles").glob("*.toml"))
    assert [(d["name"], d["kind"]) for d in listed] == (
        [("host", "measured")] + [(p, "estimated") for p in profiles]
        + [("emulated-arm64", "emulated"), ("qai-hub:NAME", "measured")])


def test_advise_json_starts_at_quantizing_the_current_model():
    advice = _document(run_cli("advise", *ADVICE, "--json"))
    # a 50 ms budget with no current figure, no off-the-shelf model: the current model quantized first
    assert advice["start_at"] == "quantize the current model (int8, then int4)"
    assert [s["answer"] for s in advice["steps"]] == [
        "Yes: no current figure given; the budget is 50 ms", "None at hand",
        "Start here: within reach of int8/int4 (up to ~3x)."]


def _tflite_op_counts(path) -> dict[str, int]:
    """Each builtin op of the file's main graph, counted from its flatbuffer (no interpreter)."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(path.read_bytes(), 0)
    names = {code: name for name, code in vars(fb.BuiltinOperator).items() if not name.startswith("_")}
    graph, counts = model.Subgraphs(0), collections.Counter()
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        counts[names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]] += 1  # small codes sit in the old field
    return dict(counts)


def test_artifact_commands_print_json(demo_run):
    _, demo = demo_run
    latency = _document(run_cli("bench", demo / "ort" / "model.int8.ort", "--runs", "20", "--json"))["latency"]
    assert len(latency["samples_ms"]) == latency["runs"] == 20
    # the p50 is the median of the 20 runs it reports (each, and the p50, rounded to 0.1 µs)
    assert latency["p50_ms"] == pytest.approx(statistics.median(latency["samples_ms"]), abs=2e-4)
    tflite = demo / "tflite" / "model.int8.tflite"
    inspected = _document(run_cli("inspect", tflite, "--json"))
    assert inspected["ops"] == _tflite_op_counts(tflite) and inspected["size_bytes"] == tflite.stat().st_size


def test_history_and_report_commands_print_json(demo_run, tmp_path):
    _, demo = demo_run
    store = tmp_path / "runs.db"
    recorded = _document(run_cli("verify", demo / "ort" / "model.int8.ort", "--data", EXAMPLE / "eval.npz", "--runs",
                                 "20", "--out", tmp_path / "v", "--json", "--history", store))
    runs = _document(run_cli("history", "--store", store, "--json"))
    assert [(r["id"], r["command"]) for r in runs] == [(1, "verify")]
    assert _document(run_cli("history", "--store", store, "show", "1", "--json")) == recorded
    assert _document(run_cli("report", tmp_path / "v" / "report.json", "--json")) == recorded


def test_ladder_and_sensitivity_print_the_report(example, tmp_path):
    ladder = _document(run_cli("ladder", example / "edge-distill.toml", "--target", "ort", "--out", tmp_path / "l",
                               "--json"))
    assert ladder["command"] == "ladder" and ladder["ladder"]["chosen"] in {r["name"] for r in ladder["ladder"]["rungs"]}
    table = _document(run_cli("sensitivity", example / "edge-distill.toml", "--target", "ort", "--precision", "int8",
                              "--out", tmp_path / "s", "--json"))
    assert table["command"] == "sensitivity"
    search = table["results"][-1]["details"]["mixed_precision"]
    assert search["stopped"] == "sensitivity only"
    # Static int8's activation error per layer (its output after the QDQ pair, against the float graph)
    assert {s["layer"] for s in search["sensitivity"]} == {"node_conv2d", "node_conv2d_1", "node_linear", "node_linear_1"}
    assert all(36 < s["sqnr_db"] < 60 for s in search["sensitivity"]), search["sensitivity"]
