"""Output folders: written whole or not at all, and never over a user's files.

Everything goes to a temporary folder beside `--out`; only when the work is done does it take
the place of `--out`. A folder that holds files edge-distill did not write is refused unless
`--force`, and even then only edge-distill's own entries are replaced: a user's file with the name
of a new entry is refused (exit 2) before anything is removed. The folder's manifest is untrusted
input: only plain names inside the folder count as ours.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import BadInput, CannotMeasure, EdgeDistillError

MARKER = ".edge-distill-output.json"
PARTIAL = ".edge-distill-partial.json"  # in a folder being written: which process writes it


def _ours(out: Path) -> set[str]:
    """The entries the manifest lists that are plain names inside `out` ("../x", "/x", "a/b" are not)."""
    try:
        entries = json.loads((out / MARKER).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    if not isinstance(entries, list):
        return set()
    return {e for e in entries if isinstance(e, str) and _plain_name(e)}


def _plain_name(entry: str) -> bool:
    return entry not in ("", ".", "..", MARKER) and "/" not in entry and "\\" not in entry and "\0" not in entry


def _foreign(out: Path) -> list[str]:
    return sorted(set(p.name for p in out.iterdir()) - _ours(out) - {MARKER})


def check_writable(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput("--out exists and is not a folder", path=out)
    if out.is_dir() and not force:
        foreign = _foreign(out)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise BadInput(f"output folder holds files edge-distill did not write ({shown}); "
                           "it will not overwrite them", path=out, hint="choose another --out, or pass --force")


@contextmanager
def output_folder(out: str | Path, force: bool = False):
    """Yield a temporary folder; on success it becomes `out`, on an exception it disappears. The
    run's scratch space belongs inside it (a killed run leaves one folder, which the next run into
    the same `out` removes)."""
    out = Path(out).absolute()
    check_writable(out, force)
    tmp = _partial_folder(out)
    try:
        try:
            yield tmp
        except (EdgeDistillError, OSError) as exc:  # name the folder asked for, never the one about to vanish
            error = exc if isinstance(exc, EdgeDistillError) else os_error(exc)
            error.args = tuple(a.replace(str(tmp), str(out)) if isinstance(a, str) else a for a in error.args)
            error.path = error.path and error.path.replace(str(tmp), str(out))
            raise error from None
        (tmp / PARTIAL).unlink()
        entries = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps({"entries": entries}, indent=1) + "\n")
        _commit(tmp, out, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# The machine's fault, not the user's files: exit 3. Any other OSError is about a file the user named: 2.
ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE}


def os_error(exc: OSError) -> EdgeDistillError:
    """An OSError as the tool's own error, naming the file it was about (a full disk says so)."""
    error = CannotMeasure if exc.errno in ENVIRONMENT else BadInput
    return error(exc.strerror or type(exc).__name__, path=exc.filename)


def _partial_folder(out: Path) -> Path:
    """A fresh `.NAME.partial-*` beside `out`, with the user's umask (not mkdtemp's 0700), marked with
    this process so that a later run can tell a dead run's leftovers from a live run's work."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        blocker = next((p for p in [out.parent, *out.parent.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else exc.strerror or type(exc).__name__
        raise BadInput(f"cannot create the output folder: {why}", path=out) from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    (tmp / PARTIAL).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
    return tmp


def _remove_stale_partials(out: Path) -> None:
    """Partial folders of `out` left by a run that was killed: ours (they carry the mark) and their
    process gone. Anything else beside `out` is left alone."""
    for folder in out.parent.glob(f".{out.name}.partial-*"):
        try:
            mark = json.loads((folder / PARTIAL).read_text())
            pid, host = int(mark["pid"]), mark["host"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if host == socket.gethostname() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _commit(tmp: Path, out: Path, force: bool) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    check_writable(out, force)  # the folder may have changed while we worked
    if not _foreign(out):
        trash = out.with_name(f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        out.rename(trash)
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
        return
    # --force into a folder with the user's files: replace only our own names, never theirs.
    new = {p.name for p in tmp.iterdir() if p.name != MARKER}
    clash = sorted(new & set(_foreign(out)))
    if clash:
        raise BadInput(f"--force replaces only edge-distill's own entries, and {', '.join(clash)} in the output "
                       "folder is not one of them; nothing was written", path=out,
                       hint="move that file, or choose another --out")
    for old in _ours(out) - new:
        _remove(out / old)
    entries = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)
    for entry in entries:
        _remove(out / entry)
        (tmp / entry).rename(out / entry)
    (out / MARKER).write_text(json.dumps({"entries": entries}, indent=1) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
