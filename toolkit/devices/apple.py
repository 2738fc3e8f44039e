"""An attached iPhone, through Xcode's command-line tools (macOS only).

`xcrun xctrace list devices` finds the phone (its `== Devices ==` / `== Devices Offline ==`
sections, lines `Name (iOS version) (UDID)`; the Mac itself carries no version). To time a Core ML
artifact, edge-distill puts it into ios-demo as `edge-distill-latency.mlpackage` with
`edge-distill-latency.json` (its inputs, runs, warm-up), runs ios-demo's
`LatencyTests/testCandidateLatency` on the phone with `xcodebuild test`, and reads XCTest's line
`measured [Clock Monotonic Time, s] average: ..., values: [...]`: one value per prediction, which
become the percentiles. Both files are removed afterwards. xcrun and xcodebuild are
$EDGE_DISTILL_XCRUN / $EDGE_DISTILL_XCODEBUILD or the ones on PATH; the ios-demo folder is
`[measure.iphone] app` or $EDGE_DISTILL_IOS_APP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


from ..errors import BadInput, CannotMeasure
from ..provenance import Provenance
from ..result import Latency, Memory
from .attached import choose_attached
from .base import Device, Figures, Job, other_count
from .host import percentiles

CANDIDATE = "edge-distill-latency"
TEST = "EdgeDistillDemoTests/LatencyTests/testCandidateLatency"
_LINE = re.compile(r"^(?P<name>.+?) \((?P<os>[\d.]+)\) \((?P<udid>[0-9A-Fa-f-]+)\)$")
_MEASURED = re.compile(r"testCandidateLatency\]' measured \[Clock Monotonic Time, s\] average: (?P<avg>[\d.]+), "
                       r"relative standard deviation: [\d.]+%, values: \[(?P<values>[^\]]*)\]")


@dataclass
class IPhone:
    name: str
    os: str
    udid: str
    online: bool


def tool(name: str) -> str | None:
    return os.environ.get(f"EDGE_DISTILL_{name.upper()}") or shutil.which(name)


def attached_iphones() -> list[IPhone]:
    xcrun = tool("xcrun")
    if xcrun is None:
        return []
    proc = subprocess.run([xcrun, "xctrace", "list", "devices"], capture_output=True, text=True, timeout=60)
    phones, section = [], None
    for raw in proc.stdout.splitlines():
        line = raw.replace("\u00a0", " ").strip()
        if line.startswith("== "):
            section = {"== Devices ==": "online", "== Devices Offline ==": "offline"}.get(line)
            continue
        match = _LINE.match(line)
        if section and match and "Simulator" not in line:
            phones.append(IPhone(match["name"], match["os"], match["udid"], section == "online"))
    return phones


def pick_iphone(udid: str | None) -> IPhone:
    if tool("xcrun") is None or tool("xcodebuild") is None:
        raise CannotMeasure("device 'iphone': an attached iPhone is reached through Xcode's command-line tools "
                            "(xcrun, xcodebuild), which this machine does not have",
                            hint="run it on a Mac with Xcode, or pick the estimated profile iphone-15-pro")
    phones = attached_iphones()
    phone = choose_attached(phones, [p.udid for p in phones], udid, kind="iphone", what="iPhone", id_name="UDID",
                            listing=[f"{p.name} ({p.udid}{'' if p.online else ', offline'})" for p in phones],
                            hint="`xcrun xctrace list devices`")
    if not phone.online:
        raise CannotMeasure(f"device 'iphone:{phone.udid}' ({phone.name}) is offline",
                            hint="unlock it, trust this Mac, and turn on Developer Mode")
    return phone


def app_folder(configured: str | None) -> Path:
    given = configured or os.environ.get("EDGE_DISTILL_IOS_APP")
    if not given:
        raise CannotMeasure("measuring on an iPhone runs ios-demo's latency test, and no app folder is set",
                            hint='set [measure.iphone] app = "ios-demo" in the config, or $EDGE_DISTILL_IOS_APP')
    app = Path(given)
    if not (app / "project.yml").is_file():
        raise BadInput("not the ios-demo app (no project.yml)", path=app)
    return app


def measure(phone: IPhone, artifact: Path, inputs: list[dict], app: Path, *, warmup: int, runs: int) -> list[float]:
    """Per-prediction times (ms) of `artifact` on the phone, from ios-demo's candidate latency test."""
    if artifact.suffix != ".mlpackage":
        raise CannotMeasure(f"an iPhone runs Core ML artifacts here, not {artifact.suffix} files", path=artifact)
    project = app / "EdgeDistillDemo.xcodeproj"
    if not project.exists():
        xcodegen = tool("xcodegen")
        if xcodegen is None:
            raise CannotMeasure("ios-demo has no Xcode project yet", path=app,
                                hint="cd ios-demo && xcodegen generate (brew install xcodegen)")
        subprocess.run([xcodegen, "generate"], cwd=app, check=True, capture_output=True, timeout=300)
    xcodebuild = tool("xcodebuild")
    if xcodebuild is None:
        raise CannotMeasure("xcodebuild is not installed, so ios-demo's latency test cannot run on the iPhone",
                            hint="install Xcode (the command line tools alone have no xcodebuild), or set $EDGE_DISTILL_XCODEBUILD")
    models = app / "EdgeDistillDemo" / "Models"
    package, spec = models / f"{CANDIDATE}.mlpackage", models / f"{CANDIDATE}.json"
    models.mkdir(parents=True, exist_ok=True)
    try:
        shutil.rmtree(package, ignore_errors=True)
        shutil.copytree(artifact, package, symlinks=True)  # a link is copied as a link, never followed
        spec.write_text(json.dumps({"model": CANDIDATE, "inputs": inputs, "warmup": warmup, "runs": runs}))
        proc = subprocess.run([xcodebuild, "test", "-project", str(project), "-scheme", "EdgeDistillDemo",
                               "-destination", f"platform=iOS,id={phone.udid}", f"-only-testing:{TEST}"],
                              capture_output=True, text=True, timeout=3600)
    finally:
        shutil.rmtree(package, ignore_errors=True)
        spec.unlink(missing_ok=True)
    return parse_measured(proc.stdout + proc.stderr, phone, proc.returncode)


def parse_measured(text: str, phone: IPhone, returncode: int = 0) -> list[float]:
    match = _MEASURED.search(text)
    if match is None:
        gone = re.search(r"Unable to find a destination matching the provided destination specifier|"
                         r"device (?:was|is) (?:disconnected|locked|not available)", text, re.IGNORECASE)
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
        what = "went away or was not usable" if gone else f"gave no measurement (xcodebuild exit {returncode})"
        raise CannotMeasure(f"device 'iphone:{phone.udid}' ({phone.name}) {what}: {tail}")
    values = [float(v) * 1000.0 for v in match["values"].split(",") if v.strip()]
    if not values:
        raise CannotMeasure(f"device 'iphone:{phone.udid}': XCTest printed an empty list of values")
    return values


class IPhoneDevice(Device):
    """An attached iPhone (macOS with Xcode): latency from ios-demo's XCTest on the phone; accuracy
    measured on this machine."""

    def __init__(self, name: str, tools: dict | None = None):
        self.name, self.tools = name, tools or {}
        self.udid = pick_iphone(name.partition(":")[2] or None).udid

    def measure(self, job: Job) -> Figures:
        s = job.settings
        job.progress(f"  {job.label}: latency on {self.name} (xcodebuild test, {s.warmup} warm-up + {s.runs} runs)")
        phone = next(p for p in attached_iphones() if p.udid == self.udid)
        inputs = [{"name": i.name, "shape": [1 if isinstance(d, str) else int(d) for d in i.shape],
                   "dtype": "int32" if i.dtype.startswith("int") else "float32"} for i in job.runner.input_specs()]
        values = measure(phone, Path(job.path), inputs, app_folder(self.tools.get("ios_app")), warmup=s.warmup,
                         runs=s.runs)
        prov = Provenance(kind="measured", device=f"iphone:{phone.udid} ({phone.name}, iOS {phone.os})",
                          runtime="Core ML", runtime_version=f"iOS {phone.os}", cpu=phone.name, threads=0,
                          os=f"iOS {phone.os}",
                          method=f"XCTest clock metric in ios-demo's testCandidateLatency: {len(values)} "
                                 f"predictions, one per iteration, after {s.warmup} warm-up")
        lat = Latency(**percentiles(values), runs=len(values), warmup=s.warmup, batch=1, provenance=prov,
                      missing=other_count("the XCTest run", len(values), s.runs))
        return Figures(lat, Memory(None, None, "the XCTest clock metric times predictions; memory on the iPhone "
                                               "is not measured"), f"on {self.name}")
