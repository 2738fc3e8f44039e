"""edge-distill's ORT int8 (its default recipe, and int8_recipe = "auto") against onnxruntime's own
`quantize_static` defaults, on the task metric and size, in one run:

    OMP_NUM_THREADS=1 python benchmarks/int8_recipes.py [--out docs/int8-recipes.md] [--entropy]

Models: a FastViT-style hybrid trained here (benchmarks/hybrid.py), and PaddleOCR's direction classifier,
text detector and text recognizer as rapidocr-onnxruntime ships them (opset 11/12, weights in Constant
nodes). Each gets structured data it responds to (text lines drawn with Pillow, gratings for the hybrid).
edge-distill's figures are `check`'s (one run with int8_recipe = "auto": the default is its first
candidate); onnxruntime's own recipe is quantize_static with every default (QDQ, int8 activations,
per-tensor int8 weights, min-max) on the published file as a user would run it, on the same calibration
samples, scored with the same output kind's figures. Sizes are of the .ort files (the same converter).
Entropy calibration is left out unless --entropy (it took 198 s of 271 on the hybrid alone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PADDLE = resources.files("rapidocr_onnxruntime") / "models"
WORDS = ["hello", "world", "edge", "distill", "model", "phone", "budget", "quantize", "latency", "2026", "slice"]
CALIBRATION, EVALUATION = 32, 96


def text_images(rng, n: int, height: int, width: int, size: int) -> np.ndarray:
    """Words drawn on light backgrounds with Pillow's default font, [n, height, width, 3] uint8."""
    from PIL import Image, ImageDraw, ImageFont

    font, out = ImageFont.load_default(size=size), []
    for _ in range(n):
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(180, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(max(1, height // 48)):
            draw.text((int(rng.integers(2, max(3, width // 6))), int(rng.integers(2, max(3, height - size - 4)))),
                      " ".join(rng.choice(WORDS, int(rng.integers(1, 3)))),
                      fill=tuple(int(v) for v in rng.integers(0, 80, 3)), font=font)
        out.append(np.asarray(image))
    return np.stack(out)


def paddle(pixels: np.ndarray, imagenet: bool = False) -> np.ndarray:
    x = pixels.astype(np.float32) / 255
    x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] if imagenet else (x - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


def direction_data(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Text lines, half of them turned upside down: the classifier's two classes (0, 180 degrees)."""
    x, labels = text_images(rng, n, 48, 192, 26), rng.integers(0, 2, n)
    x[labels == 1] = x[labels == 1, ::-1, ::-1]
    return paddle(x), labels


def models(folder: Path, rng) -> list[dict]:
    """Each model: its file, its input's name and shape, calibration and evaluation data (+ labels)."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hybrid

    net, accuracy = hybrid.trained()
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), folder / "hybrid.onnx", input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, opset_version=18, dynamo=False)
    (cal, _), (x, y) = hybrid.images(rng, 128), hybrid.images(rng, 512)
    cls_cal, _ = direction_data(rng, CALIBRATION)
    cls_x, cls_y = direction_data(rng, EVALUATION)
    return [
        dict(name="FastViT-style hybrid (trained here, float accuracy %.2f)" % accuracy, file=folder / "hybrid.onnx",
             input="image", shape=["batch", 3, 32, 32], calibration=cal, evaluation=x, labels=y),
        dict(name="PaddleOCR direction classifier (ppocr mobile v2.0 cls)",
             file=PADDLE / "ch_ppocr_mobile_v2.0_cls_infer.onnx", input="x", shape=["batch", 3, 48, 192],
             calibration=cls_cal, evaluation=cls_x, labels=cls_y),
        dict(name="PaddleOCR v4 text detector", file=PADDLE / "ch_PP-OCRv4_det_infer.onnx", input="x",
             shape=["batch", 3, 160, 160], calibration=paddle(text_images(rng, CALIBRATION, 160, 160, 22), True),
             evaluation=paddle(text_images(rng, EVALUATION, 160, 160, 22), True)),
        dict(name="PaddleOCR v4 text recognizer", file=PADDLE / "ch_PP-OCRv4_rec_infer.onnx", input="x",
             shape=["batch", 3, 48, 320], calibration=paddle(text_images(rng, CALIBRATION, 48, 320, 28)),
             evaluation=paddle(text_images(rng, EVALUATION, 48, 320, 28))),
    ]


def check_auto(model: dict, folder: Path, entropy: bool) -> dict:
    """`edge-distill check` with int8_recipe = "auto"; its report's int8 result."""
    np.savez(folder / "cal.npz", **{model["input"]: model["calibration"]})
    np.savez(folder / "eval.npz", **{model["input"]: model["evaluation"]},
             **({"labels": model["labels"]} if "labels" in model else {}))
    listed = "" if entropy else ', int8_auto_recipes = ["onnxruntime", "ort-defaults", "per-tensor", "symmetric", ' \
                                '"percentile", "attention-float"]'
    shape = ", ".join(f'"{d}"' if isinstance(d, str) else str(d) for d in model["shape"])
    (folder / "edge-distill.toml").write_text(
        f'[model]\nstudent = "{model["file"]}"\n[[model.inputs]]\nname = "{model["input"]}"\nshape = [{shape}]\n'
        '[data]\nevaluation = "eval.npz"\ncalibration = "cal.npz"\n[measure]\nruns = 20\nwarmup = 1\n'
        f'[[targets]]\nname = "ort"\nprecisions = ["int8"]\noptions = {{ int8_recipe = "auto"{listed} }}\n')
    proc = subprocess.run([sys.executable, "-m", "edge_distill", "check", str(folder / "edge-distill.toml"), "--out",
                           str(folder / "out"), "-q"], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"check exited {proc.returncode}: {proc.stderr[-2000:]}")
    (result,) = json.loads((folder / "out" / "report.json").read_text())["results"]
    return result


def ort_own(model: dict, folder: Path, result: dict) -> dict:
    """quantize_static with its defaults on the published file, scored as check scores the first output."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from edge_distill.kinds import get_kind
    from edge_distill.targets.ort.build import convert_to_ort

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter(model["calibration"][i: i + 1] for i in range(len(model["calibration"])))

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else {model["input"]: sample}

    quantized = folder / "ort-own.onnx"
    start = time.perf_counter()
    try:
        quantize_static(str(model["file"]), str(quantized), Reader())
    except Exception as exc:  # the published file as it is: onnxruntime's quantizer may refuse it
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"}
    seconds = time.perf_counter() - start
    size = convert_to_ort(quantized, folder).stat().st_size

    def outputs(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {model["input"]: model["evaluation"][i: i + 16]})[0]
                               for i in range(0, len(model["evaluation"]), 16)])

    got, want = outputs(quantized), outputs(folder / "out" / "onnx" / "model.onnx")
    name, figures = next(iter(result["outputs"].items()))
    kind = get_kind(figures["kind"])
    own = {k: v for k, v in kind.figures(got, want, dict(kind.settings)).items()}
    if "labels" in model:
        own["accuracy"] = float((got.argmax(1) == model["labels"]).mean())
        own["float_agreement"] = float((got.argmax(1) == want.argmax(1)).mean())
    return {"figures": own, "size_bytes": size, "seconds": round(seconds, 1)}


def row(model: dict, result: dict, own: dict) -> str:
    recipes = result["details"]["int8_recipes"]
    rows = {r["recipe"]: r for r in recipes["candidates"]}
    default, chosen = rows["onnxruntime"], rows[recipes["chosen"]]
    metric = chosen["metric"]
    value = (lambda figures: figures.get(metric))
    ours = f"{chosen['value']:.4f}"
    theirs = "crashed: " + own["error"] if "error" in own else f"{value(own['figures']):.4f}"
    higher = metric in ("accuracy", "float_agreement", "float_cosine") or not metric.endswith("error")
    holds = "error" in own or ((chosen["value"] >= value(own["figures"])) if higher
                               else (chosen["value"] <= value(own["figures"])))
    smaller = "error" in own or chosen["size_bytes"] <= own["size_bytes"]
    return (f"| {model['name']} | {metric} | {default['value']:.4f} ({default['size_bytes'] / 1e6:.3f} MB) | "
            f"{ours} ({chosen['size_bytes'] / 1e6:.3f} MB, {recipes['chosen']}) | {theirs}"
            + ("" if "error" in own else f" ({own['size_bytes'] / 1e6:.3f} MB)")
            + f" | {'yes' if holds and smaller else 'no'} | {recipes['seconds']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "int8-recipes.md")
    parser.add_argument("--entropy", action="store_true", help="also try entropy calibration (slow)")
    args = parser.parse_args()
    rng, lines, details, start = np.random.default_rng(0), [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k, model in enumerate(models(Path(tmp), rng)):
            folder = Path(tmp) / f"m{k}"
            folder.mkdir()
            result = check_auto(model, folder, args.entropy)
            own = ort_own(model, folder, result)
            lines.append(row(model, result, own))
            details.append((model["name"], result["details"]["int8_recipes"]))
            print(lines[-1], flush=True)
    write(args.out, lines, details, time.perf_counter() - start, args.entropy)
    return 0


def write(path: Path, lines: list[str], details: list, seconds: float, entropy: bool) -> None:
    text = [path.read_text().split("<!-- measured -->")[0].rstrip() if path.exists() else "# int8 recipes", "",
            "<!-- measured -->", "",
            f"Measured by `OMP_NUM_THREADS=1 python benchmarks/int8_recipes.py{' --entropy' if entropy else ''}` in "
            f"{seconds / 60:.1f} min (one run, 2 shared cores; {CALIBRATION} calibration samples for the "
            "published models, 128 for the hybrid).", "",
            "| model | task metric | edge-distill default | edge-distill auto (recipe) | onnxruntime quantize_static "
            "defaults | auto at least as good at equal or smaller size | auto s |", "|---|---|---|---|---|---|---|",
            *lines, "", "Every candidate of each auto run (task metric; size of the .ort; seconds):", ""]
    for name, recipes in details:
        text.append(f"- {name}: " + "; ".join(
            f"{c['recipe']} " + (f"not built ({c['error'][:80]})" if "error" in c else
                                 f"{c['value']:.4f}, {c['size_bytes'] / 1e6:.3f} MB, {c['seconds']:.0f} s")
            for c in recipes["candidates"]))
    path.write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    sys.exit(main())
