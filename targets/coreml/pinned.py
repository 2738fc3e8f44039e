"""coremltools, at the one version the reference evaluator is written against, and quiet."""

from __future__ import annotations

from edge_distill.errors import MissingDependency
from edge_distill.quiet import quiet

COREMLTOOLS_VERSION = "9.0"  # the evaluator leans on coremltools internals: pinned, and checked


def quieted():
    """coremltools prints version warnings and progress bars; keep our output readable."""
    return quiet("coremltools", "torch", streams=True)


def load_coremltools():
    try:
        with quieted():
            import coremltools as ct
    except ImportError as exc:
        raise MissingDependency("coremltools", "coreml", "the coreml target") from exc
    if ct.__version__ != COREMLTOOLS_VERSION:
        raise MissingDependency(f"coremltools=={COREMLTOOLS_VERSION} (found {ct.__version__})", "coreml",
                                "the coreml target's reference evaluator")
    return ct
