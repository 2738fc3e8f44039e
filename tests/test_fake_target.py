"""Adding a target is one module and one entry point, no edit under toolkit/: a small third-party
target, installed only through the `edge_distill.targets` entry-point group (a dist-info folder on
PYTHONPATH, as pip would leave it), runs `check`, `verify`, `bench` and `targets` end to end.

The plugin is a real target: its artifacts are ONNX graphs in a `.fake` file, its int8 is
onnxruntime's dynamic quantization, and its runner is onnxruntime. Nothing in it is mocked; it
stands for "a fourth target someone else wrote"."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import edit_config, run_cli

PLUGIN = '''
"""A third-party target: ONNX graphs shipped as .fake files."""
import shutil
from pathlib import Path

from edge_distill.targets import Artifact, Capabilities, Option, Precision

capabilities = Capabilities(
    name="fake", description="a third-party target (ONNX graphs in .fake files, run by onnxruntime)",
    precisions=(Precision("fp32", 32, 32, "fp32", help="the export as it is"),
                Precision("int8", 8, 32, "int8", help="onnxruntime dynamic int8 weights")),
    calibration_methods=("minmax",), extra="fake", requires=("onnxruntime",), suffixes=(".fake",),
    runtime=("onnxruntime",),
    options=(Option("threads_hint", int, 1, "a typed option, to show validation reaches plugins", minimum=1),))


class FakeTarget:
    capabilities = capabilities

    def build(self, request):
        out = request.out_dir / f"model.{request.precision}.fake"
        if request.precision == "fp32":
            shutil.copyfile(request.onnx_path, out)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(request.onnx_path), str(out), weight_type=QuantType.QInt8)
        return Artifact(target="fake", precision=request.precision, path=out, files=[out],
                        details={"quantization": request.precision})

    def open_runner(self, path, threads, options=None):
        return FakeRunner(Path(path), threads)

    def inspect(self, path):
        return {"file": str(path), "size_bytes": Path(path).stat().st_size}


class FakeRunner:
    measures_latency, why_no_latency = True, None

    def __init__(self, path, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.threads, self.version = threads, ort.__version__

    def run(self, feeds):
        return self.session.run(None, feeds)

    def input_specs(self):
        from edge_distill.calibration import InputSpec

        return [InputSpec(i.name, tuple(d if isinstance(d, int) else "batch" for d in i.shape), "float32")
                for i in self.session.get_inputs()]

    def describe(self):
        return {"runtime": "onnxruntime (fake target)", "runtime_version": self.version, "threads": self.threads}
'''


def _install_plugin(folder: Path) -> dict:
    (folder / "fake_target.py").write_text(PLUGIN)
    info = folder / "fake_target-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-target\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[edge_distill.targets]\nfake = fake_target:FakeTarget\n")
    return {"PYTHONPATH": str(folder)}


@pytest.mark.slow
def test_a_fourth_target_through_its_entry_point(example, tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    env = _install_plugin(plugin)
    listed = json.loads(run_cli("targets", "--json", env=env).stdout)
    assert listed["fake"]["precisions"] == ["fp32", "int8"] and listed["fake"]["suffixes"] == [".fake"]

    config = edit_config(example, targets=("ort",), budgets=textwrap.dedent("""\
        [budgets]
        min_accuracy = 0.85
        min_float_agreement = 0.95
        latency_p95_ms = 100
        """))
    config.write_text(config.read_text().replace('name = "ort"', 'name = "fake"').replace(
        '["fp32", "int8", "int4"]', '["int8", "fp32"]'))
    proc = run_cli("check", config, "--out", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    results = {r["precision"]: r for r in report["results"]}
    assert [r["target"] for r in report["results"]] == ["fake", "fake"]
    assert list(results) == ["fp32", "int8"]  # the float baseline first, as for a built-in target
    assert results["fp32"]["metrics"]["float_agreement"] == 1.0
    assert results["int8"]["metrics"]["float_agreement"] >= 0.95
    # Worked out apart: both .fake files (ONNX graphs) run by onnxruntime itself on the 2,000 evaluation
    # images, in the tool's batches of 256 (dynamic int8 scales its activations per batch). The fp32
    # graph stands for the float student (its agreement is 1.0 above); one sample of slack for a
    # kernel's rounding flipping a near tie.
    evaluation = np.load(example / "eval.npz")
    predicted = {}
    for p in ("fp32", "int8"):
        session = ort.InferenceSession(str(tmp_path / "out" / results[p]["artifact"]),
                                       providers=["CPUExecutionProvider"])
        predicted[p] = np.concatenate([session.run(None, {"image": evaluation["image"][i: i + 256]})[0].argmax(1)
                                       for i in range(0, len(evaluation["image"]), 256)])
    one_sample = 1 / len(evaluation["labels"])
    assert results["int8"]["metrics"]["float_agreement"] == pytest.approx(
        np.mean(predicted["int8"] == predicted["fp32"]), abs=one_sample)
    assert results["int8"]["metrics"]["accuracy"] == pytest.approx(np.mean(predicted["int8"] == evaluation["labels"]),
                                                                   abs=one_sample)
    # the speedup is the fp32 p50 over this one's, rounded to 3 decimals
    assert results["int8"]["speedup_vs_float"] == pytest.approx(
        results["fp32"]["latency"]["p50_ms"] / results["int8"]["latency"]["p50_ms"], abs=5e-4)
    assert results["int8"]["size_bytes"] < results["fp32"]["size_bytes"] / 2  # int8 weights: real quantization
    assert results["int8"]["latency"]["provenance"]["runtime"] == "onnxruntime (fake target)"

    # verify and bench find the target from the file's suffix
    artifact = tmp_path / "out" / results["int8"]["artifact"]
    verified = run_cli("verify", artifact, "--data", example / "eval.npz", "--runs", "20",
                       "--out", tmp_path / "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads((tmp_path / "verify" / "report.json").read_text())["results"][0]["precision"] == "int8"
    bench = run_cli("bench", artifact, "--runs", "20", "--json", env=env)
    assert bench.returncode == 0 and json.loads(bench.stdout)["target"] == "fake"

    # its typed option is validated like a built-in one, naming the config
    config.write_text(config.read_text().replace('name = "fake"', 'name = "fake"\noptions = { threads_hint = 0 }'))
    bad = run_cli("check", config, "--out", tmp_path / "bad", env=env)
    assert bad.returncode == 2 and "threads_hint must be >= 1" in bad.stderr and str(config) in bad.stderr
