"""Devices: where each figure of a run comes from.

A device name picks two things: where the accuracy figures are computed (the numerics) and where
the latency and memory come from.

| name                 | numerics                  | latency and memory                        |
|----------------------|---------------------------|-------------------------------------------|
| host (default)       | this machine, measured    | this machine, measured                    |
| a profile name       | this machine, measured    | estimated from the graph (profiles.py)    |
| emulated-arm64       | aarch64 kernels, emulated | this machine, measured (never the emulator's) |
| adb, adb:SERIAL      | this machine, measured    | the phone, measured (android.py)          |
| macos-local          | this Mac, measured        | this Mac, measured (Core ML)              |
| iphone, iphone:UDID  | this machine              | the phone, measured (apple.py, macOS + Xcode) |
| qai-hub:NAME         | this machine; a sample's outputs on the phone, compared | the phone in AI Hub's cloud, measured (cloud.py) |
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field

from ..errors import BadInput, CannotMeasure
from .base import Device, Figures, Job, RunSettings
from .profiles import builtin_profiles, load_profile

__all__ = ["Device", "DeviceInfo", "Figures", "Job", "RunSettings", "known_names", "list_devices", "resolve"]
EMULATED_ARM64 = "emulated-arm64"


@dataclass
class DeviceInfo:
    """One line of `edge-distill devices`."""

    name: str
    kind: str  # measured | estimated | emulated
    measures: list[str] = field(default_factory=list)
    note: str = ""
    ready: bool = True


def resolve(name: str, tools: dict | None = None) -> Device:
    """The device behind a name, checked before any work starts: an unknown name is bad input
    (exit 2); a known device that is not usable here cannot measure (exit 3)."""
    from .host import HostDevice

    if name == "host":
        return HostDevice()
    if name == "macos-local":
        if sys.platform != "darwin":
            raise CannotMeasure("device 'macos-local' runs Core ML on this Mac, and this machine is "
                                f"{platform.system()}", hint="use it on a Mac, or pick an estimated profile "
                                                             "(iphone-15-pro)")
        return HostDevice(name)
    if name in builtin_profiles():
        from .profiles import EstimatedDevice

        return EstimatedDevice(name)
    if name == EMULATED_ARM64:
        from .emulated import EmulatedDevice

        return EmulatedDevice()
    if name == "adb" or name.startswith("adb:"):
        from .android import AdbDevice

        return AdbDevice(name, tools)
    if name == "iphone" or name.startswith("iphone:"):
        from .apple import IPhoneDevice

        return IPhoneDevice(name, tools)
    if name == "qai-hub" or name.startswith("qai-hub:"):
        from .cloud import HubDevice

        return HubDevice(name, tools)
    raise BadInput(f"unknown device '{name}'; available: {', '.join(known_names())}",
                   hint="`edge-distill devices` lists them with what each can measure")


def known_names() -> list[str]:
    return ["host", *sorted(builtin_profiles()), EMULATED_ARM64, "adb[:SERIAL]", "macos-local", "iphone[:UDID]",
            "qai-hub:NAME"]


def list_devices() -> list[DeviceInfo]:
    from .android import attached_devices
    from .apple import attached_iphones
    from .emulated import Emulator

    devices = [DeviceInfo("host", "measured", ["latency", "memory", "accuracy"],
                          f"this machine ({platform.machine()}): a proxy for a phone's CPU, not a phone")]
    for name in sorted(builtin_profiles()):
        p = load_profile(name)
        corrected = f", corrected x{p.figures['correction']:g} from {', '.join(p.correction_info['measured_on'])}" \
            if p.correction_info else ""
        devices.append(DeviceInfo(name, "estimated", ["latency", "memory"],
                                  f"{p.description} (v{p.version}{corrected}); {p.validated_errors()}"))
    state = Emulator.state()
    devices.append(DeviceInfo(EMULATED_ARM64, "emulated", ["accuracy (aarch64 kernels of ORT and LiteRT)"],
                              state.note, ready=state.ready))
    for phone in attached_devices():
        devices.append(DeviceInfo(f"adb:{phone.serial}", "measured",
                                  ["latency (with a benchmark binary you provide)"] if phone.ready else [],
                                  phone.note, ready=phone.ready))
    if sys.platform == "darwin":
        devices.append(DeviceInfo("macos-local", "measured", ["latency", "accuracy"], "Core ML on this Mac"))
    for iphone in attached_iphones():
        devices.append(DeviceInfo(f"iphone:{iphone.udid}", "measured",
                                  ["latency of Core ML artifacts (ios-demo's test, through xcodebuild)"]
                                  if iphone.online else [], f"{iphone.name}, iOS {iphone.os}"
                                  + ("" if iphone.online else " (offline)"), ready=iphone.online))
    from .cloud import listing

    devices.append(DeviceInfo(*listing()))
    return devices
