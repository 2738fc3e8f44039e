"""Where a figure came from. Every figure in a report carries one of these."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

# The vocabulary of provenance kinds, ranked by how much a figure is worth, weakest first: a graph
# estimate; Core ML's program evaluated op by op in numpy (not Apple's kernels); the real runtime's
# arm64 kernels under qemu; a real run. A budget's `require` names the weakest kind it accepts.
RANK = {"estimated": 0, "reference-mil": 1, "emulated": 2, "measured": 3}


@dataclass(frozen=True)
class Provenance:
    kind: str  # a key of RANK
    device: str  # "host" for this machine
    runtime: str
    runtime_version: str
    cpu: str
    threads: int
    os: str
    method: str


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_environment() -> dict:
    return {"cpu": host_cpu(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def measured_on_host(runner_info: dict, method: str) -> Provenance:
    return Provenance(kind="measured", device="host", runtime=runner_info["runtime"],
                      runtime_version=runner_info["runtime_version"], cpu=host_cpu(),
                      threads=runner_info.get("threads", 1), os=f"{platform.system()} {platform.machine()}",
                      method=method)
