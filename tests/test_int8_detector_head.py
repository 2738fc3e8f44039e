"""Static int8 on a YOLOv8-style head: box pixels (0..320) and class scores (0..1) concatenated into one
output. One activation scale over that Concat would round every score to 0 or to a whole pixel step;
the ORT target leaves a Concat that writes a graph output in float, so each branch keeps its own scale.
The figures are worked out here with onnxruntime on the files the target wrote."""

import numpy as np
import onnx

from edge_distill.calibration import InputSpec, load_dataset
from edge_distill.exporting import export_to_onnx
from edge_distill.models import SourceModel
from edge_distill.targets import BuildRequest, get_target


def head():
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.box, self.cls = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            boxes = torch.relu(self.box(x)).flatten(2) * 250.0  # pixels, 0..~320
            return torch.cat([boxes, torch.sigmoid(self.cls(x)).flatten(2)], 1)

    torch.manual_seed(0)
    net = Head().eval()
    with torch.no_grad():
        net.cls.weight.mul_(4.0)  # scores spread over 0..1, not all near 0.5
    return net


def test_static_int8_keeps_a_detectors_class_scores(tmp_path):
    import onnxruntime as ort

    spec = InputSpec("images", ("batch", 3, 8, 8))
    source = SourceModel("head", "torch", [spec], "0" * 64, module=head())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cal.npz", images=rng.normal(size=(32, 3, 8, 8)).astype(np.float32))
    x = rng.normal(size=(16, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", images=x)
    export_to_onnx(source, tmp_path / "model.onnx", samples=load_dataset(tmp_path / "eval.npz", [spec]))
    (tmp_path / "out").mkdir()
    artifact = get_target("ort").build(BuildRequest(
        onnx_path=tmp_path / "model.onnx", source=source, precision="int8",
        calibration=load_dataset(tmp_path / "cal.npz", [spec]), calibration_method="minmax", options={},
        out_dir=tmp_path / "out", work_dir=tmp_path))
    quantized = artifact.path.with_suffix(".onnx")
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(  # noqa: E731
        None, {"images": x})[0]
    ref, out = run(tmp_path / "model.onnx"), run(quantized)
    assert ref[:, 4:].std() > 0.2 and ref[:, :4].max() > 200  # scores spread out; boxes hundreds of pixels
    # a uint8 step over 0..1 is 0.004 (plus the input's and the convolution's rounding, 0.021 measured);
    # one scale over 0..320 is a step of 1.3: every score would read 0 or 1.3
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() < 0.05
    assert np.abs(out[:, :4] - ref[:, :4]).max() < 0.02 * ref[:, :4].max()
    graph = onnx.load(str(quantized)).graph
    writer = next(n for n in graph.node if graph.output[0].name in n.output)
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert writer.op_type == "Concat" and [producers[i] for i in writer.input] == ["DequantizeLinear"] * 2
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)  # the branches themselves are int8
