"""A planted failure for slice discovery's end-to-end tests: the bundled Fashion-MNIST evaluation data
with one class thinned to about 5% and catalogue metadata beside it, and an artifact damaged on that
class alone (the float student's ONNX with the class's own logit lowered by `delta` wherever it is the
top-1, so the least confident of its samples flip: a quantization-like failure confined to one class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEPARTMENTS = {0: "tops", 1: "bottoms", 2: "tops", 3: "dresses", 4: "tops", 5: "footwear", 6: "tops", 7: "footwear",
               8: "bags", 9: "footwear"}


def planted_eval(src: Path, dst: Path, *, cls: int = 1, keep: int = 100, seed: int = 0,
                 metadata: bool = True) -> np.ndarray:
    """Write the thinned data set to `dst`; return the planted group's mask (label == cls)."""
    rng = np.random.default_rng(seed)
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    labels = arrays["labels"]
    drop = rng.permutation(np.flatnonzero(labels == cls))[keep:]
    kept = np.setdiff1d(np.arange(len(labels)), drop)
    arrays = {k: v[kept] for k, v in arrays.items()}
    n = len(kept)
    if metadata:  # the catalogue's department, and two columns unrelated to anything
        arrays["department"] = np.array([DEPARTMENTS[int(c)] for c in arrays["labels"]])
        arrays["studio"] = rng.choice(["north", "south", "east", "west"], n)
        arrays["exposure"] = rng.normal(1.0, 0.15, n).astype(np.float32)
    np.savez(dst, **arrays)
    return arrays["labels"] == cls


def damaged_onnx(src: Path, dst: Path, *, cls: int, delta: float) -> Path:
    """The model at `src` with class `cls`'s logit lowered by `delta` where it is the top-1."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(src)
    graph = model.graph
    out = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["logits_undamaged" if o == out else o for o in node.output]
    penalty = np.zeros((1, 10), np.float32)
    penalty[0, cls] = -delta
    graph.initializer.extend([helper.make_tensor("planted_class", TensorProto.INT64, [], [cls]),
                              helper.make_tensor("planted_penalty", TensorProto.FLOAT, [1, 10], penalty.ravel()),
                              helper.make_tensor("planted_axis", TensorProto.INT64, [1], [1])])
    graph.node.extend([
        helper.make_node("ArgMax", ["logits_undamaged"], ["planted_top1"], axis=1, keepdims=0),
        helper.make_node("Equal", ["planted_top1", "planted_class"], ["planted_hit"]),
        helper.make_node("Cast", ["planted_hit"], ["planted_hit_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["planted_hit_f", "planted_axis"], ["planted_hit_col"]),
        helper.make_node("Mul", ["planted_hit_col", "planted_penalty"], ["planted_shift"]),
        helper.make_node("Add", ["logits_undamaged", "planted_shift"], [out])])
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return dst


def delta_flipping(logits: np.ndarray, cls: int, share: float) -> float:
    """The penalty that flips `share` of the samples whose top-1 is `cls` (their logit margins' quantile)."""
    top = np.sort(logits[logits.argmax(1) == cls], axis=1)
    return float(np.quantile(top[:, -1] - top[:, -2], share))


def _linear_onnx(path: Path, weight: np.ndarray, *, damage: tuple[np.ndarray, float, np.ndarray] | None = None) -> Path:
    """A small embedding model as ONNX: x [B, D] -> x @ weight [B, E]. `damage` (direction, threshold,
    shift): where x @ direction > threshold, the embedding is moved by `shift`."""
    import onnx
    from onnx import TensorProto, helper

    d, e = weight.shape
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [d, e], weight.astype(np.float32).ravel())]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["clean" if damage else "embedding"])]
    if damage:
        direction, threshold, shift = damage
        inits += [helper.make_tensor("dir", TensorProto.FLOAT, [d, 1], direction.astype(np.float32).ravel()),
                  helper.make_tensor("thr", TensorProto.FLOAT, [], [threshold]),
                  helper.make_tensor("shift", TensorProto.FLOAT, [1, e], shift.astype(np.float32).ravel())]
        nodes += [helper.make_node("MatMul", ["x", "dir"], ["proj"]), helper.make_node("Greater", ["proj", "thr"], ["hit"]),
                  helper.make_node("Cast", ["hit"], ["hit_f"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["hit_f", "shift"], ["moved"]),
                  helper.make_node("Add", ["clean", "moved"], ["embedding"])]
    graph = helper.make_graph(nodes, "embedder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", e])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def tiny_embedding(folder: Path, n: int = 2000, seed: int = 0) -> np.ndarray:
    """A small embedding task (the MiniLM example's path at a fraction of its cost): 16-d inputs from ten
    'topics', a teacher and a student that map them to 32-d embeddings (the student the teacher plus
    a little noise), and an artifact damaged on topic 3 only (about 5% of the samples), which the data's
    `language` column also marks ('pt'). Writes teacher.onnx, student.onnx, damaged.onnx, data.npz and
    edge-distill.toml into `folder`; returns the planted group's mask."""
    rng = np.random.default_rng(seed)
    sizes = [100] + [(n - 100) // 9] * 9
    sizes[-1] += n - sum(sizes)
    topic = rng.permutation(np.repeat([3, 0, 1, 2, 4, 5, 6, 7, 8, 9], sizes))
    centres = rng.normal(size=(10, 16)) * 3
    x = (centres[topic] + rng.normal(size=(n, 16))).astype(np.float32)
    teacher = rng.normal(size=(16, 32))
    student = teacher + rng.normal(size=(16, 32)) * 0.05
    direction = centres[3] / np.linalg.norm(centres[3])
    threshold = float(np.min(x[topic == 3] @ direction) - 1e-3)
    group = (x @ direction) > threshold
    _linear_onnx(folder / "teacher.onnx", teacher)
    _linear_onnx(folder / "student.onnx", student)
    _linear_onnx(folder / "damaged.onnx", student, damage=(direction, threshold, rng.normal(size=32) * 12))
    language = np.where(group, "pt", rng.choice(["en", "de", "fr"], n))
    np.savez(folder / "data.npz", x=x, language=language, length=rng.integers(3, 40, n))
    (folder / "edge-distill.toml").write_text('''[model]
student = "student.onnx"
teacher = "teacher.onnx"
task = "embedding"
[data]
evaluation = "data.npz"
[measure]
runs = 20
warmup = 2
[[targets]]
name = "ort"
precisions = ["fp32"]
[budgets]
min_teacher_cosine = 0.9
''')
    return group


def planted_minilm(src: Path, good_onnx: Path, folder: Path, *, topic: str = "coding", keep: int = 23,
                   seed: int = 0, scale: float = 1.3) -> np.ndarray:
    """The MiniLM example's evaluation texts with one topic planted (its `topic` column added, as a
    catalogue's; the topic thinned to `keep` texts, about 5%), and `damaged.onnx`: the float student's
    ONNX (`good_onnx`) with its embedding moved by a fixed vector (length `scale`, cosine with the
    original about 0.6) wherever its direction lies within the topic's cap (cosine with the kept
    texts' mean direction above a threshold). Texts of other topics inside that cap are left out of
    the data, so the damaged texts are the planted topic's exactly. `src`: the example's cache folder
    (eval.npz, eval_texts.json). Writes planted.npz and damaged.onnx into `folder`; returns the mask."""
    import json

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    with np.load(src / "eval.npz") as f:
        arrays = {k: f[k] for k in f.files}
    topics = np.array(json.loads((src / "eval_texts.json").read_text())["topics"])
    session = ort.InferenceSession(str(good_onnx), providers=["CPUExecutionProvider"])
    emb = session.run(None, {i.name: arrays[i.name] for i in session.get_inputs()})[0].astype(np.float64)
    direction = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    kept = np.zeros(len(topics), bool)
    kept[rng.permutation(np.flatnonzero(topics == topic))[:keep]] = True
    centre = direction[kept].mean(axis=0)
    centre /= np.linalg.norm(centre)
    closeness = direction @ centre
    inside = closeness >= closeness[kept].min()
    stay = ~((inside | (topics == topic)) & ~kept)
    threshold = (closeness[kept].min() + closeness[stay & ~kept].max()) / 2  # halfway across the gap
    arrays = {k: v[stay] for k, v in arrays.items()}
    arrays["topic"] = topics[stay]
    np.savez(folder / "planted.npz", **arrays)

    model = onnx.load(good_onnx)
    graph, out = model.graph, model.graph.output[0].name
    for node in graph.node:
        node.output[:] = ["embedding_undamaged" if o == out else o for o in node.output]
    shift = rng.normal(size=len(centre))
    shift *= scale / np.linalg.norm(shift)
    graph.initializer.extend([
        helper.make_tensor("planted_centre", TensorProto.FLOAT, [len(centre), 1], centre.astype(np.float32)),
        helper.make_tensor("planted_threshold", TensorProto.FLOAT, [], [threshold]),
        helper.make_tensor("planted_shift", TensorProto.FLOAT, [1, len(centre)], shift.astype(np.float32)),
        helper.make_tensor("planted_axes", TensorProto.INT64, [1], [1])])
    graph.node.extend([
        helper.make_node("ReduceL2", ["embedding_undamaged", "planted_axes"], ["planted_norm"], keepdims=1),
        helper.make_node("Div", ["embedding_undamaged", "planted_norm"], ["planted_direction"]),
        helper.make_node("MatMul", ["planted_direction", "planted_centre"], ["planted_closeness"]),
        helper.make_node("Greater", ["planted_closeness", "planted_threshold"], ["planted_hit"]),
        helper.make_node("Cast", ["planted_hit"], ["planted_hit_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["planted_hit_f", "planted_shift"], ["planted_moved"]),
        helper.make_node("Add", ["embedding_undamaged", "planted_moved"], [out])])
    onnx.checker.check_model(model)
    onnx.save(model, folder / "damaged.onnx")
    return arrays["topic"] == topic
