"""`qai-hub:DEVICE`: a phone in Qualcomm AI Hub's device cloud, through the service's own client
(`pip install 'edge-distill[qai-hub]'`, qai-hub 0.56).

Per artifact, two jobs on the phone, submitted as soon as the pipeline has built it (`start`) and
collected when it is measured, at most [measure.qai_hub] concurrency at once per phone over the whole run:
- a profile job: latency from the profile's per-iteration times, the peak-memory range, the compute
  unit of each layer;
- an inference job on the first `samples` evaluation samples, whose outputs are compared with this
  host's (`arm64_vs_host`, the record the emulator writes).

The API token is the client's own (`qai-hub configure` writes ~/.qai_hub/client.ini; $QAIHUB_CLIENT_INI
points elsewhere) or $EDGE_DISTILL_QAI_HUB_TOKEN; never the project's config, and never written into
a report, a message or the job ledger. AI Hub takes .tflite, .onnx and .mlpackage files; an .ort file
is measured through the .onnx beside it (the same graph before ORT's own optimization).

Every job is remembered in the cache (`qai-hub/` under $EDGE_DISTILL_CACHE) by artifact hash, device,
options and inputs: a finished job is read back without asking the service again; an unfinished one
(an interrupted run) is picked up by its job id with `check --resume`.
"""

from __future__ import annotations

import configparser
import difflib
import hashlib
import json
import os
import re
import time
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..errors import BadInput, CannotMeasure, MissingDependency
from ..files import sha256_path
from ..places import cache_home
from ..progress import loop
from ..provenance import Provenance
from ..result import MB, Latency, Memory
from .base import Device, Figures, Job

KIND = "qai-hub"
TOKEN_ENV = "EDGE_DISTILL_QAI_HUB_TOKEN"
RUNTIMES = {".tflite": "TensorFlow Lite", ".onnx": "ONNX Runtime", ".mlpackage": "Core ML"}
OS_NAMES = {"android": "Android", "ios": "iOS", "macos": "macOS"}


@dataclass(frozen=True)
class CloudSettings:
    """[measure.qai_hub], checked by config.py; `resume` comes from `check --resume`."""

    device: str = ""  # a name AI Hub lists ("Samsung Galaxy S24 (Family)"), or
    attributes: tuple[str, ...] = ()  # attributes every chosen device has ("chipset:qualcomm-snapdragon-8gen3")
    os: str = ""  # a version or an interval ("[14,15)"); "" the newest
    options: str = ""  # the jobs' options, passed through as given ("--compute_unit cpu")
    project: str | None = None
    timeout_s: float = 3600.0  # per job, from its submission (or its resumption)
    poll_s: float = 10.0  # the client's own polling interval
    concurrency: int = 4
    samples: int = 16  # evaluation samples the inference job runs
    resume: bool = False

    @classmethod
    def of(cls, table: dict) -> CloudSettings:
        return cls(**{**table, "attributes": tuple(table.get("attributes", ()))})


@dataclass
class HubRecord:
    """One job as the ledger keeps it (no token, nothing secret)."""

    job_id: str
    url: str
    finished: bool = False
    hub_version: str = ""
    profile: dict = field(default_factory=dict)


def _scrubbed(text: str, token: str) -> str:
    """One line, without the token; the client draws its advice in a box, whose frame is dropped."""
    text = " ".join(re.sub(r"[┌┐└┘─│|]", " ", text).split())
    return text.replace(token, "<token>") if token else text


def hub_client(settings: CloudSettings, who: str):
    """The client on the user's own configuration; the token from $EDGE_DISTILL_QAI_HUB_TOKEN wins."""
    try:
        import qai_hub
        from qai_hub.api_utils import get_config_path
    except ImportError as exc:
        raise MissingDependency("qai-hub", "qai-hub", f"device '{who}'") from exc
    ini, token = Path(get_config_path()), os.environ.get(TOKEN_ENV, "")
    api = configparser.ConfigParser()
    api.read(ini)
    section = api["api"] if api.has_section("api") else {}
    token = token or section.get("api_token", "")
    if not token:
        raise CannotMeasure(f"device '{who}' needs an AI Hub API token, and none is configured",
                            hint=f"`qai-hub configure --api_token ...` (writes {ini}; $QAIHUB_CLIENT_INI points "
                                 f"elsewhere), or set ${TOKEN_ENV}; never put it in the project's config")
    urls: dict[str, Any] = {k: section[k] for k in ("api_url", "web_url") if k in section}
    config = qai_hub.ClientConfig(api_token=token, verbose=False, **urls,
                                  default_project=settings.project or section.get("default_project"))
    return qai_hub.Client(config=config), token


class HubDevice(Device):
    """A phone of AI Hub's: latency, memory and compute units from a profile job; outputs of a sample
    from an inference job, compared with this host's; accuracy figures stay this host's."""

    starts_ahead = True  # `start` submits an artifact's jobs as soon as it is built

    def __init__(self, name: str, tools: dict | None = None):
        self.settings = CloudSettings.of((tools or {}).get("qai_hub", {}))
        wanted = name.partition(":")[2] or self.settings.device
        if not wanted and not self.settings.attributes:
            raise BadInput(f"device '{KIND}' names no phone: use {KIND}:NAME, or [measure.qai_hub] device or "
                           "attributes", hint=f"`edge-distill devices` lists what AI Hub offers ({KIND}:NAME)")
        self.name = f"{KIND}:{wanted}" if wanted else KIND  # until the phone is chosen
        self.client, self.token = hub_client(self.settings, self.name)
        self.phone = self._choose(wanted)
        self.name = f"{KIND}:{self.phone.name}"
        self._slots = threading.BoundedSemaphore(self.settings.concurrency)
        self._started: dict[Path, tuple | BadInput] = {}  # a refused artifact keeps its refusal

    def _call(self, what: str, call):
        """A call to the service; its failures become ours, naming what was asked, without the token."""
        import qai_hub

        try:
            return call()
        except qai_hub.UserError as exc:
            raise BadInput(_scrubbed(f"device '{self.name}': {what}: {exc}", self.token)) from None
        except Exception as exc:  # InternalError, APIException, requests' transport errors, TimeoutError
            raise CannotMeasure(_scrubbed(f"device '{self.name}': {what}: {type(exc).__name__}: {exc}",
                                          self.token)) from None

    def _choose(self, wanted: str):
        s = self.settings
        found = self._call("listing AI Hub's devices", lambda: self.client.get_devices(
            name=wanted, os=s.os, attributes=list(s.attributes)))
        if found:
            return max(found, key=lambda d: [int(p) if p.isdigit() else 0 for p in d.os.split(".")])
        names = sorted({d.name for d in self._call("listing AI Hub's devices", self.client.get_devices)})
        close = difflib.get_close_matches(wanted, names, n=5, cutoff=0.3) if wanted else []
        asked = f"'{KIND}:{wanted}'" if wanted else f"with attributes {', '.join(s.attributes)}"
        raise BadInput(f"AI Hub has no device {asked}{f' (OS {s.os})' if s.os else ''}; "
                       + (f"close names: {', '.join(close)}" if close else f"it has: {', '.join(names)}"),
                       hint="`qai-hub list-devices` lists them with their attributes")

    def start(self, path: Path, data, label: str, progress, numerics: bool = True) -> None:
        """Submit an artifact's jobs now, in the background: the pipeline builds the next artifacts while
        they run, and `measure` collects them. At most `concurrency` jobs run at once on this phone, over all artifacts."""
        try:
            uploaded, note = uploadable(path)
        except BadInput as exc:  # that artifact's row says so when it is measured; the others go on
            self._started[Path(path)] = exc
            return
        work = [("profile", None)] + ([("inference", sample_inputs(data, self.settings.samples))] if numerics else [])
        self._started[Path(path)] = (uploaded, note, {kind: self._background(self._job, kind, uploaded, inputs, label,
                                                                             progress) for kind, inputs in work})

    def _background(self, call, *args) -> Future:
        """A daemon thread under the concurrency bound: an interrupted run does not wait for the service."""
        future: Future = Future()

        def run() -> None:
            with self._slots:
                try:
                    future.set_result(call(*args))
                except BaseException as exc:  # handed to whoever collects the job
                    future.set_exception(exc)
        threading.Thread(target=run, daemon=True).start()
        return future

    def measure(self, job: Job) -> Figures:
        if Path(job.path) not in self._started:
            self.start(job.path, job.data, job.label, job.progress, job.numerics)
        started = self._started.pop(Path(job.path))
        if isinstance(started, BadInput):
            raise started
        uploaded, note, running = started
        done = {}
        with loop(job.progress, f"{job.label}: jobs on {self.name}", len(running), "jobs") as advance:
            for kind, future in running.items():
                done[kind] = future.result()
                advance()
        return self._figures(job, uploaded, note, done)

    def _figures(self, job: Job, path: Path, note: str, done: dict) -> Figures:
        profile, _ = done["profile"]
        lat, mem, details = read_profile(profile.profile, self._provenance(path, profile))
        details["qai_hub"] = {"device": self.phone.name, "os": self.phone.os, "chipset": chipset(self.phone),
                              "uploaded": path.name, "options": self.settings.options,
                              "profile_job": {"id": profile.job_id, "url": profile.url}}
        figures = Figures(lat, mem, f"on {self.name}", details=details,
                          warnings=[f"{job.label} on {self.name}: {note}"] if note else [])
        if "inference" in done:
            inference, outputs = done["inference"]
            details["qai_hub"]["inference_job"] = {"id": inference.job_id, "url": inference.url}
            if job.host_outputs is not None:
                details["arm64_vs_host"] = {**metrics.parity(outputs, job.host_outputs[:len(outputs)]),
                                            "device": self.name}
        return figures

    def _provenance(self, path: Path, record: HubRecord) -> Provenance:
        phone = self.phone
        # threads 0: the service's runtime chooses them (no option sets them for every runtime)
        return Provenance(kind="measured", device=f"{self.name} ({os_name(phone)})",
                          runtime=RUNTIMES[path.suffix], runtime_version=f"as AI Hub {record.hub_version or '(version not given)'} runs it",
                          cpu=chipset(phone), threads=0, os=os_name(phone),
                          method=f"AI Hub profile job {record.job_id} ({record.url}); compute units as the service's "
                                 f"runtime chooses{f' with {self.settings.options}' if self.settings.options else ''}")

    def _job(self, kind: str, path: Path, inputs: dict | None, label: str, progress) -> tuple[HubRecord, object]:
        ledger = Ledger(self._key(kind, path, inputs))
        record = ledger.read()
        if record and record.finished:
            progress(f"  {label}: {kind} job {record.job_id} on {self.name} already finished (from the cache)")
            return record, ledger.outputs()
        if record and self.settings.resume:
            progress(f"  {label}: resuming {kind} job {record.job_id} on {self.name}")
            hub_job = self._call(f"reading {kind} job {record.job_id}", lambda: self.client.get_job(record.job_id))
        else:
            hub_job = self._call(f"submitting the {kind} job of {label}", lambda: self.client.submit_inference_job(
                str(path), self.phone, inputs=inputs, name=label, options=self.settings.options,
                profile=kind == "profile", project=self.settings.project))
            record = HubRecord(hub_job.job_id, hub_job.url)
            ledger.write(record)
            progress(f"  {label}: {kind} job {record.job_id} submitted to {self.name} ({record.url})")
        status = self._wait(hub_job, kind, label, progress)
        if status.failure:  # forgotten: the next run, --resume or not, submits the job afresh
            ledger.forget()
            raise CannotMeasure(_scrubbed(f"device '{self.name}': {kind} job {record.job_id} of {label} ({record.url}) "
                                          f"failed: {status.message or 'no reason given'}", self.token))
        what = f"{kind} job {record.job_id} ({record.url})"
        # a submitted job's object is built before the service answers: the version it ran on is read back
        record.hub_version = self._call(f"reading {what}", lambda: self.client.get_job(record.job_id)).hub_version
        record.finished = True
        outputs = None
        if kind == "profile":
            record.profile = self._call(f"downloading the profile of {what}", hub_job.download_profile)
        else:
            data = self._call(f"downloading the outputs of {what}", hub_job.download_output_data)
            outputs = np.concatenate(next(iter(data.values())))
            ledger.keep_outputs(outputs)
        ledger.write(record)
        return record, outputs

    def _wait(self, hub_job, kind: str, label: str, progress):
        """Poll until the job finishes (its final status), or raise at the timeout."""
        s, start, said = self.settings, time.monotonic(), None
        what = f"{kind} job {hub_job.job_id} of {label} ({hub_job.url})"
        while True:
            status = self._call(f"polling {what}", hub_job.get_status)
            if status.finished:
                break
            waited = time.monotonic() - start
            if waited >= s.timeout_s:
                raise CannotMeasure(f"device '{self.name}': {what} did not finish in {s.timeout_s:g} s (last state "
                                    f"{status.code})", hint="`check --resume` picks the job up again")
            if status.code != said:
                progress(f"  {label}: {kind} job {hub_job.job_id} {status.code.lower()} "
                         f"({waited:.0f} s, at most {s.timeout_s - waited:.0f} s left)")
                said = status.code
            time.sleep(s.poll_s)
        return status

    def _key(self, kind: str, path: Path, inputs: dict | None) -> str:
        digest = hashlib.sha256(json.dumps([kind, sha256_path(path), self.phone.name, self.phone.os,
                                            self.settings.options]).encode())
        for name, arrays in (inputs or {}).items():
            digest.update(name.encode())
            for array in arrays:
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


class Ledger:
    """The jobs of one artifact on one device, in the cache: job id, URL, and once finished, its results."""

    def __init__(self, key: str):
        self.path = cache_home() / KIND / f"{key}.json"

    def read(self) -> HubRecord | None:
        return HubRecord(**json.loads(self.path.read_text())) if self.path.is_file() else None

    def write(self, record: HubRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record.__dict__))

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    def keep_outputs(self, outputs: np.ndarray) -> None:
        np.save(self.path.with_suffix(".npy"), outputs)

    def outputs(self) -> np.ndarray | None:
        stored = self.path.with_suffix(".npy")
        return np.load(stored) if stored.is_file() else None


def uploadable(path: Path) -> tuple[Path, str]:
    """The file AI Hub is given, and a note when it is not the artifact itself."""
    if path.suffix in RUNTIMES:
        return path, ""
    beside = path.with_suffix(".onnx")
    if path.suffix == ".ort" and beside.is_file():
        return beside, (f"AI Hub does not take .ort files; its figures are of {beside.name}, the same graph before "
                        "ORT's optimization")
    raise BadInput(f"AI Hub takes {', '.join(RUNTIMES)} files, not {path.name}", path=path)


def sample_inputs(data, samples: int) -> dict[str, list[np.ndarray]]:
    """The first `samples` evaluation samples, one batch-1 array each, in the data's order (the model's
    inputs', which AI Hub matches by position)."""
    count = min(samples, len(data))
    return {name: [values[i:i + 1] for i in range(count)] for name, values in data.inputs.items()}


def read_profile(profile: dict, prov: Provenance) -> tuple[Latency | None, Memory, dict]:
    """Latency, memory and compute units from a profile (client.py's dict: times in µs, memory in bytes).
    A percentile is reported only where the profile's iterations are enough to hold one (p99: 100)."""
    summary, layers = profile.get("execution_summary", {}), profile.get("execution_detail", [])
    times = np.asarray(summary.get("all_inference_times") or [], np.float64) / 1000.0
    ms = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    if len(times):
        enough = {q: len(times) >= 100 / (100 - q) for q in (50, 90, 95, 99)}
        pct = {f"p{q}_ms": ms(np.percentile(times, q)) if ok else None for q, ok in enough.items()}
        missing = ", ".join(f"p{q}" for q, ok in enough.items() if not ok)
        lat = Latency(**pct, mean_ms=ms(times.mean()), min_ms=ms(times.min()), runs=len(times), warmup=0, batch=1,
                      provenance=prov, samples_ms=[round(float(t), 4) for t in times],
                      missing=f"{missing}: {len(times)} profiled iterations are too few" if missing else "")
    elif summary.get("estimated_inference_time") is not None:
        lat = Latency(p50_ms=ms(summary["estimated_inference_time"] / 1000.0), p90_ms=None, p95_ms=None, p99_ms=None,
                      mean_ms=None, min_ms=None, runs=0, warmup=0, batch=1, provenance=prov,
                      missing="this profile format gives one inference time and no iterations: no other percentile")
    else:
        lat = None
    peak = summary.get("inference_memory_peak_range")
    memory = Memory(round(peak[1] / MB, 4), Provenance(**{**prov.__dict__, "method": "the upper end of the profile's "
                                                           "inference peak-memory range"})) if peak else \
        Memory(None, None, "the profile gives no inference peak-memory range")
    units: dict[str, int] = {}
    for layer in layers:
        units[layer["compute_unit"]] = units.get(layer["compute_unit"], 0) + 1
    details = {"compute_units": {"counts": units, "layers": [[lay["name"], lay["type"], lay["compute_unit"]]
                                                              for lay in layers]},
               "memory_peak_range_mb": [round(v / MB, 4) for v in peak] if peak else None}
    return lat, memory, details


def chipset(phone) -> str:
    return next((a.split(":", 1)[1] for a in phone.attributes if a.startswith("chipset:")), "unknown chipset")


def os_name(phone) -> str:
    family = next((a.split(":", 1)[1] for a in phone.attributes if a.startswith("os:")), "")
    return f"{OS_NAMES.get(family, family)} {phone.os}".strip()


def listing() -> tuple:
    """`edge-distill devices`' line: whether the client and a token are here (the service is not asked)."""
    try:
        from qai_hub.api_utils import get_config_path
    except ImportError:
        return (f"{KIND}:NAME", "measured", [], "Qualcomm AI Hub's phones: pip install 'edge-distill[qai-hub]'", False)
    ini = configparser.ConfigParser()
    ini.read(get_config_path())
    ready = bool(os.environ.get(TOKEN_ENV) or ini.has_option("api", "api_token"))
    return (f"{KIND}:NAME", "measured", ["latency", "memory", "compute units", "a sample's outputs"] if ready else [],
            "Qualcomm AI Hub's phones (`qai-hub list-devices` names them)"
            + ("" if ready else f": no API token (`qai-hub configure` or ${TOKEN_ENV})"), ready)
