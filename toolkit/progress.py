"""Progress on stderr, so stdout stays clean for the table (or the one JSON document of --json).

Each message starts a stage that lasts until the next one. On a terminal (rich, drawn by a small
display process this one feeds): a spinner with the stage's name and its elapsed time, redrawn
several times a second, so no step is silent however long a converter call holds the interpreter;
a finished stage stays as one line with its duration; loops that know their length (samples
evaluated, latency runs) draw a bar with an ETA from their rate. A stage that reports nothing (a
converter call) gets its ETA from how long the same stage took on this machine for the same model
(the median of its last five runs) (`stage-times.json` in edge-distill's cache, or $EDGE_DISTILL_STAGE_TIMES). Off a
terminal (CI logs, pipes): plain timestamped lines, a loop's count every 10 s, no control
characters. Disabled (-q): nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .tables import visible

if TYPE_CHECKING:
    import subprocess

PLAIN_EVERY_S = 10.0  # a loop's count line in plain mode, at most this often
REMEMBERED = 400  # stages whose durations are kept in the cache
KEPT_PER_STAGE = 5  # durations kept per stage: the ETA is their median


class Progress:
    def __init__(self, enabled: bool = True, terminal: bool | None = None):
        self.enabled, self.start = enabled, time.perf_counter()
        self.terminal = enabled and (sys.stderr.isatty() if terminal is None else terminal)
        self.context = ""  # what makes a stage's remembered duration comparable (the student's hash)
        self._stage: tuple[str, float] | None = None
        self._display: subprocess.Popen[str] | None = None
        self._loops = 0
        self._times = _StageTimes() if enabled else None  # used only when enabled

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        message = visible(message)  # it names files and models: their names are never terminal commands
        self._finish_stage()
        assert self._times is not None
        last = self._times.last(self.context, message)
        if self.terminal:
            self._send(op="stage", message=message.strip(), last=last)
        else:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}" + (f" (took about {last:.0f} s before)" if last
                                                                             else ""), file=sys.stderr, flush=True)
        self._stage = (message, time.perf_counter())

    @contextlib.contextmanager
    def loop(self, what: str, total: int, unit: str):
        """A loop of `total` steps inside the current stage; the body calls the yielded `advance(n)`."""
        if not self.enabled or total <= 0:
            yield lambda n=1: None
            return
        if self.terminal:
            self._loops += 1
            key = self._loops
            self._send(op="loop", key=key, what=what, total=total, unit=unit)
            yield lambda n=1: self._send(op="advance", key=key, n=n)
            self._send(op="end", key=key)
            return
        state = {"done": 0, "began": time.perf_counter(), "said": time.perf_counter()}

        def advance(n: int = 1) -> None:
            state["done"] += n
            now = time.perf_counter()
            if now - state["said"] >= PLAIN_EVERY_S and state["done"] < total:
                state["said"] = now
                left = (now - state["began"]) / state["done"] * (total - state["done"])
                print(f"[{now - self.start:6.1f}s]   {what}: {state['done']}/{total} {unit}, about {left:.0f} s left",
                      file=sys.stderr, flush=True)
        yield advance

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        """End the last stage (remembering its duration) and the live display."""
        if not self.enabled:
            return
        self._finish_stage()
        if self._display is not None:
            with contextlib.suppress(OSError):
                if self._display.stdin is not None:  # opened with stdin=PIPE: it always is
                    self._display.stdin.close()
            self._display.wait(10)
            self._display = None
        assert self._times is not None
        self._times.save()

    def _finish_stage(self) -> None:
        if self._stage is None:
            return
        message, began = self._stage
        seconds = time.perf_counter() - began
        assert self._times is not None  # a stage began: progress is enabled
        self._times.remember(self.context, message, seconds)
        if self.terminal:
            self._send(op="done", message=message.strip(), seconds=seconds)
        self._stage = None

    def _send(self, **event) -> None:
        """To the display process: it draws on the terminal by itself, so the display moves on even while
        this process sits in a converter's C++ call that holds the GIL (a thread could not)."""
        if self._display is None:
            import subprocess

            self._display = subprocess.Popen([sys.executable, "-c", "from edge_distill.progress import serve_display;"
                                              " serve_display()"], stdin=subprocess.PIPE, text=True)
        pipe = self._display.stdin
        assert pipe is not None  # opened with stdin=PIPE
        with contextlib.suppress(OSError):
            pipe.write(json.dumps(event) + "\n")
            pipe.flush()


def serve_display() -> None:
    """The display process: rich's live progress on stderr (this terminal), fed events on stdin. Ctrl-C
    is the run's to handle (it closes this process's stdin when it has cleaned up), not this one's."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress as Bars, SpinnerColumn, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    bars = Bars(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), _remembered_eta(), console=Console(file=sys.stderr),
                transient=True, refresh_per_second=8)
    stage, loops = None, {}
    with bars:
        for line in sys.stdin:
            event = json.loads(line)
            op = event["op"]
            if op == "stage":
                if stage is None:
                    stage = bars.add_task("", total=None, count="", last=None, began=0.0)
                bars.reset(stage, description=event["message"], total=None, count="", last=event["last"],
                           began=time.perf_counter())
            elif op == "done":
                bars.console.print(f"[green]✓[/] {escape(event['message'])} [dim]({event['seconds']:.1f} s)[/]",
                                   highlight=False)
            elif op == "loop":
                task = bars.add_task(f"  {event['what']}", total=event["total"], last=None, began=0.0,
                                     count=f"0/{event['total']} {event['unit']}")
                loops[event["key"]] = [task, event, 0]
            elif op == "advance" and event["key"] in loops:
                entry = loops[event["key"]]
                entry[2] += event["n"]
                bars.update(entry[0], completed=entry[2], count=f"{entry[2]}/{entry[1]['total']} {entry[1]['unit']}")
            elif op == "end" and event["key"] in loops:
                bars.remove_task(loops.pop(event["key"])[0])


class _StageTimes:
    """How long each stage took before, per model, on this machine: the ETA of a stage that reports
    nothing while it runs. Kept in edge-distill's cache; a missing or unreadable file is an empty one."""

    def __init__(self):
        from .places import cache_home

        self.path = Path(os.environ.get("EDGE_DISTILL_STAGE_TIMES") or Path(cache_home()) / "stage-times.json")
        try:
            self.times = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.times = {}
        self.changed = False

    @staticmethod
    def key(context: str, message: str) -> str:
        return f"{context}|{message.strip()}"

    def last(self, context: str, message: str) -> float | None:
        """The median of the stage's last durations (one cold start does not set the ETA), when it is
        long enough (5 s) for an ETA to matter."""
        seen = self.times.get(self.key(context, message)) if context else None
        if not isinstance(seen, list) or not seen:
            return None
        middle = statistics.median(seen)
        return middle if middle >= 5 else None

    def remember(self, context: str, message: str, seconds: float) -> None:
        if context:
            key = self.key(context, message)
            seen = self.times.pop(key, None)  # re-inserted last: the most recently used keys are kept
            self.times[key] = ((seen if isinstance(seen, list) else []) + [round(seconds, 1)])[-KEPT_PER_STAGE:]
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        keep = dict(list(self.times.items())[-REMEMBERED:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(keep))
            tmp.replace(self.path)  # a cache: losing a race with another run loses nothing that matters
        except OSError:
            pass


def _remembered_eta():
    """A rich column: for a stage that reports nothing, the time left if it takes as long as it did before."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RememberedEta(ProgressColumn):
        def render(self, task):
            last = task.fields.get("last")
            if not last:
                return Text("")
            left = last - (time.perf_counter() - task.fields["began"])
            return Text(f"about {left:.0f} s left (took about {last:.0f} s before)" if left > 0
                        else f"longer than before ({last:.0f} s)", style="dim")
    return RememberedEta()


def loop(progress, what: str, total: int, unit: str):
    """`progress.loop(...)` where `progress` is a `Progress`; a no-op for a plain callable."""
    return progress.loop(what, total, unit) if isinstance(progress, Progress) else contextlib.nullcontext(
        lambda n=1: None)
