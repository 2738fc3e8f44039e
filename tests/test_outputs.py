"""Output folders: written whole or not at all, never over a user's files, never outside --out."""

import json

import pytest

from edge_distill.errors import BadInput
from edge_distill.outputs import MARKER, output_folder


def write(out, force=False, **entries):
    with output_folder(out, force) as tmp:
        for name, text in entries.items():
            (tmp / name).write_text(text)


def test_a_new_folder_gets_the_entries_and_a_manifest(tmp_path):
    write(tmp_path / "out", **{"report.json": "1", "junit.xml": "2"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "junit.xml", "report.json"]
    assert json.loads((tmp_path / "out" / MARKER).read_text()) == {"entries": ["junit.xml", "report.json"]}


def test_a_folder_edge_distill_owns_is_replaced_whole_without_force(tmp_path):
    write(tmp_path / "out", **{"report.json": "old", "stale.onnx": "old"})
    write(tmp_path / "out", **{"report.json": "new"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "report.json"]
    assert (tmp_path / "out" / "report.json").read_text() == "new"


def test_a_users_folder_is_refused_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match=r"holds files edge-distill did not write \(notes.txt\)"):
        write(out, **{"report.json": "new"})
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left beside it


def test_force_replaces_only_our_entries_and_keeps_the_users(tmp_path):
    out = tmp_path / "out"
    write(out, **{"report.json": "old", "stale.onnx": "old"})
    (out / "notes.txt").write_text("mine")
    write(out, force=True, **{"report.json": "new"})
    assert (out / "report.json").read_text() == "new" and (out / "notes.txt").read_text() == "mine"
    assert not (out / "stale.onnx").exists()  # ours, from the last run
    assert json.loads((out / MARKER).read_text()) == {"entries": ["report.json"]}


def test_force_never_overwrites_a_users_file_of_the_same_name(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("the user's own report")
    (out / "model.onnx").write_text("the user's own model")
    with pytest.raises(BadInput, match="report.json in the output folder is not one of them; nothing was written"):
        write(out, force=True, **{"report.json": "new", "junit.xml": "new"})
    assert (out / "report.json").read_text() == "the user's own report"
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]


@pytest.mark.parametrize("entry", ["../victim", "../victim-dir", "VICTIM_ABSOLUTE", "sub/../../victim", ".", ".."])
def test_a_crafted_manifest_cannot_make_force_delete_outside_out(tmp_path, entry):
    victim, victim_dir = tmp_path / "victim", tmp_path / "victim-dir"
    victim.write_text("precious")
    victim_dir.mkdir()
    (victim_dir / "file").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    entry = str(victim) if entry == "VICTIM_ABSOLUTE" else entry
    (out / MARKER).write_text(json.dumps({"entries": [entry, "report.json"]}))
    write(out, force=True, **{"junit.xml": "new"})
    assert victim.read_text() == "precious" and (victim_dir / "file").read_text() == "precious"
    assert (out / "notes.txt").read_text() == "mine" and (out / "junit.xml").read_text() == "new"


def test_a_failed_run_leaves_the_old_output_as_it_was(tmp_path):
    out = tmp_path / "out"
    write(out, **{"report.json": "old"})
    with pytest.raises(RuntimeError):
        with output_folder(out) as tmp:
            (tmp / "report.json").write_text("half")
            raise RuntimeError("interrupted")
    assert (out / "report.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_refusal_lists_at_most_five_of_the_users_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(7):
        (out / f"mine-{i}.txt").write_text("mine")
    with pytest.raises(BadInput, match=r"\(mine-0.txt, mine-1.txt, mine-2.txt, mine-3.txt, mine-4.txt \.\.\.\)"):
        with output_folder(out):  # force defaults to off
            pass


def test_a_missing_parent_folder_is_created(tmp_path):
    write(tmp_path / "a" / "b" / "out", **{"report.json": "1"})
    assert (tmp_path / "a" / "b" / "out" / "report.json").read_text() == "1"


def test_force_removes_our_stale_folders_and_keeps_odd_names(tmp_path):
    out = tmp_path / "out"
    with output_folder(out) as tmp:
        (tmp / "onnx").mkdir()
        (tmp / "onnx" / "model.onnx").write_text("old")
    (out / "notes.txt").write_text("mine")
    write(out, force=True, **{"-odd name.txt": "new"})  # sorts before the manifest's leading dot
    assert sorted(p.name for p in out.iterdir()) == ["-odd name.txt", MARKER, "notes.txt"]
    assert json.loads((out / MARKER).read_text()) == {"entries": ["-odd name.txt"]}


def test_reports_are_written_from_one_report(tmp_path):
    import xml.etree.ElementTree as ET

    from edge_distill.budgets import Check
    from edge_distill.report_files import write_reports
    from edge_distill.result import Report

    check = Check("ort-int8/min_accuracy", "accuracy", ">=", 0.9, 0.8, "", False)
    report = Report(command="check", tool_version="0", created="2026-12-01T00:00:00+00:00", config=None,
                    student={"reference": "s", "fingerprint": "0" * 64}, teacher=None, data={}, environment={},
                    export=None, references={}, results=[], gate_checks=[check])
    write_reports(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["exit_code"] == 1
    failed = [c.get("name") for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
              if c.find("failure") is not None]
    assert failed == ["min_accuracy"]
    assert "| `ort-int8/min_accuracy` | 0.8 | >= 0.9 | **broken** |" in (tmp_path / "report.md").read_text()


def test_report_json_never_holds_nan_or_infinity():
    from edge_distill.budgets import Check
    from edge_distill.report import Report, to_json

    checks = [Check("x/a", "teacher_cosine", ">=", 0.5, float("nan"), "", False),
              Check("x/b", "latency.p95_ms", "<=", 10.0, float("inf"), "ms", False)]
    report = Report(command="verify", tool_version="0", created="", config=None, student={}, teacher=None, data={},
                    environment={}, export=None, references={}, results=[], gate_checks=checks)
    text = to_json(report)
    assert "NaN" not in text and "Infinity" not in text
    assert [c["value"] for c in json.loads(text)["gate_checks"]] == [None, None]
