"""Export to ONNX and prove the export right.

The dynamo exporter (torch.export underneath), opset >= 18, one self-contained file below 2 GB,
traced with a batch of 2 (a batch of 1 silently freezes the batch axis), then `onnx.checker`
and a comparison of onnxruntime against the source model on real samples: past the tolerance
this is an error carrying the measured difference.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edge_distill.calibration import Dataset, fixed_batch_of, padded, to_model_layout

from .errors import BadInput, ExportMismatch
from .models import SourceModel, load_model
from .quiet import hush_torchao, native_output_silenced, quiet
from .result import ExportInfo

TWO_GB = 2 * 1024**3


DEFAULT_TOLERANCE = 1e-4  # [export] tolerance's default: max |onnxruntime - source| on real samples
PARITY_SAMPLES = 64  # the real samples the export is checked on


def export_to_onnx(model: SourceModel, out_path: Path, *, opset: int = 18, samples: Dataset,
                   tolerance: float = DEFAULT_TOLERANCE, parity_samples: int = PARITY_SAMPLES) -> ExportInfo:
    """Write `model` as ONNX to `out_path` and verify it against the source on `samples`."""
    import time

    start = time.perf_counter()
    if model.kind == "onnx":
        assert model.onnx_path is not None  # an onnx source is its file
        changes = _copy_onnx_self_contained(model.onnx_path, out_path, keep_outputs=model.output_names)
        exporter = "copy of the source ONNX" + "".join(f"; {c}" for c in changes)
    else:
        exporter = _torch_export(model, out_path, opset, samples)

    import onnx

    try:
        onnx.checker.check_model(str(out_path), full_check=True)
    except Exception as exc:
        raise BadInput(f"the exported model fails onnx.checker: {str(exc).splitlines()[0]}", path=out_path) from exc
    proto = onnx.load(str(out_path), load_external_data=False)
    dynamic = _dynamic_axes(proto)
    for spec in model.inputs:
        wanted = [str(d) for d in spec.shape if isinstance(d, str)]
        if wanted and not dynamic.get(spec.name):
            raise BadInput(f"export froze the dynamic axes {wanted} of input '{spec.name}'", path=out_path,
                           hint="the model must not branch on its batch size")

    check = samples.subset(np.arange(min(parity_samples, len(samples))))
    exported = load_model(str(out_path), inputs=model.inputs)
    exported.output_axes = model.output_axes  # a state output's batch axis, as the source model's
    source = model.predict(check, batch_size=16)  # first: a model that cannot run on the data is named as the user's
    diff = float(np.max(np.abs(exported.predict(check, batch_size=16) - source)))
    if not diff <= tolerance:  # also catches NaN
        raise ExportMismatch(f"onnxruntime disagrees with the source model: max |difference| {diff:.3g} on "
                             f"{len(check)} real samples, tolerance {tolerance:g}", path=out_path,
                             hint="if that is float rounding (a deep stack of attention blocks sums in another "
                                  "order), allow it: [export] tolerance = ... in edge-distill.toml")
    return ExportInfo(path=str(out_path), opset=_opset(proto), exporter=exporter, dynamic_axes=dynamic,
                      parity_max_abs_diff=diff, parity_tolerance=tolerance, parity_samples=len(check),
                      seconds=round(time.perf_counter() - start, 3))


def _torch_export(model: SourceModel, out_path: Path, opset: int, samples: Dataset) -> str:
    import torch

    why_not_optimum = None
    if model.sentence_transformers_folder:
        via_optimum, why_not_optimum = _optimum_export(model, out_path, opset)
        if via_optimum:
            return via_optimum

    fixed = fixed_batch_of(model.inputs)  # saved with a fixed batch: exported at that batch, kept fixed
    if not fixed and len(samples) < 2:
        raise BadInput("export needs at least 2 samples (a batch of 1 freezes the batch axis)", path=samples.source)
    batch = to_model_layout(padded(dict(samples.inputs), fixed or 2), model.inputs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(batch[s.name])) for s in model.inputs)
    dims: dict[str, object] = {}
    dynamic_shapes = []
    for spec in model.inputs:
        axes = {}
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str):
                axes[axis] = dims.setdefault(d, torch.export.Dim(_dim_name(d), min=1))
        dynamic_shapes.append(axes or None)
    with torch.no_grad():
        out = model.module(*args)
    n_out = len(out) if isinstance(out, (tuple, list)) else 1
    output_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    source = model.exported if model.exported is not None else model.module
    kwargs: dict[str, Any] = {} if model.exported is not None else {"dynamic_shapes": tuple(dynamic_shapes)}
    names: dict[str, Any] = {"input_names": [s.name for s in model.inputs], "output_names": output_names, "opset_version": opset}
    # The exporter prints progress to stdout and warnings about optional packages (torchvision);
    # keep our own output readable. Real failures still raise.
    with quiet("torch.onnx", "torch.export", "torch.fx", streams=True), native_output_silenced():
        try:
            torch.onnx.export(source, args, str(out_path), dynamo=True, external_data=False, verbose=False,
                              **names, **kwargs)
            exporter = "torch.onnx.export (dynamo)"
        except Exception as dynamo_error:
            why = root_cause(dynamo_error)
            try:  # the TorchScript exporter traces where torch.export cannot (some control flow, some ops)
                torch.onnx.export(model.module, args, str(out_path), dynamo=False, **names,
                                  dynamic_axes=_dynamic_axes_of(model.inputs, output_names))
            except Exception as script_error:
                raise BadInput(f"torch.onnx.export cannot export {model.reference}: with dynamo, {why}; with "
                               f"TorchScript, {root_cause(script_error)}") from None
            exporter = f"torch.onnx.export (TorchScript; dynamo failed: {why[:200]})"
    _name_dynamic_dims(out_path, model.inputs)
    return exporter + (f"; optimum's exporter not used: {why_not_optimum}" if why_not_optimum else "")


def _optimum_export(model: SourceModel, out_path: Path, opset: int) -> tuple[str | None, str | None]:
    """A sentence-transformers folder through optimum's task-aware exporter (feature-extraction:
    the pooled, normalized `sentence_embedding` becomes the graph's `output`). Returns the exporter's
    description, or None and why it was not used (not installed, or it failed: torch's exporter then)."""
    hush_torchao()
    try:
        with quiet("optimum", "transformers", streams=True):
            from optimum.exporters.onnx import main_export
            from optimum.version import __version__
    except ImportError:
        return None, "optimum-onnx is not installed (pip install 'edge-distill[optimum]')"
    work = out_path.parent / ".optimum-export"
    try:
        with quiet("optimum", "transformers", "torch.onnx", streams=True), native_output_silenced():
            main_export(model.reference, output=work, task="feature-extraction", opset=opset,
                        library_name="sentence_transformers", local_files_only=True, do_validation=False)
        _copy_onnx_self_contained(work / "model.onnx", out_path, keep_outputs=["sentence_embedding"])
        _rename_output(out_path, "sentence_embedding", "output")
        _name_dynamic_dims(out_path, model.inputs)
    except Exception as exc:  # an architecture optimum does not know, say: torch's exporter next
        return None, f"it failed ({root_cause(exc)[:200]})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return f"optimum {__version__} main_export (feature-extraction, sentence_transformers)", None


def _rename_output(path: Path, old: str, new: str) -> None:
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]
    for value in proto.graph.output:
        value.name = new if value.name == old else value.name
    onnx.save(proto, str(path), save_as_external_data=False)


def root_cause(exc: BaseException) -> str:
    """The first real error line of an exporter's failure: the innermost cause, not its boilerplate
    ("Failed to export ... Next steps: ...")."""
    while exc.__cause__ is not None:  # not __context__: a fallback's error would lead back to the first
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _dynamic_axes_of(specs, output_names: list[str]) -> dict:
    """TorchScript's dynamic_axes: every named dimension of the inputs; the batch of the outputs."""
    axes = {s.name: {i: str(d) for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
    batch = next((s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], str)), None)
    axes.update({name: {0: batch} for name in output_names if batch})
    return {k: v for k, v in axes.items() if v}


def _name_dynamic_dims(path: Path, specs) -> None:
    """Give dynamic axes the names of the input spec ("batch"), not the tracer's ("s31")."""
    import onnx

    proto = onnx.load(str(path))
    by_input = {v.name: v for v in proto.graph.input}
    renames = {}
    for spec in specs:
        dims = by_input[spec.name].type.tensor_type.shape.dim if spec.name in by_input else []
        for want, dim in zip(spec.shape, dims):
            if isinstance(want, str) and dim.dim_param and dim.dim_param != want:
                renames[dim.dim_param] = want
    if not renames:
        return
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    onnx.save(proto, str(path), save_as_external_data=False)


def _dim_name(name: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in name)
    return clean if clean[:1].isalpha() else f"d_{clean}"


def _copy_onnx_self_contained(src: Path, dst: Path, keep_outputs: list[str] | None = None) -> list[str]:
    """A one-file copy, brought to what the quantizers read (`modernized`); with `keep_outputs`, only
    those graph outputs stay (the one an app uses). Returns what was changed."""
    import onnx

    changes: list[str] = []
    if src.stat().st_size < TWO_GB:
        proto, changes = modernized(onnx.load(str(src)), src)  # load pulls external data in
        if keep_outputs and len(keep_outputs) < len(proto.graph.output):
            kept = [o for o in proto.graph.output if o.name in keep_outputs]
            del proto.graph.output[:]
            proto.graph.output.extend(kept)
            proto = onnx.utils.Extractor(proto).extract_model([i.name for i in proto.graph.input
                                                               if i.name not in {t.name for t in proto.graph.initializer}],
                                                              keep_outputs)
        if proto.ByteSize() < TWO_GB:
            onnx.save(proto, str(dst), save_as_external_data=False)
            return changes
    shutil.copyfile(src, dst)
    return changes


MIN_OPSET = 13  # per-axis DequantizeLinear, which every int8 recipe writes, exists from opset 13 on


def modernized(proto, path: Path):
    """Weights held in Constant nodes become initializers (the quantizers only see initializers), and a
    graph below opset 13 is converted up by onnx's version converter (int8 writes per-axis
    DequantizeLinear, which older opsets reject). The export's parity check then proves the result."""
    from onnx import numpy_helper, version_converter

    changes = []
    constants = [n for n in proto.graph.node if n.op_type == "Constant" and len(n.attribute) == 1
                 and n.attribute[0].name == "value"]
    for node in constants:
        tensor = numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t), node.output[0])
        proto.graph.initializer.append(tensor)
        proto.graph.node.remove(node)
    if constants:
        changes.append(f"{len(constants)} Constant nodes moved to initializers")
    opset = _opset(proto)
    if 0 < opset < MIN_OPSET:
        try:
            proto = version_converter.convert_version(proto, MIN_OPSET)
        except Exception as exc:  # the converter names the op it has no adapter for
            raise BadInput(f"opset {opset} is below {MIN_OPSET}, which int8 needs, and onnx's version converter "
                           f"cannot convert it: {str(exc).splitlines()[0][:300]}", path=path,
                           hint=f"export the model again at opset {MIN_OPSET} or later") from None
        changes.append(f"opset {opset} converted to {MIN_OPSET} (onnx.version_converter)")
    return proto, changes


def _dynamic_axes(proto) -> dict[str, list[str]]:
    initializers = {i.name for i in proto.graph.initializer}
    return {v.name: [d.dim_param for d in v.type.tensor_type.shape.dim if d.dim_param]
            for v in proto.graph.input if v.name not in initializers}


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
