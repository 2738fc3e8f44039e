"""Files: one content hash and one atomic write for the whole tool."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a package folder (.mlpackage): its files' paths and contents, in order."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


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
        elif Path(content).is_dir():
            shutil.copytree(content, tmp)
        else:
            shutil.copyfile(content, tmp)
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
