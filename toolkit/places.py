"""Where edge-distill keeps things outside a project: calibrated device profiles and the emulator."""

from __future__ import annotations

import os
from pathlib import Path


def config_home() -> Path:
    """Calibrated profiles live here ($EDGE_DISTILL_CONFIG, else ~/.config/edge-distill)."""
    return Path(os.environ.get("EDGE_DISTILL_CONFIG") or Path.home() / ".config" / "edge-distill")


def cache_home() -> Path:
    """Downloaded, rebuildable things: the arm64 sysroot ($EDGE_DISTILL_CACHE, else ~/.cache/edge-distill)."""
    return Path(os.environ.get("EDGE_DISTILL_CACHE") or Path.home() / ".cache" / "edge-distill")
