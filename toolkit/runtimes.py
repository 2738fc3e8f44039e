"""The exact runtime version an app ships, on this machine: proof that an artifact loads there.

An app declares the runtime versions it ships (`"runtimes"` in edge-distill-app.json, e.g.
onnxruntime-android 1.22.0, LiteRT 1.4.0). A newer converter can write what an older runtime cannot
read (ORT 1.32's int4 MatMulNBits does not load in 1.22). Before `bundle` copies an artifact, it runs
the artifact's golden inputs through the Python wheel of that same runtime version, installed once
into a side folder of the cache (no dependencies: numpy and the rest come from this environment),
by the same worker the arm64 emulator uses, and compares the outputs with the golden ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CannotMeasure
from .places import cache_home

WORKER = Path(__file__).with_name("runtime_worker.py")


@dataclass
class Proof:
    """How an artifact fared in one runtime version."""

    package: str
    version: str
    loaded: bool
    max_abs_diff: float | None = None  # against the golden outputs, when it loaded
    error: str = ""

    @property
    def runtime(self) -> str:
        return f"{self.package} {self.version}"

    @property
    def ok(self) -> bool:
        return self.loaded and not self.error


def side_environment(package: str, version: str, progress=lambda message: None) -> Path | None:
    """A folder holding exactly `package==version` (its wheel, no dependencies), installed once;
    None when this environment already has that version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        if installed(package) == version:
            return None
    except PackageNotFoundError:
        pass
    folder = cache_home() / "runtimes" / f"{package}-{version}"
    if (folder / ".complete").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    progress(f"installing {package}=={version} into {folder} (once)")
    build = Path(tempfile.mkdtemp(prefix=f".{package}-{version}-", dir=folder.parent))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                           "--only-binary=:all:", "--target", str(build), f"{package}=={version}"],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise CannotMeasure(f"cannot install {package}=={version} to check the app's runtime: {tail}")
    (build / ".complete").write_text(f"{package}=={version}\n")
    if folder.exists():  # another run finished first
        shutil.rmtree(build, ignore_errors=True)
    else:
        build.rename(folder)
    return folder


def prove(runner, artifact: Path, package: str, version: str, feeds: dict, expected: np.ndarray,
          tolerance: float, progress=lambda message: None) -> Proof:
    """Run `feeds` through `artifact` in `package==version`; loaded and within `tolerance` of `expected`."""
    env_folder = side_environment(package, version, progress)
    request, arrays = runner.emulation_request(feeds)
    with tempfile.TemporaryDirectory(prefix="edge-distill-runtime-") as tmp:
        np.savez(Path(tmp) / "inputs.npz", **arrays)
        request.update(model=str(Path(artifact).resolve()), inputs=str(Path(tmp) / "inputs.npz"),
                       output=str(Path(tmp) / "out.npz"), threads=1)
        (Path(tmp) / "request.json").write_text(json.dumps(request))
        env = {**os.environ, "PYTHONNOUSERSITE": "1"}
        if env_folder is not None:  # its runtime comes first on the path; numpy and the rest are ours
            env["PYTHONPATH"] = str(env_folder)
        proc = subprocess.run([sys.executable, str(WORKER), str(Path(tmp) / "request.json")], capture_output=True,
                              text=True, env=env, timeout=600)
        said = _last_json(proc.stdout)
        if proc.returncode != 0 or "error" in said:
            return Proof(package, version, False, error=said.get("error") or _tail(proc.stderr))
        if said.get("runtime_version") != version:
            raise CannotMeasure(f"asked for {package}=={version}, the runtime loaded was version "
                                f"{said.get('runtime_version')} ({env_folder or 'this environment'})")
        with np.load(request["output"]) as data:
            outputs = runner.from_emulated([data[f"o{i}"] for i in range(len(data.files))])
    diff = float(np.abs(np.asarray(outputs[0], np.float32) - expected).max())
    proof = Proof(package, version, True, round(diff, 6))
    if diff > tolerance:
        proof.error = f"its outputs differ from the golden ones by {diff:.3g} (tolerance {tolerance:g})"
    return proof


def _last_json(text: str) -> dict:
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-2:]) or "(no output)"
