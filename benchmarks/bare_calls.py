"""The work `edge-distill check` does on the example, as bare library calls with no tool around
them: the baseline of benchmarks/run.py. Usage: python bare_calls.py OUTDIR"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
from safetensors.torch import load_file

from edge_distill.targets.ort import gemm_to_matmul, mobile_usability

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion-mnist"
sys.path.insert(0, str(EXAMPLE))
import fmnist_models  # noqa: E402

out = Path(sys.argv[1])
os.chdir(out)
student, teacher = fmnist_models.student(), fmnist_models.teacher()
student.load_state_dict(load_file(EXAMPLE / "student.safetensors"))
teacher.load_state_dict(load_file(EXAMPLE / "teacher.safetensors"))
student.eval(), teacher.eval()
ev = np.load(EXAMPLE / "eval.npz")
x = ev["image"]
calib = np.load(EXAMPLE / "calibration.npz")["image"][:256]
torch.onnx.export(student, (torch.from_numpy(x[:2]),), "model.onnx", input_names=["image"], output_names=["output"],
                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), opset_version=18, external_data=False)
onnx.checker.check_model("model.onnx", full_check=True)
with torch.no_grad():
    float_out = student(torch.from_numpy(x)).numpy()
    teacher_out = teacher(torch.from_numpy(x)).numpy()


class Reader:
    def __init__(self):
        self.it = iter({"image": calib[i: i + 1]} for i in range(len(calib)))

    def get_next(self):
        return next(self.it, None)


quant_pre_process("model.onnx", "pre.onnx")
quantize_static("pre.onnx", "model.int8.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
m = onnx.load("model.onnx")
gemm_to_matmul(m)
cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",))
q = MatMulNBitsQuantizer(m, bits=4, block_size=32, is_symmetric=True, accuracy_level=4, op_types_to_quantize=("MatMul",),
                         algo_config=cfg)
q.process()
q.model.save_model_to_file("model.int4.onnx", use_external_data_format=False)
for name in ("model.onnx", "model.int8.onnx", "model.int4.onnx"):
    convert_onnx_models_to_ort(Path(name), output_dir=out, optimization_styles=[OptimizationStyle.Fixed],
                               enable_type_reduction=True)
    mobile_usability(Path(name))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(name.replace(".onnx", ".ort"), so)
    preds = np.concatenate([s.run(None, {"image": x[i: i + 256]})[0] for i in range(0, len(x), 256)])
    _ = (preds.argmax(1) == ev["labels"]).mean(), (preds.argmax(1) == float_out.argmax(1)).mean()
    for i in range(350):  # the example's 50 warm-up + 300 timed runs
        t = time.perf_counter_ns()
        s.run(None, {"image": x[i % 32: i % 32 + 1]})
