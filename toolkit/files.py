"""Files: one content hash, one atomic write and one walk of untrusted folders for the whole tool."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import BadInput


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a package folder (.mlpackage): its files' paths and contents, in order.
    The folder is walked as untrusted (`package_files`): a link inside it is refused, never hashed."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for f in package_files(path):
        digest.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


def package_files(path: Path) -> list[Path]:
    """The files of an artifact the user named: `path` itself is theirs to name (a link to their model is
    fine), but what a package folder holds is walked as untrusted (`plain_files`)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return [f for child in sorted(path.iterdir()) for f in plain_files(child)]


def plain_files(path: Path) -> list[Path]:
    """The regular files of `path` (the file itself, or every file of a folder), walked without
    following any link, sorted. A symbolic link, a FIFO, device or socket, or a file hard-linked from
    elsewhere anywhere in it refuses the whole path (BadInput naming the entry): an untrusted folder
    (a check folder, a package, a model folder) could otherwise make a reader read, hash or copy a
    file from outside it, or block forever on a FIFO."""
    path = Path(path)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise BadInput(f"is a symbolic link (to {os.readlink(path)}); links are never followed out of an "
                       "untrusted folder; refused", path=path,
                       hint="if you trust it, replace the link by a copy of the file it points to")
    if stat.S_ISDIR(info.st_mode):
        return [f for child in sorted(path.iterdir()) for f in plain_files(child)]
    if not stat.S_ISREG(info.st_mode):
        raise BadInput("is not a regular file or folder (a FIFO, device or socket); refused", path=path)
    if info.st_nlink > 1:
        raise BadInput(f"is a hard link ({info.st_nlink} names for one file): it may be a file from outside the "
                       "folder; refused", path=path)
    return [path]


def write_atomic(target: Path, content: str | Path) -> None:
    """Put `content` (text, or a file or folder to copy) at `target` in one rename: a reader sees the
    old entry or the new one, never half of either. The temporary copy sits beside the target (same
    file system) and disappears whatever happens."""
    target = Path(target)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".edge-distill-", dir=target.parent))
    try:
        tmp = tmp_dir / target.name
        if isinstance(content, str):
            tmp.write_text(content)
        elif Path(content).is_dir():  # links copied as links, never followed (callers refuse them first)
            shutil.copytree(content, tmp, symlinks=True)
        else:
            shutil.copyfile(content, tmp, follow_symlinks=False)
        if target.is_dir() and not target.is_symlink():
            target.rename(tmp_dir / ".old")  # a folder cannot be replaced by rename: move it aside first
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def working_in(folder: Path):
    """Tools that leave files in the current folder (ORT's quantizers, its shape inference) run in
    `folder` instead."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def save_arrays(target, arrays: dict) -> None:
    """Named arrays as an .npz (compressed) to a path or a binary file. np.savez takes its names as keyword
    arguments, so an array named `allow_pickle` (a model input may be) would become its flag and be lost."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, values in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asanyarray(values), allow_pickle=False)
