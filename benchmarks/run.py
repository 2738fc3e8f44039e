"""Speed and size goals, reported as ratios against a baseline measured in the same run.

    python benchmarks/run.py            # writes benchmarks/results/latest.json and prints a table

1. `edge-distill --help` wall time (goal < 0.5 s), against `python -c pass`.
2. `check` on the example (ORT fp32 + int8 + int4) against the bare calls it makes: the same
   export, quantizers, .ort conversion, evaluation runs and latency loops, called directly
   (goal: at most 1.3x).
3. int8 and int4 against fp32 (ORT): size ratio, and latency ratio from interleaved batch-1 runs.
4. TFLite in the LiteRT interpreter, on the example and on a small transformer student
   (2-layer encoder, d=128, seq 32, random weights): int8 and int4 against fp32 (size, latency),
   and our int8 recipe (litert-torch PT2E) against ai-edge-quantizer's static_wi8_ai8
   (top-1 agreement with fp32, latency).

The machine is shared and noisy: every timing is a median over repeats, and each ratio compares
two figures taken side by side.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fashion-mnist"
RESULTS = ROOT / "benchmarks" / "results"


def wall(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_help() -> dict:
    python = wall([sys.executable, "-c", "pass"])
    help_s = wall([sys.executable, "-m", "edge_distill", "--help"])
    return {"help_s": round(help_s, 3), "python_startup_s": round(python, 3), "ratio": round(help_s / python, 2),
            "goal": "help_s < 0.5"}


def ort_only_config(folder: Path) -> Path:
    """A copy of the example whose config keeps only the ORT target (the bare calls are ORT's)."""
    import shutil

    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = folder / "edge-distill.toml"
    head, *blocks = config.read_text().split("[[targets]]")
    tail = blocks[-1][blocks[-1].index("[budgets]"):]
    blocks[-1] = blocks[-1][: blocks[-1].index("[budgets]")]
    config.write_text(head + "".join("[[targets]]" + b for b in blocks if 'name = "ort"' in b) + tail)
    return config


def bench_check_overhead(repeats: int = 3) -> dict:
    check_times, bare_times = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            config = ort_only_config(Path(tmp) / "example")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edge_distill", "check", str(config),
                            "--out", f"{tmp}/out", "-q"], check=True, capture_output=True)
            check_times.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).with_name("bare_calls.py")), tmp], check=True,
                           capture_output=True)
            bare_times.append(time.perf_counter() - start)
    check_s, bare_s = statistics.median(check_times), statistics.median(bare_times)
    return {"check_s": round(check_s, 2), "bare_calls_s": round(bare_s, 2), "ratio": round(check_s / bare_s, 3),
            "goal": "ratio <= 1.3"}


def bench_quantized_vs_fp32(runs: int = 3000) -> dict:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "edge_distill", "check", str(ort_only_config(Path(tmp) / "example")),
                        "--out", f"{tmp}/out", "-q"], capture_output=True)
        folder = Path(tmp) / "out" / "ort"
        x = np.load(EXAMPLE / "eval.npz")["image"][:64]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sessions = {p: ort.InferenceSession(str(folder / f"model.{p}.ort"), options) for p in ("fp32", "int8", "int4")}
        sizes = {p: (folder / f"model.{p}.ort").stat().st_size for p in sessions}
        times = {p: [] for p in sessions}
        for i in range(runs):  # interleaved, so machine noise hits every variant alike
            for p, s in sessions.items():
                feeds = {"image": x[i % 64: i % 64 + 1]}
                start = time.perf_counter_ns()
                s.run(None, feeds)
                times[p].append((time.perf_counter_ns() - start) / 1e6)
    p50 = {p: float(np.median(t)) for p, t in times.items()}
    return {p: {"size_bytes": sizes[p], "size_ratio": round(sizes[p] / sizes["fp32"], 3),
                "p50_ms": round(p50[p], 4), "latency_ratio": round(p50[p] / p50["fp32"], 3)} for p in sessions}


class TinyTransformer:
    """A small transformer student: token embeddings in, 10 logits out."""

    @staticmethod
    def build():
        import torch

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                layer = torch.nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True)
                self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
                self.head = torch.nn.Linear(128, 10)

            def forward(self, x):
                return self.head(self.encoder(x).mean(dim=1))

        torch.manual_seed(0)
        return Model().eval()


def _interleaved_p50(runners: dict, feeds: list[dict], runs: int) -> dict:
    times = {k: [] for k in runners}
    for i in range(runs):
        for name, runner in runners.items():
            start = time.perf_counter_ns()
            runner.run(feeds[i % len(feeds)])
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench_tflite(runs: int = 1000) -> dict:
    from edge_distill.calibration import Dataset, InputSpec, load_dataset
    from edge_distill.config import load_config
    from edge_distill.models import SourceModel, load_model
    from edge_distill.targets import BuildRequest, get_target

    target = get_target("tflite")
    cfg = load_config(EXAMPLE / "edge-distill.toml")
    cnn = load_model("fmnist_models:student", str(EXAMPLE / "student.safetensors"), cfg.model.inputs,
                     search_path=EXAMPLE)
    images = load_dataset(EXAMPLE / "eval.npz", cnn.inputs)
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(600, 32, 128)).astype(np.float32)
    tx_spec = [InputSpec("x", ("batch", 32, 128))]
    tx = SourceModel("tiny-transformer", "torch", tx_spec, "0" * 64, module=TinyTransformer.build())
    cases = {"fashion-mnist student (CNN)": (cnn, images.subset(np.arange(512)),
                                             load_dataset(EXAMPLE / "calibration.npz", cnn.inputs).subset(np.arange(256))),
             "small transformer student": (tx, Dataset("random", {"x": tokens[:512]}),
                                           Dataset("random", {"x": tokens[512:]}))}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, evaluation, calibration) in cases.items():
            artifacts = {}
            for label, precision, options in (("fp32", "fp32", {}), ("int8 (pt2e)", "int8", {}),
                                              ("int8 (aeq static)", "int8", {"int8_recipe": "aeq"}),
                                              ("int4", "int4", {})):
                folder = Path(tmp) / f"{name[:5]}-{label[:10]}".replace(" ", "_")
                folder.mkdir()
                artifacts[label] = target.build(BuildRequest(None, model, precision, calibration, "minmax", options,
                                                             folder, folder))
            runners = {k: target.open_runner(a.path, 1) for k, a in artifacts.items()}
            key = model.inputs[0].name
            reference = runners["fp32"].run({key: evaluation.inputs[key]})[0].argmax(1)
            feeds = [{key: evaluation.inputs[key][i: i + 1]} for i in range(32)]
            p50 = _interleaved_p50(runners, feeds, runs)
            out[name] = {k: {"size_bytes": a.size_bytes,
                             "size_ratio": round(a.size_bytes / artifacts["fp32"].size_bytes, 3),
                             "p50_ms": round(p50[k], 4), "latency_ratio": round(p50[k] / p50["fp32"], 3),
                             "top1_agreement_with_fp32": round(float(
                                 (runners[k].run({key: evaluation.inputs[key]})[0].argmax(1) == reference).mean()), 4)}
                         for k, a in artifacts.items()}
    return out


def main() -> None:
    results = {"help": bench_help(), "check_overhead": bench_check_overhead(),
               "quantized_vs_fp32": bench_quantized_vs_fp32(), "tflite": bench_tflite()}
    from edge_distill.provenance import host_environment

    results["environment"] = host_environment()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    h, c = results["help"], results["check_overhead"]
    print(f"--help: {h['help_s']} s (python startup {h['python_startup_s']} s, ratio {h['ratio']}x); goal < 0.5 s")
    print(f"check: {c['check_s']} s vs bare calls {c['bare_calls_s']} s: ratio {c['ratio']}x; goal <= 1.3x")
    for p, r in results["quantized_vs_fp32"].items():
        print(f"ort {p}: size {r['size_bytes']} B (x{r['size_ratio']} of fp32), p50 {r['p50_ms']} ms "
              f"(x{r['latency_ratio']} of fp32)")
    for model, rows in results["tflite"].items():
        for label, r in rows.items():
            print(f"tflite {model} {label}: size x{r['size_ratio']}, p50 {r['p50_ms']} ms (x{r['latency_ratio']}), "
                  f"top-1 agreement with fp32 {r['top1_agreement_with_fp32']}")


if __name__ == "__main__":
    main()
