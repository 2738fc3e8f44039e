"""Targets: one module per deployment target, behind one small interface.

A target declares its capabilities as data (so `edge-distill targets` answers without importing
any heavy SDK), builds an artifact from the verified fp32 ONNX export (and the source model, for
converters that start from torch), and opens a runner on it for verification.

Third parties add targets through the entry-point group `edge_distill.targets`:

    [project.entry-points."edge_distill.targets"]
    mytarget = "mypackage.mytarget:MyTarget"
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_distill.errors import BadInput
from edge_distill.files import package_files

if TYPE_CHECKING:
    import numpy as np

    from edge_distill.calibration import Dataset, InputSpec

ENTRY_POINT_GROUP = "edge_distill.targets"
BUILTIN = {"ort": "edge_distill.targets.ort:OrtTarget", "tflite": "edge_distill.targets.tflite:TfliteTarget",
           "coreml": "edge_distill.targets.coreml:CoremlTarget"}


@dataclass(frozen=True)
class Precision:
    """One precision a target builds, as data: what an estimate, the ladder and the bundle need to
    know about it without reading its name."""

    name: str
    weight_bits: int  # bits per stored weight (4 for int4 and 4-bit palettes)
    activation_bits: int  # bits of the activations the kernels run on
    arithmetic: str  # "fp32" | "fp16" | "int8": whose throughput a device estimate counts
    compute_unit: str = "cpu"  # "cpu" | "neural engine": where an estimate runs it
    calibrated: bool = False  # needs calibration data
    help: str = ""
    # ONNX op types whose weights this precision stores at its width (empty: every weighted op's);
    # a model with none of them gets nothing from it (`init` says so)
    weight_ops: tuple[str, ...] = ()

    @property
    def is_float_baseline(self) -> bool:
        """The fp32 artifact every speedup of this target is measured against."""
        return self.weight_bits == 32 and self.arithmetic == "fp32"


@dataclass(frozen=True)
class Option:
    """A target option ([[targets]] options, --option KEY=VALUE): typed, with its default and help,
    validated once before any work (like Olive's PassConfigParam)."""

    name: str
    type: type
    default: object
    help: str
    choices: tuple = ()
    minimum: float | None = None

    def parse(self, value, target: str):
        try:
            typed = _typed(value, self.type)
        except (TypeError, ValueError):
            raise BadInput(f"target '{target}': {self.name} takes a {self.type.__name__}, got {value!r}") from None
        if self.choices and typed not in self.choices:
            raise BadInput(f"target '{target}': {self.name} must be one of {', '.join(map(str, self.choices))}, "
                           f"got {value!r}")
        if self.minimum is not None and typed < self.minimum:
            raise BadInput(f"target '{target}': {self.name} must be >= {self.minimum}, got {value!r}")
        return typed


def _typed(value, kind: type):
    """`value` as `kind`; strings from the command line (--option KEY=VALUE) are converted."""
    if kind is list:  # of names; "a,b" on the command line
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TypeError(value)
        return list(value)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise TypeError(value)
        return value
    if isinstance(value, bool):
        raise TypeError(value)
    if kind in (int, float) and isinstance(value, str):
        return kind(value)
    if kind is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, kind):
        raise TypeError(value)
    return value


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, as data."""

    name: str
    description: str
    precisions: tuple[Precision, ...]
    calibration_methods: tuple[str, ...]
    extra: str  # pip extra that installs what the target needs
    requires: tuple[str, ...]  # import names that must be present
    suffixes: tuple[str, ...]  # artifact file suffixes the target can run
    runtime: tuple[str, ...] = ()  # modules a runner needs (imported before a memory probe)
    options: tuple[Option, ...] = ()
    # The pip package whose versions match the runtime an app ships (onnxruntime for onnxruntime-android):
    # `bundle` proves an artifact loads in the app's version with it. None: the runtime is the OS's.
    app_runtime_package: str | None = None
    # How its CPU runtime computes convolutions, for device estimates (edge_distill.devices.cost_model):
    # "gemm" (im2col or indirect GEMM, fp32 in fp32: XNNPACK, MLAS, BNNS) or "ncnn" (Winograd, fp16).
    kernels: str = "gemm"
    # The source models it converts from (SourceModel.kind): "onnx", "torch" (module:factory, a Hugging
    # Face folder), "exported" (.pt2)
    sources: tuple[str, ...] = ("onnx", "torch", "exported")
    # (source kind, import name): a source it converts only through that package (tflite: onnx2torch)
    source_packages: tuple[tuple[str, str], ...] = ()

    def source_refused(self, kind: str) -> str | None:
        """Why this target cannot convert a source of this kind here, or None."""
        if kind not in self.sources:
            return f"converts from {' or '.join(self.sources)} sources, not {kind}"
        package = next((m for k, m in self.source_packages if k == kind), None)
        if package and importlib.util.find_spec(package) is None:
            return f"converts an {kind} source through {package}, which is not installed"
        return None

    def missing_packages(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    @property
    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)

    def precision(self, name: str) -> Precision:
        for p in self.precisions:
            if p.name == name:
                return p
        raise BadInput(f"target '{self.name}' has no precision '{name}'; it offers: {', '.join(self.precision_names)}")

    def float_baseline(self) -> str | None:
        return next((p.name for p in self.precisions if p.is_float_baseline), None)

    def options_with_defaults(self, given: dict | None) -> dict:
        """The options a build or a runner reads: every declared one, typed, defaults filled in."""
        given = dict(given or {})
        known = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            offered = ", ".join(known) or "no options"
            raise BadInput(f"target '{self.name}' has no option {unknown[0]!r}; it offers: {offered}")
        return {name: o.parse(given[name], self.name) if name in given else o.default for name, o in known.items()}


@dataclass
class Coverage:
    """How much of a quantized artifact really is quantized, read from the artifact itself: weight
    elements (and multiply-accumulates, where the format gives shapes) stored in int8/int4 against
    those left in float, per op type, and the ops left in float with the reason when one is known."""

    quantized_weights: int = 0
    float_weights: int = 0
    quantized_macs: int | None = 0  # None: the format does not say (Core ML packages)
    float_macs: int | None = 0
    by_op: dict = field(default_factory=dict)  # op type -> {"quantized": elements, "float": elements}
    float_ops: list = field(default_factory=list)  # "Conv /conv1/Conv: why" for the first few
    layers: dict = field(default_factory=dict)  # layer name (as keep_float takes it) -> (op, elements, quantized)
    by_precision: dict = field(default_factory=dict)  # "int4" | "int8" | "float" -> {"weights", "macs"}

    def add(self, op: str, elements: int, macs: int | None, quantized: bool, name: str = "", why: str = "",
            layer: str = "", bits: int | None = None):
        """One weight tensor; `bits`: its integer width when quantized (mixed precision mixes them)."""
        kind = "quantized" if quantized else "float"
        tally = self.by_precision.setdefault(f"int{bits}" if quantized and bits else kind, {"weights": 0, "macs": 0})
        tally["weights"] += int(elements)
        tally["macs"] = None if tally["macs"] is None or macs is None else tally["macs"] + macs
        if layer or name:
            _, before, _ = self.layers.get(layer or name, (op, 0, quantized))
            self.layers[layer or name] = (op, before + int(elements), quantized)
        entry = self.by_op.setdefault(op, {"quantized": 0, "float": 0})
        entry[kind] += int(elements)
        if quantized:
            self.quantized_weights += int(elements)
            self.quantized_macs = None if self.quantized_macs is None or macs is None else self.quantized_macs + macs
        else:
            self.float_weights += int(elements)
            self.float_macs = None if self.float_macs is None or macs is None else self.float_macs + macs
            entry = " ".join(filter(None, (op, name))) + (f": {why}" if why else "")
            if len(self.float_ops) < 20 and entry not in self.float_ops:  # a recurrent node has several weights
                self.float_ops.append(entry)

    def to_dict(self) -> dict:
        weights = self.quantized_weights + self.float_weights
        macs = None if self.quantized_macs is None or self.float_macs is None else self.quantized_macs + self.float_macs
        return {"quantized_weight_fraction": round(self.quantized_weights / weights, 4) if weights else None,
                "quantized_mac_fraction": round(self.quantized_macs / macs, 4) if macs and self.quantized_macs is not None else None,
                "quantized_weights": self.quantized_weights, "float_weights": self.float_weights,
                "quantized_macs": self.quantized_macs, "float_macs": self.float_macs,
                "by_op": dict(sorted(self.by_op.items())), "float_ops": self.float_ops,
                "by_precision": {kind: _shares(tally, weights, macs)
                                 for kind, tally in sorted(self.by_precision.items())}}


def _shares(tally: dict, weights: int, macs: int | None) -> dict:
    """One storage precision's weights and MACs, with their shares of the artifact's."""
    return {**tally, "weight_fraction": round(tally["weights"] / weights, 4) if weights else None,
            "mac_fraction": round(tally["macs"] / macs, 4) if macs and tally["macs"] is not None else None}


class Source(Protocol):
    """What a target reads of the source model (edge_distill.models.SourceModel, which targets may not import)."""

    @property
    def reference(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def inputs(self) -> list[InputSpec]: ...
    @property
    def fingerprint(self) -> str: ...
    # a torch module and a torch.export program (or None): Any, as torch is not imported here
    @property
    def module(self) -> Any: ...
    @property
    def exported(self) -> Any: ...
    @property
    def onnx_path(self) -> Path | None: ...
    @property
    def output_names(self) -> list[str]: ...
    def predict(self, data: Dataset, batch_size: int = 256) -> np.ndarray: ...


@dataclass
class BuildRequest:
    """Everything a target needs to build one artifact."""

    onnx_path: Path  # the verified fp32 ONNX export
    source: Source  # edge_distill.models.SourceModel
    precision: str
    calibration: Dataset | None  # when the precision needs one
    calibration_method: str
    options: dict
    out_dir: Path  # where the artifact's files go
    work_dir: Path  # scratch space; tools that litter their cwd run here
    metadata: dict = field(default_factory=dict)  # labels, normalization, task: travels with the artifact
    # [export] tolerance: a float build checked against the source uses it, unless the target's own
    # `tolerance` option is given
    tolerance: float = 1e-4


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
    """Bytes on disk; a package folder (.mlpackage) counts all its files (never a link's target)."""
    return sum(f.stat().st_size for f in package_files(path))


class Runner(Protocol):
    """Runs an artifact on this host. `describe()` says which runtime, for provenance."""

    input_names: list[str]
    measures_latency: bool  # False where timing here would mean nothing (Core ML off macOS)
    why_no_latency: str | None  # said in the report when measures_latency is False

    def run(self, feeds: dict) -> list: ...

    def input_specs(self) -> list: ...

    def describe(self) -> dict: ...


class EmulatedRunner(Protocol):
    """A runner whose runtime also exists for aarch64 under the emulator: it says how the emulator's
    worker must run the artifact and decodes what comes back. Runners without it cannot be emulated."""

    def emulation_request(self, feeds: dict) -> tuple[dict, dict]:
        """(request for emulation_worker.py, arrays to send) for these host feeds."""

    def from_emulated(self, outputs: list) -> list:
        """The worker's raw outputs, as `run` would return them."""

    # Optional: `emulation_fallback(path) -> Path | None`, the same graph in a file an older runtime
    # reads, tried when `path` does not load in the emulator's runtime (ORT: the .onnx beside a .ort).


class PlacedRunner(Protocol):
    """A runner that can say which compute unit runs each op (Core ML on macOS)."""

    def placement(self) -> dict: ...


class Target(Protocol):
    capabilities: Capabilities

    def build(self, request: BuildRequest) -> Artifact: ...

    def open_runner(self, path: Path, threads: int, options: dict | None = None) -> Runner: ...

    def inspect(self, path: Path) -> dict: ...


class MeasuringTarget(Target, Protocol):
    """A target that can read from its artifact how much of it is quantized."""

    def coverage(self, path: Path) -> Coverage: ...


@dataclass(frozen=True)
class Layer:
    """A layer a precision quantizes: its name as the target's `keep_float` option takes it."""

    name: str
    op: str
    weights: int  # weight elements
    int8: bool = True  # whether an int4 layer can be raised to int8 (keep_int8); float it always can


class MixedPrecisionTarget(Target, Protocol):
    """A target that can leave named layers in float (its `keep_float` option; for int4, `keep_int8`
    too): what mixed precision (edge_distill.mixed) searches over. `layers` reads, from an artifact
    built at that precision, the layers it quantized; `mixing_refused` says why a precision cannot
    be mixed with these options (None: it can). Optional: `tensor_errors(path, work_dir, data,
    layers)`, each layer's SQNR at its output, and `tensor_error_method`, how it is measured."""

    def layers(self, path: Path) -> list[Layer]: ...

    def mixing_refused(self, precision: str, options: dict) -> str | None: ...


def sqnr_db(reference, quantized) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is closer; 20 dB: the error is a tenth of the
    signal; inf: no error at all)."""
    import numpy as np

    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - quantized) ** 2))
    return 10 * float(np.log10(float(np.sum(reference ** 2)) / noise)) if noise > 0 else float("inf")


def check_raised(target, options: dict, precision: str) -> None:
    """A build's layer choices (keep_float, keep_int8), refused where they cannot be honoured: a layer
    in both, keep_int8 outside int4, keep_float where the target's `mixing_refused` says why. A float
    precision (16 bits or more) that quantizes no layer is given them with the entry's other
    precisions: nothing to check."""
    chosen = options["keep_float"] or options.get("keep_int8")
    if not chosen or target.capabilities.precision(precision).weight_bits >= 16:
        return
    name = target.capabilities.name
    both = sorted(set(options["keep_float"]) & set(options.get("keep_int8", ())))
    if both:
        raise BadInput(f"target '{name}': {both[0]!r} is in both keep_float and keep_int8")
    if options.get("keep_int8") and precision != "int4":
        raise BadInput(f"target '{name}': keep_int8 applies to int4 only, not {precision}")
    why = target.mixing_refused(precision, options) if options["keep_float"] else None
    if why:
        raise BadInput(f"target '{name}': keep_float does not apply to {precision}: {why}")


class RecordingTarget(Target, Protocol):
    """A target whose artifact carries its own verdict (a Core ML package's metadata): `record`
    writes it after the checks, and the artifact's hash is taken after that."""

    def record(self, path: Path, verified: dict) -> None: ...


def inference_module(source):
    """The source model's torch module, ready for a converter. A .pt2's module() refuses train() and
    eval() ("not supported yet"), which converters call; it is already in inference form, so for it
    both become no-ops."""
    module = source.module
    if getattr(source, "exported", None) is not None:
        module.train = module.eval = lambda *args, **kwargs: module
    return module


def describe_capabilities(caps: Capabilities) -> dict:
    """A target's capabilities as JSON-ready data (`edge-distill targets --json`)."""
    out = dataclasses.asdict(caps)
    out["precision_details"], out["precisions"] = out["precisions"], list(caps.precision_names)
    out["options"] = [{**dataclasses.asdict(o), "type": o.type.__name__} for o in caps.options]
    out["missing"] = caps.missing_packages()
    return out


def _load(ref: str):
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _registry() -> dict[str, str | EntryPoint]:
    found: dict[str, str | EntryPoint] = dict(BUILTIN)
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


def check_precision(caps: Capabilities, precision: str, calibration_method: str) -> None:
    caps.precision(precision)
    if calibration_method not in caps.calibration_methods:
        raise BadInput(f"target '{caps.name}' has no calibration method '{calibration_method}'; "
                       f"it offers: {', '.join(caps.calibration_methods)}")
