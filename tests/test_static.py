"""Static checks, run by the test command: ruff over the library (pyflakes, bugbear, rebinding and shadowing:
the rules [tool.ruff] in pyproject.toml selects) and mypy over the three packages ([tool.mypy]). A per-output
budget table once rebound the name holding the global limits inside a loop; a late-bound loop variable is the
same kind of slip; a value that may be None used as if it never is, the kind mypy finds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# The cache lives beside pytest's: a warm run takes a few seconds, a cold one about 30 s of CPU
MYPY_CACHE = ROOT / ".pytest_cache" / "mypy"


def test_ruff_finds_nothing_in_the_library():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "toolkit", "targets", "calibration"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def link_tree(into: Path) -> Path:
    """The installed package's layout (edge_distill = toolkit/, with targets/ and calibration/ inside) as
    links, because mypy does not follow pyproject's package-dir mapping nor an editable install's finder."""
    package = into / "edge_distill"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    for entry in (ROOT / "toolkit").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for sub in ("targets", "calibration"):
        (package / sub).symlink_to(ROOT / sub)
    return into


def test_mypy_finds_nothing_in_the_library():
    tree = link_tree(MYPY_CACHE / "tree")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(MYPY_CACHE / "cache")], cwd=ROOT,
                          env={**os.environ, "MYPYPATH": str(tree)}, capture_output=True, text=True, timeout=600)
    # report the repository's paths, not the links'
    shown = proc.stdout.replace(str(tree / "edge_distill" / "targets"), "targets")
    shown = shown.replace(str(tree / "edge_distill" / "calibration"), "calibration")
    shown = shown.replace(str(tree / "edge_distill"), "toolkit")
    assert proc.returncode == 0, shown + proc.stderr


def test_each_type_ignore_names_its_code_and_says_why():
    unexplained = []
    for path in sorted(p for d in ("toolkit", "targets", "calibration") for p in (ROOT / d).rglob("*.py")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "# type: ignore" not in line:
                continue
            after = line.split("# type: ignore", 1)[1]
            coded = after.startswith("[")
            reason = "#" in after or (i > 0 and lines[i - 1].strip().startswith("#"))
            if not (coded and reason):
                unexplained.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert unexplained == []
