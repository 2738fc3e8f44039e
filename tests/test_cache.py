"""The cache of what a run recomputes unchanged (toolkit/cache.py): the float student's and teacher's
outputs and the verified ONNX export, on the bundled example's real models and data."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge_distill import cache
from edge_distill.cache import Cache
from edge_distill.config import load_config
from edge_distill.exporting import export_to_onnx
from edge_distill.pipeline import load_inputs, reference_outputs
from edge_distill.progress import Progress

from conftest import EXAMPLE, edit_config, run_cli


def _loaded(folder: Path = EXAMPLE):
    """The example's models and its first 64 evaluation samples (enough to tell arrays apart, and fast)."""
    loaded = load_inputs(load_config(folder / "edge-distill.toml"), Progress(False))
    return dataclasses.replace(loaded, evaluation=loaded.evaluation.subset(np.arange(64)))


def _references(folder: Path = EXAMPLE):
    loaded = _loaded(folder)
    float_all, teacher = reference_outputs(loaded, Progress(False), "classification")
    return float_all, teacher, loaded.references_reused


def _fresh(folder: Path = EXAMPLE):
    """The same outputs computed a second way: straight from the models, the cache never asked."""
    loaded = _loaded(folder)
    return loaded.student.predict_all(loaded.evaluation), loaded.teacher.predict(loaded.evaluation)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_a_hit_returns_the_very_arrays_a_fresh_run_computes(cache_on):
    first_all, first_teacher, note = _references()
    assert note is None and len(list(cache_on.iterdir())) == 1  # computed, then stored
    again_all, again_teacher, note = _references()
    assert note is not None and note.startswith("reused from cache ")
    fresh_all, fresh_teacher = _fresh()
    assert len(again_all) == len(fresh_all) == 1
    assert _same(again_all[0], fresh_all[0]) and _same(again_all[0], first_all[0])
    assert _same(again_teacher, fresh_teacher) and again_teacher.shape == (64, 10)


def _perturb_npz(path: Path, name: str) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[name] = arrays[name].copy()
    arrays[name].reshape(-1)[0] += 0.5
    np.savez(path, **arrays)


def _perturb_weights(path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(path))
    first = sorted(weights)[0]
    weights[first] = weights[first] + np.float32(1e-3)
    save_file(weights, str(path))


@pytest.mark.parametrize("change", ["data", "student weights", "teacher weights", "a package version",
                                    "the model's code"])
def test_anything_the_outputs_depend_on_changed_misses(cache_on, example, monkeypatch, change):
    monkeypatch.delitem(sys.modules, "fmnist_models", raising=False)  # the factory imported from the copy
    _references(example)
    if change == "data":
        _perturb_npz(example / "eval.npz", "image")
    elif change == "student weights":
        _perturb_weights(example / "student.safetensors")
    elif change == "teacher weights":
        _perturb_weights(example / "teacher.safetensors")
    elif change == "a package version":
        real = cache.versions
        monkeypatch.setattr(cache, "versions", lambda *names: {**real(*names), "onnxruntime": "0.0.1"})
    else:
        source = example / "fmnist_models.py"
        source.write_text(source.read_text() + "\n# a comment is a change of the source\n")
        monkeypatch.delitem(sys.modules, "fmnist_models")
    assert _references(example)[2] is None
    assert len(list(cache_on.iterdir())) == 2


def test_a_corrupt_entry_is_recomputed_not_trusted(cache_on):
    first_all, _, _ = _references()
    (entry,) = cache_on.iterdir()
    stored = entry / "arrays.npz"
    with np.load(stored) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["a0"] = arrays["a0"] * 2  # a well-formed file with the wrong values: only the manifest's hash tells
    np.savez(stored, **arrays)
    again_all, _, note = _references()
    assert note is None
    assert _same(again_all[0], first_all[0])
    with np.load(entry / "arrays.npz") as data:  # the entry written afresh
        assert _same(data["a0"], first_all[0])


def test_a_link_planted_in_the_cache_is_not_followed(cache_on, tmp_path):
    _references()
    (entry,) = cache_on.iterdir()
    outside = tmp_path / "outside"
    shutil.copytree(entry, outside)  # a valid entry, manifest and all, outside the cache
    shutil.rmtree(entry)
    entry.symlink_to(outside, target_is_directory=True)
    assert _references()[2] is None  # a miss: the link is removed, never read through
    assert entry.is_dir() and not entry.is_symlink() and (outside / "arrays.npz").is_file()

    inner = entry / "arrays.npz"  # a link inside an entry, to a file with the very bytes the manifest names
    shutil.copyfile(inner, outside / "arrays.npz")
    inner.unlink()
    inner.symlink_to(outside / "arrays.npz")
    assert _references()[2] is None
    assert not inner.is_symlink() and (outside / "arrays.npz").is_file()


def test_the_size_bound_evicts_the_least_recently_used(cache_on, tmp_path):
    store = Cache(tmp_path / "reuse", limit_bytes=3 * 1024 * 1024)
    block = np.arange(200_000, dtype=np.float32)  # 0.8 MB a entry, stored uncompressed
    for i, key in enumerate(("a", "b", "c")):
        store.put_arrays(key, [block + i], {})
        os.utime(tmp_path / "reuse" / key, (1000 + i, 1000 + i))  # mtimes in a known order
    assert store.arrays("a") is not None  # a hit: "a" is now the most recently used
    store.put_arrays("d", [block + 3], {})
    store.put_arrays("e", [block + 4], {})
    assert sorted(p.name for p in (tmp_path / "reuse").iterdir()) == ["a", "d", "e"]
    assert _same(store.arrays("a")[0][0], block)


def test_no_cache_computes_afresh_and_stores_nothing(cache_on):
    with cache.bypassed():
        _, _, note = _references()
    assert note is None and not cache_on.exists()


@pytest.mark.slow
def test_a_reused_export_is_the_same_file_with_the_same_figures(cache_on, tmp_path):
    loaded = _loaded()
    calls = []

    def export(out: Path, opset: int = 18):
        def run():
            calls.append(out)
            return export_to_onnx(loaded.student, out, opset=opset, samples=loaded.evaluation, tolerance=1e-4)
        return cache.cached_export(loaded.student, loaded.evaluation, out, run, opset=opset, tolerance=1e-4)

    first = export(tmp_path / "first.onnx")
    second = export(tmp_path / "second.onnx")
    assert len(calls) == 1 and first.reused is None and second.reused.startswith("reused from cache ")
    assert (tmp_path / "second.onnx").read_bytes() == (tmp_path / "first.onnx").read_bytes()
    for figure in ("opset", "exporter", "dynamic_axes", "parity_max_abs_diff", "parity_tolerance", "parity_samples"):
        assert getattr(second, figure) == getattr(first, figure), figure
    assert second.path == str(tmp_path / "second.onnx")
    export(tmp_path / "third.onnx", opset=19)  # another opset: another export
    assert len(calls) == 2


@pytest.mark.slow
def test_a_second_check_reuses_and_says_so_and_no_cache_does_not(cache_on, example, tmp_path):
    config = edit_config(example, precisions=["fp32"], targets=("ort",))
    reports = []
    for run, extra in (("first", ()), ("second", ()), ("third", ("--no-cache",))):
        done = run_cli("check", config, "--out", tmp_path / run, "-q", *extra)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads((tmp_path / run / "report.json").read_text()))
    first, second, third = reports
    assert first["export"]["reused"] is None and first["references_reused"] is None
    assert second["export"]["reused"].startswith("reused from cache ")
    assert second["references_reused"].startswith("reused from cache ")
    schema = json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(second, schema)  # the notes are the schema's
    assert third["export"]["reused"] is None and third["references_reused"] is None
    for key in ("references", "student", "teacher", "data"):
        assert second[key] == first[key] == third[key], key
    assert second["results"][0]["metrics"] == first["results"][0]["metrics"]
    onnx = [(tmp_path / run / "onnx" / "model.onnx").read_bytes() for run in ("first", "second")]
    assert onnx[0] == onnx[1]
    assert second["results"][0]["reused"].startswith("reused from cache ") and first["results"][0]["reused"] is None
    assert third["results"][0]["reused"] is None
    assert len(list(cache_on.iterdir())) == 3  # the export, the outputs, ort-fp32; --no-cache stored nothing
