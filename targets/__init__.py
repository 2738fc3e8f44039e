"""Targets: one module per deployment target, behind one small interface.

A target declares its capabilities as data (so `edge-distill targets` answers without importing
any heavy SDK), builds an artifact from the verified fp32 ONNX export (and the source model, for
converters that start from torch), and opens a runner on it for verification.

Third parties add targets through the entry-point group `edge_distill.targets`:

    [project.entry-points."edge_distill.targets"]
    mytarget = "mypackage.mytarget:MyTarget"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from edge_distill.errors import BadInput

ENTRY_POINT_GROUP = "edge_distill.targets"
BUILTIN = {"ort": "edge_distill.targets.ort:OrtTarget", "tflite": "edge_distill.targets.tflite:TfliteTarget",
           "coreml": "edge_distill.targets.coreml:CoremlTarget"}


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, as data."""

    name: str
    description: str
    precisions: tuple[str, ...]
    calibration_methods: tuple[str, ...]
    extra: str  # pip extra that installs what the target needs
    requires: tuple[str, ...]  # import names that must be present
    suffixes: tuple[str, ...]  # artifact file suffixes the target can run
    runtime: tuple[str, ...] = ()  # modules a runner needs (imported before a memory probe)
    options: dict[str, str] = field(default_factory=dict)  # option -> what it does

    def missing_packages(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]


@dataclass
class BuildRequest:
    """Everything a target needs to build one artifact."""

    onnx_path: Path  # the verified fp32 ONNX export
    source: object  # edge_distill.models.SourceModel
    precision: str
    calibration: object | None  # edge_distill.calibration.Dataset, when the precision needs one
    calibration_method: str
    options: dict
    out_dir: Path  # where the artifact's files go
    work_dir: Path  # scratch space; tools that litter their cwd run here
    metadata: dict = field(default_factory=dict)  # labels, normalization, task: travels with the artifact


@dataclass
class Artifact:
    """A built model file and what is known about it; passed from stage to stage."""

    target: str
    precision: str
    path: Path  # the file that ships (and that verification runs)
    files: list[Path]
    details: dict = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return artifact_size(self.path)


def artifact_size(path: Path) -> int:
    """Bytes on disk; a package folder (.mlpackage) counts all its files."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


class Runner(Protocol):
    """Runs an artifact on this host. `describe()` says which runtime, for provenance."""

    input_names: list[str]

    def run(self, feeds: dict) -> list: ...

    def input_specs(self) -> list: ...

    def describe(self) -> dict: ...


class Target(Protocol):
    capabilities: Capabilities

    def build(self, request: BuildRequest) -> Artifact: ...

    def open_runner(self, path: Path, threads: int) -> Runner: ...

    def inspect(self, path: Path) -> dict: ...


def _load(ref: str):
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _registry() -> dict[str, str | object]:
    found: dict[str, str | object] = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available() -> dict[str, Capabilities]:
    out = {}
    for name, ref in sorted(_registry().items()):
        cls = _load(ref) if isinstance(ref, str) else ref.load()
        out[name] = cls.capabilities
    return out


def get_target(name: str) -> Target:
    registry = _registry()
    if name not in registry:
        raise BadInput(f"unknown target '{name}'; available: {', '.join(sorted(registry))}")
    ref = registry[name]
    return (_load(ref) if isinstance(ref, str) else ref.load())()


def parse_target_string(text: str) -> tuple[str, str | None]:
    """`ort-int8` -> ("ort", "int8"); `ort` -> ("ort", None); `ort-int8-dynamic` -> ("ort", "int8-dynamic")."""
    for name in sorted(_registry(), key=len, reverse=True):
        if text == name:
            return name, None
        if text.startswith(name + "-"):
            return name, text[len(name) + 1:]
    raise BadInput(f"unknown target '{text}'; available: {', '.join(sorted(_registry()))}")


def target_for_file(path: Path) -> str:
    """The target that runs a file with this suffix."""
    for name, caps in available().items():
        if path.suffix in caps.suffixes:
            return name
    raise BadInput(f"no target runs '{path.suffix}' files", path=path)


def check_options(caps: Capabilities, options: dict) -> None:
    unknown = sorted(set(options) - set(caps.options))
    if unknown:
        raise BadInput(f"target '{caps.name}' has no option {unknown[0]!r}; it offers: {', '.join(caps.options)}")


def check_precision(caps: Capabilities, precision: str, calibration_method: str) -> None:
    if precision not in caps.precisions:
        raise BadInput(f"target '{caps.name}' has no precision '{precision}'; it offers: {', '.join(caps.precisions)}")
    if calibration_method not in caps.calibration_methods:
        raise BadInput(f"target '{caps.name}' has no calibration method '{calibration_method}'; "
                       f"it offers: {', '.join(caps.calibration_methods)}")
