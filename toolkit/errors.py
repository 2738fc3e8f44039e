"""One exception family. Every message is written for the person at the terminal.

The exit code travels with the exception, so the CLI never has to guess:
2 bad input or usage, 3 something could not be measured. (1, a broken budget, is not an
error: it is a result, carried by the report.)
"""


class EdgeDistillError(Exception):
    """Base of every error the tool reports to its user."""

    exit_code = 2

    def __init__(self, message: str, *, path=None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        text = super().__str__()
        if self.path and self.path not in text:
            text = f"{self.path}: {text}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class BadInput(EdgeDistillError):
    """A file, option or configuration the tool cannot accept (exit 2)."""


class ExportMismatch(BadInput):
    """The exported model does not reproduce the source model within tolerance (exit 2)."""


class CannotMeasure(EdgeDistillError):
    """Something asked for cannot be measured here, e.g. a runtime that is not installed (exit 3)."""

    exit_code = 3


class MissingDependency(CannotMeasure):
    """An optional package a target needs is not installed (exit 3)."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed",
            hint=f"pip install 'edge-distill[{extra}]'",
        )
