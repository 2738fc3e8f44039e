"""How much memory one file may ask for: a bound proportional to this machine's memory.

A data array, an archive's unpacked entries and a tensor an ONNX graph declares are each held against
`memory_bound()` from their headers, before anything is read or run, so a few bytes of crafted header
never make edge-distill allocate terabytes. EDGE_DISTILL_MAX_ARRAY_BYTES overrides it.
"""

from __future__ import annotations

import os

from .errors import BadInput

MAX_ARRAY_BYTES = "EDGE_DISTILL_MAX_ARRAY_BYTES"
SHARE_OF_MEMORY = 4  # one array may take a quarter of the machine's memory: the run holds several copies


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # a platform without sysconf: assume a small laptop
        return 8 << 30


def memory_bound() -> int:
    """The bytes one array, archive or tensor may take: EDGE_DISTILL_MAX_ARRAY_BYTES if set, else a
    quarter of physical memory."""
    value = os.environ.get(MAX_ARRAY_BYTES, "")
    if not value:
        return physical_memory() // SHARE_OF_MEMORY
    if not value.isdigit():
        raise BadInput(f"{MAX_ARRAY_BYTES}={value!r} is not a number of bytes")
    return int(value)


def raise_hint() -> str:
    return f"if this machine can hold it, set {MAX_ARRAY_BYTES} to a larger number of bytes"
