"""toolkit/outputs.py, unit by unit: the refusal's list of a user's files, errors raised inside the
folder, OS errors and their exit codes, the partial folder (its mode, a parent that cannot be made),
the clean-up of a killed run's leftovers, and the manifest as written (issue 31)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from edge_distill import outputs
from edge_distill.errors import BadInput, CannotMeasure
from edge_distill.outputs import MARKER, PARTIAL, output_folder


def refusal(out, force=False, **entries) -> BadInput:
    with pytest.raises(BadInput) as err:
        with output_folder(out, force) as tmp:
            for name, text in entries.items():
                (tmp / name).write_text(text)
    return err.value


def users_folder(tmp_path, count: int):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(count):
        (out / f"u{i}").write_text("mine")
    return out


# ---- the refusal names at most five of the user's files ----------------------------------------------

def test_five_users_files_are_all_named_without_an_ellipsis(tmp_path):
    error = refusal(users_folder(tmp_path, 5))
    assert str(error).startswith(f"{tmp_path / 'out'}: output folder holds files edge-distill did not write "
                                 "(u0, u1, u2, u3, u4); it will not overwrite them")


def test_six_users_files_show_the_first_five_and_an_ellipsis(tmp_path):
    error = refusal(users_folder(tmp_path, 6))
    assert "did not write (u0, u1, u2, u3, u4 ...);" in str(error)


# ---- an error raised inside the folder names the folder asked for ----------------------------------

def test_a_tools_error_inside_names_out_not_the_partial_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BadInput) as err:
        with output_folder(out) as tmp:
            raise BadInput(f"cannot write {tmp / 'model.onnx'}", path=tmp / "model.onnx", hint="a hint")
    assert err.value.args == (f"cannot write {out / 'model.onnx'}",)
    assert err.value.path == str(out / "model.onnx") and err.value.hint == "a hint"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the partial folder is gone


def test_a_tools_error_without_a_path_keeps_none(tmp_path):
    with pytest.raises(CannotMeasure) as err:
        with output_folder(tmp_path / "out"):
            raise CannotMeasure("no runtime")
    assert err.value.path is None and str(err.value) == "no runtime"


def test_an_os_error_inside_becomes_the_tools_error_naming_out(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BadInput) as err:
        with output_folder(out) as tmp:
            open(tmp / "missing" / "x.onnx")  # ENOENT: about a file the run wrote, exit 2
    assert str(err.value) == f"{out / 'missing' / 'x.onnx'}: No such file or directory"
    assert err.value.exit_code == 2


# ---- OS errors: the machine's (exit 3) or the user's file (exit 2) --------------------------------------

@pytest.mark.parametrize("code, kind, exit_code", [(errno.ENOSPC, CannotMeasure, 3), (errno.EIO, CannotMeasure, 3),
                                                   (errno.EACCES, BadInput, 2), (errno.ENOENT, BadInput, 2)])
def test_os_errors_of_the_machine_exit_3_and_of_a_file_exit_2(code, kind, exit_code):
    error = outputs.os_error(OSError(code, os.strerror(code), "/data/x.npz"))
    assert type(error) is kind and error.exit_code == exit_code
    assert str(error) == f"/data/x.npz: {os.strerror(code)}"


def test_an_os_error_without_a_message_is_named_by_its_type():
    error = outputs.os_error(FileNotFoundError())
    assert type(error) is BadInput and str(error) == "FileNotFoundError" and error.path is None


# ---- the partial folder ----------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750), (0o077, 0o700)])
def test_the_output_folder_has_the_users_umask_not_mkdtemps_0700(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with output_folder(tmp_path / "out") as tmp:
            (tmp / "report.json").write_text("1")
        assert os.umask(umask) == umask  # the umask is left as it was set
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o7777 == mode


def test_a_file_where_a_parent_folder_should_be_is_named(tmp_path):
    (tmp_path / "data").write_text("a file")
    out = tmp_path / "data" / "runs" / "out"  # the blocker is the grandparent, not the parent
    error = refusal(out)
    assert str(error) == f"{out}: cannot create the output folder: {tmp_path / 'data'} is a file, not a folder"


def test_a_partial_folder_that_cannot_be_made_is_named_by_the_systems_reason(tmp_path):
    out = tmp_path / ("o" * 250)  # the folder itself fits; its partial folder's longer name does not
    error = refusal(out)
    assert str(error) == f"{out}: cannot create the output folder: File name too long"


# ---- a killed run's leftovers ----------------------------------------------------------------------

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def partial(tmp_path, name: str, mark) -> None:
    folder = tmp_path / f".out.partial-{name}"
    folder.mkdir()
    if mark is not None:
        (folder / PARTIAL).write_text(mark if isinstance(mark, str) else json.dumps(mark))


def test_only_a_dead_runs_marked_partials_on_this_host_are_removed(tmp_path):
    here, dead = socket.gethostname(), dead_pid()
    for i in range(3):  # several of each, so that a stop at the first unreadable one would show
        partial(tmp_path, f"dead{i}", {"pid": dead, "host": here})
    partial(tmp_path, "live", {"pid": os.getpid(), "host": here})
    partial(tmp_path, "elsewhere", {"pid": dead, "host": here + "-other"})
    partial(tmp_path, "nomark", None)  # OSError
    partial(tmp_path, "notjson", "{")  # ValueError
    partial(tmp_path, "nohost", {"pid": dead})  # KeyError
    partial(tmp_path, "nopid", {"pid": None, "host": here})  # TypeError
    with output_folder(tmp_path / "out") as tmp:
        (tmp / "report.json").write_text("1")
    left = sorted(p.name.removeprefix(".out.partial-") for p in tmp_path.iterdir() if p.name != "out")
    assert left == ["elsewhere", "live", "nohost", "nomark", "nopid", "notjson"]


def test_a_process_is_alive_while_it_runs_and_not_after():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert outputs._alive(child.pid) is True
        assert child.poll() is None  # asking did not signal it
    finally:
        child.kill()
        child.wait()
    assert outputs._alive(child.pid) is False


# ---- committing: the old folder moved aside, --force, the manifest ----------------------------------

def test_the_old_folder_is_moved_aside_under_this_runs_partial_suffix_and_removed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with output_folder(out) as tmp:
        (tmp / "report.json").write_text("old")
    removed = []
    real_rmtree = outputs.shutil.rmtree
    monkeypatch.setattr(outputs.shutil, "rmtree", lambda p, **kw: (removed.append(p), real_rmtree(p, **kw)))
    with output_folder(out) as tmp:
        (tmp / "report.json").write_text("new")
        suffix = tmp.name[len(".out.partial-"):]
    assert [os.path.basename(p) for p in removed] == [f".out.old-{suffix}", tmp.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "report.json").read_text() == "new"


def test_force_refuses_a_hidden_entry_that_is_a_users_file(tmp_path):
    out = users_folder(tmp_path, 1)
    (out / ".cache").write_text("the user's")  # ".cache" sorts before the manifest's name
    error = refusal(out, force=True, **{".cache": "ours", "report.json": "ours"})
    assert "and .cache in the output folder is not one of them; nothing was written" in str(error)
    assert (out / ".cache").read_text() == "the user's" and sorted(p.name for p in out.iterdir()) == [".cache", "u0"]


def test_the_manifest_is_one_entry_a_line_indented_by_one_space(tmp_path):
    out = tmp_path / "out"
    with output_folder(out) as tmp:
        (tmp / "report.json").write_text("1")
        (tmp / "b.onnx").write_text("1")
    expected = '{\n "entries": [\n  "b.onnx",\n  "report.json"\n ]\n}\n'
    assert (out / MARKER).read_text() == expected
    (out / "notes.txt").write_text("mine")
    with output_folder(out, force=True) as tmp:  # the manifest --force writes reads the same
        (tmp / "report.json").write_text("2")
        (tmp / "b.onnx").write_text("2")
    assert (out / MARKER).read_text() == expected and (out / "notes.txt").read_text() == "mine"


def test_another_users_process_counts_as_alive(monkeypatch):
    # A test double: as root (this suite's machine) os.kill never meets another user's process, so the
    # PermissionError it raises for one is raised here by hand.
    def kill(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(outputs.os, "kill", kill)
    assert outputs._alive(1) is True
