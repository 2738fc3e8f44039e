"""Mixed precision: the search (mixed.py) on stand-in trials whose outcome each test fixes, then
int4-auto end to end on the example with ONNX Runtime and LiteRT, and its recipe rebuilt."""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLE, edit_config, run_cli
from edge_distill.metrics import Metrics
from edge_distill.mixed import search, shortfall
from edge_distill.result import Check, Memory, TargetResult
from edge_distill.targets import Layer

LAYERS = [Layer("big", "Gemm", 900), Layer("small", "Gemm", 60), Layer("conv", "Conv", 40)]


def _result(accuracy: float) -> TargetResult:
    check = Check("slice[high_risk]/min_accuracy", "accuracy", ">=", 0.75, accuracy, "", accuracy >= 0.75, "high_risk")
    return TargetResult("student", "ort", "int4", "a", [], 1, "0" * 64, None, Memory(None, None, "measured"), None,
                        Metrics(samples=10, accuracy=accuracy), {}, checks=[check])


def _trials(accuracy_of, *, steps: bool = False):
    """A stand-in trial: the accuracy the test says this set of raised layers gives (`steps`: given the
    layers and the precision each went to; else the set of float layers); records each call."""
    calls = []

    def trial(raised):
        calls.append(dict(raised) if steps else sorted(raised))
        return _result(accuracy_of(dict(raised) if steps else frozenset(raised)))
    return trial, calls


def test_a_budget_met_at_full_precision_searches_nothing():
    trial, calls = _trials(lambda keep: 0.80)
    best, state = search("int4", trial, lambda full: LAYERS)
    assert calls == [[]] and state.stopped == "met at full precision" and state.met and best.passed


def test_the_lightest_layers_that_meet_the_budget_go_back_to_float():
    # "small" alone gains most, then "big", which the floor passes over; with "conv" too the budget holds.
    # Trials: 1 + 3 sensitivity + 1 combination.
    gains = {"big": 0.025, "small": 0.03, "conv": 0.02}
    trial, calls = _trials(lambda keep: 0.705 + sum(gains[k] for k in keep))
    best, state = search("int4", trial, lambda full: LAYERS, floor=0.5)
    assert state.met and state.stopped == "met" and sorted(state.keep_float) == ["conv", "small"]
    assert best.passed and state.quantized_share == pytest.approx(0.9)
    assert len(calls) == 5 <= 1 + 2 * len(LAYERS)  # linear in the layers
    assert [s.name for s in sorted(state.layers, key=lambda s: -s.gain)] == ["small", "big", "conv"]


def test_the_floor_keeps_the_heavy_layer_quantized_and_the_closest_attempt_is_reported():
    # Only "big" (90% of the weights) fixes it; the floor (50% stays quantized) forbids that.
    trial, calls = _trials(lambda keep: 0.80 if "big" in keep else 0.70 + 0.01 * len(keep))
    best, state = search("int4", trial, lambda full: LAYERS, floor=0.5)
    assert not state.met and state.stopped == "floor" and "big" not in state.keep_float
    assert ["big"] in calls  # tried alone, for its sensitivity, but never chosen
    assert shortfall(best) == min(shortfall(_result(0.70 + 0.01 * n)) for n in range(3))
    assert sorted(state.keep_float) == ["conv", "small"]  # the closest attempt under the floor


def test_the_trial_budget_bounds_the_search():
    trial, calls = _trials(lambda keep: 0.70)
    _, state = search("int4", trial, lambda full: LAYERS, max_trials=3)
    assert len(calls) == 3 and state.trials == 3 and not state.met


def test_int4_goes_to_int8_before_float():
    # int8 of "small" brings it close, int8 of "conv" too: both in int8 meet it, nothing goes to float.
    # Trials: 1 + 3 sensitivity (in int8) + every layer in int8 + 1 combination ("small" alone was tried).
    gains = {"big": 0.01, "small": 0.03, "conv": 0.02}
    trial, calls = _trials(lambda raised: 0.705 + sum(gains[k] for k, step in raised.items() if step == "int8"),
                           steps=True)
    best, state = search("int4", trial, lambda full: LAYERS, steps=("int8", "float"), floor=0.5)
    assert state.met and state.raised == {"small": "int8", "conv": "int8"} and state.keep_float == []
    assert state.quantized_share == 1.0 and state.base_share == pytest.approx(0.9)
    assert calls[1:4] == [{"big": "int8"}, {"small": "int8"}, {"conv": "int8"}]
    assert calls[4] == {"big": "int8", "small": "int8", "conv": "int8"} and len(calls) == 6
    assert best.passed and state.to_dict()["sensitivity"][0]["raised_to"] == "int8"


def test_int4_goes_to_float_when_int8_everywhere_is_not_enough():
    # Only "small" in float meets it; int8 never does: one trial of every layer in int8, then the float walk
    # from there, in order of the int8 gains (small first). 1 + 3 + 1 + 1 trials, within 2 + 3 x layers.
    gains = {"big": 0.01, "small": 0.03, "conv": 0.02}
    accuracy = lambda raised: 0.80 if raised.get("small") == "float" else 0.70 + 0.001 * len(raised)  # noqa: E731
    trial, calls = _trials(lambda raised: accuracy(raised) + sum(gains[k] * 0.01 for k in raised), steps=True)
    best, state = search("int4", trial, lambda full: LAYERS, steps=("int8", "float"), floor=0.5)
    assert state.met and state.raised == {"big": "int8", "small": "float", "conv": "int8"}
    assert state.keep_float == ["small"] and state.quantized_share == pytest.approx(0.94)
    assert state.base_share == 0.0 and len(calls) == 6 <= 2 + 3 * len(LAYERS)


def test_a_layer_that_has_no_int8_goes_straight_to_float():
    # ORT packs embedding tables (Gather) in 4 bits only: "table" is tried in float, never in int8.
    layers = [*LAYERS, Layer("table", "GatherBlockQuantized", 100, int8=False)]
    trial, calls = _trials(lambda raised: 0.80 if raised.get("small") == "int8" else 0.70, steps=True)
    best, state = search("int4", trial, lambda full: layers, steps=("int8", "float"), floor=0.5)
    assert {"table": "float"} in calls and {"table": "int8"} not in calls
    assert {s.name: s.raised_to for s in state.layers}["table"] == "float"
    assert state.met and state.raised == {"small": "int8"}


@pytest.mark.slow
@pytest.mark.parametrize("target, broken", [("ort", "min_float_agreement"), ("tflite", "max_accuracy_drop")])
def test_int4_auto_meets_the_slice_budget_plain_int4_breaks(example, tmp_path, target, broken):
    out = tmp_path / "out"
    proc = run_cli("check", example / f"mixed-precision-{target}.toml", "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # plain int4 breaks the slice budget, by design
    report = json.loads((out / "report.json").read_text())
    plain, auto = (next(r for r in report["results"] if r["precision"] == p) for p in ("int4", "int4-auto"))
    assert [c["name"] for c in plain["checks"] if not c["passed"]] == [f"{target}-int4/slice[high_risk]/{broken}"]
    assert auto["passed"] and all(c["passed"] for c in auto["checks"])
    assert all(c["name"].startswith(f"{target}-int4-auto/") for c in auto["checks"])  # not the plain int4's names
    search = auto["details"]["mixed_precision"]
    assert search["met"] and search["quantized_share"] >= 0.6 and 1 <= len(search["raised"]) < len(search["sensitivity"])
    assert search["steps"] == ["int8", "float"]  # int4 goes to int8 first
    assert auto["coverage"]["quantized_weight_fraction"] >= 0.6
    by_precision = auto["coverage"]["by_precision"]  # the layers it raised to int8 are stored in 8 bits
    int8_layers = [name for name, step in search["raised"].items() if step == "int8"]
    assert (by_precision.get("int8", {}).get("weights", 0) > 0) == bool(int8_layers)
    assert by_precision["int4"]["weight_fraction"] >= 0.6
    assert search["trials"] <= 2 + 3 * len(search["sensitivity"])
    # The activation error at each layer's output with every layer int4 (ORT: its graphs' tensors paired by name;
    # LiteRT: ai-edge-quantizer's validator): int4 weights put each within 15-36 dB of float.
    assert all(15 < s["sqnr_db"] < 36 for s in search["sensitivity"]), search["sensitivity"]
    method = search["activation_error"]["method"]
    assert ("qdq_loss_debug" if target == "ort" else "ai-edge-quantizer's validator") in method
    assert not any(w.startswith(f"{target}-int4 ") for w in auto["warnings"])  # the trial's name is not the artifact's
    assert f"Mixed precision, {target}-int4-auto:" in proc.stdout and "## Mixed precision" in (out / "report.md").read_text()

    # The recipe rebuilds the same artifact: plain int4 with the chosen layers raised.
    recipe = out / auto["artifact"].rsplit("/", 1)[0] / "recipe.toml"
    assert f"keep_int8 = {json.dumps(int8_layers)}" in recipe.read_text()
    assert f"keep_float = {json.dumps(search['keep_float'])}" in recipe.read_text()
    config = edit_config(example, targets=(target,), precisions=["int4"], budgets="",
                         replace={f'name = "{target}"': f'name = "{target}"\nrecipe = "{recipe}"'})
    again = run_cli("check", config, "--out", tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    rebuilt = json.loads((tmp_path / "again" / "report.json").read_text())["results"][0]
    key = "stable_sha256" if target == "ort" else "sha256"  # the .ort's bytes move from run to run; its graph does not
    assert (rebuilt["details"] if key == "stable_sha256" else rebuilt)[key] == \
        (auto["details"] if key == "stable_sha256" else auto)[key]


@pytest.mark.slow
def test_a_search_on_a_stratified_subset_is_confirmed_on_every_sample(example, tmp_path):
    config = example / "mixed-precision-ort.toml"
    config.write_text(config.read_text().replace('precisions = ["fp32", "int4", "int4-auto"]',
                                                 'precisions = ["int4-auto"]\nauto_sensitivity_samples = 500'))
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    auto = json.loads((tmp_path / "out" / "report.json").read_text())["results"][0]
    search = auto["details"]["mixed_precision"]
    assert {k: search["samples"][k] for k in ("trials", "all", "confirmed")} == {"trials": 500, "all": 2000,
                                                                                   "confirmed": True}
    assert search["raised"] == {"node_linear_1_MatMul": "int8"} and search["trials"] == 3  # as on every sample
    assert all(s["accuracy_se"] > 0.012 for s in search["sensitivity"])  # 500 samples: about 0.015 (2000: 0.007)
    assert auto["metrics"]["samples"] == 2000  # the artifact's figures are the confirmation's
    assert "trials on 500 of 2000 samples (stratified by label and slice" in proc.stdout


@pytest.mark.slow
def test_no_configuration_meets_an_impossible_budget(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int4-auto"],
                         budgets="[budgets]\n[budgets.slices.high_risk]\nmin_accuracy = 0.99\n")
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    auto = next(r for r in report["results"] if r["precision"] == "int4-auto")
    assert not auto["details"]["mixed_precision"]["met"]
    assert "no configuration meets every budget; this is the closest attempt" in proc.stdout


@pytest.mark.slow
def test_a_precision_that_cannot_keep_layers_in_float_has_no_auto_precision(example, tmp_path):
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int2-auto"])
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "target 'ort' has no precision 'int2'" in proc.stderr
    coreml = (EXAMPLE / "coreml.toml").read_text().replace('"fp16"', '"fp16", "w8a8-auto"', 1)
    (example / "coreml-auto.toml").write_text(coreml)
    proc = run_cli("check", example / "coreml-auto.toml", "--out", tmp_path / "c")
    assert proc.returncode == 2 and "target 'coreml' has no w8a8-auto: w8a8 quantizes on the torch side" in proc.stderr
    config = example / "mixed-precision-tflite.toml"
    config.write_text(config.read_text().replace('"int4", "int4-auto"', '"int8-auto"'))
    proc = run_cli("check", config, "--out", tmp_path / "t")
    assert proc.returncode == 2 and "PT2E quantizer takes no per-layer exclusions here; set int8_recipe = 'aeq'" in proc.stderr


@pytest.mark.slow
def test_coreml_int4_auto_meets_the_slice_budget_on_reference_mil(example, tmp_path):
    """Core ML off macOS: each trial evaluated by the reference MIL evaluator; per-op-name configs
    (coremltools' op_name_configs) raise the chosen layer to int8."""
    out = tmp_path / "out"
    proc = run_cli("check", example / "mixed-precision-coreml.toml", "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # plain int4 breaks the slice budget, by design
    report = json.loads((out / "report.json").read_text())
    plain, auto = (next(r for r in report["results"] if r["precision"] == p) for p in ("int4", "int4-auto"))
    assert [c["name"] for c in plain["checks"] if not c["passed"]] == ["coreml-int4/slice[high_risk]/min_float_agreement"]
    assert auto["passed"] and auto["evaluation"]["kind"] == "reference-mil"
    search = auto["details"]["mixed_precision"]
    assert search["raised"] == {"linear_1_cast_fp16": "int8"} and search["base_share"] >= 0.6
    assert auto["coverage"]["by_precision"]["int8"]["weights"] == 640  # the 64x10 output layer, in int8
    # Activation error from the reference evaluator, compressed against the program before compression.
    assert all(15 < s["sqnr_db"] < 36 for s in search["sensitivity"]) and "reference MIL" in search["activation_error"]["method"]
    # The recipe rebuilds the same weights (the package's metadata differs: it records its own checks).
    recipe = out / "coreml" / "int4-auto" / "recipe.toml"
    config = example / "recipe.toml"
    config.write_text((example / "mixed-precision-coreml.toml").read_text().replace(
        'precisions = ["fp16", "int4", "int4-auto"]', f'precisions = ["int4"]\nrecipe = "{recipe}"'))
    again = run_cli("check", config, "--out", tmp_path / "again")
    assert again.returncode == 0, again.stdout + again.stderr
    rebuilt = json.loads((tmp_path / "again" / "report.json").read_text())["results"][0]
    assert rebuilt["details"]["weight_bytes"] == auto["details"]["weight_bytes"]


@pytest.mark.slow
def test_sensitivity_ranks_each_layer_in_float_and_quantized_alone(example, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("sensitivity", example / "mixed-precision-ort.toml", "--target", "ort", "--precision", "int4",
                   "--out", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # int4 as asked breaks the slice budget
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "sensitivity" and [r["precision"] for r in report["results"]] == ["fp32", "int4"]
    table = report["results"][1]["details"]["mixed_precision"]
    assert table["stopped"] == "sensitivity only" and table["trials"] == 1 + 2 * len(table["sensitivity"])
    layers = {s["layer"]: s for s in table["sensitivity"]}
    assert set(layers) == {"node_linear_MatMul", "node_linear_1_MatMul"}  # ORT int4 packs the two Linear layers
    for s in layers.values():
        assert {"accuracy", "high_risk.accuracy", "quantized alone: accuracy", "quantized alone: high_risk.accuracy"} <= set(s)
        assert 15 < s["sqnr_db"] < 36  # int4 weights: each output within 15-36 dB of float (int8's are over 36)
    # Either Linear in float mends the slice's agreement (int4-auto, above, takes the light one: the
    # heavy one would leave under 60% of the weights in int4).
    assert all(s["gain"] > 0 and s["shortfall_when_raised"] == 0 and s["raised_to"] == "float" for s in layers.values())
    assert layers["node_linear_MatMul"]["weight_share"] > 0.9
    page = (out / "report.html").read_text()  # the HTML report carries the table and its plot
    assert "id='plot-sensitivity'" in page and "id='sensitivity-ort-int4'" in page and "node_linear_1_MatMul" in page
    assert "Sensitivity, ort-int4:" in proc.stdout and (out / "ort" / "model.int4.ort").is_file()


def test_float_layers_are_not_tried_on_budgets_they_cannot_mend():
    """A size or speed budget only gets worse with layers in float: no search, and the report says why."""
    def too_big(keep_float):
        check = Check("max_size_mb", "size_mb", "<=", 0.01, 0.05, "MB", False)
        return TargetResult("student", "ort", "int8", "a", [], 1, "0" * 64, None, Memory(None, None, "measured"),
                            None, Metrics(samples=10, accuracy=0.9), {}, checks=[check])

    calls = []
    best, state = search("int8", lambda raised: calls.append(raised) or too_big(raised), lambda full: LAYERS)
    assert calls == [{}] and state.stopped == "nothing float layers can mend" and not state.met


@pytest.mark.slow
def test_layers_searched_in_groups(example, tmp_path):
    """auto_groups: the layers a regex matches are left in float together (an attention block, an FFN)."""
    from edge_distill.auto_precision import group_layers

    grouped, members = group_layers(LAYERS, {"linear": "big|small"})
    assert [(x.name, x.op, x.weights) for x in grouped] == [("conv", "Conv", 40), ("linear", "2 x Gemm", 960)]
    assert members == {"linear": ["big", "small"]}

    config = (example / "mixed-precision-ort.toml")
    config.write_text(config.read_text().replace('name = "ort"', 'name = "ort"\nauto_groups = { convolutions = "conv", '
                                                 'linear = "linear" }'))
    out = tmp_path / "out"
    proc = run_cli("sensitivity", config, "--target", "ort", "--precision", "int8", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # int8 as asked holds this config's budgets
    table = json.loads((out / "report.json").read_text())["results"][-1]["details"]["mixed_precision"]
    assert {(s["layer"], s["op"]) for s in table["sensitivity"]} == {("convolutions", "2 x Conv"), ("linear", "2 x Gemm")}
    assert table["trials"] == 1 + 2 * 2


@pytest.mark.slow
def test_export_auto_searches_one_target_against_the_configs_budgets(example, tmp_path):
    """export --auto: the config's data and budgets, one target at its -auto precision, exit codes as check's."""
    out = tmp_path / "out"
    proc = run_cli("export", "fmnist_models:student", "--target", "ort-int4", "--auto", "--config",
                   example / "mixed-precision-ort.toml", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    (auto,) = report["results"]
    assert report["command"] == "export"
    assert auto["name"] == "ort-int4-auto" and auto["passed"]
    assert auto["details"]["mixed_precision"]["raised"] == {"node_linear_1_MatMul": "int8"}
    assert (out / "ort" / "int4-auto" / "recipe.toml").is_file()

    proc = run_cli("export", "fmnist_models:student", "--target", "ort-int4", "--auto", "--out", tmp_path / "none")
    assert proc.returncode == 2 and "export --auto searches for the precisions that meet a config's budgets" in proc.stderr
    proc = run_cli("export", "fmnist_models:student", "--target", "ort-fp32", "--auto", "--config",
                   example / "mixed-precision-ort.toml", "--out", tmp_path / "fp32")
    assert proc.returncode == 2 and "not ort fp32" in proc.stderr


@pytest.mark.slow
def test_a_recipe_applies_to_the_precision_it_was_searched_at(example):
    """An entry that builds fp32 beside the recipe's int4: only the int4 build gets the recipe's layer choices."""
    from edge_distill.config import load_config

    (example / "recipe.toml").write_text('target = "ort"\nprecision = "int4"\n\n[options]\n'
                                         'keep_int8 = ["node_linear_1_MatMul"]\nkeep_float = []\n')
    config = edit_config(example, targets=("ort",), precisions=["fp32", "int4"],
                         replace={'name = "ort"': 'name = "ort"\nrecipe = "recipe.toml"'})
    (entry,) = load_config(config).targets
    assert entry.options_for("int4")["keep_int8"] == ["node_linear_1_MatMul"]
    assert "keep_int8" not in entry.options_for("fp32")
    config.write_text(config.read_text().replace('precisions = ["fp32", "int4"]', 'precisions = ["fp32", "int8"]'))
    proc = run_cli("check", config, "--out", example / "out")
    assert proc.returncode == 2 and "has a recipe for int4, which it does not build" in proc.stderr
