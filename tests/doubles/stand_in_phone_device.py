"""TEST DOUBLE: a phone as an edge-distill device (see README.md beside it). There is no phone on this host:
`measure` answers with the figures it was given (latency, memory, and, where a test asks, the phone's own
outputs) and keeps each job it was asked, so a test reads what edge-distill sent the device."""

from __future__ import annotations

from edge_distill.devices import Figures
from edge_distill.devices.base import Device, Job


class StandInPhone(Device):
    name = "stand-in-phone"

    def __init__(self, figures: Figures):
        self.figures, self.jobs = figures, []

    def measure(self, job: Job) -> Figures:
        self.jobs.append(job)
        return self.figures
