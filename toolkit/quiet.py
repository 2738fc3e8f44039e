"""Converters and quantizers talk a lot (progress bars, version warnings, INFO per node). Our own
output stays readable: their chatter is silenced while they run; their errors still raise."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings


@contextlib.contextmanager
def quiet(*logger_names: str, streams: bool = False):
    """Raise the named loggers (the root logger with "") to ERROR and ignore warnings; with
    `streams`, also swallow what Python code prints to stdout and stderr."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as stack:
            warnings.simplefilter("ignore")
            if streams:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
