"""The library face: what `edge_distill` exports, and the README's Python API example, run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_face_exports_the_commands_lazily():
    code = ("import sys, edge_distill\n"
            "assert not {'torch', 'onnx', 'onnxruntime', 'numpy'} & set(sys.modules), 'the face must stay light'\n"
            "for name in edge_distill.__all__:\n"
            "    assert getattr(edge_distill, name) is not None, name\n"
            "assert edge_distill.run_check.__module__ == 'edge_distill.pipeline'\n"
            "assert edge_distill.Report.__module__ == 'edge_distill.result'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- python-api: tests/test_library.py runs this block -->\n```python\n(.*?)```", text,
                      re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["ort-fp32", "ort-int8", "ort-int4"]
    assert lines[3] == "exit code: 0"
    assert lines[4] == "ort-int8/latency_p95_ms 0", lines[4]  # checks come in the budget keys' order
