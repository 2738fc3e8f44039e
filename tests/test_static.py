"""Static checks, run by the test command: ruff over the library (pyflakes, bugbear and a rebound loop
name: the rules [tool.ruff] in pyproject.toml selects). A per-output budget table once rebound the name
holding the global limits inside a loop; a late-bound loop variable is the same kind of slip."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_ruff_finds_nothing_in_the_library():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "toolkit", "targets", "calibration"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
