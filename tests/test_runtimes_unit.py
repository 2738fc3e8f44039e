"""The runtime version an app ships (toolkit/runtimes.py), fast: a three-op ONNX graph run by the real worker
in a fresh Python with this environment's onnxruntime, and real pip installing a one-file wheel built here
(no index: PIP_NO_INDEX, a local --find-links folder). Each figure is computed again with numpy.
Fast: the mutation run of toolkit/runtimes.py runs this file once per mutant."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from edge_distill.errors import CannotMeasure
from edge_distill.runtimes import Proof, prove, side_environment
from edge_distill.targets import get_target
from tiny_onnx import B, W, tiny_model

ORT = onnxruntime.__version__


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _feeds_and_logits(n: int = 5):
    x = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
    return {"x": x}, x @ W + B


def test_a_proof_is_ok_when_it_loaded_without_an_error():
    assert Proof("onnxruntime", "1.22.0", True).ok is True
    assert Proof("onnxruntime", "1.22.0", True, 0.5, error="differs").ok is False
    assert Proof("onnxruntime", "1.22.0", False).ok is False
    assert Proof("onnxruntime", "1.22.0", False).runtime == "onnxruntime 1.22.0"


def test_this_environments_own_version_needs_no_side_folder(cache):
    messages = []
    assert side_environment("onnxruntime", ORT, messages.append) is None
    assert messages == [] and not cache.exists()


def test_a_complete_side_folder_is_used_as_it_is(cache):
    folder = cache / "runtimes" / "onnxruntime-0.0.1"
    folder.mkdir(parents=True)
    (folder / ".complete").write_text("onnxruntime==0.0.1\n")
    messages = []
    assert side_environment("onnxruntime", "0.0.1", messages.append) == folder
    assert messages == []


def _wheel(folder: Path, name: str, version: str) -> None:
    """A one-module wheel, by hand: what pip installs with --target."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}.py", f"__version__ = {version!r}\n")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")


def test_a_missing_version_is_installed_once_into_its_own_folder(cache, tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "tinyruntime", "1.0.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    messages = []
    folder = side_environment("tinyruntime", "1.0.0", messages.append)
    assert folder == cache / "runtimes" / "tinyruntime-1.0.0"
    assert (folder / "tinyruntime.py").read_text() == "__version__ = '1.0.0'\n"
    assert (folder / ".complete").read_text() == "tinyruntime==1.0.0\n"
    assert messages == [f"installing tinyruntime==1.0.0 into {folder} (once)"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tinyruntime-1.0.0"]  # no build folder left
    (wheels / "tinyruntime-1.0.0-py3-none-any.whl").unlink()  # a second call must not need pip
    assert side_environment("tinyruntime", "1.0.0", messages.append) == folder
    assert len(messages) == 1


def test_a_folder_another_run_finished_first_is_kept(cache, tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "tinyruntime", "2.0.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    folder = cache / "runtimes" / "tinyruntime-2.0.0"
    folder.mkdir(parents=True)  # appears while this run installs (no .complete: it is not read here)
    assert side_environment("tinyruntime", "2.0.0") == folder
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tinyruntime-2.0.0"]  # this run's build removed
    assert list(folder.iterdir()) == []


def test_a_version_pip_cannot_find_cannot_be_measured(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "gone"))  # pip warns about it first: three lines in all
    with pytest.raises(CannotMeasure) as caught:
        side_environment("tinyruntime", "0.0.0")
    assert str(caught.value) == (
        "cannot install tinyruntime==0.0.0 to check the app's runtime: ERROR: Could not find a version that satisfies "
        "the requirement tinyruntime==0.0.0 (from versions: none) | ERROR: No matching distribution found for "
        "tinyruntime==0.0.0")  # pip's last two lines, not its warning before them
    assert caught.value.exit_code == 3
    assert sorted(p.name for p in (cache / "runtimes").iterdir())[0].startswith(".tinyruntime-0.0.0-")


def test_an_artifact_that_loads_and_matches_its_goldens_is_proven(model):
    feeds, logits = _feeds_and_logits()
    runner = get_target("ort").open_runner(model, 1)
    proof = prove(runner, model, "onnxruntime", ORT, feeds, logits, 1e-3)
    assert (proof.package, proof.version, proof.loaded, proof.error) == ("onnxruntime", ORT, True, "")
    assert proof.max_abs_diff == pytest.approx(0.0, abs=1e-5)
    assert proof.ok


def test_the_largest_difference_from_the_goldens_decides(model):
    feeds, logits = _feeds_and_logits()
    golden = logits.copy()
    golden[3, 2] += 0.25  # one value off: the proof's difference is the largest, not the smallest or the mean
    golden[1, 0] -= 0.125
    runner = get_target("ort").open_runner(model, 1)
    proof = prove(runner, model, "onnxruntime", ORT, feeds, golden, 0.3)
    assert proof.max_abs_diff == pytest.approx(0.25, abs=1e-5)
    assert proof.ok
    proof = prove(runner, model, "onnxruntime", ORT, feeds, golden, 0.2)
    assert (proof.loaded, proof.ok) == (True, False)
    assert proof.error == "its outputs differ from the golden ones by 0.25 (tolerance 0.2)"


def test_an_artifact_the_runtime_cannot_load_is_not_proven(model, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    feeds, logits = _feeds_and_logits()
    runner = get_target("ort").open_runner(model, 1)
    proof = prove(runner, broken, "onnxruntime", ORT, feeds, logits, 1e-3)
    assert (proof.loaded, proof.max_abs_diff, proof.ok) == (False, None, False)
    assert proof.error == (f"InvalidProtobuf: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {broken} "
                           "failed:Protobuf parsing failed.")  # the worker's one line, not a traceback


@pytest.mark.parametrize("version", ["0.0.1", "99.0.0"])  # older and newer than this environment's
def test_a_side_folder_that_does_not_hold_the_version_asked_for_cannot_be_measured(model, cache, version):
    folder = cache / "runtimes" / f"onnxruntime-{version}"
    folder.mkdir(parents=True)
    (folder / ".complete").write_text(f"onnxruntime=={version}\n")  # empty: this environment's onnxruntime loads
    feeds, logits = _feeds_and_logits()
    runner = get_target("ort").open_runner(model, 1)
    with pytest.raises(CannotMeasure) as caught:
        prove(runner, model, "onnxruntime", version, feeds, logits, 1e-3)
    assert str(caught.value) == f"asked for onnxruntime=={version}, the runtime loaded was version {ORT} ({folder})"


def test_a_runtime_process_that_dies_before_answering_is_not_proven(model, monkeypatch, tmp_path):
    """A broken environment (here PYTHONHOME pointing nowhere): the worker's Python cannot start, prints no
    answer, and the proof quotes the last two lines it wrote on stderr."""
    feeds, logits = _feeds_and_logits()
    runner = get_target("ort").open_runner(model, 1)
    monkeypatch.setenv("PYTHONHOME", str(tmp_path))
    proof = prove(runner, model, "onnxruntime", ORT, feeds, logits, 1e-3)
    assert (proof.loaded, proof.max_abs_diff) == (False, None)
    assert re.fullmatch(r"Current thread 0x[0-9a-f]+ \(most recent call first\): \|   <no Python frame>", proof.error)
