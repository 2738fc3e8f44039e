"""Bundled examples (data files only; `edge-distill demo` runs fashion-mnist)."""
