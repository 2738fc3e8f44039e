"""A configured "-auto" precision (auto_precision.py) on a stand-in target and stand-in builds whose
figures each test fixes: the layers raised, the chosen trial's files and names, the recipe that rebuilds
it, and the verdict when nothing meets the budgets. The stand-in target (`StandInTarget`) is named as
such: it answers `layers` from a table and builds nothing; the search and the files are the real code's.
Fast: they run once per mutant of toolkit/auto_precision.py (benchmarks/mutation.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge_distill import auto_precision
from edge_distill.auto_precision import (Where, _options, _slower_note, build_auto, check_auto, group_layers,
                                         refusal, steps_up)
from edge_distill.calibration import Dataset
from edge_distill.config import TargetConfig, read_recipe
from edge_distill.errors import BadInput
from edge_distill.metrics import Metrics
from edge_distill.pipeline import PlannedTarget
from edge_distill.result import Check, Memory, TargetResult
from edge_distill.targets import Layer

LAYERS = [Layer("big", "Gemm", 900), Layer("small", "Gemm", 60), Layer("conv", "Conv", 40, int8=False)]


class StandInTarget:
    """A test double of a MixedPrecisionTarget: its layers come from LAYERS, not from a file."""

    def __init__(self, options=("keep_float", "keep_int8")):
        self.capabilities = SimpleNamespace(options=[SimpleNamespace(name=n) for n in options],
                                            options_with_defaults=lambda given: {"defaulted": True, **given})
        self.read = []

    def layers(self, path: Path) -> list[Layer]:
        self.read.append(path)
        return list(LAYERS)

    def mixing_refused(self, precision: str, options: dict) -> str | None:
        return None if options.get("defaulted") else "options not defaulted"


def _stand_in_builds(accuracy_of, calls: list):
    """build(planned, precision, out, folder, work): writes a one-file artifact whose bytes name the
    trial's options, and returns the accuracy `accuracy_of(keep_int8, keep_float)` gives."""
    def build(planned, precision, out: Path, folder: str, work: Path, samples=None) -> TargetResult:
        options = planned.config.options
        int8, kept = sorted(options.get("keep_int8", [])), sorted(options.get("keep_float", []))
        calls.append((precision, folder, int8, kept, None if samples is None else len(samples)))
        assert work.is_dir()
        (out / folder).mkdir()
        (out / folder / "model.bin").write_text(f"int8={int8} float={kept}")
        accuracy = accuracy_of(int8, kept)
        check = Check(f"fake-{precision}/min_accuracy", "accuracy", ">=", 0.75, accuracy, "", accuracy >= 0.75)
        return TargetResult("student", "fake", precision, f"{folder}/model.bin", [f"{folder}/model.bin"], 10,
                            "0" * 64, None, Memory(None, None, "measured"), None, Metrics(samples=10, accuracy=accuracy),
                            {}, checks=[check], warnings=[f"fake-{precision} says so"])
    return build


@pytest.fixture
def stand_in(monkeypatch):
    target = StandInTarget()
    monkeypatch.setattr(auto_precision, "get_target", lambda name: target)
    return target


def _planned(**entry) -> PlannedTarget:
    return PlannedTarget(TargetConfig("fake", ["int4-auto"], **entry), ["int4-auto"], None)


def test_int4_auto_raises_the_lightest_layer_that_mends_it_and_writes_its_recipe(stand_in, tmp_path):
    # int4 everywhere breaks; "small" in int8 is enough (the conv has no int8, so it can only go to float)
    calls: list = []
    build = _stand_in_builds(lambda int8, kept: 0.80 if "small" in int8 else 0.70, calls)
    (tmp_path / "work").mkdir()
    best = build_auto(_planned(), "int4-auto", Where(tmp_path, tmp_path / "work"), build, lambda m: None)

    assert best.name == "fake-int4-auto" and best.passed
    assert [c.name for c in best.checks] == ["fake-int4-auto/min_accuracy"]
    assert best.warnings == ["fake-int4-auto says so"]
    assert (best.artifact, best.files) == ("fake/int4-auto/model.bin",
                                           ["fake/int4-auto/model.bin", "fake/int4-auto/recipe.toml"])
    assert (tmp_path / best.artifact).read_text() == "int8=['small'] float=[]"
    assert read_recipe(tmp_path / "fake/int4-auto/recipe.toml", "fake") == (
        "int4", {"keep_int8": ["small"], "keep_float": []})
    mixed = best.details["mixed_precision"]
    assert (mixed["met"], mixed["raised"], mixed["steps"], mixed["stopped"]) == (True, {"small": "int8"},
                                                                               ["int8", "float"], "met")
    assert "trial" not in best.details
    # trials: int4 as asked, then each layer alone one step up ("small" in int8 already meets the budget:
    # the walk takes that trial again without a build)
    assert [c[2:4] for c in calls] == [([], []), (["big"], []), (["small"], []), ([], ["conv"])]
    assert {c[0] for c in calls} == {"int4"} and stand_in.read == [tmp_path / "work" / "fake-int4-auto" /
                                                                   "trial-0" / "model.bin"]


def test_nothing_meets_the_budget_the_closest_attempt_is_kept_with_a_warning(stand_in, tmp_path):
    calls: list = []
    build = _stand_in_builds(lambda int8, kept: 0.60 + 0.01 * len(int8) + 0.02 * len(kept), calls)
    (tmp_path / "work").mkdir()
    best = build_auto(_planned(auto_max_evaluations=4), "int4-auto", Where(tmp_path, tmp_path / "work"), build,
                      lambda m: None)
    assert not best.passed and len(calls) == 4
    assert best.details["mixed_precision"]["stopped"] == "trials"
    (verdict,) = [w for w in best.warnings if "closest attempt" in w]
    assert verdict.startswith("int4-auto: ") and "4 trials" in verdict and "(trials)" in verdict
    assert verdict.endswith("no configuration meets every budget; this is the closest attempt")
    assert best.details["mixed_precision"]["raised"] == {"conv": "float"}  # the closest: the conv in float


def test_the_ladders_subject_folder_and_a_subset_confirmed_on_every_sample(stand_in, tmp_path):
    labels = np.arange(40) % 2
    data = Dataset("eval.npz", {"x": np.zeros((40, 2), np.float32)}, labels=labels)
    calls: list = []
    build = _stand_in_builds(lambda int8, kept: 0.80 if int8 else 0.70, calls)
    (tmp_path / "work").mkdir()
    best = build_auto(_planned(auto_sensitivity_samples=10), "int4-auto",
                      Where(tmp_path, tmp_path / "work", Path("student")), build, lambda m: None, data=data)
    assert best.artifact == "student/fake/int4-auto/model.bin" and (tmp_path / best.artifact).is_file()
    assert [c[4] for c in calls[:-1]] == [10] * (len(calls) - 1) and calls[-1][4] is None  # confirmed on all 40
    samples = best.details["mixed_precision"]["samples"]
    assert (samples["trials"], samples["all"], samples["confirmed"]) == (10, 40, True)


def test_sensitivity_only_keeps_the_precision_as_asked(stand_in, tmp_path):
    calls: list = []
    build = _stand_in_builds(lambda int8, kept: 0.70 + 0.01 * len(kept), calls)
    (tmp_path / "work").mkdir()
    best = build_auto(_planned(), "int4", Where(tmp_path, tmp_path / "work"), build, lambda m: None,
                      sensitivity_only=True)
    assert (best.precision, best.artifact) == ("int4", "fake/model.bin")
    assert not (tmp_path / "fake" / "recipe.toml").exists()
    assert [layer["layer"] for layer in best.details["mixed_precision"]["sensitivity"]] == ["big", "small", "conv"]
    assert best.details["mixed_precision"]["stopped"] == "sensitivity only"
    assert len(calls) == 1 + 2 * len(LAYERS)  # each layer in float alone and quantized alone


class MeasuringStandIn(StandInTarget):
    """The stand-in target, measuring each layer's activation error (its SQNR from a table)."""

    tensor_error_method = "stand-in table"

    def tensor_errors(self, path: Path, work_dir: Path, data, layers: list[str]) -> dict[str, float]:
        self.asked = (path.name, work_dir.name, len(data), layers)
        return {"enc.0": 30.0, "enc.1": 12.5, "head": 40.0, "unasked": 1.0}


def test_each_layers_activation_error_is_its_groups_worst_members(monkeypatch, tmp_path):
    target = MeasuringStandIn()
    target.layers = lambda path: [Layer("enc.0", "Gemm", 10), Layer("enc.1", "Gemm", 10), Layer("head", "Gemm", 5),
                                  Layer("tail", "Gemm", 5)]
    monkeypatch.setattr(auto_precision, "get_target", lambda name: target)
    data = Dataset("eval.npz", {"x": np.zeros((100, 2), np.float32)})
    build = _stand_in_builds(lambda int8, kept: 0.70 + 0.01 * len(int8), [])
    (tmp_path / "work").mkdir()
    best = build_auto(_planned(auto_groups={"enc": "^enc"}), "int4-auto", Where(tmp_path, tmp_path / "work"), build,
                      lambda m: None, data=data)
    mixed = best.details["mixed_precision"]
    sqnr = {s["layer"]: s.get("sqnr_db") for s in mixed["sensitivity"]}
    assert sqnr == {"head": 40.0, "tail": None, "enc": 12.5}  # a group's worst member; none measured for tail
    assert mixed["activation_error"] == {"method": "stand-in table", "samples": 64}
    assert target.asked == ("model.bin", "work-0", 64, ["head", "tail", "enc.0", "enc.1"])


def test_int4_steps_through_int8_only_where_the_target_keeps_layers_in_int8():
    assert steps_up(StandInTarget(), "int4") == ("int8", "float")
    assert steps_up(StandInTarget(), "int8") == ("float",)
    assert steps_up(StandInTarget(options=("keep_float",)), "int4") == ("float",)


def test_a_trials_options_name_each_steps_layers_and_a_groups_members():
    options = _options({"g": "float", "a": "int8", "b": "float"}, {"g": ["g1", "g2"]}, ("int8", "float"))
    assert options == {"keep_int8": ["a"], "keep_float": ["g1", "g2", "b"]}
    assert _options({}, {}, ("float",)) == {"keep_float": []}


def test_layers_matching_a_group_are_searched_as_one():
    layers = [Layer("enc.0.fc", "Gemm", 10), Layer("enc.1.fc", "Gemm", 20, int8=False),
              Layer("enc.1.conv", "Conv", 5), Layer("head", "Gemm", 7)]
    grouped, members = group_layers(layers, {"fc": r"\.fc$", "enc": "^enc"})
    assert grouped == [Layer("head", "Gemm", 7), Layer("fc", "2 x Gemm", 30, int8=False),
                       Layer("enc", "1 x Conv", 5, int8=True)]
    assert members == {"fc": ["enc.0.fc", "enc.1.fc"], "enc": ["enc.1.conv"]}
    assert group_layers(layers, {}) == (layers, {})


def test_a_target_without_layers_refuses_and_one_with_them_is_asked_with_its_defaults():
    assert refusal(SimpleNamespace(), "int8", {}) == "it cannot leave chosen layers in float"
    assert refusal(StandInTarget(), "int8", {}) is None


def test_an_auto_precision_a_target_cannot_mix_is_refused_by_name():
    check_auto("tflite", "int8", {})  # not -auto: nothing asked of the target
    check_auto("ort", "int4-auto", {})
    with pytest.raises(BadInput, match=r"^target 'tflite' has no int8-auto: litert-torch's PT2E quantizer takes no "
                                       r"per-layer exclusions here"):
        check_auto("tflite", "int8-auto", {})
    with pytest.raises(BadInput, match=r"^target 'coreml' has no fp16-auto: fp16 has no quantized layers"):
        check_auto("coreml", "fp16-auto")


def _broken(*metrics: str) -> TargetResult:
    checks = [Check(f"fake-int8/{m}", m, "<=", 1.0, 2.0, "", False) for m in metrics]
    return TargetResult("student", "fake", "int8", "a", [], 1, "0" * 64, None, Memory(None, None, "measured"), None,
                        Metrics(samples=1), {}, checks=checks)


def test_why_float_layers_cannot_help_is_said():
    assert _slower_note(_broken("accuracy")) == ""  # mendable: no note
    assert _slower_note(_broken()) == ("; what does not hold could not be measured here (see the checks), which no "
                                       "layer's precision changes")
    assert _slower_note(_broken("latency_p95_ms")).startswith("; only speed, size or memory budgets break")
    assert _slower_note(_broken("size_mb", "speedup_vs_float")).startswith("; only speed, size or memory")
    assert _slower_note(_broken("size_mb")) == ("; only size or memory budgets break, which layers left in float "
                                                "would make worse: a smaller student")


def test_a_recipe_is_toml_the_config_reads_back(tmp_path):
    auto_precision.write_recipe(tmp_path / "recipe.toml", "ort", "int4", {"keep_int8": ["a", "b"], "keep_float": []})
    data = tomllib.loads((tmp_path / "recipe.toml").read_text())
    assert data == {"target": "ort", "precision": "int4", "options": {"keep_int8": ["a", "b"], "keep_float": []}}
