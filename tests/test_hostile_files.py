"""Hostile files: a crafted .pt2 never runs code, entries never escape the archive, a crafted
report never makes `bundle` copy a file from outside the check folder."""

import io
import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import EXAMPLE, run_cli
from edge_distill.archives import check_pt2, imports_of
from edge_distill.errors import BadInput


class Planted:
    """Unpickling this creates a folder: the proof that a load ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


@pytest.fixture(scope="module")
def student_pt2(tmp_path_factory):
    import sys

    sys.path.insert(0, str(EXAMPLE))
    from fmnist_models import student
    from safetensors.torch import load_file

    class Student(torch.nn.Module):  # the example's student, its input named as the data name it
        def __init__(self):
            super().__init__()
            self.net = student()
            self.net.load_state_dict(load_file(str(EXAMPLE / "student.safetensors")))

        def forward(self, image):
            return self.net(image)

    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(Student().eval(), (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"image": {0: batch}})
    path = tmp_path_factory.mktemp("pt2") / "student.pt2"
    torch.export.save(program, str(path))
    return path


def rewrite(source, target, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None):
    """A copy of a zip with some entries' bytes replaced and some entries added."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            for suffix, new in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = new
            dst.writestr(info, data)
        for name, data in (add or {}).items():
            dst.writestr(name, data)
    return target


def test_imports_are_read_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    assert imports_of(pickle.dumps(Planted(marker), protocol=2)) == ["os.makedirs"]
    assert imports_of(pickle.dumps(Planted(marker), protocol=4)) == ["os.makedirs"]  # STACK_GLOBAL, memoized
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buffer)
    with zipfile.ZipFile(buffer) as z:
        tensor_pickle = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert set(imports_of(tensor_pickle)) <= {"torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
                                             "collections.OrderedDict"}
    with pytest.raises(ValueError, match="not a well-formed pickle"):
        imports_of(b"\x80\x02garbage")
    assert not marker.exists()


@pytest.mark.slow
def test_a_clean_pt2_passes_the_check_and_exports(student_pt2, tmp_path):
    check_pt2(student_pt2)
    proc = run_cli("export", student_pt2, "--target", "onnx", "--data", EXAMPLE / "eval.npz", "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["data/sample_inputs/model.pt", "data/weights/weight_0"])
def test_a_pickle_planted_in_a_pt2_is_refused_and_never_runs(student_pt2, demo_run, tmp_path, entry):
    marker = tmp_path / "ran"
    planted = pickle.dumps(Planted(marker), protocol=2)
    hostile = rewrite(student_pt2, tmp_path / "hostile.pt2", replace={entry: planted})
    if entry.endswith("weight_0"):  # make torch unpickle the weight: its config says so
        with zipfile.ZipFile(student_pt2) as z:
            name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
            config = json.loads(z.read(name))
        for meta in config["config"].values():
            meta["use_pickle"] = True
        hostile = rewrite(hostile, tmp_path / "hostile2.pt2", replace={name: json.dumps(config).encode()})
    _, demo = demo_run
    for args in (("export", hostile, "--target", "onnx", "--data", EXAMPLE / "eval.npz", "--out", tmp_path / "out"),
                 ("verify", demo / "ort" / "model.int8.ort", "--data", EXAMPLE / "eval.npz", "--float", hostile,
                  "--out", tmp_path / "verify")):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"{hostile.name}" in proc.stderr and "imports os.makedirs" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_entry_escaping_the_archive_is_refused_by_name(student_pt2, tmp_path):
    hostile = rewrite(student_pt2, tmp_path / "escape.pt2", add={"../../outside.txt": b"x"})
    with pytest.raises(BadInput, match=r"archive entry '\.\./\.\./outside\.txt' points outside the archive"):
        check_pt2(hostile)
    proc = run_cli("export", hostile, "--target", "onnx", "--data", EXAMPLE / "eval.npz", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "escape.pt2" in proc.stderr and "points outside the archive" in proc.stderr
    assert not (tmp_path.parent / "outside.txt").exists()


@pytest.mark.slow
def test_trust_pickle_skips_the_check_and_still_loads(student_pt2, tmp_path):
    proc = run_cli("export", student_pt2, "--target", "onnx", "--data", EXAMPLE / "eval.npz", "--out",
                   tmp_path / "trusted", "--trust-pickle")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "trusted" / "model.onnx").is_file()


@pytest.mark.slow
def test_bundle_refuses_an_artifact_outside_the_check_folder(demo_run, tmp_path):
    _, demo = demo_run
    check = tmp_path / "check"
    shutil.copytree(demo, check)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "private.ort").write_bytes(b"private")
    report = json.loads((check / "report.json").read_text())
    report["results"][1]["artifact"] = "../secret/private.ort"
    (check / "report.json").write_text(json.dumps(report))
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE.parents[1] / "android-demo", app, ignore=shutil.ignore_patterns("node_modules", "build"))
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'../secret/private.ort' is outside the check folder" in proc.stderr
    assert not (app / "app" / "src" / "main" / "assets" / "models").exists()


@pytest.mark.slow
def test_bundle_refuses_an_artifact_whose_hash_changed(demo_run, tmp_path):
    _, demo = demo_run
    check = tmp_path / "check"
    shutil.copytree(demo, check)
    (check / "ort" / "model.int8.ort").write_bytes(b"swapped after the check")
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE.parents[1] / "android-demo", app, ignore=shutil.ignore_patterns("node_modules", "build"))
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "model.int8.ort" in proc.stderr and "is not the file the check verified" in proc.stderr
    assert not (app / "app" / "src" / "main" / "assets" / "models").exists()


@pytest.mark.slow
def test_data_files_are_never_unpickled(demo_run, tmp_path):
    _, demo = demo_run
    marker = tmp_path / "ran"
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "image.npy", np.array([Planted(marker)], dtype=object), allow_pickle=True)
    proc = run_cli("verify", demo / "ort" / "model.int8.ort", "--data", data, "--out", tmp_path / "o")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "image.npy" in proc.stderr and "Traceback" not in proc.stderr and not marker.exists()


def hashes(path) -> dict:
    """Every file under `path` (or `path` itself) with its bytes' sha256: what "untouched" means."""
    import hashlib

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def small_artifact(tmp_path, target: str):
    """A tiny artifact of `target` (a Conv-ReLU-Linear net on 1x8x8 inputs, 3 classes)."""
    from edge_distill.calibration import Dataset, InputSpec
    from edge_distill.models import SourceModel
    from edge_distill.targets import BuildRequest, get_target

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(72, 3))
    spec = [InputSpec("x", ("batch", 1, 8, 8))]
    cal = Dataset("cal", {"x": np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)})
    source = SourceModel("m", "torch", spec, "0" * 64, module=net.eval())
    onnx_path = None
    if target != "coreml":
        from edge_distill.exporting import export_to_onnx

        onnx_path = tmp_path / "m.onnx"
        export_to_onnx(source, onnx_path, samples=cal)
    work = tmp_path / "work"
    work.mkdir()
    precision = "fp16" if target == "coreml" else "fp32"
    built = get_target(target).build(BuildRequest(onnx_path, source, precision, cal, "minmax", {}, tmp_path, work))
    data = tmp_path / "eval.npz"
    np.savez(data, x=cal.inputs["x"], labels=np.arange(16) % 3)
    return built.path, data


@pytest.mark.parametrize("target", ["ort", "tflite", "coreml"])
def test_verify_never_writes_into_its_input(tmp_path, target):
    artifact, data = small_artifact(tmp_path, target)
    before = hashes(artifact)
    proc = run_cli("verify", artifact, "--data", data, "--runs", "20", "--warmup", "1", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert hashes(artifact) == before


def followed_hash(package) -> str:
    """The package's sha256 as a reader that follows links computes it: what a crafted report carries."""
    import hashlib

    digest = hashlib.sha256()
    for f in sorted(p for p in package.rglob("*") if p.is_file()):
        digest.update(f"{f.relative_to(package)}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def coreml_check_folder(tmp_path, config=None):
    """A check folder holding one verified Core ML package, its report.json as `check` writes one, and
    an iOS app to bundle it into: (check folder, package, app)."""
    artifact, data = small_artifact(tmp_path / "build", "coreml")
    check = tmp_path / "check"
    proc = run_cli("verify", artifact, "--data", data, "--runs", "20", "--warmup", "1", "--out", check)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    package = check / "coreml" / artifact.name
    shutil.copytree(artifact, package)
    report = json.loads((check / "report.json").read_text())
    report["config"] = str(config) if config else None
    report["student"]["inputs"] = [{"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    report["results"][0]["artifact"] = f"coreml/{artifact.name}"
    (check / "report.json").write_text(json.dumps(report))
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE.parents[1] / "ios-demo", app)
    return check, package, app


def set_hash(check, package):
    report = json.loads((check / "report.json").read_text())
    report["results"][0]["sha256"] = followed_hash(package)
    (check / "report.json").write_text(json.dumps(report))


def test_bundle_refuses_a_link_inside_a_package(tmp_path):
    (tmp_path / "build").mkdir()
    check, package, app = coreml_check_folder(tmp_path)
    (package / "Data" / "leak.txt").symlink_to("/etc/passwd")
    set_hash(check, package)  # the crafted report vouches for the package as its link reads
    before = hashes(app)
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{package / 'Data' / 'leak.txt'}: is a symbolic link (to /etc/passwd); links are never followed out " \
           "of an untrusted folder; refused" in proc.stderr
    assert "Traceback" not in proc.stderr and hashes(app) == before


def test_bundle_refuses_a_linked_tokenizer_file(tmp_path):
    (tmp_path / "build").mkdir()
    student = tmp_path / "textmodel"
    student.mkdir()
    (student / "vocab.txt").symlink_to("/etc/passwd")
    config = tmp_path / "edge-distill.toml"
    config.write_text('[model]\nstudent = "textmodel"\n[data]\nevaluation = "eval.npz"\n'
                      '[[targets]]\nname = "coreml"\nprecisions = ["fp16"]\n[budgets]\n')
    check, package, app = coreml_check_folder(tmp_path, config)
    set_hash(check, package)
    before = hashes(app)
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{student / 'vocab.txt'}: is a symbolic link (to /etc/passwd)" in proc.stderr
    assert "Traceback" not in proc.stderr and hashes(app) == before


def test_bundle_refuses_evaluation_data_reached_through_a_link(tmp_path):
    (tmp_path / "build").mkdir()
    check, package, app = coreml_check_folder(tmp_path)
    set_hash(check, package)
    report = json.loads((check / "report.json").read_text())
    data = Path(report["data"]["evaluation"]["source"])
    linked = tmp_path / "linked.npz"
    linked.symlink_to(data)  # the crafted report points its golden samples through a link
    report["data"]["evaluation"]["source"] = str(linked)
    (check / "report.json").write_text(json.dumps(report))
    before = hashes(app)
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{linked}: is a symbolic link (to {data}); links are never followed out of an untrusted folder" \
        in proc.stderr
    assert "Traceback" not in proc.stderr and hashes(app) == before


def test_bundle_refuses_evaluation_data_changed_since_the_check(tmp_path):
    (tmp_path / "build").mkdir()
    check, package, app = coreml_check_folder(tmp_path)
    set_hash(check, package)
    data = Path(json.loads((check / "report.json").read_text())["data"]["evaluation"]["source"])
    import hashlib
    recorded = json.loads((check / "report.json").read_text())["data"]["evaluation"]["sha256"]
    assert recorded == hashlib.sha256(data.read_bytes()).hexdigest()  # the check recorded the file it read
    with np.load(data) as arrays:
        swapped = {k: arrays[k] for k in arrays.files}
    swapped["x"] = swapped["x"][::-1].copy()  # other samples: the app's golden answers would not be the check's
    np.savez(data, **swapped)
    before = hashes(app)
    proc = run_cli("bundle", check, "--app", app)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{data}: the evaluation data changed since the check (its sha256 differs from the report's); " \
           "refused" in proc.stderr
    assert "Traceback" not in proc.stderr and hashes(app) == before


def test_verify_takes_a_link_the_user_names(tmp_path):
    artifact, data = small_artifact(tmp_path, "ort")
    (tmp_path / "latest.ort").symlink_to(artifact)  # the top is the user's to name; a package's insides are not
    proc = run_cli("verify", tmp_path / "latest.ort", "--data", data, "--runs", "20", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verify_refuses_a_package_with_a_link_or_a_hard_link(tmp_path):
    artifact, data = small_artifact(tmp_path, "coreml")
    weights = next(artifact.rglob("weight.bin"))
    outside = tmp_path / "outside.bin"
    os.link(weights, outside)  # the package's weights, now also a name outside it
    proc = run_cli("verify", artifact, "--data", data, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{weights}: is a hard link (2 names for one file)" in proc.stderr
    outside.unlink()
    (artifact / "Data" / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(artifact / "Data" / "fifo")
    proc = run_cli("verify", artifact, "--data", data, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{artifact / 'Data' / 'fifo'}: is not a regular file or folder (a FIFO, device or socket)" in proc.stderr
    assert not (tmp_path / "out").exists()


HOSTILE_NAME = "evil\x1b[31mRED\x00<script>alert(1)</script><!--$\\undefinedmacro{$|`[x](javascript:1)`\u202e[/]"
NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\ud800-\udfff]")


def test_hostile_names_reach_every_report_escaped_for_its_format(tmp_path):
    """A slice and a model file named with ESC, NUL, a newline, HTML, a Markdown link, mathtext and rich
    markup: the run ends with its verdict (a broken budget) and every report (and the progress lines on
    stderr) is readable in its format."""
    from test_hostile_corpus import _matmul_onnx

    slice_name = HOSTILE_NAME + "\nPASSED: every budget holds"
    model = _matmul_onnx(tmp_path / (HOSTILE_NAME.replace("\x00", "").replace("/", "") + ".onnx"))  # a file name's
    slices = np.where(np.arange(16) % 2 == 0, slice_name, "plain")
    np.savez(tmp_path / "eval.npz", x=np.random.default_rng(1).random((16, 4), np.float32), labels=np.arange(16) % 4,
             slices=slices)
    config = tmp_path / "edge-distill.toml"
    config.write_text(f'[model]\nstudent = {json.dumps(model.name)}\n[data]\nevaluation = "eval.npz"\n'
                      '[[targets]]\nname = "ort"\nprecisions = ["fp32"]\n'
                      f'[budgets.slices.{json.dumps(slice_name)}]\nmin_accuracy = 0.99\n')
    out = tmp_path / "out"
    proc = run_cli("check", config, "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert slice_name in report["results"][0]["slices"]  # the canonical report keeps the name as it is
    for text in (proc.stdout, proc.stderr, *((out / f).read_text() for f in ("junit.xml", "report.md", "report.html"))):
        assert not NOT_TEXT.search(text), NOT_TEXT.search(text)
        assert "\nPASSED: every budget holds" not in text  # a newline in a name forges no line
    import xml.etree.ElementTree as ET

    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert any("\\x1b[31mRED\\x00<script>" in case.get("name") for case in cases)
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "<script" not in markdown and "<!--" not in markdown and "[x](javascript" not in markdown
    assert "<script" not in page and "&lt;script&gt;alert(1)" in page
    assert "<svg" in page  # the plots were drawn, the name in them as its letters


def test_an_error_naming_a_hostile_file_prints_it_as_text(tmp_path):
    name = "data\x1b]0;pwned\x07\x1b[2J.npz"
    (tmp_path / name).write_bytes(b"not a zip")
    from test_hostile_corpus import _matmul_onnx

    proc = run_cli("export", _matmul_onnx(tmp_path / "mm.onnx"), "--data", tmp_path / name, "--out", tmp_path / "o")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "data\\x1b]0;pwned\\x07\\x1b[2J.npz: cannot read data file" in proc.stderr
    assert not NOT_TEXT.search(proc.stderr)
