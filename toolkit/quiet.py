"""Converters and quantizers talk a lot (progress bars, version warnings, INFO per node). Our own
output stays readable: their chatter is silenced while they run; their errors still raise."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings


def hush_torchao() -> None:
    """transformers and optimum pull in torchao, which reports CUDA kernels it cannot load, and
    torch's pytree warns about torchao's enums: nothing a user of this tool can act on."""
    for chatty in ("torchao", "torch.utils._pytree"):
        logging.getLogger(chatty).setLevel(logging.ERROR)


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


@contextlib.contextmanager
def native_output_silenced():
    """Converters print progress bars and C++ logs straight to the file descriptors; keep them out of
    our output (errors still arrive as exceptions). Yields a dict whose "text" holds what was said."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        log = {"text": ""}
        try:
            yield log
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            log["text"] = sink.read().decode(errors="replace")
