"""The Core ML target: real coremltools conversion and compression; on Linux, the reference MIL
evaluation of the saved packages (Core ML itself runs only on Apple machines)."""

import json
import sys
from importlib.resources import files

import jsonschema
import numpy as np
import pytest
import torch

import zoo
from conftest import EXAMPLE, run_cli
from edge_distill.calibration import Dataset, InputSpec
from edge_distill.errors import BadInput, CannotMeasure
from edge_distill.models import SourceModel
from edge_distill.targets import BuildRequest, get_target
from edge_distill.targets.coreml import native_coreml_available

pytestmark = pytest.mark.slow  # every test converts a model with coremltools or runs the CLI


def test_all_precisions_are_built_and_verified(coreml_run):
    proc, out, report = coreml_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jsonschema.validate(report, json.loads((files("edge_distill") / "schemas" / "report.schema.json").read_text()))
    results = {r["precision"]: r for r in report["results"]}
    assert list(results) == ["fp16", "int8", "int4", "palettize4", "w8a8"]
    for r in results.values():
        assert (out / r["artifact"]).is_dir() and r["artifact"].endswith(".mlpackage")
        assert r["evaluation"]["kind"] == ("measured" if native_coreml_available() else "reference-mil")
        if not native_coreml_available():
            assert r["latency"] is None and r["memory"]["peak_mb"] is None  # never a device figure off macOS
            assert all(c["provenance"] == "reference-mil" for c in r["checks"] if "accuracy" in c["metric"])
    assert results["fp16"]["metrics"]["float_agreement"] >= 0.995
    sizes = {p: r["size_bytes"] for p, r in results.items()}
    assert sizes["int8"] < sizes["fp16"] * 0.6 and sizes["int4"] < sizes["int8"] and sizes["palettize4"] < sizes["int8"]
    assert results["int4"]["details"]["weight_bytes"].get("int4") and results["int4"]["details"]["deployment_target"] == "iOS18"
    assert "quantize" in results["w8a8"]["details"]["ops"]  # activations really quantized
    assert "reference-mil" in proc.stdout


def test_int4_block_size_is_the_packages(coreml_run):
    """coreml.toml asks for int4 blocks of 16 (784, the first Linear's depth, is no multiple of 32):
    every blockwise weight of the saved program has one scale per 16 inputs."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    _, out, report = coreml_run
    package = out / next(r for r in report["results"] if r["precision"] == "int4")["artifact"]
    spec = ct.utils.load_spec(str(package))
    program = load(spec, spec.specificationVersion, file_weights_dir=str(package / "Data" / "com.apple.CoreML" / "weights"))
    blocks = {}
    for op in program.functions["main"].operations:
        if op.op_type == "constexpr_blockwise_shift_scale":
            data, scale = op.inputs["data"].val, op.inputs["scale"].val
            blocks[data.shape] = data.shape[1] // scale.shape[1]  # blocks run along the input axis
    assert blocks and set(blocks.values()) == {16}, blocks


def test_package_metadata_carries_labels_and_verified_budgets(coreml_run):
    _, out, _ = coreml_run
    proc = run_cli("inspect", out / "coreml" / "model.int8.mlpackage")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    meta = info["metadata"]
    assert info["author"] == "edge-distill" and json.loads(meta["edge_distill.labels"])[0] == "T-shirt/top"
    assert json.loads(meta["edge_distill.normalization"]) == {"scale": 0.00392156862745098}
    assert json.loads(meta["edge_distill.passed"]) is True
    checks = json.loads(meta["edge_distill.checks"])
    assert any(c["name"] == "coreml-int8/slice[high_risk]/min_accuracy" and c["passed"] for c in checks)


@pytest.mark.skipif(native_coreml_available(), reason="on macOS Core ML measures latency for real")
def test_latency_budget_off_macos_exits_3(tmp_path):
    config = tmp_path / "coreml.toml"
    text = (EXAMPLE / "coreml.toml").read_text().replace("[budgets]\n", "[budgets]\nlatency_p95_ms = 100\n")
    text = text.replace('precisions = ["fp16", "int8", "int4", "palettize4", "w8a8"]', 'precisions = ["fp16"]')
    for name in ("fmnist_models.py", "student.safetensors", "teacher.safetensors", "calibration.npz", "eval.npz"):
        (tmp_path / name).symlink_to(EXAMPLE / name)
    config.write_text(text)
    proc = run_cli("check", config, "--out", tmp_path / "out")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Core ML runs only on macOS" in proc.stdout
    assert 'type="cannot-measure"' in (tmp_path / "out" / "junit.xml").read_text()


@pytest.mark.skipif(not native_coreml_available(), reason="Core ML predictions need macOS with coremltools' "
                                                          "native bridge; this host runs the reference evaluator")
def test_macos_runner_predicts_and_times(coreml_run):
    _, out, report = coreml_run
    assert all(r["latency"]["provenance"]["runtime"] == "Core ML" for r in report["results"])


SPEC = [InputSpec("x", ("batch", 1, 8, 8))]
CAL = Dataset("cal", {"x": np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)})


def build(tmp_path, module, precision="fp16", **options):
    """The artifact in `tmp_path`; scratch in a folder of its own, as the pipeline keeps it."""
    source = SourceModel("m", "torch", SPEC, "0" * 64, module=module.eval())
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return get_target("coreml").build(BuildRequest(None, source, precision, CAL, "minmax", options, tmp_path, work))


def test_untraceable_model_is_a_clear_error(tmp_path):
    class Branchy(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(BadInput, match="torch.export cannot trace m"):
        build(tmp_path, Branchy())
    assert not list(tmp_path.glob("*.mlpackage"))


def test_an_op_coremltools_cannot_convert_names_the_model_the_reason_and_the_line_that_drops_the_target(tmp_path):
    class PerFeaturePrelu(torch.nn.Module):  # MTCNN's RNet and ONet (facenet-pytorch): PReLU after a Linear
        def __init__(self):
            super().__init__()
            self.fc, self.act = torch.nn.Linear(64, 8), torch.nn.PReLU(8)
            with torch.no_grad():
                self.act.weight.copy_(torch.linspace(0.1, 0.8, 8))  # one slope per feature

        def forward(self, x):
            return self.act(self.fc(x.flatten(1)))

    with pytest.raises(BadInput) as info:
        build(tmp_path, PerFeaturePrelu())
    assert str(info.value) == ("coremltools cannot convert m: prelu op: rank 3 or rank 5 input is only supported when "
                               "all the values of alpha are same,which is not the case here\n  hint: remove \"coreml\" "
                               "from this model's [[targets]] in edge-distill.toml, or change the op in the model; the "
                               "other targets do not depend on it")
    assert not list(tmp_path.glob("*.mlpackage"))


def test_op_the_reference_evaluator_does_not_know(tmp_path):
    class Upsample(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.nn.functional.interpolate(self.conv(x), scale_factor=2.0, mode="bilinear")

    artifact = build(tmp_path, Upsample())
    if native_coreml_available():
        pytest.skip("on macOS Core ML itself runs the model")
    runner = get_target("coreml").open_runner(artifact.path, 1)  # opens: size and coverage still count
    with pytest.raises(CannotMeasure, match="no kernel for op.*upsample_bilinear"):
        runner.run({"x": CAL.inputs["x"]})


def test_int4_that_compresses_nothing_says_why(tmp_path):
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 40), torch.nn.ReLU(), torch.nn.Linear(40, 4))
    with pytest.raises(BadInput, match="(?s)compressed no weight.*int4_block_size"):
        build(tmp_path, linear, "int4", weight_threshold=16, int4_block_size=128)
    assert not list(tmp_path.glob("*.mlpackage"))


def test_reference_evaluator_matches_torch_on_a_conv_net(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    net[1].running_mean.normal_()
    net.eval()
    artifact = build(tmp_path, net)
    runner = get_target("coreml").open_runner(artifact.path, 1)
    x = CAL.inputs["x"]
    out = runner.run({"x": x})[0]
    reference = net(torch.from_numpy(x)).detach().numpy()
    assert np.abs(out - reference).max() < 0.02 * np.abs(reference).max() + 1e-2  # fp16 compute


def test_coreml_is_listed_with_capabilities():
    proc = run_cli("targets", "--json")
    caps = json.loads(proc.stdout)["coreml"]
    assert caps["precisions"] == ["fp16", "int8", "int4", "palettize4", "w8a8"] and caps["suffixes"] == [".mlpackage"]
    code = ("import sys; from edge_distill.targets import available; available()\n"
            "heavy = {'coremltools', 'litert_torch', 'onnxruntime', 'torch'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)  # capabilities are data: no SDK imported


def test_token_ids_and_a_mask_go_in_as_int32_and_match_torch_on_padded_samples(tmp_path):
    model = zoo.trained("masked-encoder", steps=60)
    inputs, _ = zoo.ZOO["masked-encoder"].data(np.random.default_rng(3), 24)
    assert (inputs["attention_mask"] == 0).any()  # padded samples, or the mask is never exercised
    specs = [InputSpec("input_ids", ("batch", 12), "int64"), InputSpec("attention_mask", ("batch", 12), "int64")]
    source = SourceModel("encoder", "torch", specs, "0" * 64, module=model)
    artifact = get_target("coreml").build(BuildRequest(None, source, "fp16", Dataset("cal", inputs), "minmax", {},
                                                       tmp_path, tmp_path))
    runner = get_target("coreml").open_runner(artifact.path, 1)
    assert [s.dtype for s in runner.input_specs()] == ["int32", "int32"]
    out = runner.run({k: v.astype(np.int32) for k, v in inputs.items()})[0]
    reference = model(*[torch.from_numpy(v) for v in inputs.values()]).detach().numpy()
    assert (out.argmax(1) == reference.argmax(1)).mean() >= 0.95
    assert np.abs(out - reference).max() < 0.05 * np.abs(reference).max()  # fp16 compute


def test_a_pt2_bounded_batch_is_the_packages_bound(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    program = torch.export.export(net.eval(), (torch.from_numpy(CAL.inputs["x"][:2]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    source = SourceModel("m.pt2", "exported", SPEC, "0" * 64, module=program.module(), exported=program)
    artifact = get_target("coreml").build(BuildRequest(None, source, "fp16", CAL, "minmax", {}, tmp_path, tmp_path))
    import coremltools as ct

    batch = ct.utils.load_spec(str(artifact.path)).description.input[0].type.multiArrayType.shapeRange.sizeRanges[0]
    assert (batch.lowerBound, batch.upperBound) == (1, 1024)
    out = get_target("coreml").open_runner(artifact.path, 1).run({"x": CAL.inputs["x"]})[0]
    assert np.abs(out - net(torch.from_numpy(CAL.inputs["x"])).detach().numpy()).max() < 2e-2


def test_a_recurrent_model_converts_and_the_reference_evaluator_runs_its_lstm(tmp_path):
    """coremltools' torch.export frontend has no LSTM; its TorchScript frontend does, and the
    reference evaluator has an lstm kernel: parity with torch, within fp16 compute."""
    model = zoo.trained("lstm", steps=60)
    source = SourceModel("lstm", "torch", [InputSpec("frames", ("batch", 20, 8))], "0" * 64, module=model)
    frames, _ = zoo.ZOO["lstm"].data(np.random.default_rng(4), 16)
    artifact = get_target("coreml").build(BuildRequest(None, source, "fp16", Dataset("cal", frames), "minmax", {},
                                                       tmp_path, tmp_path))
    assert "lstm" in artifact.details["ops"]
    out = get_target("coreml").open_runner(artifact.path, 1).run(frames)[0]
    reference = model(torch.from_numpy(frames["frames"])).detach().numpy()
    assert np.abs(out - reference).max() < 0.02 * np.abs(reference).max() + 1e-2
    assert (out.argmax(1) == reference.argmax(1)).all()


def test_an_op_without_kernel_leaves_accuracy_unmeasured_in_check(tmp_path):
    """A GRU converts to a while_loop the reference evaluator cannot run: the package is built and
    sized, its accuracy unmeasured with the reason, never an internal error."""
    if native_coreml_available():
        pytest.skip("on macOS Core ML itself runs the model")
    (cell,) = zoo.run("gru", "factory", {"coreml": ["fp16"]}, tmp_path)
    assert (cell.code, cell.text) == (0, "pass: fp16 n/a")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "no kernel for op(s) while_loop" in report["results"][0]["evaluation"]["error"]


def test_a_pt2_recurrent_model_is_converted_at_batch_1_where_its_states_are_baked_in(tmp_path):
    """A .pt2's LSTM holds its zero initial states at the batch it was exported with; traced for
    coremltools' TorchScript frontend, the package takes batch 1 and the runner feeds it sample by sample."""
    model = zoo.trained("lstm", steps=60)
    frames, _ = zoo.ZOO["lstm"].data(np.random.default_rng(5), 12)
    program = torch.export.export(model, (torch.from_numpy(frames["frames"][:2]),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    source = SourceModel("lstm.pt2", "exported", [InputSpec("frames", ("batch", 20, 8))], "0" * 64,
                         module=program.module(), exported=program)
    artifact = get_target("coreml").build(BuildRequest(None, source, "fp16", Dataset("cal", frames), "minmax", {},
                                                       tmp_path, tmp_path))
    assert artifact.details["io"]["inputs"] == [{"name": "frames", "shape": [1, 20, 8]}]
    out = get_target("coreml").open_runner(artifact.path, 1).run(frames)[0]
    reference = model(torch.from_numpy(frames["frames"])).detach().numpy()
    assert out.shape == reference.shape and np.abs(out - reference).max() < 0.02 * np.abs(reference).max() + 1e-2


def test_reference_evaluator_computes_silu_as_torch_does(tmp_path):
    """SiLU (MobileViT, EfficientNet): MIL's `silu`, which the evaluator had no kernel for."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Flatten(),
                              torch.nn.Linear(256, 3), torch.nn.SiLU())
    net.eval()
    artifact = build(tmp_path, net)
    assert get_target("coreml").inspect(artifact.path)["ops"].get("silu") == 2
    runner = get_target("coreml").open_runner(artifact.path, 1)
    x = CAL.inputs["x"]
    out = runner.run({"x": x})[0]
    with torch.no_grad():
        pre = net[:4](torch.from_numpy(x)).numpy().astype(np.float64)
    reference = pre / (1 + np.exp(-pre))  # x * sigmoid(x), worked out apart from torch's SiLU
    assert np.abs(reference).max() > 0.1 and (pre < 0).any()  # negative inputs reach the last SiLU
    assert np.abs(out - reference).max() < 0.02 * np.abs(reference).max() + 1e-2  # fp16 compute


def test_reference_evaluator_computes_an_l2_normalisation_as_numpy_does(tmp_path):
    """F.normalize (sentence embeddings: WordLlama): MIL's `reduce_l2_norm`, which the evaluator had no kernel for."""
    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 16)

        def forward(self, x):
            return torch.nn.functional.normalize(self.fc(x.flatten(1)), dim=-1)

    net = Normalised().eval()
    artifact = build(tmp_path, net)
    assert get_target("coreml").inspect(artifact.path)["ops"].get("reduce_l2_norm") == 1
    x = CAL.inputs["x"]
    out = get_target("coreml").open_runner(artifact.path, 1).run({"x": x})[0]
    with torch.no_grad():
        pre = net.fc(torch.from_numpy(x).flatten(1)).numpy().astype(np.float64)
    reference = pre / np.sqrt((pre ** 2).sum(-1, keepdims=True))  # worked out apart from torch's normalize
    assert np.abs(reference).max() > 0.1
    assert np.abs(out - reference).max() < 0.01  # fp16 compute of unit vectors
