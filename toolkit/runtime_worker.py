"""Runs an artifact in another Python: the emulated aarch64 one (devices/emulated.py), or this one with
an exact runtime version an app ships on its path (runtimes.py). Numpy and the runtime only:
edge_distill is not importable there.

Usage: python runtime_worker.py REQUEST.json
REQUEST: {"runtime": "ort" | "litert", "model": path, "inputs": in.npz, "output": out.npz,
          "batch": samples per call, "threads": n, "outputs": [LiteRT output tensor indices],
          "samples": how many leading outputs are real (the inputs were padded to whole batches)}
The host prepares the inputs exactly as the runtime takes them (layout, integer quantization) and
reads the raw outputs back, so this file holds no conversion logic to drift from the host's.
ORT inputs are keyed by name; LiteRT inputs by tensor index ("t<index>"). Prints one JSON line
(with "error" and exit 1 when the runtime fails).
"""

import json
import os
import platform
import sys
from importlib.metadata import version

import numpy as np


def run_ort(req, feeds):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = req["threads"]
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(req["model"], options, providers=["CPUExecutionProvider"])
    n, step = len(next(iter(feeds.values()))), req["batch"]
    parts = [session.run(None, {k: v[i: i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
    return {f"o{j}": np.concatenate(p) for j, p in enumerate(zip(*parts))}, ("onnxruntime", ort.__version__, "")


def run_litert(req, feeds):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    note = ""
    try:
        interpreter = Interpreter(model_path=req["model"], num_threads=req["threads"])
        interpreter.allocate_tensors()
    except RuntimeError as exc:  # e.g. 1.4.0's XNNPACK cannot prepare blockwise int4
        if "XNNPACK" not in str(exc):
            raise
        interpreter = Interpreter(model_path=req["model"], num_threads=req["threads"],
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        note = (f"XNNPACK of ai-edge-litert {version('ai-edge-litert')} cannot prepare this model "
                f"({' '.join(str(exc).split())[:120]}); LiteRT's builtin kernels ran it")
    n, step = len(next(iter(feeds.values()))), req["batch"]
    parts = []
    for i in range(0, n, step):
        for key, value in feeds.items():
            interpreter.set_tensor(int(key[1:]), value[i: i + step])
        interpreter.invoke()
        parts.append([interpreter.get_tensor(index).copy() for index in req["outputs"]])
    return {f"o{j}": np.concatenate(p) for j, p in enumerate(zip(*parts))}, ("ai-edge-litert",
                                                                                version("ai-edge-litert"), note)


def main(path):
    with open(path) as f:
        req = json.load(f)
    with np.load(req["inputs"]) as data:
        feeds = {k: data[k] for k in data.files}
    outputs, (runtime, runtime_version, note) = {"ort": run_ort, "litert": run_litert}[req["runtime"]](req, feeds)
    outputs = {k: v[: req.get("samples")] for k, v in outputs.items()}  # inputs padded to whole batches
    tmp = req["output"] + ".partial.npz"
    np.savez(tmp, **outputs)
    os.replace(tmp, req["output"])
    print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "runtime": runtime,
                      "runtime_version": runtime_version, "numpy": np.__version__, "note": note}))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as exc:  # one line the host can quote, not a traceback
        print(json.dumps({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}))
        sys.exit(1)
