"""The MiniLM example's performance questions, as ratios measured side by side in one run.

    python examples/minilm-embeddings/distill.py    # once: the student and the data
    python benchmarks/minilm.py                     # writes benchmarks/results/minilm.json

1. The ladder's question: the distilled student in ORT int8 (dynamic) against the teacher in fp32,
   at 128 tokens, batch 1, one thread: speedup (p50 and p95) and size ratio.
2. Our ORT int8 and int4 artifacts against optimum's own ORT quantization presets
   (AutoQuantizationConfig.arm64 and .avx512_vnni, dynamic) on the same student: latency ratio to the
   student's fp32, and cosine similarity to the student's fp32 embeddings on the 457 evaluation
   texts, side by side. optimum-onnx pins transformers < 4.58, which litert-torch's
   transformers 5 excludes, so it is not a dependency: install it in a separate environment
   (pip install torch==2.13.0 -e '.[ort,examples]' optimum-onnx); without it, part 2 says so.

Timings interleave the models round by round (the machine is shared and noisy) and take medians.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LENGTH = 128


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(path: Path, data) -> np.ndarray:
    s = session(path)
    return np.concatenate([s.run(None, b)[0] for b in data.batches(64)])


def interleaved_latency(paths: dict[str, Path], feeds: list[dict], rounds: int = 8, runs: int = 25) -> dict:
    import time

    sessions = {name: session(p) for name, p in paths.items()}
    for s in sessions.values():
        for f in feeds[:3]:
            s.run(None, f)
    times = {name: [] for name in paths}
    for _ in range(rounds):
        for name, s in sessions.items():
            for i in range(runs):
                start = time.perf_counter_ns()
                s.run(None, feeds[i % len(feeds)])
                times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: {"p50_ms": round(float(np.percentile(t, 50)), 3), "p95_ms": round(float(np.percentile(t, 95)), 3)}
            for name, t in times.items()}


def optimum_presets(onnx_path: Path, out: Path) -> dict[str, Path]:
    try:
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError:
        return {}
    made = {}
    for preset in ("arm64", "avx512_vnni"):
        config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False)
        quantizer = ORTQuantizer.from_pretrained(onnx_path.parent, file_name=onnx_path.name)
        folder = out / f"optimum-{preset}"
        quantizer.quantize(save_dir=folder, quantization_config=config)
        made[f"optimum {preset}"] = next(folder.glob("*.onnx"))
    return made


def main() -> None:
    from edge_distill.calibration import load_dataset
    from edge_distill.exporting import export_to_onnx
    from edge_distill.devices.host import at_length
    from edge_distill.models import load_model
    from edge_distill.places import cache_home
    from edge_distill.targets import BuildRequest, get_target

    cache = cache_home() / "minilm-embeddings"
    if not (cache / "provenance.json").is_file():
        sys.exit(f"no distilled student in {cache}: run python examples/minilm-embeddings/distill.py first")
    student = load_model(str(cache / "student"))
    teacher = load_model(str(cache / "teacher"))
    data = load_dataset(cache / "eval.npz", student.inputs)
    calibration = load_dataset(cache / "calibration.npz", student.inputs)
    with tempfile.TemporaryDirectory(prefix="edge-distill-bench-") as tmp:
        tmp = Path(tmp)
        paths = {}
        for name, model in (("teacher fp32", teacher), ("student fp32", student)):
            folder = tmp / name.split()[0]
            folder.mkdir()
            export_to_onnx(model, folder / "model.onnx", opset=18, samples=data, tolerance=1e-4)
            paths[name] = folder / "model.onnx"
        ort = get_target("ort")
        for precision, options in (("int8-dynamic", {}), ("int4", {"int4_gather": True})):
            out, work = tmp / precision, tmp / f"work-{precision}"
            out.mkdir()
            work.mkdir()
            artifact = ort.build(BuildRequest(onnx_path=paths["student fp32"], source=student, precision=precision,
                                              calibration=calibration, calibration_method="minmax", options=options,
                                              out_dir=out, work_dir=work))
            paths[f"student {precision} (ours)"] = out / f"model.{precision}.onnx"
            del artifact
        presets = optimum_presets(paths["student fp32"], tmp)
        paths.update({f"student int8 ({k})": v for k, v in presets.items()})

        reference = embed(paths["student fp32"], data)
        feeds = [{k: v for k, v in d.inputs.items()} for d in
                 [at_length(data.subset(np.arange(i, i + 1)), LENGTH, 1) for i in range(16)]]
        latency = interleaved_latency(paths, feeds)
        rows = {}
        for name, path in paths.items():
            emb = embed(path, data)
            unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
            rows[name] = {**latency[name], "size_mb": round(os.path.getsize(path) / 1e6, 2),
                          "cosine_to_student_fp32": round(float((unit(emb) * unit(reference)).sum(1).mean()), 4)}
    teacher_row, int8 = rows["teacher fp32"], rows["student int8-dynamic (ours)"]
    summary = {
        "length_tokens": LENGTH, "threads": 1, "batch": 1, "models": rows,
        "student_int8_vs_teacher_fp32": {
            "speedup_p50": round(teacher_row["p50_ms"] / int8["p50_ms"], 2),
            "speedup_p95": round(teacher_row["p95_ms"] / int8["p95_ms"], 2),
            "size_ratio": round(int8["size_mb"] / teacher_row["size_mb"], 3)},
        "optimum": "compared" if presets else "not installed (optimum-onnx pins transformers<4.58): part 2 skipped",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "minilm.json").write_text(json.dumps(summary, indent=2) + "\n")
    base = rows["student fp32"]["p50_ms"]
    print(f"{'model':34} {'MB':>7} {'p50 ms':>8} {'p95 ms':>8} {'vs fp32':>8} {'cos fp32':>9}")
    for name, r in rows.items():
        print(f"{name:34} {r['size_mb']:7.2f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {base / r['p50_ms']:7.2f}x "
              f"{r['cosine_to_student_fp32']:9.4f}")
    s = summary["student_int8_vs_teacher_fp32"]
    print(f"\nstudent int8 vs teacher fp32 at {LENGTH} tokens: {s['speedup_p50']}x faster (p50), "
          f"{s['speedup_p95']}x (p95), {s['size_ratio']}x the size. optimum: {summary['optimum']}")


if __name__ == "__main__":
    main()
