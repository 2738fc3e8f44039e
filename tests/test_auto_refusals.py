"""`auto` where one build is made: an "-auto" precision and an option set to "auto" are searches that
`check` runs; where they cannot run (nested, in the ladder's one build per rung, in a plain export)
they are refused with exit 2 and the reason before any build, never built and reported afterwards.
The ladder takes an "-auto" precision as its rung's base (it adds the -auto rung itself)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_cli


@pytest.fixture
def mlp(tmp_path):
    """A two-layer MLP classifier [B, 16] -> [B, 4] with its evaluation data, written with onnx.helper."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.5, (16, 32)).astype(np.float32), rng.normal(0, 0.5, (32, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["logits"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(32, 16)).astype(np.float32))
    return tmp_path


def write_config(folder, precisions: str, teacher: bool = False):
    path = folder / "edge-distill.toml"
    path.write_text('[model]\nstudent = "m.onnx"\n' + ('teacher = "m.onnx"\n' if teacher else "")
                    + '[data]\nevaluation = "data.npz"\ncalibration = "data.npz"\n[measure]\nruns = 20\nwarmup = 1\n'
                    f'[[targets]]\nname = "ort"\nprecisions = {precisions}\noptions = {{ int8_recipe = "auto" }}\n'
                    "[budgets]\nmin_float_agreement = 0.999\n")
    return path


def test_check_refuses_a_recipe_search_nested_in_a_layer_search_before_any_build(mlp):
    config = write_config(mlp, '["fp32", "int8-auto"]')
    proc = run_cli("check", config, "--out", mlp / "out", "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ('[[targets]] ort: int8-auto searches which layers to leave in float with one recipe; int8_recipe = "auto" '
            "searches recipes, and the two do not nest") in proc.stderr
    assert str(config) in proc.stderr and not (mlp / "out").exists()  # nothing built, no report


def test_the_ladder_refuses_a_recipe_search_before_any_rung(mlp):
    config = write_config(mlp, '["fp32", "int8"]', teacher=True)
    proc = run_cli("ladder", config, "--out", mlp / "out", "-q")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert 'the ladder builds one recipe per rung, and ort int8 has int8_recipe = "auto"' in proc.stderr
    assert not (mlp / "out").exists()


def test_export_of_an_auto_precision_says_how_to_search_it(mlp):
    proc = run_cli("export", mlp / "m.onnx", "--target", "ort-int8-auto", "--data", mlp / "data.npz",
                   "--calibration", mlp / "data.npz", "--out", mlp / "out")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "int8-auto is a search against a config's budgets, not one build" in proc.stderr
    assert "--auto --config edge-distill.toml --target ort-int8" in proc.stderr


@pytest.mark.parametrize("configured, rungs", [
    (["fp32", "int8-auto", "int4"], ("fp32", "int8", "int4")),
    (["fp32", "int8-dynamic-auto"], ("fp32", "int8-dynamic", "int4")),  # not the first 8-bit one ort declares
    (["fp32", "int8-dynamic"], ("fp32", "int8-dynamic", "int4")),
])
def test_the_ladders_rung_is_an_auto_precisions_base(configured, rungs):
    from edge_distill.config import TargetConfig
    from edge_distill.ladder import rung_precisions
    from edge_distill.pipeline import PlannedTarget

    assert rung_precisions(PlannedTarget(TargetConfig("ort", configured), configured, None)) == rungs
