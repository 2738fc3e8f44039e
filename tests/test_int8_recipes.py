"""ORT int8_recipe = "auto": every static int8 recipe the target declares built and evaluated by
`check`, the best by the budgets kept and every candidate recorded. The case is built so that the
default recipe loses: one outlier pixel in the calibration set stretches min-max input ranges."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow  # seven int8 builds and evaluations


def images(rng, n: int) -> np.ndarray:
    """Each image a flat colour (one offset per channel) with faint noise: the class depends on the
    colour, which a coarse input scale rounds away (faint noise does not dither it back)."""
    return (rng.normal(size=(n, 3, 1, 1)) + 0.1 * rng.normal(size=(n, 3, 32, 32))).astype(np.float32)


@pytest.fixture(scope="module")
def outlier_case(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("recipes")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), folder / "model.onnx", input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, opset_version=18, dynamo=False)
    rng = np.random.default_rng(0)
    calibration = images(rng, 128)
    calibration[7, 0, 5, 5] = 400.0  # one pixel in 393,216: min-max makes the input's step 1.6
    np.savez(folder / "cal.npz", image=calibration)
    np.savez(folder / "eval.npz", image=images(rng, 256))
    return folder


def config(folder, recipe: str) -> str:
    path = folder / f"{recipe}.toml"
    path.write_text('[model]\nstudent = "model.onnx"\n[[model.inputs]]\nname = "image"\nshape = ["batch", 3, 32, 32]\n'
                    '[data]\nevaluation = "eval.npz"\ncalibration = "cal.npz"\n[measure]\nruns = 20\nwarmup = 1\n'
                    f'[[targets]]\nname = "ort"\nprecisions = ["int8"]\noptions = {{ int8_recipe = "{recipe}" }}\n'
                    '[budgets]\nmin_float_agreement = 0.9\n')
    return path


def agreement_by_hand(artifact, reference, x) -> float:
    import onnxruntime as ort

    top1 = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0].argmax(1)
            for p in (artifact, reference)]
    return float((top1[0] == top1[1]).mean())


def test_auto_keeps_the_recipe_that_holds_where_the_default_breaks(outlier_case):
    folder = outlier_case
    x = np.load(folder / "eval.npz")["image"]
    auto = run_cli("check", config(folder, "auto"), "--out", folder / "auto")
    default = run_cli("check", config(folder, "onnxruntime"), "--out", folder / "default")
    assert default.returncode == 1, default.stdout + default.stderr
    assert auto.returncode == 0, auto.stdout + auto.stderr
    (kept,), (plain,) = (json.loads((folder / run / "report.json").read_text())["results"]
                         for run in ("auto", "default"))
    recipes = kept["details"]["int8_recipes"]
    rows = {row["recipe"]: row for row in recipes["candidates"]}
    assert list(rows) == ["onnxruntime", "ort-defaults", "per-tensor", "symmetric", "percentile", "entropy",
                          "attention-float"]
    # every figure worked out again from the files the runs wrote
    float_model = folder / "auto" / "onnx" / "model.onnx"
    chosen = agreement_by_hand(folder / "auto" / kept["artifact"], float_model, x)
    lost = agreement_by_hand(folder / "default" / plain["artifact"], float_model, x)
    assert kept["metrics"]["float_agreement"] == pytest.approx(chosen, abs=1e-6)
    assert plain["metrics"]["float_agreement"] == pytest.approx(lost, abs=1e-6)
    assert rows["onnxruntime"]["value"] == pytest.approx(lost, abs=1e-6)  # the candidate is the default's build
    assert lost < 0.9 <= chosen
    assert recipes["chosen"] == kept["details"]["int8_recipe"] and rows[recipes["chosen"]]["passed"] is True
    best = max(r["value"] for r in rows.values() if r["passed"])
    assert rows[recipes["chosen"]]["value"] == best
    assert kept["size_bytes"] == rows[recipes["chosen"]]["size_bytes"] <= plain["size_bytes"]
    assert all(r["seconds"] > 0 for r in rows.values())
    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "toolkit" / "schemas" / "report.schema.json").read_text())
    jsonschema.validate(json.loads((folder / "auto" / "report.json").read_text()), schema)
    markdown = (folder / "auto" / "report.md").read_text()
    assert "## Recipes" in markdown and f"{recipes['chosen']} (chosen)" in markdown


def test_the_chosen_recipe_rebuilds_by_name(outlier_case):
    folder = outlier_case
    chosen = json.loads((folder / "auto" / "report.json").read_text())["results"][0]["details"]["int8_recipes"]
    again = run_cli("check", config(folder, chosen["chosen"]), "--out", folder / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    (result,) = json.loads((folder / "again" / "report.json").read_text())["results"]
    assert result["metrics"]["float_agreement"] == next(r["value"] for r in chosen["candidates"]
                                                        if r["recipe"] == chosen["chosen"])


def test_auto_outside_check_says_where_it_is_resolved(tmp_path, outlier_case):
    from edge_distill.calibration import InputSpec, load_dataset
    from edge_distill.errors import BadInput
    from edge_distill.models import load_model
    from edge_distill.targets import BuildRequest, get_target

    specs = [InputSpec("image", ("batch", 3, 32, 32), "float32")]
    source = load_model(str(outlier_case / "model.onnx"), None, specs)
    request = BuildRequest(onnx_path=outlier_case / "model.onnx", source=source, precision="int8",
                           calibration=load_dataset(outlier_case / "cal.npz", specs), calibration_method="minmax",
                           options={"int8_recipe": "auto"}, out_dir=tmp_path, work_dir=tmp_path)
    with pytest.raises(BadInput, match="resolved by `check`"):
        get_target("ort").build(request)


def test_the_candidates_are_the_declared_recipes_or_those_listed():
    from edge_distill.errors import BadInput
    from edge_distill.targets import get_target
    from edge_distill.targets.ort import STATIC_RECIPES

    ort = get_target("ort")
    assert ort.recipe_candidates("int8", {"int8_recipe": "auto"}) == tuple(STATIC_RECIPES)
    assert ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": ["percentile", "onnxruntime"]}) \
        == ("percentile", "onnxruntime")
    assert ort.recipe_candidates("int8", {"int8_recipe": "onnxruntime"}) == ()
    assert ort.recipe_candidates("int8-dynamic", {"int8_recipe": "auto"}) == ()
    with pytest.raises(BadInput, match="int8_auto_recipes names no static recipe 'minmax'"):
        ort.recipe_candidates("int8", {"int8_recipe": "auto", "int8_auto_recipes": ["minmax"]})
