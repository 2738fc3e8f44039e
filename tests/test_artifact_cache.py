"""Built artifacts reused from the cache (toolkit/cache.py: `artifact_key`, `cached_artifact`).

A wrong hit is a wrong verdict, so: every part of the key is shown to matter, a hit is shown to give the
very files and record a fresh build gives, and a corrupted or linked entry is rebuilt. The builds are
real: onnxruntime's (the ort target) on the three-op graph of tiny_onnx.py, fast enough for the fast
tier; the CLI tests (slow) build with LiteRT and ORT on the bundled example."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import shutil
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge_distill import cache
from edge_distill.cache import Cache, artifact_key, cached_artifact
from edge_distill.calibration import Dataset
from edge_distill.models import load_model
from edge_distill.targets import BuildRequest, get_target

from conftest import edit_config, run_cli
from tiny_onnx import tiny_model

SELECTION = {"samples": 256, "seed": 0}


def _tiny_with_external_data(folder: Path) -> Path:
    """tiny_onnx's graph with its weights in an external file (weights.bin), as large exports keep them."""
    import onnx

    folder.mkdir()
    path = tiny_model(folder)
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return path


def _calibration(scale: float = 1.0) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset("calibration.npz", {"x": (rng.normal(size=(32, 4)) * scale).astype(np.float32)},
                   labels=np.arange(32) % 3)


@pytest.fixture
def request_parts(tmp_path) -> BuildRequest:
    """One int8 build's request of the tiny graph (its own source), ready for the ort target."""
    onnx_path = _tiny_with_external_data(tmp_path / "model")
    (tmp_path / "out").mkdir()
    (tmp_path / "work").mkdir()
    return BuildRequest(onnx_path=onnx_path, source=load_model(str(onnx_path)), precision="int8",
                        calibration=_calibration(), calibration_method="minmax",
                        options={"int8_recipe": "onnxruntime"}, out_dir=tmp_path / "out", work_dir=tmp_path / "work",
                        metadata={"task": "classification", "labels": ["a", "b", "c"]}, tolerance=1e-4)


# -- the key --------------------------------------------------------------------------------------------

def _flip_first_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))


def _planted_package(folder: Path, monkeypatch) -> Path:
    """A package of 'edge-distill code' the key hashes (BUILD_CODE), in a folder of this test's own."""
    package = folder / "planted_code"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "step.py").write_text("SCALE = 1\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(cache, "BUILD_CODE", (*cache.BUILD_CODE, "planted_code"))
    return package / "step.py"


def test_the_same_parts_give_the_same_key(request_parts):
    first = artifact_key("ort", request_parts, SELECTION)
    again = dataclasses.replace(request_parts, calibration=_calibration(), options={"int8_recipe": "onnxruntime"},
                                metadata={"labels": ["a", "b", "c"], "task": "classification"})
    assert len(first) == 64 and artifact_key("ort", again, dict(SELECTION)) == first


CHANGES = {
    "the calibration arrays": lambda r: dataclasses.replace(r, calibration=_calibration(scale=1.001)),
    "the calibration labels": lambda r: dataclasses.replace(
        r, calibration=dataclasses.replace(r.calibration, labels=np.arange(32) % 2)),
    "the calibration's source": lambda r: dataclasses.replace(
        r, calibration=dataclasses.replace(r.calibration, source="other.npz")),
    "no calibration": lambda r: dataclasses.replace(r, calibration=None),
    "the calibration method": lambda r: dataclasses.replace(r, calibration_method="entropy"),
    "an option's value": lambda r: dataclasses.replace(r, options={"int8_recipe": "optimum-arm64"}),
    "an option added": lambda r: dataclasses.replace(r, options={"int8_recipe": "onnxruntime", "int4_block_size": 32}),
    "the precision": lambda r: dataclasses.replace(r, precision="int4"),
    "the metadata": lambda r: dataclasses.replace(r, metadata={"task": "classification", "labels": ["a", "b", "d"]}),
    "the tolerance": lambda r: dataclasses.replace(r, tolerance=1e-3),
    "the source's name": lambda r: dataclasses.replace(r, source=dataclasses.replace(r.source, reference="m.onnx")),
    "the input specs": lambda r: dataclasses.replace(
        r, source=dataclasses.replace(r.source, inputs=[dataclasses.replace(r.source.inputs[0], batch_axis=None)])),
}


@pytest.mark.parametrize("change", [*CHANGES, "the calibration samples", "the seed", "the target",
                                    "the weights file", "the ONNX file", "a package version", "the code",
                                    "the threads"])
def test_each_part_of_a_build_changes_its_key(request_parts, tmp_path, monkeypatch, change):
    before = artifact_key("ort", request_parts, SELECTION)
    request, selection, target = request_parts, SELECTION, "ort"
    if change in CHANGES:
        request = CHANGES[change](request_parts)
    elif change == "the calibration samples":
        selection = {**SELECTION, "samples": 128}
    elif change == "the seed":
        selection = {**SELECTION, "seed": 1}
    elif change == "the target":
        target = "tflite"
    elif change == "the weights file":  # the export's external data (and the source's: the same file)
        _flip_first_byte(request_parts.onnx_path.parent / "weights.bin")
    elif change == "the ONNX file":  # the graph's bytes, its weights unchanged: the export alone differs
        other = tmp_path / "other"
        shutil.copytree(request_parts.onnx_path.parent, other)
        graph = (other / "model.onnx").read_bytes()
        (other / "model.onnx").write_bytes(graph.replace(b"tiny", b"tinY"))
        request = dataclasses.replace(request_parts, onnx_path=other / "model.onnx")
    elif change == "the threads":  # a calibration's float sums may round otherwise
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        before = artifact_key("ort", request_parts, SELECTION)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
    elif change == "a package version":
        real = cache.versions
        monkeypatch.setattr(cache, "versions", lambda *names: {**real(*names), "ai-edge-quantizer": "0.0.1"})
    else:
        step = _planted_package(tmp_path, monkeypatch)
        before = artifact_key("ort", request_parts, SELECTION)  # with the planted package counted
        step.write_text("SCALE = 2\n")
    assert artifact_key(target, request, selection) != before


def test_the_key_counts_every_file_of_edge_distills_own_packages():
    """Any code change misses: every .py file of edge_distill, its targets and its calibration readers."""
    counted = set(cache.BUILD_CODE)
    assert {"edge_distill", "edge_distill.targets", "edge_distill.calibration"} <= counted
    root = Path(cache.__file__).parent
    expected = hashlib.sha256()
    for name, folder in (("edge_distill", root), ("edge_distill.targets", root.parent / "targets"),
                         ("edge_distill.calibration", root.parent / "calibration")):
        for path in sorted(folder.rglob("*.py")):
            expected.update(f"{name}/{path.relative_to(folder).as_posix()}:"
                            f"{hashlib.sha256(path.read_bytes()).hexdigest()};".encode())
    assert cache.code_identity("edge_distill", "edge_distill.targets",
                               "edge_distill.calibration") == expected.hexdigest()


def test_a_plugin_targets_own_code_is_in_the_key(request_parts, tmp_path, monkeypatch):
    """A plugin target lives outside edge-distill's packages: an edit to its module misses, and only its
    own file is hashed (its folder may be site-packages), the same way a hand-made sha256 is."""
    plugin = tmp_path / "edge_distill_test_plugin_target.py"
    plugin.write_text("class PluginTarget:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name = plugin.stem
    before = artifact_key("plugin", request_parts, SELECTION, implementation=name)
    file_sum = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert cache.code_identity(name) == hashlib.sha256(f"{name}:{file_sum};".encode()).hexdigest()
    assert before != artifact_key("plugin", request_parts, SELECTION)  # counted only when named
    plugin.write_text("class PluginTarget:\n    quantize = 'differently'\n")
    assert artifact_key("plugin", request_parts, SELECTION, implementation=name) != before


def test_a_model_whose_identity_cannot_be_known_is_never_reused(request_parts):
    pickled = dataclasses.replace(request_parts.source, kind="torch", reference="model.pt")
    assert artifact_key("ort", dataclasses.replace(request_parts, source=pickled), SELECTION) is None


# -- real builds ----------------------------------------------------------------------------------------

@pytest.fixture
def build_request(request_parts, tmp_path) -> BuildRequest:
    """request_parts with its weights inside the ONNX file (the ort target's fp32 build copies the graph
    without an external weights file)."""
    (tmp_path / "plain").mkdir()
    onnx_path = tiny_model(tmp_path / "plain")
    return dataclasses.replace(request_parts, onnx_path=onnx_path, source=load_model(str(onnx_path)))


def _build(request: BuildRequest, out: Path, counter: list | None = None, store: Cache | None = None):
    """The ort target's build of `request` into `out`, through the cache; `counter` counts real builds."""
    out.mkdir(parents=True, exist_ok=True)
    request = dataclasses.replace(request, out_dir=out)

    def build():
        if counter is not None:
            counter.append(out)
        return get_target("ort").build(request)

    return cached_artifact(artifact_key("ort", request, SELECTION), out, build, cache=store)


def _files(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path -> its sha256, read from disk."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _reproducible(folder: Path) -> dict[str, str]:
    """_files without the .ort files: onnxruntime does not write the same .ort bytes twice from the same
    graph (the target records `stable_sha256`, of the .onnx beside it, for that reason)."""
    return {name: digest for name, digest in _files(folder).items() if not name.endswith(".ort")}


def _fresh(request: BuildRequest, out: Path):
    """The same build a second way: the target itself, the cache never asked."""
    out.mkdir()
    return get_target("ort").build(dataclasses.replace(request, out_dir=out))


def test_a_hit_gives_the_very_files_and_record_of_a_fresh_build(cache_on, build_request, tmp_path):
    builds = []
    first, note = _build(build_request, tmp_path / "first", builds)
    assert note is None and len(builds) == 1
    second, note = _build(build_request, tmp_path / "second", builds)
    assert note.startswith("reused from cache ") and len(builds) == 1  # copied, not built
    fresh = _fresh(build_request, tmp_path / "fresh")
    assert _files(tmp_path / "second") == _files(tmp_path / "first")  # the stored build's very bytes
    assert _reproducible(tmp_path / "second") == _reproducible(tmp_path / "fresh")
    assert len(_files(tmp_path / "fresh")) == 3 and len(_reproducible(tmp_path / "fresh")) == 2
    assert second.details["stable_sha256"] == fresh.details["stable_sha256"]  # the .ort's graph
    assert second.details == fresh.details and second.details["calibration"]["samples"] == 32
    assert (second.target, second.precision) == (fresh.target, fresh.precision) == ("ort", "int8")
    assert second.path == tmp_path / "second" / "model.int8.ort"
    assert second.files == [tmp_path / "second" / f.name for f in fresh.files]


def test_changed_calibration_data_rebuilds(cache_on, build_request, tmp_path):
    builds = []
    _build(build_request, tmp_path / "first", builds)
    other = dataclasses.replace(build_request, calibration=_calibration(scale=3.0))
    rebuilt, note = _build(other, tmp_path / "second", builds)
    assert note is None and len(builds) == 2
    fresh = _fresh(other, tmp_path / "fresh")
    assert _reproducible(tmp_path / "second") == _reproducible(tmp_path / "fresh")  # the new data's artifact ...
    assert rebuilt.details == fresh.details
    assert _reproducible(tmp_path / "second") != _reproducible(tmp_path / "first")  # ... not the old one's
    assert len(list(cache_on.iterdir())) == 2


def test_a_corrupted_artifact_entry_is_rebuilt_not_trusted(cache_on, build_request, tmp_path):
    builds = []
    _build(build_request, tmp_path / "first", builds)
    (entry,) = cache_on.iterdir()
    _flip_first_byte(entry / "model.int8.ort")  # only the manifest's sha256 tells
    again, note = _build(build_request, tmp_path / "second", builds)
    assert note is None and len(builds) == 2
    assert _reproducible(tmp_path / "second") == _reproducible(tmp_path / "first")
    assert (entry / "model.int8.ort").read_bytes() == again.path.read_bytes()  # the entry written afresh


def test_a_record_naming_other_files_than_the_entrys_is_rebuilt(cache_on, build_request, tmp_path):
    builds = []
    _build(build_request, tmp_path / "first", builds)
    (entry,) = cache_on.iterdir()
    manifest = json.loads((entry / "entry.json").read_text())
    manifest["meta"]["files"].append("../../escaped.ort")  # a record that lies about the entry
    (entry / "entry.json").write_text(json.dumps(manifest))
    _, note = _build(build_request, tmp_path / "second", builds)
    assert note is None and len(builds) == 2 and not (tmp_path / "escaped.ort").exists()
    assert _reproducible(tmp_path / "second") == _reproducible(tmp_path / "first")
    manifest = json.loads((entry / "entry.json").read_text())  # the entry written afresh; now one without details
    del manifest["meta"]["details"]
    (entry / "entry.json").write_text(json.dumps(manifest))
    _, note = _build(build_request, tmp_path / "third", builds)
    assert note is None and len(builds) == 3


def test_a_linked_artifact_entry_is_rebuilt_and_the_link_not_followed(cache_on, build_request, tmp_path):
    builds = []
    _build(build_request, tmp_path / "first", builds)
    (entry,) = cache_on.iterdir()
    outside = tmp_path / "outside"
    shutil.copytree(entry, outside)  # a valid entry, manifest and all, outside the cache
    shutil.rmtree(entry)
    entry.symlink_to(outside, target_is_directory=True)
    _, note = _build(build_request, tmp_path / "second", builds)
    assert note is None and len(builds) == 2
    assert entry.is_dir() and not entry.is_symlink() and (outside / "model.int8.ort").is_file()

    inner = entry / "model.int8.ort"  # a link inside the entry, to a file with the very bytes it names
    inner.unlink()
    inner.symlink_to(outside / "model.int8.ort")
    _, note = _build(build_request, tmp_path / "third", builds)
    assert note is None and len(builds) == 3 and not inner.is_symlink()
    assert _reproducible(tmp_path / "third") == _reproducible(tmp_path / "first")


def test_no_cache_builds_and_stores_nothing(cache_on, build_request, tmp_path):
    builds = []
    _build(build_request, tmp_path / "first", builds)
    with cache.bypassed():
        _, note = _build(build_request, tmp_path / "second", builds)
    assert note is None and len(builds) == 2 and len(list(cache_on.iterdir())) == 1


def test_the_size_bound_evicts_artifact_entries_too(cache_on, build_request, tmp_path):
    requests = {p: dataclasses.replace(build_request, precision=p) for p in ("int8", "fp32")}
    sizes = {}
    for precision, request in requests.items():  # each entry's bytes, stored alone
        _build(request, tmp_path / "probe" / precision, store=Cache(tmp_path / "probe-cache" / precision))
        (entry,) = (tmp_path / "probe-cache" / precision).iterdir()
        sizes[precision] = sum(f.stat().st_size for f in entry.iterdir())
    store = Cache(tmp_path / "bounded", limit_bytes=sum(sizes.values()) - 1)  # one byte short of both
    for precision, request in requests.items():
        _build(request, tmp_path / precision, store=store)
    (kept,) = (tmp_path / "bounded").iterdir()  # the int8 entry, least recently used, evicted
    assert json.loads((kept / "entry.json").read_text())["meta"]["precision"] == "fp32"


# -- the CLI, end to end --------------------------------------------------------------------------------

def _artifact_files(out: Path) -> dict[str, str]:
    return {k: v for k, v in _files(out).items() if k.startswith(("ort/", "tflite/"))}


@pytest.mark.slow
def test_a_second_check_reuses_every_artifact_and_measures_the_same_verdict(cache_on, example, tmp_path):
    """Real LiteRT and ORT int8 builds: a hit (second) and a fresh build (--no-cache) give the same files,
    figures and verdict; report.json, report.md and report.html say what was reused."""
    config = edit_config(example, precisions=["fp32", "int8"])
    reports = {}
    for run, extra in (("first", ()), ("second", ()), ("fresh", ("--no-cache",))):
        done = run_cli("check", config, "--out", tmp_path / run, "-q", *extra)
        assert done.returncode == 0, done.stderr
        reports[run] = json.loads((tmp_path / run / "report.json").read_text())
    first, second, fresh = reports["first"], reports["second"], reports["fresh"]
    assert _artifact_files(tmp_path / "second") == _artifact_files(tmp_path / "first")  # the stored bytes
    reproducible = [{k: v for k, v in _artifact_files(tmp_path / run).items() if not k.endswith(".ort")}
                    for run in ("second", "fresh")]  # a fresh build's .ort bytes differ: its stable_sha256 below
    assert reproducible[0] == reproducible[1] and len(reproducible[1]) == 6  # .onnx .config each; .tflite
    names = [r["name"] for r in second["results"]]
    assert names == ["ort-fp32", "ort-int8", "tflite-fp32", "tflite-int8"]
    assert all(r["reused"] is None for r in first["results"] + fresh["results"])
    assert all(r["reused"].startswith("reused from cache ") for r in second["results"])
    jsonschema.validate(second, json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text()))
    for earlier, a, b in zip(first["results"], second["results"], fresh["results"]):
        assert a["sha256"] == earlier["sha256"]  # the copy of the stored build
        if a["target"] == "tflite":  # LiteRT writes the same bytes again; ORT's .ort: stable_sha256 in details
            assert a["sha256"] == b["sha256"]
        assert a["details"] == b["details"] and a["coverage"] == b["coverage"]
        assert a["metrics"] == b["metrics"] and a["slices"] == b["slices"]
        assert [(c["name"], c["passed"]) for c in a["checks"]] == [(c["name"], c["passed"]) for c in b["checks"]]
    for report, escaped in (("report.md", str), ("report.html", html.escape)):
        text = (tmp_path / "second" / report).read_text()
        for r in second["results"]:
            line = f"the artifact {r['name']} (build seconds: the copy's), {r['reused']}"
            assert escaped(line) in text, (report, r["name"])
        assert second["export"]["reused"] in text and second["references_reused"] in text
        assert "reused from cache" not in (tmp_path / "fresh" / report).read_text()
    assert len(list(cache_on.iterdir())) == 2 + 4  # the export, the outputs, four artifacts; --no-cache stored none


@pytest.mark.slow
def test_changed_calibration_data_rebuilds_the_calibrated_artifacts_only(cache_on, example, tmp_path):
    config = edit_config(example, precisions=["fp32", "int8"], targets=("ort",))
    assert run_cli("check", config, "--out", tmp_path / "first", "-q").returncode == 0
    with np.load(example / "calibration.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["image"] = arrays["image"][::-1].copy()  # the seeded selection picks other images: other scales
    np.savez(example / "calibration.npz", **arrays)
    done = run_cli("check", config, "--out", tmp_path / "second", "-q")
    assert done.returncode == 0, done.stderr
    second = {r["name"]: r for r in json.loads((tmp_path / "second" / "report.json").read_text())["results"]}
    assert second["ort-int8"]["reused"] is None
    # ort-fp32 reads the calibration too (the key does not guess which build ignores it): rebuilt, same bytes
    assert second["ort-fp32"]["reused"] is None
    files_of = [_artifact_files(tmp_path / run) for run in ("first", "second")]
    assert files_of[0]["ort/model.fp32.onnx"] == files_of[1]["ort/model.fp32.onnx"]
    assert files_of[0]["ort/model.int8.onnx"] != files_of[1]["ort/model.int8.onnx"]


# -- verify: the float model's and the teacher's outputs -------------------------------------------------

def _verify(artifact: Path, data: Path, float_model: Path, teacher: Path):
    from edge_distill.pipeline import Timing, Verification, run_verify

    return run_verify(Verification(artifact, data, float_model=str(float_model), teacher_model=str(teacher),
                                   timing=Timing(warmup=2, runs=5)))


def test_verify_reuses_the_float_models_and_teachers_outputs_only_when_both_are_unchanged(cache_on, build_request,
                                                                                          tmp_path):
    from onnx import load, numpy_helper, save

    from tiny_onnx import B, W

    artifact = _fresh(build_request, tmp_path / "built").path
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 3, 64)
    np.savez(tmp_path / "eval.npz", x=x, labels=labels)
    teacher = tiny_model(Path(shutil.copytree(build_request.onnx_path.parent, tmp_path / "teacher")))
    float_model, data = build_request.onnx_path, tmp_path / "eval.npz"

    def accuracy(bias: np.ndarray) -> float:  # a second way: the graph's own arithmetic, logits = x @ W + bias
        return float(np.mean((x @ W + bias).argmax(1) == labels))

    first = _verify(artifact, data, float_model, teacher)
    second = _verify(artifact, data, float_model, teacher)
    assert first.references_reused is None and second.references_reused.startswith("reused from cache ")
    assert second.references == first.references and second.results[0].metrics == first.results[0].metrics
    assert second.references["float student"]["overall"].accuracy == pytest.approx(accuracy(B), abs=1e-9)
    with cache.bypassed():
        assert _verify(artifact, data, float_model, teacher).references_reused is None
    model = load(str(teacher))  # another teacher: other weights, other top-1s: a miss
    shifted = B + np.array([2.0, 0.0, 0.0], np.float32)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(shifted, "B"))
    save(model, str(teacher))
    third = _verify(artifact, data, float_model, teacher)
    assert third.references_reused is None
    assert accuracy(shifted) != accuracy(B)
    assert third.references["teacher"]["overall"].accuracy == pytest.approx(accuracy(shifted), abs=1e-9)
