"""edge-distill: ship a distilled student to phones with measured budgets.

The Python API under the CLI:

    from edge_distill import load_config, run_check
    report = run_check(load_config("edge-distill.toml"), out_folder, Progress())
    report.exit_code   # 0 every budget holds, 1 a budget is broken, 3 something not measured

Heavy packages (torch, onnx, onnxruntime) are imported only where they are used.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy re-exports keep `import edge_distill` (and --help) instant
    if name in ("run_check", "Progress", "evaluate_artifact"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_config":
        from .config import load_config

        return load_config
    raise AttributeError(name)
