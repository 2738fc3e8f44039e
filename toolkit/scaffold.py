"""`edge-distill init`: a first edge-distill.toml for a model, read from the model itself.

Each input's name, shape and dtype and where it takes its batch (a 0-d input has none; `[L, B, H]`
beside a batch-first input is a recurrent state, and an output of the same shape is proposed as the
state fed back); each output's kind (`kinds.infer` on its shape from one run); the targets and
precisions this model can take, asked of each target's capabilities, and why not the others. Written
with a sample .npz of the model's own shapes, so the first `check` runs before any real data is at
hand; `--data` points at a folder of real .npz files instead (their shapes fill the model's free
dimensions).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np

from edge_distill.calibration import Dataset, InputSpec

from .errors import BadInput
from .exporting import DEFAULT_TOLERANCE, PARITY_SAMPLES, export_to_onnx
from .files import save_arrays

FREE_SIZE = 64  # a free dimension (not the batch) of the sample, when no data fill it
SAMPLES, SEQUENCES, CHUNKS = 8, 4, 3
YOLO_STRIDES, HEAD_STRIDES = (8, 16, 32), (8, 16, 32, 64)  # one-stage detectors' feature-map strides
ROUNDING = 2.5e-3  # the largest export difference init reads as float rounding and writes a tolerance for
DETECTION_CONF = 0.25  # the detection kind's default; lowered where the float model scores nothing above it


@dataclass
class InputPlan:
    spec: InputSpec  # the model's input, its batch axis set
    sizes: tuple[int, ...]  # one sample as the data hold it (the batch axis dropped)
    note: str  # the layout the data need, in words


@dataclass
class Plan:
    reference: str
    source_kind: str
    opset: int | None
    inputs: list[InputPlan]
    outputs: list[tuple[str, tuple, str, str, str]]  # name, per-sample shape, dtype, kind, why
    state: dict[str, str]
    weight_ops: Counter  # weights (elements) per ONNX op type
    settings: dict[str, dict] = field(default_factory=dict)  # output -> its kind's settings init sets (layout)
    targets: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)  # precisions, refused
    unavailable: dict[str, str] = field(default_factory=dict)  # target -> why none of it
    notes: dict[str, list[str]] = field(default_factory=dict)  # target -> what a kept precision leaves out
    data: tuple[Path, Path] | None = None  # the user's evaluation and calibration files
    weights: str | None = None  # a module:factory's weights file, where it does not load its own
    module_copied: Path | None = None  # a factory's module file, copied beside the config (check imports it there)
    parity: tuple[float, int] | None = None  # a torch source: max |onnxruntime - torch| and on how many samples


def batch_axis(shape: tuple, first_batch: set) -> tuple[int | None, bool]:
    """(where an input takes its batch, whether it looks like a recurrent state). A 0-d input has no
    batch; a fixed leading size with a free dimension after it that the batch-first inputs share (or,
    unnamed, a free middle one) is a state `[L, B, H]`."""
    if not shape:
        return None, False
    if isinstance(shape[0], int) and shape[0] > 0 and len(shape) >= 3:
        free = [i for i, d in enumerate(shape[1:], 1) if not isinstance(d, int) or d <= 0]
        shared = [i for i in free if shape[i] in first_batch]
        if shared or free == [1]:
            return (shared or free)[0], True
    return 0, False


def propose_axes(specs: list[InputSpec]) -> list[tuple[InputSpec, bool]]:
    first = {s.shape[0] for s in specs if s.shape and not isinstance(s.shape[0], int) and s.shape[0]}
    out = []
    for spec in specs:
        axis, state_like = batch_axis(spec.shape, first)
        out.append((replace(spec, batch_axis=axis), state_like))
    return out


def layout_note(spec: InputSpec, state_like: bool) -> str:
    """What the data must hold for this input, samples first."""
    if spec.axis is None:
        return "no batch axis: one value per run, every sample (sequence) holding the same"
    if state_like:
        return (f"a recurrent state, batch on axis {spec.axis}: left out of the data (it starts at zeros and "
                "is fed back) when [model] state names it, else samples first")
    rank, dtype = len(spec.shape), spec.dtype
    if rank == 4 and dtype.startswith("float") and spec.shape[1] in (1, 3):
        return (f"images NCHW ({spec.shape[1]} channel(s) first), float, normalised as the model was trained "
                "(its mean and std are not in the file: use the training pipeline's)")
    if rank == 4 and spec.shape[-1] in (1, 3):
        return f"images NHWC ({spec.shape[-1]} channel(s) last), {dtype}"
    if dtype.startswith("int") and rank == 2:
        return "token ids [batch, sequence] (the tokenizer's vocabulary), int64"
    return f"samples first, {dtype}"


def onnx_weights_by_op(proto) -> Counter:
    """Weight elements per op type: inputs fed by initializers or Constant nodes (old exporters)."""
    from onnx import numpy_helper

    sizes = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            sizes[node.output[0]] = numpy_helper.to_array(node.attribute[0].t).size
    found: Counter = Counter()
    for node in proto.graph.node:
        if node.op_type != "Constant":
            found[node.op_type] += sum(sizes.get(i, 0) for i in node.input[1:] if sizes.get(i, 0) > 1)
    return +found


def target_choices(plan: Plan) -> None:
    """Each target's precisions for this model, asked of its capabilities; why not the others."""
    from edge_distill.targets import available

    streamed = bool(plan.state) or any(i.spec.axis != 0 for i in plan.inputs)
    for name, caps in available().items():
        missing = caps.missing_packages()
        if missing:
            plan.unavailable[name] = f"not installed (pip install 'edge-distill[{caps.extra}]')"
            continue
        why = caps.source_refused(plan.source_kind)
        if why:
            plan.unavailable[name] = f"{why}; the torch student (.pt2 or module:factory) goes there"
            continue
        kept, refused = [], {}
        for p in caps.precisions:
            why = precision_refused(p, plan.weight_ops, streamed)
            if why:
                refused[p.name] = why
            else:
                kept.append(p.name)
                plan.notes.setdefault(name, []).extend(_partial_cover(p, plan.weight_ops))
        plan.targets[name] = (kept, refused)


def _partial_cover(precision, weight_ops: Counter) -> list[str]:
    """A note where a precision's ops hold under half the weights: the rest stays float."""
    total = sum(weight_ops.values())
    share = sum(weight_ops[op] for op in precision.weight_ops) / total if precision.weight_ops and total else 1
    if share >= 0.5:
        return []
    return [f"{precision.name}: {'/'.join(precision.weight_ops)} hold {share:.0%} of the weights; the rest stays float"]


def precision_refused(precision, weight_ops: Counter, streamed: bool) -> str | None:
    if precision.calibrated and streamed:
        return ("calibrated, and calibration feeds samples batch first: a model with a state or an input not "
                "batch-first takes weight-only precisions")
    if precision.weight_ops and not any(weight_ops[op] for op in precision.weight_ops):
        held = ", ".join(f"{op} {n:,}" for op, n in weight_ops.most_common(3)) or "none"
        return (f"stores only {'/'.join(precision.weight_ops)} weights in {precision.weight_bits} bits, and this "
                f"model has none (its weights: {held})")
    return None


def find_data(folder: Path, specs: list[InputSpec]) -> tuple[Path, Path]:
    """(evaluation, calibration) among a folder's .npz files: the first holding every input; a file
    named calibration* is the calibration set, else the evaluation set serves both."""
    if not folder.is_dir():
        raise BadInput("--data must be a folder of .npz files", path=folder)
    names = {s.name for s in specs}
    fitting = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            if names <= set(npz.files):
                fitting.append(path)
    if not fitting:
        raise BadInput(f"no .npz file in the folder holds every input ({', '.join(sorted(names))})", path=folder)
    calibration = [p for p in fitting if p.name.startswith("calib")]
    evaluation = [p for p in fitting if p not in calibration] or fitting
    return evaluation[0], (calibration or evaluation)[0]


def sample_sizes(spec: InputSpec, streamed: bool, data: Path | None) -> tuple[int, ...]:
    """One sample of this input as data hold it: from the user's data, else the model's fixed sizes
    and FREE_SIZE for its free ones."""
    lead = 2 if streamed and spec.axis is not None else 1  # [sequences, chunks, ...] when streamed
    if data is not None and spec.shape:
        with np.load(data, allow_pickle=False) as npz:
            return tuple(npz[spec.name].shape[lead:])
    major = spec.sample_major() if spec.axis is not None else spec
    dims = major.shape[1:] if spec.axis is not None else major.shape
    return tuple(d if isinstance(d, int) and d > 0 else FREE_SIZE for d in dims)


def sample_arrays(plan: Plan) -> dict[str, np.ndarray]:
    """A sample data set in the model's own shapes: samples first ([sequences, chunks, ...] for a
    streaming model, its fed-back states left out). Floats uniform in [-1, 1], integers 0."""
    rng = np.random.default_rng(0)
    fed_back = set(plan.state.values())
    arrays = {}
    for i in plan.inputs:
        if i.spec.name in fed_back:
            continue
        lead = ((SEQUENCES, CHUNKS) if plan.state else (SAMPLES,)) if i.spec.axis is not None else \
            ((SEQUENCES,) if plan.state else (SAMPLES,))
        shape, dtype = (*lead, *i.sizes), np.dtype(i.spec.dtype)
        arrays[i.spec.name] = (rng.uniform(-1, 1, shape).astype(dtype) if dtype.kind == "f"
                               else np.zeros(shape, dtype))
    return arrays


def is_factory(reference: str) -> bool:
    return ":" in reference and not Path(reference).exists()


def factory_inputs(reference: str, data_dir: Path | None) -> list[InputSpec]:
    """A module:factory's inputs, batch first: from the module's EXAMPLE_INPUTS[factory] (name -> one
    batch, an array or a tensor), else from the first .npz of --data (every array but labels and
    metadata)."""
    import importlib

    from edge_distill.calibration.readers import RESERVED

    module_name, _, factory = reference.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        examples = getattr(importlib.import_module(module_name), "EXAMPLE_INPUTS", {}).get(factory)
    except ImportError as exc:
        raise BadInput(f"cannot import module '{module_name}' for {reference}: {exc}",
                       hint="run init where the module is importable (the current folder is searched)") from None
    finally:
        sys.path.remove(str(Path.cwd()))
    if examples is None and data_dir is not None:
        files = sorted(Path(data_dir).glob("*.npz")) if Path(data_dir).is_dir() else []
        if files:
            with np.load(files[0], allow_pickle=False) as npz:
                examples = {k: npz[k] for k in npz.files if k not in RESERVED and not k.startswith("slice_")}
    if not examples:
        raise BadInput(f"{reference} does not say what it takes: init reads a factory's inputs from its module's "
                       f"EXAMPLE_INPUTS[\"{factory}\"] or from --data",
                       hint=f"add EXAMPLE_INPUTS = {{\"{factory}\": {{\"image\": torch.zeros(1, 3, 224, 224)}}}} "
                            f"to {module_name}, or pass --data with a folder of .npz samples")
    arrays = {name: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for name, v in examples.items()}
    return [InputSpec(name, ("batch", *a.shape[1:]), a.dtype.name) for name, a in arrays.items()]


def read_model(reference: str, data_dir: Path | None, weights: str | None = None):
    """(the loaded model, its inputs laid out, each with whether it looks like a state; the names of
    those that do; the user's evaluation and calibration files, or None)."""
    from .models import load_model

    if is_factory(reference):
        source = load_model(reference, weights, factory_inputs(reference, data_dir), search_path=Path.cwd())
    elif weights is not None:
        raise BadInput("--weights goes with a module:factory; this model holds its own", path=weights)
    else:
        source = load_model(reference)
    laid = propose_axes(source.inputs)
    specs = [spec for spec, _ in laid]
    data = find_data(data_dir, [s for s, state_like in laid if not state_like]) if data_dir else None
    states = {spec.name for spec, state_like in laid if state_like}
    source.inputs = specs
    return source, laid, states, data


def discovery_feeds(plan_inputs: list[InputPlan], states: set, data: Path | None, streamed: bool) -> Dataset:
    """Two samples for one run that shows the outputs' shapes: the user's first ones where given
    (a streaming set's first chunks), states at zeros, else uniform in [-1, 1]."""
    rng, feeds, given = np.random.default_rng(1), {}, {}
    if data is not None:
        with np.load(data, allow_pickle=False) as npz:
            given = {name: npz[name][:2] for name in npz.files}
    for i in plan_inputs:
        if i.spec.name in given:
            value = given[i.spec.name]
            feeds[i.spec.name] = value[:, 0] if streamed and i.spec.axis is not None and i.spec.name not in states \
                else value
            continue
        shape, dtype = (2, *i.sizes), np.dtype(i.spec.dtype)
        feeds[i.spec.name] = (rng.uniform(-1, 1, shape).astype(dtype) if dtype.kind == "f"
                              and i.spec.name not in states else np.zeros(shape, dtype))
    return Dataset("init sample", feeds)


def parity_samples(plan_inputs: list[InputPlan], data: Path, limit: int = PARITY_SAMPLES) -> Dataset | None:
    """The evaluation file's first samples (as many as check's export parity takes): the
    export's difference from torch on them is the one check will see (on latex-ocr-junia's ViT, two
    samples showed less than a sixth of it). None where the file lacks an input."""
    with np.load(data, allow_pickle=False) as npz:
        if not all(i.spec.name in npz.files for i in plan_inputs):
            return None
        return Dataset("init parity", {i.spec.name: npz[i.spec.name][:limit] for i in plan_inputs})


def read_outputs(plan: Plan, source, states: set, data: Path | None) -> None:
    """Each output's per-sample shape, dtype and kind from one run; an output shaped like a
    state-like input (as the model lays both out) is that state, fed back."""
    from edge_distill.calibration import to_model_layout

    feeds = discovery_feeds(plan.inputs, states, data, bool(states))
    try:
        outputs = source.predict_all(feeds)
    except Exception as exc:  # onnxruntime and torch raise their own types for a shape they refuse
        raise BadInput(f"the model does not run on a sample of its own shapes ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:300]})", path=source.reference,
                       hint="pass --data with a folder of real .npz samples: their shapes fill the free dimensions") from None
    laid = to_model_layout(dict(feeds.inputs), source.inputs)
    given = dict(feeds.inputs)
    hw, text = image_size(given), text_encoder([i.spec for i in plan.inputs], given)
    if len(source.output_names) != len(outputs):  # a torch module's outputs, named as its export names them
        source.output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    softmax = next((n for n, o in zip(source.output_names, outputs) if probabilities(np.asarray(o))), None)
    for name, out in zip(source.output_names, outputs):
        fed = next((s for s in sorted(states) if laid[s].shape == out.shape and s not in plan.state.values()), None)
        if fed is not None:
            plan.state[name] = fed
            axis = next(i.spec.axis for i in plan.inputs if i.spec.name == fed)
            assert axis is not None  # a state-like input has its batch axis (batch_axis)
            plan.outputs.append((name, tuple(np.delete(out.shape, axis)), out.dtype.name, "state",
                                 f"fed back as '{fed}'"))
            continue
        kind, settings, why = propose_kind(name, np.asarray(out), given, hw, text, softmax)
        if settings:
            plan.settings[name] = settings
        plan.outputs.append((name, tuple(out.shape[1:]), out.dtype.name, kind, why))


def image_size(feeds: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """(height, width) of the first image input as fed (NCHW or NHWC, 1 or 3 channels), or None."""
    for value in feeds.values():
        if value.ndim == 4 and value.shape[1] in (1, 3):
            return value.shape[2], value.shape[3]
        if value.ndim == 4 and value.shape[3] in (1, 3):
            return value.shape[1], value.shape[2]
    return None


def text_encoder(specs: list[InputSpec], feeds: dict[str, np.ndarray]) -> bool:
    """Token ids in, no image: an integer [batch, tokens] input beside no 4-d one."""
    tokens = any(np.dtype(s.dtype).kind in "iu" and len(s.shape) == 2 for s in specs)
    return tokens and not any(v.ndim == 4 for v in feeds.values())


def anchor_grids(hw: tuple[int, int]) -> dict[int, str]:
    """Anchor counts a one-stage detector has on this image: each stride's grid, and YOLO's three
    levels together."""
    h, w = hw
    grid = lambda s: -(-h // s) * -(-w // s)  # noqa: E731  (a partial cell is a cell: ceil)
    counts = {grid(s): f"the stride-{s} grid" for s in HEAD_STRIDES}
    counts[sum(grid(s) for s in YOLO_STRIDES)] = "strides 8, 16 and 32 together"
    return counts


def decoded(rows: np.ndarray, hw: tuple[int, int]) -> bool:
    """rows [samples, n, 4 + k]: boxes cx, cy, w, h in the image's pixels, then scores in [0, 1].
    Raw heads (offsets per cell, log sizes, logits) fail it: they are not what detection decodes."""
    h, w = hw
    boxes, scores = rows[..., :4].astype(np.float64), rows[..., 4:]
    centres_inside = boxes[..., :2].min() >= -0.1 * max(h, w) and boxes[..., 0].max() <= 1.1 * w \
        and boxes[..., 1].max() <= 1.1 * h
    sizes_in_pixels = boxes[..., 2:].min() >= 0 and boxes[..., 2:].max() > 2
    return bool(centres_inside and sizes_in_pixels and scores.min() >= 0 and scores.max() <= 1)


def detection_conf(scores: np.ndarray) -> tuple[dict, str]:
    """The default conf, or half the float model's best score where nothing reaches the default (else
    no reference box, and mAP has nothing to agree with)."""
    best = float(scores.max())
    if best >= DETECTION_CONF:
        return {}, ""
    conf = max(0.01, float(np.floor(best * 50) / 100))
    return {"conf": conf}, (f"; conf {conf}: the float model's best score on the samples init ran is {best:.3f}, "
                            f"below the default {DETECTION_CONF}")


def detector_head(values: np.ndarray, hw: tuple[int, int]) -> tuple[str, dict, str] | None:
    """A [B, 4+C, N] YOLOv8 or [B, N, 5+C] YOLOv5/YOLOX output whose boxes are decoded: detection; a
    head per anchor that is not decoded (PicoDet's levels, YOLOX before its grid): dense, saying why."""
    rows, cols = values.shape[1:]
    grids, size = anchor_grids(hw), f"{hw[0]}x{hw[1]}"
    if cols in grids and 5 <= rows < cols and decoded(np.swapaxes(values, 1, 2), hw):
        conf, why = detection_conf(values[:, 4:])
        return "detection", {"layout": "yolov8", **conf}, (
            f"[B, 4 + {rows - 4}, {cols}]: {cols} anchors ({grids[cols]} of the {size} input), boxes in pixels then "
            f"class scores (YOLOv8){why}")
    if rows in grids and cols >= 6 and decoded(values, hw):
        conf, why = detection_conf(values[..., 4:5] * values[..., 5:])
        return "detection", {"layout": "yolov5", **conf}, (
            f"[B, {rows}, 5 + {cols - 5}]: {rows} anchors ({grids[rows]} of the {size} input), boxes in pixels, "
            f"objectness, class scores (YOLOv5/YOLOX decoded); if column 4 is a class score, not an objectness, "
            f"declare kind = \"dense\"{why}")
    anchors = rows if rows in grids else cols if cols in grids else None
    if anchors is None:
        return None
    width = rows * cols // anchors
    if width >= 128:  # wider than any detector's per-anchor values: a vision transformer's patch tokens
        stride = next((s for s in HEAD_STRIDES if -(-hw[0] // s) * -(-hw[1] // s) == anchors), None)
        patches = f"the {size} input in {stride}x{stride} patches" if stride else grids[anchors]
        return "dense", {}, (f"{anchors} tokens ({patches}) of {width} features each: a vision transformer's patch "
                             "tokens, compared as values, by cosine and error")
    return "dense", {}, (f"a raw detector head: {anchors} anchors ({grids[anchors]} of the {size} input) of "
                         f"{rows * cols // anchors} values each, before box decoding (the detection kind decodes "
                         "YOLO layouts only): compared as values, by cosine and error")


def probabilities(values: np.ndarray) -> bool:
    """[B, C] rows of non-negative floats that sum to 1: a softmax head."""
    if values.dtype.kind != "f" or values.ndim != 2 or values.shape[1] < 2:
        return False
    rows = values.astype(np.float64)
    return bool(rows.min() >= 0 and np.allclose(rows.sum(1), 1, atol=1e-3))


def propose_kind(name: str, values: np.ndarray, feeds: dict[str, np.ndarray], hw: tuple[int, int] | None,
                 text: bool, softmax: str | None = None) -> tuple[str, dict, str]:
    """(kind, settings, why) for one output, from its values on the samples init ran; `why` goes into
    the config as a comment. `softmax`: the model's probability head, if it has one."""
    from .kinds import infer

    shape = values.shape[1:]
    if values.dtype.kind in "iub":
        copied = next((n for n, v in feeds.items() if v.shape == values.shape and np.array_equal(v, values)), None)
        if copied is not None:
            return "indices", {}, (f"a copy of the input '{copied}' passed through the graph, not a result of the "
                                   "model: compared exactly, nothing to budget")
        return "indices", {}, "integer values (ids, counts): compared exactly, never as floats"
    leftover = " (its name is the exporter's: the tensor a Shape node read)" if name.startswith("onnx::") else ""
    if text and len(shape) == 1:
        return "embedding", {}, f"a text encoder's vector per sample: the sentence embedding{leftover}"
    if text and len(shape) == 2:
        return "embedding", {}, (f"a text encoder's [B, {shape[0]}, {shape[1]}]: an embedding per token (the last "
                                 f"hidden state), compared by cosine over the whole sequence{leftover}")
    proposed = detector_head(values, hw) if hw is not None and len(shape) == 2 else None
    if proposed is not None:
        return proposed
    if len(shape) == 1 and softmax not in (None, name) and not probabilities(values):
        # MTCNN's box and landmark heads beside its face probability: their argmax means nothing
        return "dense", {}, (f"raw values beside the probability head '{softmax}': a regression (boxes, landmarks), "
                             "compared by error and cosine; if they are class logits, declare kind = \"classification\"")
    kind, why = infer(shape, values.dtype, "classification")
    return kind, {}, why


def weights_and_opset(source, samples: Dataset, work: Path) -> tuple[Counter, int | None, tuple[float, int] | None]:
    """Weights per op type and the opset, from the ONNX file (a torch source: its verified export, up to
    float rounding, with its difference from torch)."""
    import onnx

    path, parity = source.onnx_path, None
    if path is None:
        path = work / "model.onnx"
        info = export_to_onnx(source, path, samples=samples, tolerance=ROUNDING)
        parity = (info.parity_max_abs_diff, info.parity_samples)
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return onnx_weights_by_op(proto), opset, parity


def plan_model(reference: str, data_dir: Path | None, work: Path, weights: str | None = None) -> Plan:
    """Everything `init` writes, read from the model (and the data folder, where given)."""
    source, laid, states, data = read_model(reference, data_dir, weights)
    streamed, evaluation = bool(states), data and data[0]
    inputs = [InputPlan(spec, sample_sizes(spec, streamed and spec.name not in states,
                                           evaluation if spec.name not in states else None),
                        layout_note(spec, state_like)) for spec, state_like in laid]
    plan = Plan(reference=source.reference, source_kind=source.kind, opset=None, inputs=inputs, outputs=[], state={},
                weight_ops=Counter(), data=data, weights=weights)
    read_outputs(plan, source, states, evaluation)
    source.output_axes = [next(i.spec.axis for i in inputs if i.spec.name == plan.state[n]) if n in plan.state else 0
                          for n in source.output_names]
    samples = discovery_feeds(inputs, states, evaluation, streamed)
    if evaluation is not None and not streamed:
        samples = parity_samples(inputs, evaluation) or samples
    plan.weight_ops, plan.opset, plan.parity = weights_and_opset(source, samples, work)
    target_choices(plan)
    return plan


def run_init(reference: str, out: Path, data_dir: Path | None = None, force: bool = False,
             weights: str | None = None) -> Plan:
    """Write `out`/edge-distill.toml (and sample.npz without --data; a factory's module file found in
    the current folder beside it); never into the model's, the weights' or the data's folder. Through
    a temporary folder renamed at the end."""
    import tempfile

    from .outputs import output_folder

    out = Path(out).absolute()
    model_folder = Path(reference).absolute().parent if Path(reference).is_file() else Path(reference).absolute()
    inputs = (model_folder, data_dir and Path(data_dir).absolute(), weights and Path(weights).absolute().parent)
    for folder in filter(None, inputs):
        if out == folder or folder in out.parents:
            raise BadInput(f"--out {out} is inside the input folder {folder}; init never writes there",
                           hint="pass --out a folder elsewhere")
    with output_folder(out, force) as tmp, tempfile.TemporaryDirectory(prefix=".init-", dir=tmp) as work:
        plan = plan_model(reference, data_dir and Path(data_dir), Path(work), weights)
        if plan.data is None:
            save_arrays(tmp / "sample.npz", sample_arrays(plan))
        module_file = Path.cwd() / (reference.partition(":")[0] + ".py")
        if is_factory(reference) and module_file.is_file():  # check imports a factory from the config's folder
            shutil.copyfile(module_file, tmp / module_file.name)
            plan.module_copied = module_file
        (tmp / "edge-distill.toml").write_text(config_text(plan, out))
    return plan


def _rel(path: str | Path, out: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), out)).as_posix()


def _input_entry(spec: InputSpec) -> str:
    return f'{{ name = "{spec.name}", shape = {json.dumps(list(spec.shape))}, dtype = "{spec.dtype}" }}'


def _toml_list(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def config_text(plan: Plan, out: Path) -> str:
    """The commented edge-distill.toml: paths relative to `out`, where it lives."""
    from .kinds import toml_key

    lines = [f"# Written by `edge-distill init` from {plan.reference} ({plan.source_kind}, opset {plan.opset}).",
             "# Inputs, and the layout the data must give each (samples first on axis 0):"]
    lines += [f"#   {i.spec.describe()}, batch axis {i.spec.axis if i.spec.axis is not None else 'none'}: {i.note}"
              for i in plan.inputs]
    free = [f"{i.spec.name} {list(i.sizes)}" for i in plan.inputs if any(isinstance(d, str) for d in i.spec.shape[1:])]
    if free and plan.data is None:
        lines.append(f"# Free dimensions were given {FREE_SIZE} in sample.npz: {', '.join(free)} per sample; real "
                     "data set their own sizes.")
    if plan.module_copied:
        lines.append(f"# {plan.module_copied.name}: copied from {plan.module_copied.parent} beside this file, where "
                     "check imports the factory from")
    student = plan.reference if is_factory(plan.reference) else _rel(plan.reference, out)
    lines += ["", "[model]", f'student = "{student}"']
    if plan.weights:
        lines.append(f'weights = "{_rel(plan.weights, out)}"')
    if is_factory(plan.reference):  # a factory's inputs are the config's to say (a file states its own)
        lines += [f'inputs = [{", ".join(_input_entry(i.spec) for i in plan.inputs)}]']
    axes = {i.spec.name: i.spec.axis for i in plan.inputs if i.spec.axis != 0 and i.spec.shape}
    if axes:
        lines.append("batch_axes = { " + ", ".join(f'{toml_key(n)} = {a if a is not None else chr(34) + "none" + chr(34)}'
                                                    for n, a in axes.items()) + " }")
    if plan.state:
        lines.append("state = { " + ", ".join(f'{toml_key(o)} = "{i}"' for o, i in plan.state.items())
                     + " }   # each state output fed back as the next chunk's input")
    if plan.state:
        lines.insert(2 + len(plan.inputs), "# A streaming model: each batched input's data hold [sequences, chunks, ...]; "
                     "each sequence streams chunk by chunk, its state fed back.")
    for name, shape, dtype, kind, why in plan.outputs:  # every output declared: the list is the model's outputs
        lines += ["", f"[model.outputs.{toml_key(name)}]   # [B, {', '.join(map(str, shape))}] {dtype}",
                  f'kind = "{kind}"' + (f"   # inferred: {why}" if why else "   # inferred from its shape")]
        lines += [f"{key} = {json.dumps(value)}" for key, value in plan.settings.get(name, {}).items()]
    lines += _export_lines(plan)
    return "\n".join(lines + _data_lines(plan, out) + _target_lines(plan) + _budget_lines(plan)) + "\n"


def export_tolerance(diff: float) -> float | None:
    """A tolerance four times the difference init saw, as a power of ten; None where the default keeps
    that margin."""
    if 4 * diff <= DEFAULT_TOLERANCE:
        return None
    return float(10 ** np.ceil(np.log10(4 * diff)))


def _export_lines(plan: Plan) -> list[str]:
    """[export] tolerance where the export's float rounding leaves the default too little margin (deep
    attention stacks), with what init measured."""
    if not plan.parity:
        return []
    diff, samples = plan.parity
    tolerance = export_tolerance(diff)
    if tolerance is None:
        return []
    return ["", "[export]", f"tolerance = {tolerance:g}   # init measured max |onnxruntime - torch| {diff:.2g} on "
            f"{samples} samples: the default {DEFAULT_TOLERANCE:g} leaves less than 4x for the evaluation set"]


def _budget_lines(plan: Plan) -> list[str]:
    """No limit is guessed: each output's budget keys, commented, for the user to set."""
    from .kinds import get_kind, toml_key

    lines = ["", "[budgets]   # nothing is checked until a limit is set, e.g.:", "# latency_p95_ms = 50",
             "# max_size_mb = 4.0"]
    for name, _, _, kind, _ in plan.outputs:
        keys = ", ".join(get_kind(kind).budget_keys)
        lines += [f"# [budgets.outputs.{toml_key(name)}]   # a {kind}: {keys}"]
    return lines


def _data_lines(plan: Plan, out: Path) -> list[str]:
    if plan.data is None:
        evaluation = calibration = "sample.npz"
        note = "# sample.npz: random data of the model's own shapes, to run the first check; put real samples here"
    else:
        evaluation, calibration = (_rel(p, out) for p in plan.data)
        note = "# found in --data: the first file holding every input (calibration*: the calibration set)"
    return ["", "[data]", note, f'evaluation = "{evaluation}"', f'calibration = "{calibration}"',
            "", "[measure]", "runs = 50", "warmup = 5"]


def _searchable(name: str, kept: list[str]) -> list[str]:
    """The "-auto" precisions the target can search among those kept: it can leave a layer in float."""
    from edge_distill.targets import MixedPrecisionTarget, get_target

    from .precision import auto_of

    found = get_target(name)
    if not hasattr(found, "layers"):
        return []
    target = cast(MixedPrecisionTarget, found)  # a target that lists its layers can mix precisions
    defaults = target.capabilities.options_with_defaults({})
    return [auto_of(p) for p in kept if target.capabilities.precision(p).weight_bits < 16
            and target.mixing_refused(p, defaults) is None]


def _target_lines(plan: Plan) -> list[str]:
    from edge_distill.targets import available

    lines, capabilities = [], available()
    for name, (kept, refused) in plan.targets.items():
        lines += ["", "[[targets]]", f'name = "{name}"', f"precisions = {_toml_list(kept)}"]
        lines += [f"# {note}" for note in plan.notes.get(name, [])]
        if any(capabilities[name].precision(p).calibrated for p in kept):  # a recipe search where one is offered
            lines += [f'# options = {{ {o.name} = "auto" }}: each recipe built and evaluated, the best by the budgets '
                      "kept (docs/int8-recipes.md)" for o in capabilities[name].options if "auto" in o.choices]
        searchable = _searchable(name, kept)
        if searchable:
            lines.append(f"# also {', '.join(searchable)}: the layers that break a budget left in float, searched with "
                         "real builds (set a budget first; not with an option set to \"auto\")")
        lines += [f"# not {p}: {why}" for p, why in refused.items()]
    lines += [f"# no {name} target: {why}" for name, why in plan.unavailable.items()]
    return lines
