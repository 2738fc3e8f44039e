"""Slice discovery's algorithm (toolkit/slicefind.py) on synthetic data with a known planted slice:
found first by metadata and by the reference's features, the statistics against scipy's, nothing
found on shuffled errors, the same answer for the same seed, and every kind's per-sample error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact

from edge_distill.kinds import KINDS
from edge_distill.slicefind import Evidence, Settings, discover, failures_of, holm, log_p_values


def synthetic(n: int, seed: int, plant: str | None = "metadata", continuous: bool = False):
    """Ten classes as clusters of 16-d 'reference outputs', three metadata columns, errors at 1% base.
    The planted group: device 'c' with exposure in its lowest quarter (metadata, ~6%), or class 3
    (features, ~10%), failing 40% of the time."""
    r = np.random.default_rng(seed)
    classes = r.integers(0, 10, n)
    features = (r.normal(size=(10, 16)) * 4)[classes] + r.normal(size=(n, 16))
    logits = features[:, :10]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    columns = {"device": r.choice(["a", "b", "c", "d"], n), "exposure": r.random(n), "session": r.integers(0, 6, n)}
    group = np.zeros(n, bool)
    if plant == "metadata":
        group = (columns["device"] == "c") & (columns["exposure"] < np.quantile(columns["exposure"], 0.25))
    elif plant == "features":
        group = classes == 3
    if continuous:  # an embedding's 1 - cosine: small everywhere, larger in the group
        errors = np.abs(r.normal(0.01, 0.004, n)) + group * np.abs(r.normal(0.03, 0.01, n))
    else:
        errors = (r.random(n) < np.where(group, 0.4, 0.01)).astype(float)
    return Evidence(errors, features, probs, None, None, columns), group


def _jaccard(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_metadata_planted_slice_is_ranked_first_and_alone_proposed():
    evidence, group = synthetic(2000, 1)
    found, masks = discover(evidence, Settings(seed=0))
    top = found.candidates[0]
    assert (top.rank, top.source, top.description) == (1, "metadata", "device = c and exposure < 0.2459")
    assert np.array_equal(masks[top.name], group) and top.size == group.sum() == 116
    assert top.p_adjusted < 1e-30 and top.significant
    # the wider slices that hold it (device = c, exposure < 0.25) are explained by it, not proposed
    assert [c.name for c in found.proposed] == [top.name]
    assert found.candidates[1].same_as == top.name


def test_feature_planted_slice_is_found_by_clusters_without_metadata():
    evidence, group = synthetic(2000, 2, plant="features")
    evidence.columns = {}
    found, masks = discover(evidence, Settings(seed=0))
    top = found.candidates[0]
    assert top.source == "cluster" and top.rank == 1 and top.proposed
    assert _jaccard(masks[top.name], group) == 1.0
    assert set(top.typical) <= set(np.flatnonzero(group))


def test_continuous_errors_of_an_embedding_find_the_planted_cluster():
    evidence, group = synthetic(2000, 3, plant="features", continuous=True)
    evidence.columns, evidence.probabilities = {}, None
    found, masks = discover(evidence, Settings(seed=0))
    assert found.failure_rule.startswith("error above its 90% quantile")
    top = found.candidates[0]
    assert top.source == "cluster" and _jaccard(masks[top.name], group) == 1.0 and top.p_adjusted < 1e-30


def test_fisher_and_holm_match_scipy_and_the_textbook():
    failed = np.zeros(100, bool)
    failed[:10] = True
    mask = np.zeros(100, bool)
    mask[:5] = mask[50:60] = True
    table = [[5, 10], [5, 80]]  # slice: 5 fail of 15; rest: 5 fail of 85
    assert np.exp(log_p_values([mask], failed)[0]) == pytest.approx(fisher_exact(table, "greater")[1], rel=1e-9)
    p = np.array([0.01, 0.04, 0.03])
    # Holm with 5 hypotheses (two untested): 0.01*5, max(0.05, 0.03*4), max(0.12, 0.04*3)
    assert holm(np.log(p), 5) == pytest.approx([0.05, 0.12, 0.12])


def test_same_seed_same_answer():
    evidence, _ = synthetic(1500, 4, plant="features")
    a, _ = discover(evidence, Settings(seed=7))
    b, _ = discover(evidence, Settings(seed=7))
    strip = lambda d: [(c.name, c.size, c.failures, c.p_value) for c in d.candidates]  # noqa: E731
    assert strip(a) == strip(b)


def test_nothing_when_nothing_fails():
    evidence, _ = synthetic(1000, 5, plant=None)
    evidence.errors = np.zeros(1000)
    found, masks = discover(evidence, Settings(seed=0))
    assert found.failures == 0 and not found.proposed and masks == {}


def _null_rate(seeds: int) -> int:
    """How many seeds find a significant slice when the errors are shuffled (no slice is real)."""
    hits = 0
    for seed in range(seeds):
        evidence, _ = synthetic(2000, seed)
        evidence.errors = np.random.default_rng(10_000 + seed).permutation(evidence.errors)
        found, _ = discover(evidence, Settings(seed=seed))
        hits += any(c.significant for c in found.candidates)
    return hits


@pytest.mark.slow
def test_shuffled_errors_find_no_slice_in_95_of_100_seeds():
    assert _null_rate(100) <= 5


def test_per_sample_errors_of_every_kind():
    ref = np.zeros((3, 2, 4))
    ref[:, :, 0] = 1.0
    out = ref.copy()
    out[1, 1, 2] = 5.0  # sample 1's second position (or row) changes its top-1
    want = {"classification": [0, 1, 0], "sequence": [0, 0.5, 0], "indices": [0, 1, 0],
            "dense": [0, 5 / 8, 0], "state": [0, 5 / 8, 0]}
    for name, expected in want.items():
        kind = KINDS[name]
        assert kind.per_sample(out, ref, kind.settings) == pytest.approx(expected), name
    seg = KINDS["segmentation"]
    assert seg.per_sample(np.moveaxis(out, 2, 1), np.moveaxis(ref, 2, 1), seg.settings) == pytest.approx([0, .5, 0])
    emb = KINDS["embedding"].per_sample(np.array([[1.0, 0], [0, 1]]), np.array([[1.0, 0], [1, 0]]), {})
    assert emb == pytest.approx([0, 1])
    assert failures_of(np.array([0.0, 1.0, 1.0]))[0].tolist() == [False, True, True]
    # an artifact equal to its float model up to rounding: only the real error fails, not a tenth
    rounding = np.r_[np.full(95, 3e-8), [0.2] * 5]
    assert failures_of(rounding)[0].sum() == 5 and "is rounding" in failures_of(rounding)[1]
    assert failures_of(rounding, above=0.5)[0].sum() == 0


def test_written_beside_the_users_file_which_stays_as_it_was(tmp_path):
    """discover.write_discovery: the user's arrays copied with the proposed masks beside them (a name the
    file already uses gets a suffix), the budget stanza, the reports; the input's bytes unchanged and no
    temporary file left."""
    import hashlib

    from edge_distill.discover import write_discovery

    evidence, group = synthetic(600, 6)
    source = tmp_path / "data.npz"
    np.savez(source, x=np.arange(600.0), slice_meta_device_c_and_exposure_0_2528=np.zeros(600, bool),
             **evidence.columns)
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    found, masks = discover(evidence, Settings(seed=0, min_size=10))
    (name,) = [c.name for c in found.proposed]
    assert name == "meta_device_c_and_exposure_0_2528"
    found.proposed[0].budget = {"min_float_agreement": 0.97}
    out = tmp_path / "out"
    out.mkdir()
    write_discovery(out, found, masks, source, "classification", "float")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in out.iterdir()) == ["discovery.json", "report.html", "report.md", "slices-budget.toml",
                                                     "slices.npz"]
    with np.load(out / "slices.npz") as written, np.load(source) as original:
        assert set(written.files) == set(original.files) | {f"slice_{name}_found"}
        assert np.array_equal(written[f"slice_{name}_found"], group)
        assert all(np.array_equal(written[k], original[k]) for k in original.files)
    assert f"[budgets.slices.{name}_found]\nmin_float_agreement = 0.97\n" in (out / "slices-budget.toml").read_text()
    assert f"**`{name}_found`** (metadata): device = c and exposure &lt; 0.2528" in (out / "report.md").read_text()


def test_slices_discover_table_in_the_config(tmp_path):
    from edge_distill.config import load_config
    from edge_distill.errors import BadInput

    path = tmp_path / "edge-distill.toml"
    head = '[model]\nstudent = "m.onnx"\n'
    path.write_text(head)
    assert load_config(path).slices_discover is None
    path.write_text(head + "[slices.discover]\nmargin = 0.05\nfail_on_found = true\n")
    assert load_config(path).slices_discover == {"margin": 0.05, "alpha": 0.01, "min_size": 20, "fail_on_found": True,
                                                 "sources": ["metadata", "clusters", "confidence", "labels"]}
    for bad in ("marjin = 0.05", "min_size = 0.5", "fail_on_found = 1", "sources = 'labels'"):
        path.write_text(head + f"[slices.discover]\n{bad}\n")
        with pytest.raises(BadInput):
            load_config(path)


def test_checks_discovery_is_a_section_of_the_main_report_rendered_from_the_one_object():
    """[slices.discover] in `check`: report.json carries each artifact's discovery (valid against the
    schema), and report.md and report.html render it as a section; read back from the JSON, the same
    object renders the same Markdown (the section is not a separate file's text pasted in)."""
    import json
    from importlib.resources import files

    import jsonschema

    from edge_distill.html_report import to_html
    from edge_distill.report import to_json, to_markdown
    from edge_distill.result import Report, report_from_dict

    evidence, group = synthetic(2000, 1)
    found, _ = discover(evidence, Settings(seed=0), subject="model.int8.onnx", reference="float student",
                        output="logits", kind="classification")
    found.candidates[0].budget = {"min_float_agreement": 0.97}
    report = Report(command="check", tool_version="0", created="2026-12-01T00:00:00+00:00", config=None,
                    student={"reference": "s", "kind": "onnx", "fingerprint": "0" * 64}, teacher=None, data={},
                    environment={"cpu": "x", "machine": "x86_64", "os": "Linux", "python": "3.11"}, export=None,
                    references={}, results=[], discoveries={"ort-int8": found})
    document = json.loads(to_json(report))
    jsonschema.validate(document, json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text()))
    assert document["discoveries"]["ort-int8"]["proposed"] == ["meta_device_c_and_exposure_0_2459"]
    markdown = to_markdown(report)
    section = markdown[markdown.index("## Slice discovery"):markdown.index("## Checks")]
    assert section.startswith("## Slice discovery\n\n### `ort-int8`: 1 slice(s) proposed\n")
    assert ("- **`meta_device_c_and_exposure_0_2459`** (metadata): device = c and exposure &lt; 0.2459. 116 samples, "
            f"{found.candidates[0].error_rate:.1%} fail against") in section
    assert "Budget: min\\_float\\_agreement = 0.97." in section
    back = report_from_dict(document)
    assert back.discoveries["ort-int8"] == found and to_markdown(back) == markdown
    page = to_html(report)
    assert "<h2 id='discovery'>Slice discovery</h2>" in page and "<ul id='proposed-ort-int8'>" in page
    assert page.index("<h2 id='discovery'>") < page.index("<h2>Checks</h2>")
