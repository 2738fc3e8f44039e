"""The ORT target's precisions, built by the real quantizers and run by the real onnxruntime."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import EXAMPLE
from edge_distill.calibration import load_dataset, select_samples
from edge_distill.config import load_config
from edge_distill.errors import BadInput
from edge_distill.exporting import export_to_onnx
from edge_distill.models import load_model
from edge_distill.targets import BuildRequest, get_target

pytestmark = pytest.mark.slow  # every test builds ORT artifacts of an exported model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ort")
    cfg = load_config(EXAMPLE / "edge-distill.toml")
    student = load_model("fmnist_models:student", str(EXAMPLE / "student.safetensors"), cfg.model.inputs,
                         search_path=EXAMPLE)
    data = load_dataset(EXAMPLE / "eval.npz", student.inputs).subset(np.arange(400))
    calib = select_samples(load_dataset(EXAMPLE / "calibration.npz", student.inputs), 128)
    export_to_onnx(student, tmp / "model.onnx", samples=data)
    return tmp, student, data, calib


def build(setup, precision, method="minmax", name=None, **options):
    tmp, student, _, calib = setup
    out = tmp / (name or f"{precision}-{method}")
    out.mkdir()
    work = tmp / f"work-{out.name}"
    work.mkdir()
    return get_target("ort").build(BuildRequest(onnx_path=tmp / "model.onnx", source=student, precision=precision,
                                                calibration=calib, calibration_method=method, options=options,
                                                out_dir=out, work_dir=work))


def activation_scales(path):
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return sorted(float(inits[n.input[1]]) for n in model.graph.node
                  if n.op_type == "QuantizeLinear" and inits[n.input[1]].size == 1)


def agreement(setup, artifact):
    _, student, data, _ = setup
    runner = get_target("ort").open_runner(artifact.path, 1)
    out = runner.run({"image": data.inputs["image"]})[0]
    return (out.argmax(1) == student.predict(data).argmax(1)).mean()


def test_entropy_is_really_entropy_not_minmax(setup):
    minmax, entropy, percentile = (build(setup, "int8", m) for m in ("minmax", "entropy", "percentile"))
    s_minmax, s_entropy, s_pct = map(activation_scales, (minmax.files[1], entropy.files[1], percentile.files[1]))
    assert len(s_minmax) == len(s_entropy) > 0
    # KL-optimal ranges clip outliers: some scales must be strictly smaller than the min-max ones.
    assert any(e < m * 0.99 for e, m in zip(s_entropy, s_minmax))
    assert s_pct != s_minmax
    for artifact in (minmax, entropy, percentile):
        assert agreement(setup, artifact) >= 0.95
    assert entropy.details["calibration"] == {"method": "entropy", "samples": 128,
                                              "source": str(EXAMPLE / "calibration.npz")}


def test_int8_qdq_layout(setup):
    model = onnx.load(str(build(setup, "int8", name="layout").files[1]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q and all(inits[n.input[2]].dtype == np.uint8 for n in q)  # uint8 activations
    conv_w = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
              and inits[n.input[0]].ndim == 4]
    assert conv_w and all(inits[n.input[0]].dtype == np.int8 and inits[n.input[1]].size > 1 for n in conv_w)


def int4_nodes(path):
    """(op type, block_size attribute) of every 4-bit node of a built graph."""
    model = onnx.load(str(path))
    return sorted((n.op_type, next(a.i for a in n.attribute if a.name == "block_size")) for n in model.graph.node
                  if n.op_type in ("MatMulNBits", "GatherBlockQuantized"))


def test_int8_dynamic(setup):
    dynamic = build(setup, "int8-dynamic")
    assert "DynamicQuantizeLinear" in dynamic.details["ops"] and agreement(setup, dynamic) >= 0.97


@pytest.mark.parametrize("block", [16, 32, 64])
def test_int4_block_size_is_the_graphs(setup, block):
    int4 = build(setup, "int4", name=f"int4-b{block}", int4_block_size=block)
    # The student's two Linear layers, packed with the block size asked for (read from the graph).
    assert int4_nodes(int4.path.with_suffix(".onnx")) == [("MatMulNBits", block)] * 2
    assert agreement(setup, int4) >= 0.95


def test_int4_gather_packs_an_embedding_table(tmp_path):
    import torch

    from edge_distill.calibration import Dataset, InputSpec
    from edge_distill.models import SourceModel

    torch.manual_seed(0)

    class Bag(torch.nn.Module):  # token ids -> mean embedding -> logits: a Gather and a MatMul
        def __init__(self):
            super().__init__()
            self.table, self.head = torch.nn.Embedding(256, 64), torch.nn.Linear(64, 8)

        def forward(self, ids):
            return self.head(self.table(ids).mean(1))

    spec = InputSpec("ids", ("batch", 12), "int64")
    source = SourceModel("bag", "torch", [spec], "0" * 64, module=Bag().eval())
    ids = np.random.default_rng(0).integers(0, 256, (64, 12)).astype(np.int64)
    data = Dataset(source="random ids", inputs={"ids": ids})
    export_to_onnx(source, tmp_path / "bag.onnx", samples=data)

    def int4(name, **options):
        (tmp_path / name).mkdir()
        return get_target("ort").build(BuildRequest(onnx_path=tmp_path / "bag.onnx", source=source, precision="int4",
                                                    calibration=None, calibration_method="minmax", options=options,
                                                    out_dir=tmp_path / name, work_dir=tmp_path / name))

    plain, gathered = int4("plain", int4_block_size=32), int4("gather", int4_gather=True, int4_block_size=32)
    assert int4_nodes(plain.path.with_suffix(".onnx")) == [("MatMulNBits", 32)]
    assert int4_nodes(gathered.path.with_suffix(".onnx")) == [("GatherBlockQuantized", 32), ("MatMulNBits", 32)]
    assert gathered.size_bytes < plain.size_bytes * 0.5  # the 256x64 table was most of the model


def test_int8_without_calibration_data_is_an_error(setup):
    tmp, student, _, _ = setup
    (tmp / "nocal").mkdir()
    with pytest.raises(BadInput, match="needs calibration data"):
        get_target("ort").build(BuildRequest(onnx_path=tmp / "model.onnx", source=student, precision="int8",
                                             calibration=None, calibration_method="minmax", options={},
                                             out_dir=tmp / "nocal", work_dir=tmp))


def test_int4_on_a_convolution_only_model_says_why(tmp_path):
    import torch

    from edge_distill.calibration import InputSpec
    from edge_distill.models import SourceModel

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)).eval()
    spec = InputSpec("image", ("batch", 1, 28, 28))
    source = SourceModel("conv", "torch", [spec], "0" * 64, module=net)
    data = load_dataset(EXAMPLE / "eval.npz", [spec]).subset(np.arange(8))
    export_to_onnx(source, tmp_path / "c.onnx", samples=data)
    with pytest.raises(BadInput, match="no MatMul/Gemm"):
        get_target("ort").build(BuildRequest(onnx_path=tmp_path / "c.onnx", source=source, precision="int4",
                                             calibration=None, calibration_method="minmax", options={},
                                             out_dir=tmp_path, work_dir=tmp_path))


def test_quantizers_leave_no_litter_in_the_working_folder(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build(setup, "int8", "entropy", name="litter")
    assert list(tmp_path.iterdir()) == []
