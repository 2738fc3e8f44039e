"""`emulated-arm64`: ORT and LiteRT artifacts run on their real aarch64 kernels under qemu-user.

Int8 kernels differ between x86 and ARM, so accuracy, agreement and slice budgets are checked on
the arithmetic a phone's CPU uses. Only numerics come from here: the emulator's timing says
nothing about a phone and is never reported.

The emulator is a folder, built once by `edge-distill devices setup emulated-arm64` without
debootstrap and without touching the system's dpkg state (except installing qemu-user-static):
- Debian's arm64 CPython 3.11 and its libraries, unpacked from .debs that a private apt state
  resolves and downloads;
- aarch64 wheels of numpy, onnxruntime and ai-edge-litert, unzipped. onnxruntime is held at 1.27:
  1.28 and newer crash on import under Debian 12's qemu 7.2; ai-edge-litert has no Linux aarch64
  wheel after 1.4.0. A .ort file the older runtime cannot read is evaluated through the .onnx
  beside it, and the report says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import CannotMeasure
from ..places import cache_home
from ..result import Memory
from .base import Device, Figures, Job
from .host import HostDevice

DEB_ROOTS = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6")
EMULATED_ORT = "1.27.0"  # 1.28 and newer crash on import under qemu 7.2 (1.28-1.32 tried)
EMULATED_LITERT = "1.4.0"  # the newest ai-edge-litert with a Linux aarch64 wheel
WHEELS = ("numpy==2.3.5", f"onnxruntime=={EMULATED_ORT}", f"ai-edge-litert=={EMULATED_LITERT}")
SETUP = "edge-distill devices setup emulated-arm64"
CPU = "cortex-a76"
WORKER = Path(__file__).parent.parent / "runtime_worker.py"  # shared with runtimes.py


@dataclass
class State:
    ready: bool
    note: str


class Emulator:
    @staticmethod
    def home() -> Path:
        return cache_home() / "emulated-arm64"

    @classmethod
    def state(cls) -> State:
        stamp = cls.home() / "stamp.json"
        qemu = shutil.which("qemu-aarch64-static")
        if not stamp.is_file():
            return State(False, f"not set up: `{SETUP}` installs qemu-user-static (apt-get), about 15 MB of "
                                "arm64 Debian packages and 60 MB of aarch64 wheels into " + str(cls.home()))
        if qemu is None:
            return State(False, f"qemu-aarch64-static is gone: run `{SETUP}` again")
        info = json.loads(stamp.read_text())
        return State(True, f"ready: {', '.join(info['wheels'])} on aarch64 CPython {info['python']} under "
                           f"{info['qemu']}, cpu {info.get('cpu', CPU)} ({cls.home()})")

    @classmethod
    def installed(cls) -> None:
        state = cls.state()
        if not state.ready:
            raise CannotMeasure(f"device 'emulated-arm64' is {state.note}")

    @classmethod
    def command(cls) -> list[str]:
        home = cls.home()
        # cortex-a76: a phone's core (Armv8.2 with dot product). qemu's default, "max", adds SME,
        # under which onnxruntime 1.27's dynamic-int8 MatMul returns wrong numbers in qemu 7.2.
        return [shutil.which("qemu-aarch64-static") or "qemu-aarch64-static", "-cpu", CPU, "-L", str(home / "sysroot"),
                # the guest inherits the host's environment: host Python settings must not leak in
                "-U", "PYTHONHOME", "-U", "PYTHONSTARTUP", "-U", "LD_LIBRARY_PATH", "-U", "LD_PRELOAD",
                "-E", f"PYTHONPATH={home / 'site'}", "-E", "PYTHONNOUSERSITE=1",
                str(home / "sysroot" / "usr" / "bin" / "python3.11")]

    @classmethod
    def setup(cls, progress=print) -> State:
        home = cls.home()
        stamp = home / "stamp.json"
        if cls.state().ready and json.loads(stamp.read_text()) | {"python": "", "qemu": ""} == _stamp("", ""):
            progress("already set up")
            return cls.state()
        home.mkdir(parents=True, exist_ok=True)
        _install_qemu(progress)
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=home))
        try:
            debs = _download_debs(home / "apt", progress)
            progress(f"unpacking {len(debs)} arm64 packages into {home / 'sysroot'}")
            for deb in debs:
                _run(["dpkg", "-x", str(deb), str(build / "sysroot")], f"unpacking {deb.name}")
            for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info"):
                shutil.rmtree(build / "sysroot" / junk, ignore_errors=True)
            # qemu -L falls back to the host's path where the sysroot has none: keep the guest from
            # finding the host's x86 site-packages
            for empty in ("usr/lib/python3/dist-packages", "usr/local/lib/python3.11/dist-packages"):
                (build / "sysroot" / empty).mkdir(parents=True, exist_ok=True)
            progress(f"downloading aarch64 wheels: {', '.join(WHEELS)}")
            wheels = home / "wheels"
            _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                  "--only-binary=:all:", "--platform", "manylinux_2_28_aarch64", "--platform",
                  "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                  "-d", str(wheels), *WHEELS], "pip download of the aarch64 wheels")
            for spec in WHEELS:
                name, _, ver = spec.partition("==")
                found = sorted(wheels.glob(f"{name.replace('-', '_')}-{ver}-*aarch64*.whl"))
                if not found:
                    raise CannotMeasure(f"emulated-arm64 setup: no aarch64 wheel of {spec} in {wheels}")
                with zipfile.ZipFile(found[0]) as whl:
                    whl.extractall(build / "site")
            # Debian ships the stdlib without .pyc: compiling here halves each emulated start (6.5 -> 3 s)
            progress("compiling the arm64 Python's modules")
            if sys.version_info[:2] == (3, 11):
                import compileall

                for tree in (build / "sysroot" / "usr" / "lib" / "python3.11", build / "site"):
                    compileall.compile_dir(tree, quiet=2, workers=0, rx=re.compile(r"/tests?/"))
            for name in ("sysroot", "site"):
                shutil.rmtree(home / name, ignore_errors=True)
                (build / name).rename(home / name)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        progress("smoke test: importing numpy, onnxruntime and ai-edge-litert on aarch64")
        probe = ("import json, platform, numpy, onnxruntime; from ai_edge_litert.interpreter import Interpreter; "
                 "print(json.dumps([platform.machine(), platform.python_version()]))")
        proc = subprocess.run(cls.command() + ["-c", probe], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise CannotMeasure(f"emulated-arm64 setup: the aarch64 Python fails its smoke test: "
                                f"{_tail(proc.stderr or proc.stdout)}")
        machine, python = json.loads(proc.stdout.strip().splitlines()[-1])
        if machine != "aarch64":
            raise CannotMeasure(f"emulated-arm64 setup: the emulated Python reports {machine}, not aarch64")
        qemu = _run(["qemu-aarch64-static", "--version"], "qemu --version").stdout.splitlines()[0]
        (home / "stamp.json").write_text(json.dumps(_stamp(python, qemu.replace(" version", ""))))
        return cls.state()

    @classmethod
    def run(cls, request: dict, what: str) -> dict:
        with tempfile.TemporaryDirectory(prefix="edge-distill-arm64-") as tmp:
            path = Path(tmp) / "request.json"
            request = {**request, "output": str(Path(tmp) / "out.npz")}
            path.write_text(json.dumps(request))
            try:
                proc = subprocess.run(cls.command() + [str(WORKER), str(path)], capture_output=True, text=True,
                                      timeout=3600)
            except subprocess.TimeoutExpired as exc:
                raise CannotMeasure(f"device 'emulated-arm64': {what} did not finish in an hour") from exc
            if proc.returncode != 0:
                try:
                    why = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
                except (ValueError, IndexError, KeyError, TypeError):
                    why = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else \
                        _tail(proc.stderr or proc.stdout)
                raise CannotMeasure(f"device 'emulated-arm64': {what} failed in the aarch64 runtime: {why}")
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            with np.load(request["output"]) as data:
                info["outputs"] = [data[f"o{i}"] for i in range(len(data.files))]
        return info


def emulated_outputs(runner, path: Path, data, threads: int) -> tuple[np.ndarray, dict]:
    """The artifact's first output on every sample, computed by its aarch64 runtime. The runner says
    how its runtime takes the samples (`emulation_request`) and decodes what comes back."""
    if not hasattr(runner, "emulation_request"):
        raise CannotMeasure(f"device 'emulated-arm64' runs ORT and LiteRT artifacts; {Path(path).name} runs on "
                            f"{runner.describe()['runtime']}, which has no aarch64 Linux build",
                            hint="give this target its own device in [[targets]]")
    request, feeds = runner.emulation_request(data.inputs)
    note = ""
    with tempfile.TemporaryDirectory(prefix="edge-distill-arm64-in-") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **feeds)
        request.update(inputs=str(inputs), threads=threads)
        try:
            info = Emulator.run({**request, "model": str(Path(path).resolve())}, f"running {Path(path).name}")
        except CannotMeasure as exc:
            info, note = _through_the_fallback(runner, request, Path(path), exc)
    evaluation = {"kind": "emulated", "runtime": info["runtime"], "runtime_version": info["runtime_version"],
                  "device": "emulated-arm64", "machine": info["machine"], "cpu": CPU,
                  "emulator": Emulator.state().note}
    if note or info.get("note"):
        evaluation["note"] = "; ".join(n for n in (note, info.get("note")) if n)
    return np.asarray(runner.from_emulated(info["outputs"])[0], dtype=np.float32), evaluation


def _through_the_fallback(runner, request: dict, path: Path, error: CannotMeasure) -> tuple[dict, str]:
    """The artifact did not load in the emulator's (older) runtime: the file of the same graph its runner
    names instead (`emulation_fallback`: ORT's .onnx beside a .ort), or the error, with that runtime named."""
    fallback = getattr(runner, "emulation_fallback", lambda _: None)(path)
    package = runner.describe()["runtime"]
    runtime = " ".join(next((w.split("==") for w in WHEELS if w.startswith(f"{package}==")), [package]))
    if fallback is None:
        raise CannotMeasure(f"{error} (the emulated runtime is {runtime}, the newest that runs under "
                            f"qemu-user here; a phone app with a newer runtime may take this model)") from error
    info = Emulator.run({**request, "model": str(fallback.resolve())}, f"running {fallback.name}")
    return info, (f"{path.name} does not load in the aarch64 {runtime} "
                  f"({str(error).split(': ')[-1][:160]}); its numerics come from {fallback.name}, the same graph "
                  "before its runtime's optimization")


class EmulatedDevice(Device):
    """Accuracy on the aarch64 kernels under qemu; latency and memory stay this host's."""

    name = "emulated-arm64"
    times_on_this_host = True

    def __init__(self):
        Emulator.installed()  # raises CannotMeasure with the setup command when it is not set up

    def measure(self, job: Job) -> Figures:
        if not job.numerics:
            raise CannotMeasure("device 'emulated-arm64' checks numerics, not speed: the emulator's timing is not "
                                "a device figure", hint="`check` or `verify --device emulated-arm64` for its accuracy")
        figures = self._numerics(job)
        speed = HostDevice().measure(job)
        figures.latency, figures.memory, figures.why_no_latency = speed.latency, speed.memory, speed.why_no_latency
        figures.details.update(speed.details)
        return figures

    def _numerics(self, job: Job) -> Figures:
        job.progress(f"  {job.label}: accuracy on {len(job.data)} samples on aarch64 kernels under qemu")
        figures = Figures(None, Memory(None, None), "on this host")
        try:
            figures.outputs, figures.evaluation = emulated_outputs(job.runner, job.path, job.data,
                                                                   job.settings.threads)
        except CannotMeasure as exc:  # this artifact's figures stay unmeasured; the others go on
            figures.why_no_numerics = str(exc)
            figures.evaluation = {"kind": "emulated", "runtime": job.runner.describe()["runtime"],
                                  "runtime_version": "", "device": "emulated-arm64", "error": str(exc)}
            figures.warnings.append(f"{job.label}: {exc}")
            return figures
        if job.host_outputs is not None:
            figures.details["arm64_vs_host"] = metrics.parity(figures.outputs, job.host_outputs)
        if figures.evaluation.get("note"):
            figures.warnings.append(f"{job.label} on emulated-arm64: {figures.evaluation['note']}")
        return figures


def _stamp(python: str, qemu: str) -> dict:
    """What a finished setup records; a setup of other wheels or another CPU is redone."""
    return {"wheels": list(WHEELS), "cpu": CPU, "python": python, "qemu": qemu}


def _install_qemu(progress) -> None:
    if shutil.which("qemu-aarch64-static"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise CannotMeasure("emulated-arm64 needs qemu-aarch64-static, and this setup can install it only as root "
                            "with apt-get", hint="apt-get install qemu-user-static, then run the setup again")
    progress("installing Debian's qemu-user-static (apt-get)")
    _run(["apt-get", "update", "-qq"], "apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-user-static"],
         "apt-get install qemu-user-static", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _download_debs(apt: Path, progress) -> list[Path]:
    """arm64 .debs of DEB_ROOTS and their dependencies, through an apt state of our own whose
    dpkg status is empty: apt resolves the whole closure, as for an empty system."""
    for sub in ("lists/partial", "archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("")
    options = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64", "-o", f"Dir::State={apt}",
               "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::State::status={apt / 'status'}",
               "-o", f"Dir::Cache={apt}", "-o", f"Dir::Cache::archives={apt / 'archives'}",
               "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    progress("fetching Debian's arm64 package lists (a private apt state)")
    _run(["apt-get", *options, "-qq", "update"], "apt-get update (arm64)")
    simulated = _run(["apt-get", *options, "-s", "-y", "--no-install-recommends", "install", *DEB_ROOTS],
                     "resolving the arm64 packages").stdout
    names = sorted(line.split()[1].removesuffix(":arm64") for line in simulated.splitlines()
                   if line.startswith("Inst "))
    progress(f"downloading {len(names)} arm64 packages: {' '.join(names)}")
    _run(["apt-get", *options, "-qq", "-y", "--no-install-recommends", "install", "--download-only", *DEB_ROOTS],
         "downloading the arm64 packages")
    debs = []
    for name in names:
        found = sorted((apt / "archives").glob(f"{name}_*_arm64.deb")) + sorted(
            (apt / "archives").glob(f"{name}_*_all.deb"))
        if not found:
            raise CannotMeasure(f"emulated-arm64 setup: apt did not download {name}")
        debs.append(found[-1])
    return debs


def _run(command: list[str], what: str, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    except FileNotFoundError as exc:
        raise CannotMeasure(f"emulated-arm64 setup: {what} needs {command[0]}, which is not installed") from exc
    if proc.returncode != 0:
        raise CannotMeasure(f"emulated-arm64 setup: {what} failed: {_tail(proc.stderr or proc.stdout)}")
    return proc


def _tail(text: str) -> str:
    return " | ".join(text.strip().splitlines()[-3:]) or "(no output)"
