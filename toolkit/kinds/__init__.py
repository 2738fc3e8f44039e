"""Output kinds: what an output means, and so how an artifact's output is judged against the float
student's same output. One module per kind, each an `OutputKind` registered in KINDS; the evaluation
code asks a kind for its figures and budget keys and never tests a kind's name.

A kind is declared per output (`[model.outputs.NAME] kind = "sequence"`, with the axis it needs) or
inferred from the output's shape and dtype (`infer`), and the inferred kind is printed and written into
report.json, with a warning naming the config line where the shape is ambiguous.
"""

from __future__ import annotations

import json
import re

import numpy as np

from .base import OutputKind


def _registry() -> dict[str, OutputKind]:
    from . import classification, dense, detection, embedding, indices, segmentation, sequence, state

    return {k.KIND.name: k.KIND for k in (classification, sequence, dense, segmentation, detection, embedding, indices,
                                          state)}


KINDS = _registry()
ALIASES = {"regression": "dense"}  # the task names [model] outputs took before kinds


def get_kind(name: str) -> OutputKind:
    return KINDS[ALIASES.get(name, name)]


def all_budget_keys() -> dict[str, tuple[str, str, str]]:
    keys: dict = {}
    for kind in KINDS.values():
        keys.update(kind.budget_keys)
    return keys


def infer(shape: tuple, dtype, task: str) -> tuple[str, str]:
    """(kind, why) for an undeclared output of this per-sample shape and dtype; `why` is non-empty where
    the shape admits another reading (the caller warns with the config line that settles it)."""
    if np.issubdtype(np.dtype(dtype), np.integer) or np.dtype(dtype) == np.bool_:
        return "indices", ""
    rank = len(shape)
    if rank == 0 or (rank == 1 and shape[0] == 1):
        return "dense", ""  # one value per sample: a score or a regression
    if rank == 1:
        return ("embedding" if task == "embedding" else "classification"), ""
    if rank == 2:
        return "sequence", f"a [B, {shape[0]}, {shape[1]}] output is read as {shape[0]} positions of {shape[1]} classes"
    if rank == 3 and shape[0] == 1:
        return "dense", ""  # a one-channel map
    return "dense", (f"a [B, {', '.join(map(str, shape))}] output is read as a dense map (compared by its error "
                     f"and PSNR); if its axis 1 holds class scores per pixel it is a segmentation")


def toml_key(name: str) -> str:
    """`name` as a TOML table key: bare where TOML allows it, quoted otherwise (softmax_11.tmp_0)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def resolve_kinds(declared: dict[str, dict], names: list[str], outputs: list[np.ndarray],
                  task: str) -> tuple[list[dict], list[str]]:
    """Each output's kind and settings (declared, else inferred), and warnings for ambiguous shapes."""
    kinds, warnings = [], []
    for i, (name, values) in enumerate(zip(names, outputs)):
        spec = dict(declared.get(name, {}))
        if "kind" not in spec:
            spec["kind"], why = infer(values.shape[1:], values.dtype, task)
            spec["inferred"] = True
            if why:
                warnings.append(f"output '{name}': {why}; to say what it is, set [model.outputs.{toml_key(name)}] "
                                f"kind = \"...\" (one of {', '.join(KINDS)})")
        kind = get_kind(spec["kind"])
        kinds.append({**kind.settings, "inferred": False, **spec, "kind": kind.name, "index": i})
    return kinds, warnings
