"""`edge-distill slices discover` end to end on the bundled Fashion-MNIST example with a planted failure
(tests/slice_planting.py): Trousers thinned to 100 of 1,880 samples (5.3%), and an artifact whose
Trouser logit is lowered where it is the top-1, so 30 of the 99 samples the float student calls
Trouser flip while the aggregate figures stay inside the example's budgets (agreement 0.984 against
0.975, accuracy drop 0.013 against 0.02). Discovery must rank that group first, by metadata and by
the reference's features alike; the proposed budget must fail the damaged artifact and pass the good
one; the user's data file must be left as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE, run_cli
from slice_planting import damaged_onnx, delta_flipping, planted_eval

from edge_distill.errors import BadInput

pytestmark = pytest.mark.slow
TROUSER = 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The example with planted.npz as its evaluation data, the float student's ONNX, the damaged one,
    and the planted group (samples whose float top-1 is Trouser)."""
    import onnxruntime as ort

    root = tmp_path_factory.mktemp("planted")
    folder = root / "example"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = folder / "edge-distill.toml"
    config.write_text(config.read_text().replace('evaluation = "eval.npz"', 'evaluation = "planted.npz"'))
    planted_eval(EXAMPLE / "eval.npz", folder / "planted.npz")
    proc = run_cli("export", "fmnist_models:student", "--weights", "student.safetensors", "--config", config,
                   "--data", "planted.npz", "--out", root / "export", "-q", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    good = root / "export" / "model.onnx"
    with np.load(folder / "planted.npz") as f:
        images = f["image"]
    logits = ort.InferenceSession(str(good)).run(None, {"image": images})[0]
    damaged = damaged_onnx(good, root / "damaged.onnx", cls=TROUSER, delta=delta_flipping(logits, TROUSER, 0.3))
    group = logits.argmax(1) == TROUSER
    return {"root": root, "config": config, "data": folder / "planted.npz", "good": good, "damaged": damaged,
            "group": group}


def _discover(planted, out: str, *args) -> tuple[dict, Path]:
    before = _sha(planted["data"])
    folder = planted["root"] / out
    proc = run_cli("slices", "discover", planted["config"], "--against", "float", "--artifact", planted["damaged"],
                   "--out", folder, "-q", *args)
    assert proc.returncode == 0, proc.stderr
    assert _sha(planted["data"]) == before  # the user's file is read, never written
    return json.loads((folder / "discovery.json").read_text()), folder


def test_planted_group_ranked_first_and_written_beside_the_users_arrays(planted):
    found, folder = _discover(planted, "all")
    top = [(c["rank"], c["name"], c["size"], c["failures"]) for c in found["candidates"][:4]]
    # the same group four ways: the reference's top-1 class (what the damage keys on), a cluster of its
    # outputs, the label, and the metadata's department
    assert top == [(1, "ref_top1_Trouser", 99, 30), (2, "cluster6", 96, 27), (3, "label_Trouser", 100, 27),
                   (4, "meta_department_bottoms", 100, 27)]
    assert found["proposed"] == ["ref_top1_Trouser"] and found["failures"] == 30
    assert found["candidates"][0]["p_adjusted"] < 1e-35
    assert found["candidates"][0]["budget"] == {"min_float_agreement": 0.97, "min_accuracy": 0.9397}
    with np.load(planted["data"]) as original, np.load(folder / "slices.npz") as written:
        assert set(written.files) == set(original.files) | {"slice_ref_top1_Trouser"}
        assert all(np.array_equal(original[k], written[k]) for k in original.files)
        assert np.array_equal(written["slice_ref_top1_Trouser"], planted["group"])
    assert "[budgets.slices.ref_top1_Trouser]" in (folder / "slices-budget.toml").read_text()
    assert "ref_top1_Trouser" in (folder / "report.md").read_text()
    assert "id='proposed'" in (folder / "report.html").read_text()


def test_metadata_alone_and_features_alone_each_rank_it_first(planted):
    found, folder = _discover(planted, "metadata", "--sources", "metadata")
    assert [c["name"] for c in found["candidates"][:1]] == ["meta_department_bottoms"]
    assert found["proposed"] == ["meta_department_bottoms"]
    with np.load(folder / "slices.npz") as written:
        assert np.array_equal(written["slice_meta_department_bottoms"], written["labels"] == TROUSER)
    found, folder = _discover(planted, "features", "--sources", "clusters")
    assert found["proposed"] == ["cluster6"] and found["candidates"][0]["name"] == "cluster6"
    with np.load(folder / "slices.npz") as written:
        mask, group = written["slice_cluster6"], planted["group"]
    assert (mask & group).sum() / (mask | group).sum() >= 0.95


def test_the_proposed_budget_fails_the_damaged_artifact_and_passes_the_good_one(planted):
    _, folder = _discover(planted, "gate")
    budget = planted["root"] / "gate.toml"
    stanza = (folder / "slices-budget.toml").read_text()
    budget.write_text("[budgets]\nmin_float_agreement = 0.975\nmax_accuracy_drop = 0.02\n\n" + stanza)
    verdicts = {}
    for name in ("damaged", "good"):
        out = planted["root"] / f"verify-{name}"
        proc = run_cli("verify", planted[name], "--data", folder / "slices.npz", "--budget", budget, "--float",
                       planted["good"], "--runs", 20, "--warmup", 1, "--out", out, "-q")
        checks = json.loads((out / "report.json").read_text())["results"][0]["checks"]
        verdicts[name] = (proc.returncode, sorted(c["name"].split("/", 1)[1] for c in checks if not c["passed"]))
    # the damaged artifact holds the aggregate budgets and breaks the slice's only
    assert verdicts["damaged"] == (1, ["slice[ref_top1_Trouser]/min_accuracy",
                                       "slice[ref_top1_Trouser]/min_float_agreement"])
    assert verdicts["good"] == (0, [])


def test_the_good_artifact_gets_nothing_and_bad_input_exits_2(planted):
    found, _ = _discover(planted, "good-artifact", "--artifact", planted["good"])
    assert found["failures"] == 0 and found["proposed"] == []
    proc = run_cli("slices", "discover", planted["config"], "--against", "float", "--out", planted["root"] / "x")
    assert proc.returncode == 2 and "--artifact" in proc.stderr
    proc = run_cli("slices", "discover", planted["config"], "--sources", "vibes", "--out", planted["root"] / "y")
    assert proc.returncode == 2 and "--sources" in proc.stderr


def test_unmodified_example_shuffled_errors_find_no_slice_in_95_of_100(tmp_path):
    """The float student against the teacher on the bundled data as shipped: the search run again on 100
    shuffles of its errors finds a significant slice in at most 5."""
    proc = run_cli("slices", "discover", EXAMPLE / "edge-distill.toml", "--null-check", 100, "--out", tmp_path / "o",
                   "-q")
    assert proc.returncode == 0, proc.stderr
    found = json.loads((tmp_path / "o" / "discovery.json").read_text())
    assert found["null_check"]["shuffles"] == 100 and found["null_check"]["with_a_slice"] <= 5


def test_embeddings_a_planted_topic_is_found_and_gated(tmp_path):
    """The embedding path on a small model (tests/slice_planting.py's tiny_embedding, in place of the
    MiniLM example, whose setup distils for minutes): an artifact damaged on one topic of 100 in 2,000
    samples, against the teacher. The cluster of the reference's embeddings and the metadata's
    language = pt are that topic exactly; the proposed min_teacher_cosine fails `check` of the damaged
    model and passes the good one, while the aggregate cosine holds."""
    from slice_planting import tiny_embedding

    group = tiny_embedding(tmp_path)
    before = _sha(tmp_path / "data.npz")
    proc = run_cli("slices", "discover", "--artifact", "damaged.onnx", "--out", "found", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _sha(tmp_path / "data.npz") == before
    found = json.loads((tmp_path / "found" / "discovery.json").read_text())
    assert found["kind"] == "embedding" and found["failure_rule"].startswith("error above its 90% quantile")
    first, second = found["candidates"][:2]
    assert (first["source"], first["size"], first["failures"], first["proposed"]) == ("cluster", 100, 100, True)
    assert (second["name"], second["size"], second["failures"]) == ("meta_language_pt", 100, 100)
    assert second["p_adjusted"] == first["p_adjusted"] < 1e-100
    with np.load(tmp_path / "found" / "slices.npz") as written:
        assert np.array_equal(written[f"slice_{first['name']}"], group)
    stanza = (tmp_path / "found" / "slices-budget.toml").read_text()
    assert f"[budgets.slices.{first['name']}]\nmin_teacher_cosine = " in stanza
    gate = (tmp_path / "edge-distill.toml").read_text().replace('"data.npz"', '"found/slices.npz"') + stanza
    exits = {}
    for student in ("student.onnx", "damaged.onnx"):
        config = tmp_path / f"gate-{student}.toml"
        config.write_text(gate.replace('student = "student.onnx"', f'student = "{student}"'))
        out = tmp_path / f"check-{student}"
        proc = run_cli("check", config, "--out", out, "-q")
        checks = json.loads((out / "report.json").read_text())["results"][0]["checks"]
        exits[student] = (proc.returncode, [c["name"] for c in checks if not c["passed"]])
    # the second proposal is the student's own error against the teacher (its weights are the teacher's plus
    # noise, so 1 - cosine depends on the input's direction): 180 samples, none of the damaged topic, where
    # the damaged model is the student and holds its budget. The damaged model breaks the topic's slice
    # alone; the aggregate min_teacher_cosine holds for both
    assert found["proposed"] == [first["name"], "cluster51"]
    with np.load(tmp_path / "found" / "slices.npz") as written:
        own = written["slice_cluster51"]
    assert (own.sum(), (own & group).sum()) == (180, 0)
    assert exits == {"student.onnx": (0, []),
                     "damaged.onnx": (1, [f"ort-fp32/slice[{first['name']}]/min_teacher_cosine"])}


def test_check_runs_discovery_as_a_step_when_the_config_asks(example, tmp_path):
    """[slices.discover] in the config: after the run, each artifact against the float student, its files
    in slices/<artifact>/; ORT fp32 equals the float student up to rounding, so nothing is proposed and
    fail_on_found leaves the verdict as it was."""
    from conftest import edit_config

    config = edit_config(example, precisions=["fp32"], targets=("ort",))
    config.write_text(config.read_text() + "\n[slices.discover]\nfail_on_found = true\n")
    proc = run_cli("check", config, "--out", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert ("slice discovery of ort-fp32 against the float student: no significant slice; see "
            "slices/ort-fp32/report.md") in report["warnings"]
    found = json.loads((tmp_path / "out" / "slices" / "ort-fp32" / "discovery.json").read_text())
    assert found["failures"] == 0 and found["proposed"] == [] and found["reference"] == "float student"
    # a section of the main report too, from the one result: report.json carries what discovery.json says
    assert list(report["discoveries"]) == ["ort-fp32"]
    assert report["discoveries"]["ort-fp32"] == found
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Slice discovery\n\n### `ort-fp32`: 0 slice(s) proposed\n" in markdown
    assert "No slice fails significantly more often than the rest." in markdown
    assert "<h2 id='discovery'>Slice discovery</h2><h3>ort-fp32: 0 slice(s) proposed</h3>" in \
        (tmp_path / "out" / "report.html").read_text().replace("\n", "")


def test_an_output_without_a_per_sample_error_is_refused_by_name():
    """A detection output has no per-sample error: discovery said `'NoneType' object is not callable` (a
    traceback, found by mypy) where it must refuse the output (exit 2) by its name."""
    from edge_distill.discover import Compared, _evidence

    heads = np.zeros((4, 84, 10), np.float32)
    compared = Compared(heads, heads, "boxes", {"kind": "detection"}, "the artifact", first=True)
    with pytest.raises(BadInput) as refused:
        _evidence(None, None, compared)  # refused before the config or the data are read
    assert refused.value.exit_code == 2
    assert str(refused.value).startswith("output 'boxes' is a detection output, which has no per-sample error")
