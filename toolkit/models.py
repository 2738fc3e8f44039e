"""Taking the student (or teacher) in: one loader for every accepted form.

  - `package.module:factory` + weights (.safetensors, or a state dict read with
    `torch.load(weights_only=True)`): the factory builds the module, the weights fill it;
  - a `torch.export` program (`.pt2`, read with `torch.export.load`);
  - an `.onnx` file, whose external data must stay inside the model's folder (`model.onnx#name`
    picks the output to use when there are several; by default the first);
  - a Hugging Face model folder (config.json + model.safetensors, read offline): a
    sentence-transformers folder gives its pooled embedding (mean pooling, normalized when its
    modules say so), a *ForSequenceClassification model its logits. Inputs: input_ids and
    attention_mask (int64, batch x sequence). Its tokenizer files travel with the artifacts.

A pickled whole-module `.pt` is refused: unpickling runs arbitrary code. `trust_pickle=True`
(`--trust-pickle`) is the explicit way out for a file the user vouches for.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from edge_distill.calibration import (Dataset, InputSpec, fixed_batch_of, from_model_layout, run_in_batches,
                                      to_model_layout)

from .files import plain_files, sha256_file
from .errors import BadInput, MissingDependency
from .limits import memory_bound, raise_hint
from .quiet import hush_torchao

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".bin")
SAFE_FORMATS_HINT = ("save the weights with safetensors (safetensors.torch.save_file(model.state_dict(), "
                     "'model.safetensors')) and point to a module:factory, or save a torch.export program "
                     "(torch.export.save(torch.export.export(model, example_inputs), 'model.pt2'))")


@dataclass
class SourceModel:
    """A model ready to run on the host: a torch module, or an ONNX file run by onnxruntime."""

    reference: str
    kind: str  # "torch" (factory or pickled module), "exported" (.pt2) or "onnx"
    inputs: list[InputSpec]
    fingerprint: str  # sha256 of the weights or model file: which model this was, exactly
    # a torch.nn.Module and a torch.export.ExportedProgram, or None; Any: torch is imported lazily
    module: Any = None
    exported: Any = None
    onnx_path: Path | None = None
    output_names: list[str] = field(default_factory=lambda: ["output"])
    sentence_transformers_folder: bool = False  # optimum's exporter knows these (exporting.py)
    output_axes: list[int] | None = None  # each output's batch axis, where not 0 (a recurrent state's)

    def predict(self, data: Dataset, batch_size: int = 256) -> np.ndarray:
        """The first output of the model for every sample of `data`, as float32."""
        return self.predict_all(data, batch_size)[0]

    def predict_all(self, data: Dataset, batch_size: int = 256) -> list[np.ndarray]:
        """Every output of the model for every sample, as float32, samples first whatever the model's
        layout (its inputs' batch axes). A model saved with a fixed batch runs in chunks of that batch
        (the last padded, the padding dropped)."""
        run, batch = self._run_once()

        def samples_first(feeds: dict) -> list:
            outputs = run(to_model_layout(feeds, self.inputs))
            return from_model_layout(outputs, self.output_axes or [0] * len(outputs))

        return [_float32(o) for o in run_in_batches(samples_first, dict(data.inputs), batch, batch_size)]

    def _run_once(self):
        """(one call of the model on feeds in its own layout, its fixed batch or None)."""
        if self.kind == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 4  # its failures reach the user as our message, not as its log lines
            session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
            first = {s.name for s in self.inputs if s.axis == 0}
            batch = fixed_batch_of(self.inputs) or next(
                (i.shape[0] for i in session.get_inputs() if i.name in first and isinstance(i.shape[0], int)), None)

            def run_onnx(feeds):
                try:
                    return session.run(self.output_names, _as_model_types(session, feeds))
                except Exception as exc:  # onnxruntime's Fail / RuntimeException: this model on this data
                    raise BadInput(f"onnxruntime cannot run the model on the data: {_runtime_reason(exc)}",
                                   path=self.onnx_path) from None

            return run_onnx, batch
        import torch

        def run(feeds):
            with torch.no_grad():
                out = self.module(*[torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs])
            return [o.detach().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

        return run, fixed_batch_of(self.inputs)


def _runtime_reason(exc: Exception) -> str:
    """onnxruntime's failure in a sentence: its status message without the source location."""
    text = " ".join(str(exc).split())
    allocation = re.search(r"Failed to allocate memory for requested buffer of size (\d+)", text)
    if allocation:
        return (f"it asks for a buffer of {int(allocation[1]):,} bytes while running (a shape its inputs make), "
                "more than this machine can allocate")
    message = text.split("Status Message: ", 1)[-1]
    return re.sub(r"^\S+:\d+ [^)]*\) ", "", message)[:300]


def _float32(output) -> np.ndarray:
    """Float outputs as float32; integer ones (indices, ids) as they are: they are compared as integers."""
    output = np.asarray(output)
    return output.astype(np.float32) if output.dtype.kind in "fc" else output


ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _as_model_types(session, feeds: dict) -> dict:
    """The data in the dtypes the ONNX model takes: token ids read for a .tflite artifact are int32,
    its float ONNX twin takes int64."""
    feeds = dict(feeds)
    for i in session.get_inputs():
        want = ORT_TYPES.get(i.type)
        if i.name in feeds and want is not None and feeds[i.name].dtype != want:
            feeds[i.name] = feeds[i.name].astype(want)
    return feeds


def load_model(reference: str, weights: str | None = None, inputs: list[InputSpec] | None = None, *,
               trust_pickle: bool = False, search_path: Path | None = None) -> SourceModel:
    inputs = list(inputs or [])
    if reference.endswith(".onnx") or ".onnx#" in reference:  # model.onnx#name: the one output to use
        path, _, output = reference.partition("#")
        return _load_onnx(Path(path), inputs, output or None)
    if reference.endswith(".pt2"):
        return _load_exported(Path(reference), inputs, trust_pickle)
    if reference.endswith(PICKLE_SUFFIXES):
        return _load_pickled_module(Path(reference), inputs, trust_pickle)
    if Path(reference).is_dir() and (Path(reference) / "config.json").is_file():
        return _load_hf_folder(Path(reference), inputs, trust_pickle)
    if ":" in reference:
        return _load_factory(reference, weights, inputs, search_path)
    raise BadInput(f"cannot tell what kind of model '{reference}' is",
                   hint="use package.module:factory (with weights), a .pt2 torch.export program, an .onnx file or a "
                        "Hugging Face model folder")


def _require_torch(purpose: str):
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency("torch", "ort", purpose) from exc
    return torch


@contextmanager
def _logged(name: str):
    """What a third-party logger says (tracebacks included), kept from the terminal: the caller
    quotes the part that matters in its own one-line message."""
    import logging

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(self.format(record))

    logger = logging.getLogger(name)
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [Keep()], False  # torch attaches its own handler here
    try:
        yield said
    finally:
        logger.handlers, logger.propagate = handlers, propagate


@contextmanager
def _on_sys_path(folder: Path | None):
    if folder is None:
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def _load_factory(reference: str, weights: str | None, inputs: list[InputSpec], search_path) -> SourceModel:
    torch = _require_torch(f"building {reference}")
    module_name, _, attr = reference.partition(":")
    with _on_sys_path(search_path):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BadInput(f"cannot import module '{module_name}' for {reference}: {exc}",
                           hint=f"the module must be importable (searched also in {search_path})"
                           if search_path else None) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BadInput(f"'{module_name}' has no callable '{attr}'",
                       hint=f"callables there: {', '.join(n for n in dir(module) if not n.startswith('_'))}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{reference}() returned {type(model).__name__}, not a torch.nn.Module")
    # No weights file: the factory loaded its own (a packaged checkpoint); the fingerprint is then
    # taken from the weights it holds, so a changed checkpoint still shows.
    fingerprint = _fill_weights(model, reference, Path(weights)) if weights is not None else _state_hash(model)
    model.eval()
    if not inputs:
        raise BadInput(f"{reference} does not declare its inputs",
                       hint="list them under [[model.inputs]] in edge-distill.toml (name, shape, dtype)")
    return SourceModel(reference=reference, kind="torch", inputs=inputs, fingerprint=fingerprint, module=model)


def _fill_weights(model, reference: str, path: Path) -> str:
    """Load a weights file into the factory's module; its sha256."""
    if not path.is_file():
        raise BadInput("weights file not found", path=path)
    state = _read_state_dict(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when not strict
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise BadInput(f"weights do not fit {reference}(): {detail}", path=path) from exc
    if result.missing_keys or result.unexpected_keys:
        raise BadInput(f"weights do not fit {reference}(): missing {result.missing_keys[:5]}, "
                       f"unexpected {result.unexpected_keys[:5]}", path=path)
    return sha256_file(path)


def _state_hash(model) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes, bytes), in its own order."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{array.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(array.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


TEXT_INPUTS = [InputSpec("input_ids", ("batch", "sequence"), "int64"),
               InputSpec("attention_mask", ("batch", "sequence"), "int64")]


def _load_hf_folder(path: Path, inputs: list[InputSpec], trust_pickle: bool) -> SourceModel:
    _require_torch(f"loading {path}")
    hush_torchao()
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependency("transformers", "examples", f"loading the Hugging Face folder {path}") from exc
    weights = path / "model.safetensors"
    if not weights.is_file():
        pickled = path / "pytorch_model.bin"
        if not pickled.is_file():
            raise BadInput("the Hugging Face folder has no model.safetensors", path=path)
        if not trust_pickle:
            raise BadInput("the folder's weights are pickled (pytorch_model.bin): unpickling runs code",
                           path=path, hint="save them with save_pretrained(safe_serialization=True), or "
                                           "--trust-pickle for a file you vouch for")
        weights = pickled
    from .text import Logits, SentenceEmbedder

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    modules = path / "modules.json"
    with _quiet_transformers():
        if modules.is_file():  # sentence-transformers: transformer, pooling, normalize
            import json

            kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads(modules.read_text())]
            pooling = next((m for m in json.loads(modules.read_text()) if m["type"].endswith("Pooling")), None)
            mode = "mean"
            if pooling is not None:
                pool = json.loads((path / pooling["path"] / "config.json").read_text())
                mode = "cls" if pool.get("pooling_mode_cls_token") else "mean"
            encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True,
                                                             use_safetensors=weights.suffix == ".safetensors")
            module: torch.nn.Module = SentenceEmbedder(encoder, mode, normalize="Normalize" in kinds)
        elif any(a.endswith("ForSequenceClassification") for a in config.architectures or []):
            classifier = transformers.AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, use_safetensors=weights.suffix == ".safetensors")
            module = Logits(classifier)
        else:
            raise BadInput(f"the Hugging Face folder holds a {', '.join(config.architectures or ['bare'])} model; "
                           "edge-distill takes sentence-transformers folders (modules.json) and "
                           "*ForSequenceClassification models", path=path)
    module.eval()
    return SourceModel(reference=str(path), kind="torch", inputs=inputs or TEXT_INPUTS,
                       fingerprint=sha256_file(weights), module=module,
                       sentence_transformers_folder=modules.is_file() and weights.suffix == ".safetensors")


@contextmanager
def _quiet_transformers():
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(previous)


def _read_state_dict(path: Path) -> dict:
    torch = _require_torch(f"reading {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise BadInput(f"not a valid safetensors file ({exc})", path=path) from exc
    import pickle

    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":  # torch.save: a zip, or (legacy) a pickle
        raise BadInput(f"is not a weights file: neither safetensors nor a state dict saved by torch.save (it begins "
                       f"{head!r})", path=path, hint=SAFE_FORMATS_HINT)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BadInput("holds pickled objects besides tensors (a whole pickled module?), which edge-distill "
                       "does not unpickle", path=path, hint=SAFE_FORMATS_HINT) from exc
    except Exception as exc:  # a damaged zip or pickle: torch raises KeyError, IndexError, ValueError, ...
        raise BadInput(f"cannot read weights ({type(exc).__name__}: {exc})", path=path) from exc
    if not isinstance(state, dict):
        raise BadInput(f"expected a state dict, found {type(state).__name__}", path=path)
    return state


def _load_pickled_module(path: Path, inputs: list[InputSpec], trust_pickle: bool) -> SourceModel:
    if not path.is_file():
        raise BadInput("model file not found", path=path)
    if not trust_pickle:
        raise BadInput("is a pickled model; loading it would run any code it contains, so edge-distill refuses "
                       "it by default", path=path,
                       hint=SAFE_FORMATS_HINT + "; or pass --trust-pickle if you trust this file")
    torch = _require_torch(f"reading {path}")
    # --trust-pickle: the user has vouched for this file.
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"holds a {type(model).__name__}, not a torch.nn.Module", path=path)
    if not inputs:
        raise BadInput("a pickled module does not declare its inputs", path=path,
                       hint="list them under [[model.inputs]] in edge-distill.toml")
    model.eval()
    return SourceModel(reference=str(path), kind="torch", inputs=inputs, fingerprint=sha256_file(path), module=model)


def _load_exported(path: Path, inputs: list[InputSpec], trust_pickle: bool = False) -> SourceModel:
    from .archives import check_pt2, weights_only_loads

    torch = _require_torch(f"reading {path}")
    if not path.is_file():
        raise BadInput("model file not found", path=path)
    if not trust_pickle:  # a .pt2 holds pickles: look before torch unpickles them
        check_pt2(path)
    try:
        with contextlib.nullcontext() if trust_pickle else weights_only_loads(), _logged("torch.export") as said:
            program = torch.export.load(str(path))
            module = program.module()  # rebuilding the graph module is where some archives fail
    except Exception as exc:  # torch raises many types for a bad archive; its logger holds the real cause
        cause = next((line.strip() for line in reversed("\n".join(said).splitlines()) if "Error" in line),
                     f"{type(exc).__name__}: {exc}")
        raise BadInput(f"not a loadable torch.export program ({_first_sentence(cause)})", path=path) from None
    if not inputs:
        inputs = _signature_of_exported(program)
    return SourceModel(reference=str(path), kind="exported", inputs=inputs, fingerprint=sha256_file(path),
                       module=module, exported=program)


def _first_sentence(text: str, limit: int = 300) -> str:
    """torch's reason without the node dump some of its messages carry."""

    head = re.split(r"(?<=[\w)])\. ", text)[0].rstrip(".")
    return head if len(head) <= limit else head[:limit] + "..."


def _signature_of_exported(program) -> list[InputSpec]:
    torch = _require_torch("reading a program's signature")
    specs = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        shape = tuple(int(d) if isinstance(d, int) else ("batch" if i == 0 else f"dim{i}")
                      for i, d in enumerate(val.shape))
        specs.append(InputSpec(name=node.name, shape=shape, dtype=str(val.dtype).removeprefix("torch.")))
    return specs


def _load_onnx(path: Path, inputs: list[InputSpec], output: str | None = None) -> SourceModel:
    import onnx

    if not path.is_file():
        raise BadInput("model file not found", path=path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadInput(f"not a valid ONNX model, truncated or corrupt ({type(exc).__name__})", path=path) from exc
    if not proto.graph.node:
        raise BadInput("ONNX model has an empty graph (truncated?)", path=path)
    _check_external_data(proto, path)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise BadInput(f"ONNX checker rejects the model: {str(exc).splitlines()[0]}", path=path) from exc
    _check_runnable(path)
    _check_declared_sizes(proto, path)
    if not inputs:
        inputs = onnx_input_specs(proto)
    outputs = [o.name for o in proto.graph.output]
    if output is not None and output not in outputs:
        raise BadInput(f"the model has no output '{output}'; its outputs: {', '.join(outputs)}", path=path)
    return SourceModel(reference=str(path) + (f"#{output}" if output else ""), kind="onnx", inputs=inputs,
                       fingerprint=sha256_file(path), onnx_path=path, output_names=[output] if output else outputs)


def _check_external_data(proto, path: Path) -> None:
    import onnx

    folder = path.resolve().parent
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or folder not in target.parents:
            raise BadInput(f"tensor '{tensor.name}' points to external data outside the model's folder "
                           f"('{location}'), which edge-distill refuses to read", path=path,
                           hint="keep external data files beside the .onnx file")
        if not target.is_file():
            raise BadInput(f"external data file '{location}' of tensor '{tensor.name}' is missing", path=path)
        plain_files(folder / location)  # a link (even one resolving inside) or a hard link: refused by name
        fields = {e.key: e.value for e in tensor.external_data}
        needed = int(fields.get("offset", 0)) + int(fields.get("length") or _tensor_bytes(tensor))
        if target.stat().st_size < needed:
            raise BadInput(f"external data of tensor '{tensor.name}' is truncated: it needs bytes up to {needed:,} "
                           f"and the file holds {target.stat().st_size:,}", path=target)


def _tensor_bytes(tensor) -> int:
    import onnx

    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def _check_runnable(path: Path) -> None:
    """onnxruntime must be able to load the user's model: an op it does not know (a custom op
    without its library) is the file's problem, named here rather than on a temporary copy later."""

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented types
        text = " ".join(str(exc).split())
        op = re.search(r"([\w.]*:?\w+)\(-?\d+\) is not a registered function/op", text)
        if op:
            raise BadInput(f"onnxruntime does not know the operator {op.group(1)} (a custom op?); edge-distill "
                           "needs a model onnxruntime can run", path=path,
                           hint="export the model with standard ONNX operators") from None
        raise BadInput(f"onnxruntime cannot load the model: {text.split('failed:')[-1].strip()[:300]}",
                       path=path) from None


def _check_declared_sizes(proto, path: Path) -> None:
    """Refuse, before anything runs it, a graph whose shapes (as onnx's shape inference propagates them
    through constants) declare a tensor larger than `limits.memory_bound()`: a 232-byte file whose
    ConstantOfShape asks for 8 TB is the file's problem, not an allocation failure deep in a run.
    A symbolic dimension (the batch) counts as 1, so the size found is a lower bound."""
    import math

    from onnx import helper, shape_inference

    try:
        inferred = shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # an inference gap is not the file's fault; the runtime's own load already passed
        return
    limit = memory_bound()
    producer = {out: node.op_type for node in inferred.graph.node for out in node.output}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape") or not tensor.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        size = math.prod(dims) * itemsize
        if size > limit:
            raise BadInput(f"tensor '{value.name}' (made by {producer.get(value.name, 'an input')}) has shape {dims}: "
                           f"{size:,} bytes, more than the {limit:,} one tensor may take; refused before running it",
                           path=path, hint=raise_hint())


ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 9: "bool"}


def onnx_input_specs(proto) -> list[InputSpec]:
    initializers = {i.name for i in proto.graph.initializer}
    specs = []
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        # a dim_value of -1 (Paddle's exporter) is a free dimension, not a size
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or f"dim{i}")
                      for i, d in enumerate(tensor.shape.dim))
        specs.append(InputSpec(name=value.name, shape=shape, dtype=ONNX_DTYPES.get(tensor.elem_type, "float32")))
    return specs
