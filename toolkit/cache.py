"""Reuse of what a run recomputes unchanged (the verified ONNX export, the float student's and the
teacher's outputs, each built artifact), in edge-distill's cache folder (`reuse/` under $EDGE_DISTILL_CACHE).
Measurements (latency, accuracy, agreement) are never cached: every verdict is measured again.

An entry is found by a key: the sha256 of everything its value depends on (the model's files, the
data's arrays, the settings, the versions of the packages and of the code that computed it). Values
are files and .npz arrays, never pickles; each entry's manifest records every file's sha256, and an
entry whose files do not match it, or that holds a link, is dropped and recomputed, never trusted.
Entries are written beside the cache and renamed into place (a reader sees a whole entry or none);
the least recently used go once the cache passes its bound ($EDGE_DISTILL_CACHE_MB, default 2048).
`--no-cache` (or EDGE_DISTILL_NO_CACHE=1) bypasses it: nothing read, nothing written.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .errors import BadInput
from .files import plain_files, sha256_file
from .places import cache_home
from .result import ExportInfo

if TYPE_CHECKING:
    from edge_distill.targets import Artifact, BuildRequest

MANIFEST = "entry.json"
DEFAULT_LIMIT_MB = 2048
_bypassed = contextvars.ContextVar("edge_distill_cache_bypassed", default=False)


@contextlib.contextmanager
def bypassed(yes: bool = True):
    """`--no-cache`: inside, every lookup misses and nothing is stored."""
    token = _bypassed.set(yes or _bypassed.get())
    try:
        yield
    finally:
        _bypassed.reset(token)


@dataclass
class Hit:
    key: str
    folder: Path  # the entry's folder: its files by the names they were stored under
    meta: dict

    @property
    def note(self) -> str:
        return f"reused from cache {self.key[:16]}"


class Cache:
    """Content-addressed entries under `folder`, at most `limit_bytes` in all."""

    def __init__(self, folder: Path | None = None, limit_bytes: int | None = None):
        self.folder = Path(folder) if folder is not None else cache_home() / "reuse"
        mb = os.environ.get("EDGE_DISTILL_CACHE_MB")
        self.limit_bytes = limit_bytes if limit_bytes is not None else int(mb or DEFAULT_LIMIT_MB) * 1024**2

    @property
    def enabled(self) -> bool:
        return not (_bypassed.get() or os.environ.get("EDGE_DISTILL_NO_CACHE", "") not in ("", "0"))

    def get(self, key: str) -> Hit | None:
        """The entry stored under `key`, its files checked against its manifest; None on a miss."""
        entry = self.folder / key
        if not self.enabled or not os.path.lexists(entry):
            return None
        meta = self._verified(entry, key)
        if meta is None:  # corrupt, tampered with or a link: recomputed, never trusted
            _remove(entry)
            return None
        os.utime(entry)  # recently used: evicted last
        return Hit(key, entry, meta["meta"])

    def put(self, key: str, files: dict[str, Path], meta: dict) -> None:
        """Store copies of `files` (name -> path) and `meta` (JSON) under `key`; a race with another run
        storing the same key keeps theirs."""
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.folder))
        try:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name, follow_symlinks=False)
            sums = {name: sha256_file(tmp / name) for name in files}
            (tmp / MANIFEST).write_text(json.dumps({"key": key, "files": sums, "meta": meta}, default=str))
            if _size(tmp) > self.limit_bytes:  # larger than the whole cache: not kept
                return
            with contextlib.suppress(OSError):  # another run stored it first
                tmp.rename(self.folder / key)
        finally:
            _remove(tmp)
        self.evict()

    def arrays(self, key: str) -> tuple[list[np.ndarray], dict] | None:
        """Arrays stored by `put_arrays`, read without pickles, and their meta; None on a miss."""
        hit = self.get(key)
        if hit is None:
            return None
        with np.load(hit.folder / "arrays.npz", allow_pickle=False) as stored:
            return [stored[f"a{i}"] for i in range(len(stored.files))], hit.meta

    def put_arrays(self, key: str, arrays: list[np.ndarray], meta: dict) -> None:
        if not self.enabled or any(np.asarray(a).dtype.hasobject for a in arrays):
            return
        with tempfile.TemporaryDirectory(prefix=".arrays-") as work:
            path = Path(work) / "arrays.npz"
            named: dict[str, Any] = {f"a{i}": a for i, a in enumerate(arrays)}
            np.savez(path, **named)
            self.put(key, {"arrays.npz": path}, meta)

    def evict(self) -> None:
        """Least recently used entries removed until the cache holds at most its bound."""
        if not self.folder.is_dir():
            return
        entries = [e for e in self.folder.iterdir() if not e.name.startswith(".")]
        sizes = {e: _size(e) for e in entries}
        total = sum(sizes.values())
        for entry in sorted(entries, key=lambda e: os.lstat(e).st_mtime):
            if total <= self.limit_bytes:
                break
            _remove(entry)
            total -= sizes[entry]

    def _verified(self, entry: Path, key: str) -> dict | None:
        try:
            files = {f.name for f in plain_files(entry)}  # refuses a link: the entry itself or inside it
            manifest = json.loads((entry / MANIFEST).read_text())
            sums = manifest["files"]
            if manifest["key"] != key or files != set(sums) | {MANIFEST}:
                return None
            if any(sha256_file(entry / name) != digest for name, digest in sums.items()):
                return None
            return manifest
        except (BadInput, OSError, ValueError, KeyError, TypeError):
            return None


def _remove(path: Path) -> None:
    """A file, a link (never what it points to) or a folder (rmtree removes links inside, not their targets)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def _size(path: Path) -> int:
    """Bytes under `path`, counting links as themselves."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    return sum(_size(child) for child in path.iterdir())


def key_of(what: str, **parts) -> str:
    """The sha256 of `what` and `parts` (JSON-able: strings, numbers, lists, dicts)."""
    text = json.dumps({"what": what, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def code_identity(*names: str) -> str:
    """sha256 of the code that computes a value: a module's file, or every .py file of a package (its
    folder walked whole: a change anywhere in it misses); a module that is no file counts as "none"."""
    import importlib

    digest = hashlib.sha256()
    for name in names:
        source = getattr(importlib.import_module(name), "__file__", None)
        if source is None:
            digest.update(f"{name}:none;".encode())
        elif Path(source).name == "__init__.py":
            folder = Path(source).parent
            for path in sorted(folder.rglob("*.py")):
                digest.update(f"{name}/{path.relative_to(folder).as_posix()}:{sha256_file(path)};".encode())
        else:
            digest.update(f"{name}:{sha256_file(Path(source))};".encode())
    return digest.hexdigest()


def arrays_identity(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays as they were read (names, dtypes, shapes, bytes): the data a value was computed on."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    return digest.hexdigest()


def model_identity(model) -> str | None:
    """What a model's outputs depend on, as one sha256, or None when that cannot be known (a pickled
    module's code lives in whatever it imports: never reused). A factory model: its module's source file
    and its weights (what the factory module itself imports is not followed); an ONNX file: the file and
    its external data; a .pt2 or a model folder: its files."""
    parts = [model.kind, model.fingerprint]
    try:
        if model.kind == "onnx" and model.onnx_path is not None:
            parts += [sha256_file(f) for f in _external_data(Path(model.onnx_path))]
        elif model.kind == "torch" and Path(model.reference).is_dir():
            parts += [f"{f.name}:{sha256_file(f)}" for f in plain_files(Path(model.reference))]
        elif model.kind == "torch" and ":" in model.reference:
            module = sys.modules.get(model.reference.partition(":")[0])
            source = getattr(module, "__file__", None)
            if not source:
                return None
            parts.append(sha256_file(Path(source)))
        elif model.kind != "exported":
            return None  # a pickled module
    except (BadInput, OSError):
        return None
    return hashlib.sha256(";".join(parts).encode()).hexdigest()


def _external_data(path: Path) -> list[Path]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    places = {e.value for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
              for e in t.external_data if e.key == "location"}
    return [path.parent / p for p in sorted(places)]


EXPORT_PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "optimum", "optimum-onnx", "transformers", "numpy")


def cached_export(model, samples, out_path: Path, export: Callable[[], ExportInfo], *, opset: int,
                  tolerance: float, cache: Cache | None = None) -> ExportInfo:
    """`export()` (the verified ONNX export to `out_path`), or the file and record of an earlier one
    with the same model, samples, settings and versions. A reused record says so (`reused`)."""
    cache = cache or Cache()
    identity = model_identity(model)
    if identity is None or not cache.enabled:
        return export()
    key = key_of("onnx export", model=identity, samples=arrays_identity(samples.inputs), opset=opset,
                 tolerance=tolerance, inputs=repr(model.inputs), output_axes=model.output_axes,
                 output_names=model.output_names, versions=versions(*EXPORT_PACKAGES),
                 code=code_identity("edge_distill.exporting", "edge_distill.models", "edge_distill.result"),
                 python=sys.version)
    hit = cache.get(key)
    if hit is not None:
        shutil.copyfile(hit.folder / "model.onnx", out_path)
        return ExportInfo(**{**hit.meta, "path": str(out_path), "reused": hit.note})
    info = export()
    cache.put(key, {"model.onnx": out_path}, dataclasses.asdict(info))
    return info


def cached_outputs(student, teacher, data, layout: str, compute: Callable[[], tuple[list, np.ndarray | None]],
                   cache: Cache | None = None) -> tuple[list, np.ndarray | None, str | None]:
    """`compute()` (the float student's outputs, every one, and the teacher's first), or the arrays of an
    earlier run on the same models, data arrays, input layout and versions; with the reuse note or None."""
    cache = cache or Cache()
    identities = [model_identity(student), model_identity(teacher) if teacher is not None else "no teacher"]
    if None in identities or not cache.enabled:
        return *compute(), None
    key = key_of("reference outputs", student=identities[0], teacher=identities[1],
                 data=arrays_identity(data.inputs), layout=layout, versions=versions(*EXPORT_PACKAGES),
                 code=code_identity("edge_distill.models", "edge_distill.streaming", "edge_distill.text"),
                 python=sys.version)
    stored = cache.arrays(key)
    if stored is not None:
        arrays, meta = stored
        hit_note = f"reused from cache {key[:16]}"
        return arrays[:meta["student_outputs"]], (arrays[-1] if meta["teacher"] else None), hit_note
    student_all, teacher_out = compute()
    cache.put_arrays(key, [*student_all, *([teacher_out] if teacher_out is not None else [])],
                     {"student_outputs": len(student_all), "teacher": teacher_out is not None})
    return student_all, teacher_out, None


# What a target's build may import: a new version of any of them misses (absent ones count as "absent").
BUILD_PACKAGES = (*EXPORT_PACKAGES, "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "tensorflow",
                  "coremltools", "onnx2torch", "torchao", "scikit-learn")
# Every package of edge-distill's own code a build runs through: any change to any of their files misses.
BUILD_CODE = ("edge_distill", "edge_distill.targets", "edge_distill.calibration")


def dataset_identity(data) -> str:
    """sha256 of a calibration Dataset: its source's name (a build records it) and every array (inputs,
    labels, slices, weights); "none" without one."""
    if data is None:
        return "none"
    arrays = {f"input/{k}": v for k, v in data.inputs.items()} | {f"slice/{k}": v for k, v in data.slices.items()}
    arrays |= {k: v for k, v in (("labels", data.labels), ("weights", data.weights)) if v is not None}
    return hashlib.sha256(f"{data.source}\n{arrays_identity(arrays)}".encode()).hexdigest()


def artifact_key(target: str, request: BuildRequest, selection: dict, implementation: str = "") -> str | None:
    """The key of one build: everything `target.build(request)` reads (the ONNX export's bytes, the source
    model (its identity and its name, which a Core ML build writes into the file), the calibration
    source and arrays and method, `selection`: how the calibration samples were chosen, the
    options as given, the metadata, the tolerance), the packages and edge-distill code that build it, the
    Python, the machine and its threads; `implementation`, the module of the target's class: a plugin
    target's code counts as edge-distill's does. None when the source model's identity cannot be known:
    never reused."""
    model = model_identity(request.source)
    onnx = Path(request.onnx_path) if request.onnx_path is not None else None
    if model is None or (onnx is not None and not onnx.is_file()):
        return None
    try:
        onnx_files = [sha256_file(f) for f in [onnx, *_external_data(onnx)]] if onnx is not None else []
    except Exception:  # a file onnx cannot parse (a protobuf DecodeError): built, never reused
        return None
    source = request.source
    return key_of("artifact", target=target, precision=request.precision, onnx=onnx_files, model=model,
                  reference=source.reference, inputs=repr(source.inputs),
                  output_axes=getattr(source, "output_axes", None),
                  output_names=source.output_names,
                  calibration=dataset_identity(request.calibration), calibration_method=request.calibration_method,
                  selection=selection, options=request.options, metadata=request.metadata,
                  tolerance=request.tolerance, versions=versions(*BUILD_PACKAGES),
                  code=code_identity(*BUILD_CODE, *([implementation] if implementation else [])),
                  python=sys.version, machine=platform.machine(),
                  threads=os.environ.get("OMP_NUM_THREADS"), cpus=os.cpu_count())  # a calibration's float sums


def cached_artifact(key: str | None, out_dir: Path, build: Callable[[], Artifact],
                    cache: Cache | None = None) -> tuple[Artifact, str | None]:
    """`build()` (one artifact, its files in `out_dir`), or the files and record of an earlier build with
    the same key, copied into `out_dir` under their names; with the reuse note or None. A build that
    raised is not stored; neither is one this cache cannot hold whole (a package folder, a file outside
    `out_dir`, details that do not survive JSON unchanged)."""
    cache = cache or Cache()
    if key is None or not cache.enabled:
        return build(), None
    hit = cache.get(key)
    if hit is not None:
        restored = _restored(hit, out_dir)
        if restored is not None:
            return restored, hit.note
        _remove(hit.folder)  # a record that does not match its files: rebuilt, never trusted
    artifact = build()
    record = _artifact_record(artifact, out_dir)
    if record is not None:
        cache.put(key, {name: out_dir / name for name in record["files"]}, record)
    return artifact, None


def _artifact_record(artifact: Artifact, out_dir: Path) -> dict | None:
    """The artifact as JSON (files by name), or None when it cannot be stored as it is."""
    files = [Path(f) for f in artifact.files]
    if Path(artifact.path) not in files or any(f.parent != out_dir or f.is_symlink() or not f.is_file()
                                               for f in files):
        return None
    try:
        if json.loads(json.dumps(artifact.details)) != artifact.details:  # a tuple, a numpy scalar
            return None
    except (TypeError, ValueError):
        return None
    return {"target": artifact.target, "precision": artifact.precision, "path": Path(artifact.path).name,
            "files": [f.name for f in files], "details": artifact.details}


def _restored(hit: Hit, out_dir: Path) -> Artifact | None:
    """The stored artifact's files copied into `out_dir` and its record rebuilt; None when the record
    does not name exactly the entry's files (then it is rebuilt)."""
    from edge_distill.targets import Artifact

    record = hit.meta if isinstance(hit.meta, dict) else {}
    names = record.get("files")
    stored = {f.name for f in hit.folder.iterdir()} - {MANIFEST}
    if not isinstance(names, list) or set(names) != stored or record.get("path") not in names \
            or not isinstance(record.get("details"), dict) \
            or not all(isinstance(record.get(k), str) for k in ("target", "precision")):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(hit.folder / name, out_dir / name)
    return Artifact(target=record["target"], precision=record["precision"], path=out_dir / record["path"],
                    files=[out_dir / name for name in names], details=record["details"])
