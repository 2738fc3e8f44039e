"""The `edge_distill` metadata entry every .tflite carries (JSON): input names and layouts, precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METADATA_NAME = "edge_distill"


def write_metadata(path: Path, specs, channels_last: bool, precision: str) -> None:
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    meta = {"precision": precision, "inputs": [
        {"name": s.name, "shape": list(s.shape), "layout": "NHWC" if channels_last and len(s.shape) == 4 else "source"}
        for s in specs]}
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model.metadata.append(entry)
    flatbuffer_utils.write_model(model, str(path))


def read_metadata(path: Path) -> dict:
    """The edge_distill metadata entry, read without unpacking the whole model."""
    from ai_edge_litert import schema_py_generated as fb

    data = Path(path).read_bytes()
    model = fb.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() in (METADATA_NAME, METADATA_NAME.encode()):
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}
