"""The support matrix: every model of tests/zoo.py, in every intake form, through every target and
precision, with `edge-distill check`. Writes docs/support.md (the table README links to) and exits 1
when any cell ended in an internal error (exit 3): a cell is a pass with its figures, or a
limitation that exits 2 with its message.

    python benchmarks/support_matrix.py [--workers 2] [--models cnn,gru]

tests/test_support_matrix.py runs a fast subset of the same cells in CI.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import zoo  # noqa: E402


def cells_of(name: str, form: str, work: Path) -> list:
    """One `check` on every target where that passes (they share the load and the export); one per
    target when it does not, so each target's limitation is its own cell. ONNX files go per target
    from the start: LiteRT and Core ML take torch models."""
    model = _trained(name)
    if not form.startswith("onnx"):
        cells = zoo.run(name, form, zoo.TARGETS, work / name / form / "all", model=model)
        if all(c.code == 0 for c in cells):
            return cells
    cells = []
    for target, precisions in zoo.TARGETS.items():
        cells += zoo.run(name, form, {target: precisions}, work / name / form / target, model=model)
    return cells


_models: dict = {}


def _trained(name: str):
    """Trained once per worker process (training is seeded: every worker gets the same model)."""
    if name not in _models:
        _models[name] = zoo.trained(name)
    return _models[name]


def _one_thread_each() -> None:
    """Two workers on two cores: each `check` (and what it starts) on one thread, not fighting."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = "1"
    import torch

    torch.set_num_threads(1)


def render(cells: list, seconds: float, workers: int) -> str:
    lines = ["# Support matrix", "",
             f"Written by `python benchmarks/support_matrix.py` ({seconds / 60:.1f} min with {workers} workers on a "
             "shared 2-core AMD EPYC). Each model of `tests/zoo.py` is trained for a fixed number of steps on synthetic "
             "data whose labels depend on its inputs, saved in each intake form, and run through `edge-distill check`. "
             "Core ML runs with the target option `weight_threshold = 64` (the zoo's weights are tiny; the default, 2,048, "
             "would leave most of them fp16). A cell lists each precision's top-1 agreement with the float student (per pixel for the segmenter) and, "
             "for quantized ones, the share of weights stored in int8/int4 (n/a: accuracy not measurable on this "
             "host, as a GRU's Core ML while_loop is for the reference evaluator); or the limitation's message "
             "(exit 2). "
             "No cell may end in an internal error (exit 3).", "",
             "| model | form | " + " | ".join(zoo.TARGETS) + " |", "|---|---|" + "---|" * len(zoo.TARGETS)]
    by_key = {(c.model, c.form, c.target): c for c in cells}
    for name in dict.fromkeys(c.model for c in cells):
        for form in zoo.FORMS:
            row = [by_key.get((name, form, t)) for t in zoo.TARGETS]
            lines.append(f"| {name} | {form} | " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _cell(cell) -> str:
    if cell is None:
        return ""
    if cell.code == 0:
        return cell.text.removeprefix("pass: ")
    mark = "INTERNAL ERROR" if cell.code == 3 else "limitation" if cell.code == 2 else \
        "BROKEN" if cell.code == 1 else "not saved"
    text = re.sub(r"/\S*?edge-distill-matrix-[^/\s]+/(?:[^/\s]+/)*", "", cell.text.removeprefix("error: "))
    return f"{mark}: {text}".replace("|", "/")[:220]


def _published_section(doc: Path) -> str:
    """benchmarks/published_corpus.py's section, kept as it was written (a separate, longer run)."""
    text = doc.read_text() if doc.exists() else ""
    start = text.find("<!-- published corpus: start -->")
    return "" if start < 0 else "\n" + text[start:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default=",".join(zoo.ZOO))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "support.md")
    args = parser.parse_args()
    names = args.models.split(",")
    start = time.perf_counter()
    tasks = [(name, form) for name in names for form in zoo.FORMS]
    with tempfile.TemporaryDirectory(prefix="edge-distill-matrix-") as work, \
            ProcessPoolExecutor(args.workers, initializer=_one_thread_each) as pool:  # torch.export is not thread-safe
        results = list(pool.map(cells_of, *zip(*tasks), [Path(work)] * len(tasks)))
    cells = [c for group in results for c in group]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(cells, time.perf_counter() - start, args.workers) + _published_section(args.out))
    internal = [c for c in cells if c.code == 3]
    print(f"{len(cells)} cells, {sum(c.code == 0 for c in cells)} pass, {sum(c.code == 2 for c in cells)} "
          f"limitations, {len(internal)} internal errors -> {args.out}")
    for c in internal:
        print(f"INTERNAL: {c.model} {c.form} {c.target}: {c.text}")
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
