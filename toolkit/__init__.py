"""edge-distill: ship a distilled student to phones with measured budgets.

The Python API under the CLI (every command is one of these calls):

    from edge_distill import load_config, run_check, write_reports
    report = run_check(load_config("edge-distill.toml"), out_folder)
    write_reports(report, out_folder)
    report.exit_code   # 0 every budget holds, 1 a budget is broken, 3 something not measured

Heavy packages (torch, onnx, onnxruntime) are imported only where they are used, so importing
this package stays instant.
"""

from .version import __version__

__all__ = ["__version__", "Report", "bundle", "load_budget", "load_config", "run_bench", "run_check", "run_export",
           "run_discover", "run_init", "run_ladder", "run_verify", "write_reports"]

_HOMES = {"run_check": "pipeline", "run_export": "pipeline", "run_verify": "pipeline", "run_bench": "pipeline",
          "Progress": "progress", "run_ladder": "ladder", "bundle": "bundle", "write_reports": "report_files",
          "load_config": "config", "Report": "result", "run_discover": "discover", "run_init": "scaffold"}


def __getattr__(name):  # lazy: `import edge_distill` (and --help) stays instant
    import importlib

    if name == "load_budget":
        from .budgets import load_budget_file

        return load_budget_file
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'edge_distill' has no attribute {name!r}")
