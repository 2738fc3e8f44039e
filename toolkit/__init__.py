"""edge-distill: ship a distilled student to phones with measured budgets.

The Python API under the CLI (every command is one call of a `Session`; `check` is the CLI's check):

    from edge_distill import Options, check
    outcome = check("edge-distill.toml", out_folder, Options(baseline="latest-passing"))
    outcome.exit_code  # 0 every budget holds, 1 a budget is broken, 3 something not measured

The stages alone (no store, no baseline, no report files): `run_check(load_config(...), folder)`.

Heavy packages (torch, onnx, onnxruntime) are imported only where they are used, so importing
this package stays instant.
"""

from .version import __version__

__all__ = ["__version__", "ExportRequest", "Options", "Report", "Session", "Timing", "Verification", "bundle", "check",
           "load_budget", "load_config", "run_bench", "run_check", "run_export", "run_discover", "run_init", "run_ladder",
           "run_verify", "write_reports"]

_HOMES = {"run_check": "pipeline", "run_export": "pipeline", "run_verify": "pipeline", "run_bench": "pipeline",
          "Progress": "progress", "run_ladder": "ladder", "bundle": "bundle", "write_reports": "report_files",
          "load_config": "config", "Report": "result", "run_discover": "discover", "run_init": "scaffold",
          "check": "session", "Session": "session", "Options": "session", "ExportRequest": "pipeline",
          "Verification": "pipeline", "Timing": "pipeline"}


def __getattr__(name):  # lazy: `import edge_distill` (and --help) stays instant
    import importlib

    if name == "load_budget":
        from .budgets import load_budget_file

        return load_budget_file
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'edge_distill' has no attribute {name!r}")
