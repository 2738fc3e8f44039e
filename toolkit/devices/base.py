"""The one question the pipeline asks a device: "measure this artifact". A `Job` says what to
measure; `Figures` come back with their provenance already attached."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from edge_distill.calibration import Dataset

from ..result import Latency, Memory

if TYPE_CHECKING:
    from edge_distill.targets import Precision, Runner


@dataclass(frozen=True)
class RunSettings:
    """How every artifact of a run is measured: where, and with how many threads and runs."""

    device: Device
    threads: int = 1
    warmup: int = 20
    runs: int = 200
    sequence_lengths: tuple[int, ...] = ()  # text models: latency at each token count
    sequence_length: int | None = None  # the budget's: the token count its latency limits hold at
    options: dict = field(default_factory=dict)  # the target's options (a runner may read them)
    app_runtime: tuple[str, str] | None = None  # (pip package, version) an app ships: artifacts must load in it


@dataclass
class Job:
    target: str  # the target's registered name (a fresh process reopens the artifact by it)
    path: Path
    runner: Runner  # the target's, open on this host
    data: Dataset  # evaluation samples (or zeros, for bench)
    settings: RunSettings
    label: str
    precision: Precision | None = None  # the target's: what an estimate needs
    graph: Path | None = None  # the ONNX graph an estimate counts
    host_outputs: np.ndarray | None = None  # this host's outputs, compared with a device's own
    numerics: bool = True  # False for bench: speed only
    progress: Callable[[str], None] = lambda message: None


@dataclass
class Figures:
    """What a device measured. `outputs` None: the host's outputs stand for the accuracy figures."""

    latency: Latency | None
    memory: Memory
    where: str  # "on this host", "on adb:SERIAL", "on iphone-15-pro (estimated)": for sentences
    outputs: np.ndarray | None = None
    evaluation: dict | None = None  # how `outputs` were computed, when the device computed them
    why_no_numerics: str | None = None  # the device was asked for numerics and could not give them
    why_no_latency: str | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Device:
    """A place figures come from. Subclasses answer `measure` and say what they are."""

    name: str = "host"
    times_on_this_host = False  # its latency is this machine's: a float reference timed here compares
    # A remote device has `start(path, data, label, progress)`: it sends an artifact off as soon as it
    # is built, and `measure` collects the figures; the pipeline builds the next artifacts meanwhile.
    starts_ahead = False

    def start(self, path: Path, data, label: str, progress, numerics: bool = True) -> None:
        raise NotImplementedError

    def measure(self, job: Job) -> Figures:
        raise NotImplementedError


def other_count(tool: str, reported: int, asked: int) -> str:
    """Said when a device's benchmark ran another number of timed runs than asked: the figures are
    from what it ran, and the report must not pass them off as the requested count."""
    return "" if reported == asked else f"{tool} reported {reported} timed runs where {asked} were asked for"
