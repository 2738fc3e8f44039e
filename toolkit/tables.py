"""Tables for the terminal, drawn by rich: width-aware, broken rows in red, notes dim. Off a terminal
(CI logs, pipes) or with NO_COLOR set, the same table in plain text: no control characters."""

from __future__ import annotations

import io
import os
import re
import shutil
import sys

# Characters that are not text: C0 and C1 controls (ESC starts an ANSI sequence, newline forges a line),
# DEL, zero-width and bidirectional controls (text that reads otherwise than it is), line separators,
# lone surrogates (a file name's undecodable bytes) and the two non-characters XML forbids.
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


def visible(text, keep: str = "") -> str:
    """`text` with every character that is not text (but those in `keep`) shown as its escape (ESC as
    \\x1b): a name from a data file, a model or a path reaches a terminal, a CI log, XML or Markdown
    as the letters it holds, never as a command to the reader."""
    return _NOT_TEXT.sub(lambda m: m[0] if m[0] in keep else
                         f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", str(text))


def colour_wanted(stream=None) -> bool:
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def table(head: list[str], rows: list[list[str]], styles: list[str | None] | None = None,
          colour: bool | None = None) -> str:
    """`rows` of text cells under `head`; `styles[i]` (a rich style such as "red") colours row i."""
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    colour = colour_wanted() if colour is None else colour
    # A cell is never cut or wrapped (an artifact's name, a figure, a header).
    widths = [max([len(visible(r[i])) for r in rows] + [len(visible(h))]) for i, h in enumerate(head)]
    cell = lambda text: Text(visible(text))  # noqa: E731 - as Text, never parsed as rich markup ("[/]")
    t = Table(*[Column(cell(h), no_wrap=True) for h in head], box=box.SIMPLE_HEAD,
              header_style="bold" if colour else "", pad_edge=False, show_edge=False)
    for i, row in enumerate(rows):
        t.add_row(*map(cell, row), style=(styles[i] if styles else None) or None)
    needed = sum(widths) + 3 * len(widths)
    # on a terminal as wide as it is (wider than needed: the terminal wraps, nothing is lost); plain: never wrapped
    width = max(shutil.get_terminal_size((120, 24)).columns, needed) if colour else 100_000
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=colour, no_color=not colour, color_system="standard" if colour
            else None, highlight=False, soft_wrap=False).print(t)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")


def paint(text: str, style: str, colour: bool | None = None) -> str:
    """`text` (one line: every character that is not text made visible) in a rich style ("red", "dim")
    on a colour terminal; as it is otherwise."""
    colour = colour_wanted() if colour is None else colour
    text = visible(text)
    if not colour:
        return text
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="standard", highlight=False, width=100_000,
            soft_wrap=True).print(text, style=style, end="", markup=False)
    return out.getvalue()
