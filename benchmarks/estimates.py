"""Fit the estimator's cost model on published measurements; score it by cross-validation and, once,
on a sealed split.

The corpus (toolkit/device_profiles/measurements/, every row with its source line) holds batch-1
latencies of standard networks: ncnn's benchmark tables, and XNNPACK, TFLite, ONNX Runtime and
Core ML runs from their projects' pages. devices.csv names each device's core and clock,
cost_model/cores.toml each core's peak. The networks are written in benchmarks/networks.py,
exported to ONNX (fp32, and int8 as ORT static QDQ) and counted by the estimator's own graph_work,
so the fit sees what the product sees.

measurements/sealed.csv (fixed before this fit used it) seals a third of the devices: no row of
theirs is fitted, cross-validated or looked at while the model is chosen. The rest are fitted
together - ncnn's runs, and the XNNPACK/TFLite runs with a known thread count (the GEMM runtimes the
targets use: their dense convolutions are lowered to GEMMs, cost_model.py).

The CPU model (toolkit/devices/cost_model.py) has shared figures (per op class efficiencies for
float and int8, cycles per light and per gathered element, weight streaming, per-op overhead, thread
scaling, a speed for the GEMM runtimes against ncnn), a speed per kind of core, and an offset per
device and run setting, shrunk towards 0. The product never uses the offsets, so every score here
that a profile, the README or an estimate quotes is computed without them:
- cross-validated: each network's rows (outside the sealed split) predicted by a fit without it;
- sealed: the sealed devices' rows, predicted once by the fit on everything outside the split;
each per runtime kind (ncnn, GEMM runtimes) and per network family (cost_model.network_family).
The Neural Engine model is scored the same way (the iPhone 14 Pro sealed, the 15 Pro fitted).

    python benchmarks/estimates.py [--update-profiles]

prints the tables, writes benchmarks/results/estimates.json and, with --update-profiles,
device_profiles/cost_model/fitted.toml (the fit outside the sealed split, with each network family's
errors) and each profile's [validation] (the sealed GEMM runs' error, the cross-validated interval
and how many sealed runs it held: what `edge-distill devices` shows and every estimate carries).

A second sealed split, measurements/sealed-2.csv (published runs committed before any of them was
estimated; no fit reads it), is scored last, with the committed fitted.toml as the product estimates
(a GEMM runtime, no device offsets): per runtime and network family, the profiles' interval's
coverage, ResNet / MobileNetV2 ratios and where the estimate's time goes.

    python benchmarks/estimates.py --sealed-2

prints only that (a minute: it counts only the split's networks) and writes
benchmarks/results/sealed-2.json.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import networks  # noqa: E402

from edge_distill.devices.cost_model import (GEMM_FAMILIES, GEMM_KERNELS, SERIAL_GROUPS, WINOGRAD_FAMILIES,  # noqa: E402
                                             Coefficients, Workload, core_of,
                                             load_cores, seconds)
from edge_distill.devices.cost_model import (NETWORK_FAMILIES, family_fitted, network_family,  # noqa: E402
                                             serial_depthwise_seconds)
from edge_distill.devices.graph_work import DENSE, DEPTHWISE, MATMUL, OP_CLASSES, POINTWISE, graph_work  # noqa: E402
from edge_distill.targets import Precision  # noqa: E402

MEASUREMENTS = ROOT / "toolkit" / "device_profiles" / "measurements"
PROFILES = ROOT / "toolkit" / "device_profiles"
RESULTS = ROOT / "benchmarks" / "results"
PRECISIONS = {"fp32": Precision("fp32", 32, 32, "fp32"), "int8": Precision("int8", 8, 8, "int8")}
CLASSES = [c for c in OP_CLASSES if c not in ("light", MATMUL)]  # matrix products over many rows run as pointwise
SIGMA, TAU = 0.25, 0.5  # the spread of log errors the fit expects, and of a device's offset


def workloads(needed: set[tuple[str, str, int]]) -> dict[tuple[str, str, int], Workload]:
    """(network, precision, input size) -> its Workload, cached by the networks' source."""
    counted = (ROOT / "benchmarks" / "networks.py", ROOT / "toolkit" / "devices" / "graph_work.py")
    key = hashlib.sha256(b"".join(path.read_bytes() for path in counted)).hexdigest()[:16]
    cache = RESULTS / f"workloads-{key}.json"
    known = {}
    if cache.is_file():
        known = {(n, p, int(z)): Workload(**v) for (n, p, z), v in
                 ((k.split("/"), v) for k, v in json.loads(cache.read_text()).items())}
    missing = sorted({(n, z) for n, _, z in needed if any((n, p, z) not in known for p in PRECISIONS)})
    if missing:
        from onnxruntime.quantization import quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory() as work:
            for name, size in missing:
                print(f"counting {name} at {size}x{size}", file=sys.stderr)
                exported, fp32, int8 = (Path(work) / f"{name}.{kind}.onnx" for kind in ("exported", "fp32", "int8"))
                networks.export(name, exported, size)
                quant_pre_process(str(exported), str(fp32))  # as the ort target does: BatchNorm folded
                quantize_static(str(fp32), str(int8), networks.random_reader(size, name=name), per_channel=True)
                known[name, "fp32", size] = Workload.of(graph_work(fp32))
                known[name, "int8", size] = Workload.of(graph_work(int8))
        RESULTS.mkdir(exist_ok=True)
        cache.write_text(json.dumps({f"{n}/{p}/{z}": vars(v) for (n, p, z), v in known.items()}, indent=1))
    return known


# Runtime (as the corpus names it) -> the cost model's family: what it computes fp32 in, and whether
# its 3x3 convolutions are Winograd (see toolkit/devices/cost_model.py).
FAMILIES = {"ncnn": "ncnn", "xnnpack": GEMM_KERNELS, "executorch-xnnpack": GEMM_KERNELS, "tflite": GEMM_KERNELS,
            "onnxruntime": GEMM_KERNELS}
# ONNX Runtime threads a grouped convolution's groups from 1.23.2 on (cost_model.SERIAL_GROUPS); before PR #25255
# (2025-07-02) said master did not, no release did.
ORT_THREADED_GROUPS, ORT_SERIAL_BEFORE = (1, 23, 2), "2025-07-02"


def family_of(row: dict) -> str:
    """The cost model's family of a published run: its runtime's, and for ONNX Runtime its version's (the
    version the row states, else the row's date: a run before 2025-07-02 had an older release)."""
    if row["runtime"] != "onnxruntime":
        return FAMILIES[row["runtime"]]
    stated = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", row.get("runtime_version") or "")
    if stated:
        return SERIAL_GROUPS if tuple(int(v or 0) for v in stated.groups()) < ORT_THREADED_GROUPS else GEMM_KERNELS
    dated = row.get("row_date") or ""
    return SERIAL_GROUPS if dated and dated < ORT_SERIAL_BEFORE else GEMM_KERNELS  # undated: as the product runs


def sealed_devices() -> set[str]:
    """The devices of the sealed test split (measurements/sealed.csv, fixed before the fit used it)."""
    return {r["device"] for r in csv.DictReader((MEASUREMENTS / "sealed.csv").open())}


def corpus(name: str) -> list[dict]:
    """The published CPU rows of networks we have (fp32 and int8, batch 1), each with its device's core
    and whether it is in the sealed split."""
    cores, sealed = load_cores(), sealed_devices()
    devices = {r["device"]: r for r in csv.DictReader((MEASUREMENTS / "devices.csv").open())}
    rows = []
    for row in csv.DictReader((MEASUREMENTS / name).open()):
        # an image, or a sequence of token ids; "?": a size the page implies rather than states
        shape = re.fullmatch(r"(\d+)x\d+x3\??|(\d+) tokens", row["input"])
        size = int(shape[1] or shape[2]) if shape else None
        if row["model"] not in networks.NETWORKS or row["precision"] not in PRECISIONS or not size \
                or row["device"] not in devices or row["runtime"] not in FAMILIES:
            continue
        spec = devices[row["device"]]
        rows.append({**row, "size": size, "family": family_of(row),
                     "core": core_of(spec["core"], float(spec["clock_ghz"]), cores),
                     "setting": f"{row['device']} | {row['threads']} threads | powersave {row['powersave']}",
                     "sealed": row["device"] in sealed,
                     "published_ms": float(row["latency_ms"])})
    return rows


def load_of(loads: dict, row: dict) -> Workload:
    return loads[row["model"], row["precision"], row["size"]]


class Design:
    """The rows as arrays, so that a fit evaluates the cost model for all of them at once."""

    def __init__(self, rows: list[dict], loads: dict, settings: list[str], cores: list[str]):
        from edge_distill.devices.cost_model import arithmetic_of

        load = [load_of(loads, r) for r in rows]
        arith = [arithmetic_of(PRECISIONS[r["precision"]], r["family"], r["core"]) for r in rows]
        self.int8 = np.array([a == "int8" for a in arith])
        self.flops = np.array([[w.flops[c] for c in CLASSES] for w in load])
        self.gemm = np.array([r["family"] not in WINOGRAD_FAMILIES for r in rows])
        dense, pointwise = [CLASSES.index(c) for c in DENSE], CLASSES.index(POINTWISE)
        self.flops[:, pointwise] += [w.flops.get(MATMUL, 0.0) for w in load]  # a 1x1 convolution's microkernel
        # A GEMM runtime's dense convolution: the 1x1 convolutions' microkernel, and its gathering
        self.flops[self.gemm, pointwise] += self.flops[self.gemm][:, dense].sum(axis=1)
        self.flops[np.ix_(self.gemm, dense)] = 0
        self.gathered = np.where(self.gemm, [w.gathered for w in load], 0.0)
        # ONNX Runtime before 1.23.2: float depthwise convolutions as im2col and a one-row GEMM, on one thread
        serial = np.array([r["family"] == SERIAL_GROUPS and a != "int8" for r, a in zip(rows, arith)], dtype=bool)
        depthwise = CLASSES.index(DEPTHWISE)
        self.serial_depthwise = np.where(serial, self.flops[:, depthwise], 0.0)
        self.flops[serial, depthwise] = 0
        self.peak = np.array([r["core"].peak(a) for r, a in zip(rows, arith)])
        self.clock = np.array([r["core"].clock_ghz * 1e9 for r in rows])
        self.light = np.array([w.light_elements for w in load])
        wbytes = np.array([2.0 if a == "fp16" else (1.0 if a == "int8" else 4.0) for a in arith])
        self.streamed = np.array([w.matrix_weights for w in load]) * wbytes
        self.ops = np.array([w.ops for w in load], dtype=float)
        self.threads = np.array([float(r["threads"]) for r in rows])
        self.setting = np.array([settings.index(r["setting"]) if r["setting"] in settings else -1 for r in rows])
        self.core = np.array([cores.index(r["core"].kind) if r["core"].kind in cores else -1 for r in rows])
        self.dot = self.int8 & np.array([r["core"].int8_kernel == "dot" for r in rows])
        self.matmul = self.int8 & np.array([r["core"].int8_kernel == "matmul" for r in rows])
        self.observed = np.log([r["published_ms"] / 1e3 for r in rows])

    def predict(self, p: dict) -> np.ndarray:
        """log seconds, as cost_model.seconds computes them."""
        eff = np.where(self.int8[:, None], np.exp(p["efficiency"] + p["int8_ratio"] + p["int8_deviation"]),
                       np.exp(p["efficiency"]))
        eff = eff * np.exp(np.where(self.dot, p["dot_use"], 0.0) + np.where(self.matmul, p["matmul_use"], 0.0))[:, None]
        light = np.exp(np.where(self.int8, p["light_int8"], p["light_float"]))
        gather = np.exp(np.where(self.int8, p["gather_int8"], p["gather_float"]))
        compute = (self.flops / eff).sum(axis=1) / self.peak + (self.light * light + self.gathered * gather) / self.clock
        serial = (self.serial_depthwise / 2 * np.exp(p["gather_float"]) / self.clock
                  + self.serial_depthwise / (self.peak * np.exp(p["efficiency"][CLASSES.index(POINTWISE)])))
        total = (compute / self.threads ** p["thread_scaling"] + serial + self.streamed * np.exp(p["stream"]) / self.clock
                 + self.ops * np.exp(p["overhead"]) / self.clock)
        pick = lambda values, index: np.where(index >= 0, values[np.maximum(index, 0)], 0.0)  # noqa: E731
        return (np.log(total) + pick(p["core_speed"], self.core) + pick(p["offsets"], self.setting)
                + np.where(self.gemm, p["gemm_speed"], 0.0))


# The fitted figures: (start, lower, upper) per element, and the prior's spread for those shrunk to 0.
K = len(CLASSES)
BLOCKS = {"efficiency": (math.log(0.3), math.log(0.01), math.log(8.0), K), "int8_deviation": (0.0, -3.0, 3.0, K),
          "light_float": (math.log(2.0), math.log(0.01), math.log(100.0), 1),
          "light_int8": (math.log(2.0), math.log(0.01), math.log(100.0), 1),
          "stream": (math.log(0.5), math.log(1e-3), math.log(20.0), 1),
          "overhead": (math.log(3000.0), math.log(10.0), math.log(1e6), 1), "thread_scaling": (0.8, 0.3, 1.0, 1),
          "int8_ratio": (0.0, -3.0, 3.0, 1), "dot_use": (0.0, -3.0, 3.0, 1), "matmul_use": (0.0, -3.0, 3.0, 1),
          "gather_float": (0.0, math.log(0.01), math.log(50.0), 1),
          "gather_int8": (0.0, math.log(0.01), math.log(50.0), 1),
          "gemm_speed": (0.0, -3.0, 3.0, 1)}
SHRUNK = {"int8_deviation": TAU, "dot_use": TAU, "matmul_use": TAU, "gemm_speed": TAU, "core_speed": TAU,
          "offsets": TAU}


def unpack(x: np.ndarray, n_cores: int, n_settings: int) -> dict:
    sizes = {**{name: block[3] for name, block in BLOCKS.items()}, "core_speed": n_cores, "offsets": n_settings}
    out, at = {}, 0
    for name, size in sizes.items():
        out[name] = x[at:at + size] if size > 1 or name in ("core_speed", "offsets") else x[at]
        at += size
    return out


def fit(rows: list[dict], loads: dict) -> tuple[dict, list[str], list[str]]:
    """The fitted figures (by name), with the core kinds and settings their arrays follow."""
    from scipy.optimize import least_squares

    settings, cores = sorted({r["setting"] for r in rows}), sorted({r["core"].kind for r in rows})
    design = Design(rows, loads, settings, cores)
    blocks = list(BLOCKS.values()) + [(0.0, -3.0, 3.0, len(cores)), (0.0, -3.0, 3.0, len(settings))]
    start, lower, upper = (np.concatenate([np.full(b[3], b[i]) for b in blocks]) for i in range(3))

    def residuals(x):
        p = unpack(x, len(cores), len(settings))
        return np.concatenate([(design.predict(p) - design.observed) / SIGMA,
                               *[np.atleast_1d(p[name]) / spread for name, spread in SHRUNK.items()]])

    x = least_squares(residuals, start, bounds=(lower, upper)).x
    return unpack(x, len(cores), len(settings)), cores, settings


def coefficients(p: dict, cores: list[str], fitted_on: str) -> Coefficients:
    rounded = lambda values: [round(float(v), 4) for v in values]  # noqa: E731
    return Coefficients(efficiency={"float": dict(zip(CLASSES, rounded(np.exp(p["efficiency"])))),
                                    "int8": dict(zip(CLASSES, rounded(np.exp(p["efficiency"] + p["int8_ratio"]
                                                                             + p["int8_deviation"]))))},
                        light_cycles={"float": round(math.exp(p["light_float"]), 4),
                                      "int8": round(math.exp(p["light_int8"]), 4)},
                        stream_cycles_per_byte=round(math.exp(p["stream"]), 4),
                        op_overhead_cycles=round(math.exp(p["overhead"]), 1),
                        thread_scaling=round(float(p["thread_scaling"]), 4),
                        core_speed=dict(zip(cores, rounded(p["core_speed"]))),
                        int8_kernel_use={"widening": 1.0, "dot": round(math.exp(p["dot_use"]), 4),
                                         "matmul": round(math.exp(p["matmul_use"]), 4)},
                        gather_cycles={"float": round(math.exp(p["gather_float"]), 4),
                                       "int8": round(math.exp(p["gather_int8"]), 4)},
                        family_speed={GEMM_KERNELS: round(float(p["gemm_speed"]), 4)}, fitted_on=fitted_on)


def predict(rows: list[dict], loads: dict, c: Coefficients, offsets: dict[str, float]) -> list[dict]:
    """Each row with the model's estimate beside the published figure, and its network's family."""
    out = []
    for r in rows:
        ms = 1e3 * seconds(load_of(loads, r), r["core"], PRECISIONS[r["precision"]], r["family"], int(r["threads"]), c,
                           offsets.get(r["setting"], 0.0))
        out.append({k: r[k] for k in ("device", "runtime", "model", "size", "precision", "threads", "powersave",
                                      "published_ms", "source", "setting", "family", "sealed")}
                   | {"network_family": network_family(loads[r["model"], "fp32", r["size"]]),
                      "estimated_ms": round(ms, 3), "ratio": round(ms / r["published_ms"], 3)})
    return out


def cross_validate(rows: list[dict], loads: dict) -> list[dict]:
    """Each network's rows predicted by a fit without that network: `ratio` as the product estimates
    (no device offset), `ratio_with_offset` with the fitted offset of the row's device setting."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        print(f"cross-validating: {model} held out", file=sys.stderr)
        p, cores, settings = fit([r for r in rows if r["model"] != model], loads)
        offsets = dict(zip(settings, p["offsets"]))
        held = [r for r in rows if r["model"] == model]
        c = coefficients(p, cores, "")
        for without, with_offset in zip(predict(held, loads, c, {}), predict(held, loads, c, offsets)):
            out.append(without | {"ratio_with_offset": with_offset["ratio"]})
    return out


def score(held: list[dict], key: str = "ratio") -> dict:
    ratios = [r[key] for r in held]
    errors = sorted(max(x, 1 / x) for x in ratios)
    return {"runs": len(errors), "median_error": round(statistics.median(errors), 2),
            "within_1_5x": round(sum(e <= 1.5 for e in errors) / len(errors), 2),
            "ratio_low": round(float(np.quantile(ratios, 0.05)), 3), "ratio_high": round(float(np.quantile(ratios, 0.95)), 3)}


RUNTIME_KINDS = {"ncnn": lambda r: r["family"] == "ncnn", "GEMM runtimes": lambda r: r["family"] in GEMM_FAMILIES}


def by_family(rows: list[dict], key: str = "ratio") -> dict:
    """Scores per runtime kind (ncnn; the GEMM runtimes the targets use), overall and per network family."""
    out = {}
    for kind, test in RUNTIME_KINDS.items():
        mine = [r for r in rows if test(r)]
        groups = {"all": mine, **{f: [r for r in mine if r["network_family"] == f] for f in NETWORK_FAMILIES}}
        out.update({f"{kind}, {name}": score(g, key) for name, g in groups.items() if g})
    return out


def coverage(rows: list[dict], low: float, high: float) -> float:
    """The share of rows whose estimate / published lies in low..high: what an interval promises."""
    return round(sum(low <= r["ratio"] <= high for r in rows) / len(rows), 2)


# Core ML on the Neural Engine: the corpus's precisions as Core ML builds them, and each iPhone's
# Neural Engine figures (Apple: A16 "nearly 17 trillion operations per second"; A17 Pro "up to 35",
# taken as int8, fp16 at half of it).
NE = "neural engine"
NE_PRECISIONS = {"fp16": Precision("fp16", 16, 16, "fp16", NE), "int8": Precision("w8a8", 8, 8, "int8", NE),
                 "int8-weight-only": Precision("int8", 8, 16, "int8", NE),
                 **{f"palettized-{b}bit": Precision(f"palettize{b}", b, 16, "fp16", NE) for b in (1, 2, 4, 6, 8)}}
NE_TOPS = {"iPhone 14 Pro": (17.0, 17.0), "iPhone 15 Pro": (17.5, 35.0), "Apple iPhone 15 Pro": (17.5, 35.0)}
NE_KEYS = ("fixed_us", "op_us", "efficiency", "depthwise_efficiency", "output_ns_per_byte")


def neural_engine_rows() -> list[dict]:
    rows, sealed = [], sealed_devices()
    for row in csv.DictReader((MEASUREMENTS / "other-runtimes.csv").open()):
        precision = re.sub(r"-gs\d+$", "", row["precision"])
        if "coreml" in row["runtime"] and row["model"] in networks.NETWORKS and precision in NE_PRECISIONS \
                and row["device"] in NE_TOPS and row["input"] == "224x224x3":
            rows.append({**row, "size": 224, "ne_precision": NE_PRECISIONS[precision], "published_ms": float(row["latency_ms"]),
                         "sealed": row["device"] in sealed})
    return rows


def neural_engine_predict(rows, loads, ne: dict) -> list[float]:
    from edge_distill.devices.cost_model import neural_engine_seconds

    c = Coefficients({}, {}, 0, 0, 0, neural_engine=ne)
    out = []
    for r in rows:
        precision = r["ne_precision"]
        tops = NE_TOPS[r["device"]][1 if precision.activation_bits <= 8 else 0]
        out.append(1e3 * neural_engine_seconds(loads[r["model"], "fp32", 224], precision, tops, c))
    return out


def neural_engine_fit(rows, loads) -> dict:
    from scipy.optimize import least_squares

    start = np.log([150.0, 2.0, 0.3, 0.05, 0.05])
    observed = np.log([r["published_ms"] for r in rows])

    def residuals(x):
        predicted = np.log(neural_engine_predict(rows, loads, dict(zip(NE_KEYS, np.exp(x)))))
        return np.concatenate([(predicted - observed) / SIGMA, (x - start) / 2.0])  # a weak prior: the fit decides

    x = least_squares(residuals, start).x
    return {k: round(float(v), 5) for k, v in zip(NE_KEYS, np.exp(x))}


def neural_engine_scored(rows, loads, ne: dict) -> list[dict]:
    return [{k: r[k] for k in ("device", "runtime", "model", "precision", "published_ms", "source", "sealed")}
            | {"estimated_ms": round(ms, 4), "ratio": round(ms / r["published_ms"], 3)}
            for r, ms in zip(rows, neural_engine_predict(rows, loads, ne))]


def neural_engine_cross_validate(rows, loads) -> list[dict]:
    out = []
    for model in sorted({r["model"] for r in rows}):
        ne = neural_engine_fit([r for r in rows if r["model"] != model], loads)
        out += neural_engine_scored([r for r in rows if r["model"] == model], loads, ne)
    return out


# profile -> the corpus devices that score it: its own device, or (no runs of its own) devices of its core
PROFILE_DEVICES = {"raspberry-pi-5": ["Raspberry Pi 5"], "raspberry-pi-5-4-threads": ["Raspberry Pi 5"],
                   "android-snapdragon-8-gen-2": ["Android phone (unnamed)"], "android-flagship": ["MediaTek reference device (hostname k6989v1_64)"],
                   "iphone-15-pro": ["MacBook Air (13-inch, M3, 2024)"],
                   "android-midrange": ["NVIDIA Jetson AGX Orin", "NVIDIA Jetson Orin Nano"]}


CLAIM = 0.9  # the share of runs a profile's interval claims to hold
BAR = 0.05  # issue #32: a claimed 90% interval must hold at least 85% of the sealed runs


def conformal_interval(cv: list[dict], claim: float = CLAIM) -> tuple[float, float]:
    """estimate / published within 1/E..E, E the ceil(claim x (n + 1))-th smallest of the n
    cross-validated errors (split conformal, symmetric in log): for runs exchangeable with the
    cross-validated ones it holds at least `claim` of them, whatever n. The 5%..95% percentiles it
    replaces hold about (n + 1 - 3.6) / (n + 1) of them at n = 17 (the Neural Engine's runs): 80%."""
    errors = sorted(max(r["ratio"], 1 / r["ratio"]) for r in cv)
    k = math.ceil(claim * (len(errors) + 1))
    if k > len(errors):
        raise ValueError(f"{len(errors)} cross-validated runs cannot give a {claim:.0%} interval")
    return round(1 / errors[k - 1], 3), round(errors[k - 1], 3)


def validation(cv: list[dict], sealed: list[dict], against: str) -> dict:
    """A profile's [validation]: the sealed rows' error as the product estimates (no offsets), the
    interval from the cross-validated rows (conformal_interval), how many sealed rows it holds, and
    what it claims: 90%, or, where the sealed rows say it holds less than 85%, no more than it held
    (rounded down to 5%)."""
    low, high = conformal_interval(cv)
    held = coverage(sealed, low, high)
    claim = CLAIM if held >= CLAIM - BAR else math.floor(round(held * 100) / 5) * 5 / 100
    return score(sealed) | {"ratio_low": low, "ratio_high": high, "interval_coverage": held,
                            "interval_claim": claim, "against": against}


def profile_scores(cv: list[dict], sealed: list[dict], ne: tuple[list[dict], list[dict]]) -> tuple[dict, dict]:
    """Each profile's validation (GEMM runtimes, the targets' kind), and ncnn's cross-validated runs
    on the profile's own devices, as the product estimates them (no device offset), for the README."""
    import tomllib

    gemm_cv, gemm_sealed = ([r for r in rows if r["family"] in GEMM_FAMILIES] for rows in (cv, sealed))
    against = (f"sealed split: {', '.join(sorted({r['runtime'] for r in gemm_sealed}))} on "
               f"{len({r['device'] for r in gemm_sealed})} devices no fit saw, no device offsets; interval from "
               f"{len(gemm_cv)} cross-validated runs")
    cpu = validation(gemm_cv, gemm_sealed, against)
    profiles, on_devices = {}, {}
    for name, devices in PROFILE_DEVICES.items():
        profile = tomllib.loads((PROFILES / f"{name}.toml").read_text())
        profiles[name] = {"validation": cpu}
        if "neural_engine_fp16_tops" in profile:
            profiles[name]["neural_engine_validation"] = validation(
                *ne, "sealed split: Core ML on the iPhone 14 Pro; fit and interval on the iPhone 15 Pro's runs")
        rows = [r for r in cv if r["device"] in devices and r["threads"] == str(profile["threads"])]
        if rows:
            on_devices[f"{name} vs ncnn on {' / '.join(devices)}"] = score(rows)
    return profiles, on_devices


def write_profile(name: str, entry: dict) -> None:
    """Replace the profile's validation tables (always its last)."""
    path = PROFILES / f"{name}.toml"
    text = re.sub(r"\n\[(neural_engine_)?validation\].*\Z", "\n", path.read_text(), flags=re.S).rstrip("\n") + "\n"
    lines = []
    for table in ("validation", "neural_engine_validation"):
        if table in entry:
            lines += ["", f"[{table}]  # written by benchmarks/estimates.py: estimate / published on the sealed split"]
            lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(entry[table].items())]
    path.write_text(text + "\n".join(lines) + "\n")


def write_cost_model(model: Coefficients, families: dict) -> None:
    lines = ["# The estimated profiles' cost model (toolkit/devices/cost_model.py), fitted by benchmarks/estimates.py:",
             "# do not edit by hand. Efficiencies are fractions of a core's peak; cycles are the core's.",
             f"fitted_on = {json.dumps(model.fitted_on)}"]
    lines += [f"{k} = {json.dumps(getattr(model, k))}" for k in ("stream_cycles_per_byte",
                                                                  "op_overhead_cycles", "thread_scaling")]
    tables = {"light_cycles": model.light_cycles, "gather_cycles": model.gather_cycles,
              "family_speed": model.family_speed, "core_speed": model.core_speed,
              "int8_kernel_use": model.int8_kernel_use, "neural_engine": model.neural_engine,
              **{f"efficiency.{kind}": v for kind, v in model.efficiency.items()}}
    for table, values in tables.items():
        lines += ["", f"[{table}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["", "# Per network family, GEMM runtimes, no device offsets: the sealed split's error and the",
              "# cross-validated one (what an estimate of that family says of itself)."]
    for name, values in families.items():
        lines += ["", f'[family_validation."{name}"]'] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    (PROFILES / "cost_model" / "fitted.toml").write_text("\n".join(lines) + "\n")


def family_validation(cv: list[dict], sealed: list[dict]) -> dict:
    """network family -> its GEMM-runtime scores, sealed and cross-validated (runs, median, within 1.5x)."""
    out = {}
    for family in NETWORK_FAMILIES:
        entry = {}
        for split, rows in (("sealed", sealed), ("cv", cv)):
            mine = [r for r in rows if r["family"] in GEMM_FAMILIES and r["network_family"] == family]
            s = score(mine) if mine else {"runs": 0}
            entry |= {f"{split}_{k}": s[k] for k in ("runs", "median_error", "within_1_5x") if k in s}
        out[family] = entry
    return out


def ratios(loads: dict, rows: list[dict], model: Coefficients) -> dict:
    """ResNet-18 / MobileNetV2 (fp32), estimated and published, on every device setting with both."""
    out = {}
    for setting in sorted({r["setting"] for r in rows}):
        pair = {r["model"]: r for r in rows if r["setting"] == setting and r["precision"] == "fp32"}
        if {"resnet18", "mobilenet_v2"} <= set(pair):
            a, b = pair["resnet18"], pair["mobilenet_v2"]
            est = {fam: seconds(load_of(loads, a), a["core"], PRECISIONS["fp32"], fam, int(a["threads"]), model)
                   / seconds(load_of(loads, b), b["core"], PRECISIONS["fp32"], fam, int(b["threads"]), model)
                   for fam in {"ncnn", GEMM_KERNELS, a["family"]}}
            published = a["published_ms"] / b["published_ms"]
            out[setting] = {"runtime": a["runtime"], "published": round(published, 2),
                            "estimated_same_runtime": round(est[a["family"]], 2),
                            "estimated_gemm": round(est[GEMM_KERNELS], 2),
                            "sealed": a["sealed"]}
    return out


# The second sealed split (measurements/sealed-2.csv, and sealed-3.csv sealed after it): each file
# committed before any of its rows was estimated, never fitted; scored with the committed fit
# (cost_model/fitted.toml), as the product estimates.
SEALED_2 = tuple(MEASUREMENTS / f"sealed-{n}.csv" for n in (2, 3, 4, 5))
APART = {"paddle-lite": "Paddle-Lite", "mnn": "MNN", "bolt": "Bolt"}  # runtimes the targets do not use: scored apart, as ncnn is


def split_kind(runtime: str) -> str:
    return "GEMM runtimes" if FAMILIES.get(runtime) in GEMM_FAMILIES else APART[runtime]


def sealed_2() -> tuple[list[dict], list[dict]]:
    """The second sealed split's rows an estimate can be made for (each with its core, its thread count,
    whether that count is only implied - "4?" - and a setting: device, threads, source file), and the
    others, each with the reason it is not scored."""
    cores, rows, skipped = load_cores(), [], []
    for row in (r for path in SEALED_2 for r in csv.DictReader(path.open())):
        reason = ("its core is not in cores.toml" if row["core"] not in cores else
                  "its network is not written" if row["model"] not in networks.NETWORKS else
                  "no thread count stated" if not row["threads"] else
                  "its precision is not scored" if row["precision"] not in PRECISIONS else "")
        if reason:
            skipped.append(row | {"reason": reason})
            continue
        shape = re.fullmatch(r"(\d+)x\d+x3\??|(\d+) tokens\??", row["input"])
        rows.append({**row, "size": int(shape[1] or shape[2]), "published_ms": float(row["latency_ms"]),
                     # the product's estimate: a runtime apart (Paddle-Lite, MNN, Bolt) as a GEMM runtime
                     "family": family_of(row) if row["runtime"] in FAMILIES else GEMM_KERNELS,
                     "core": core_of(row["core"], float(row["clock_ghz"]), cores),
                     "thread_count": int(row["threads"].rstrip("?")), "implied": row["threads"].endswith("?"),
                     "setting": f"{row['device']} | {row['threads']} threads | {row['source'].split('#')[0]}"})
    return rows, skipped


def product_ms(row: dict, load: Workload, c: Coefficients, threads: int | None = None) -> float:
    """The product's estimate of a published run: a GEMM runtime (what every target is; for ONNX Runtime, the
    row's release) on the row's core at its thread count (or `threads`), no device offset."""
    return 1e3 * seconds(load, row["core"], PRECISIONS[row["precision"]], row["family"],
                         threads or row["thread_count"], c)


def breakdown(load: Workload, core, precision: Precision, family: str, threads: int, c: Coefficients) -> dict:
    """cost_model.seconds split into its terms (seconds per op class as it runs, gathering, light
    elements, weight streaming, per-op overhead): where an estimate's time goes. They sum to seconds()."""
    from edge_distill.devices.cost_model import arithmetic_of

    arithmetic = arithmetic_of(precision, family, core)
    kind = "int8" if arithmetic == "int8" else "float"
    use = c.int8_kernel_use.get(core.int8_kernel, 1.0) if kind == "int8" else 1.0
    clock, parallel = core.clock_ghz * 1e9, threads ** c.thread_scaling
    gemm_convolutions = family not in WINOGRAD_FAMILIES
    terms = {}
    for op_class, flops in load.flops.items():
        runs_as = POINTWISE if (op_class in DENSE and gemm_convolutions) or op_class == MATMUL else op_class
        terms[op_class] = flops / (core.peak(arithmetic) * c.efficiency[kind][runs_as] * use) / parallel
        if op_class == DEPTHWISE and family == SERIAL_GROUPS and kind == "float":  # one thread, im2col + GEMM
            terms[op_class] = serial_depthwise_seconds(flops, core, arithmetic, c)
    terms["gathering"] = (load.gathered * c.gather_cycles[kind] / clock if gemm_convolutions else 0.0) / parallel
    terms["light"] = load.light_elements * c.light_cycles[kind] / clock / parallel
    weight_bytes = 2.0 if arithmetic == "fp16" and precision.weight_bits > 16 else precision.weight_bits / 8
    terms["streaming"] = load.matrix_weights * weight_bytes * c.stream_cycles_per_byte / clock
    terms["overhead"] = load.ops * c.op_overhead_cycles / clock
    speed = math.exp(c.core_speed.get(core.kind, 0.0) + c.family_speed.get(family_fitted(family), 0.0))
    return {term: t * speed for term, t in terms.items()}


def sealed_2_scored(loads: dict, c: Coefficients) -> list[dict]:
    rows, _ = sealed_2()
    out = []
    for r in rows:
        ms = product_ms(r, load_of(loads, r), c)
        out.append({k: r[k] for k in ("device", "runtime", "model", "size", "precision", "threads", "published_ms",
                                      "source", "setting", "implied")}
                   | {"network_family": network_family(loads[r["model"], "fp32", r["size"]]),
                      "estimated_ms": round(ms, 3), "ratio": round(ms / r["published_ms"], 3),
                      "estimated_1_thread_ms": round(product_ms(r, load_of(loads, r), c, 1), 3)})
    return out


def pair_ratios(scored: list[dict], heavy: tuple[str, ...] = ("resnet18", "resnet50")) -> list[dict]:
    """ResNet / MobileNetV2 latency, published and estimated, on every setting and precision with both."""
    out = []
    for setting, precision in sorted({(r["setting"], r["precision"]) for r in scored}):
        pair = {r["model"]: r for r in scored if r["setting"] == setting and r["precision"] == precision}
        for name in heavy:
            if {name, "mobilenet_v2"} <= set(pair):
                a, b = pair[name], pair["mobilenet_v2"]
                published, estimated = a["published_ms"] / b["published_ms"], a["estimated_ms"] / b["estimated_ms"]
                out.append({"setting": setting, "device": a["device"], "threads": a["threads"],
                            "runtime": a["runtime"], "precision": precision, "network": name,
                            "published": round(published, 2), "estimated": round(estimated, 2),
                            "estimated_1_thread": round(a["estimated_1_thread_ms"] / b["estimated_1_thread_ms"], 2),
                            "off_by": round(max(estimated / published, published / estimated), 2)})
    return out


def sealed_2_report(loads: dict, c: Coefficients) -> dict:
    """Every score of the second sealed split: per runtime and network family, the profiles' interval's
    coverage, the ResNet / MobileNetV2 ratios, and the rows not scored with their reasons."""
    import tomllib

    every, (_, skipped) = sealed_2_scored(loads, c), sealed_2()
    scored = [r for r in every if not r["implied"]]  # a thread count only implied is kept out of every per-row score
    groups = {}
    for name in sorted({split_kind(r["runtime"]) for r in every}):
        mine = [r for r in scored if split_kind(r["runtime"]) == name]
        groups[f"{name}, all"] = mine
        for precision in PRECISIONS:
            groups[f"{name}, {precision}"] = [r for r in mine if r["precision"] == precision]
        for family in NETWORK_FAMILIES:
            groups[f"{name}, {family}"] = [r for r in mine if r["network_family"] == family]
    # where the estimate's time goes, for the pair each precision misses most
    ratios_found, breakdowns = pair_ratios(every), {}
    rows = {(r["setting"], r["model"], r["precision"]): r for r in sealed_2()[0]}
    for kind, precision in sorted({(split_kind(r["runtime"]), r["precision"]) for r in ratios_found}):
        misses = [r for r in ratios_found if r["precision"] == precision and split_kind(r["runtime"]) == kind]
        if misses:
            worst = max(misses, key=lambda r: r["off_by"])
            breakdowns[f"{kind}, {precision}"] = {"setting": worst["setting"]} | {
                model: {term: round(1e3 * t, 2) for term, t in breakdown(
                    load_of(loads, row), row["core"], PRECISIONS[precision], row["family"], row["thread_count"],
                    c).items()}
                for model in (worst["network"], "mobilenet_v2") for row in [rows[worst["setting"], model, precision]]}
    validation = tomllib.loads((PROFILES / "raspberry-pi-5.toml").read_text())["validation"]
    low, high = validation["ratio_low"], validation["ratio_high"]
    return {"rows": scored, "implied_thread_rows": [r for r in every if r["implied"]],
            "scores": {k: score(v) for k, v in groups.items() if v},
            "interval": {"low": low, "high": high, "claim": validation["interval_claim"],
                         "held": {k: coverage(v, low, high) for k, v in groups.items() if v and k.endswith(", all")}
                         | {"all": coverage(scored, low, high)}},
            "ratios": ratios_found, "breakdowns": breakdowns,
            "not_scored": [{k: r[k] for k in ("device", "runtime", "model", "precision", "threads", "source", "reason")}
                           for r in skipped]}


def show_sealed_2(report: dict) -> None:
    print(f"\nSEALED-2 (measurements/sealed-2.csv and sealed-3.csv, each committed before any of its rows was "
          f"estimated), the product's estimate (a GEMM runtime, cost_model/fitted.toml, no device offsets), "
          f"{len(report['rows'])} rows with a stated thread count:")
    table(report["scores"])
    i = report["interval"]
    print(f"\nthe profiles' {i['claim']:.0%} interval, estimate / published {i['low']}..{i['high']}, holds "
          + ", ".join(f"{k}: {v:.0%}" for k, v in i["held"].items()))
    print("\nResNet / MobileNetV2, published and estimated (a GEMM runtime; '4?': the thread count implied, "
          "not stated; the estimate at one thread beside it):\n")
    print("| device setting | runtime | precision | network | published | estimated | at 1 thread | off by |")
    print("|---|---|---|---|---|---|---|---|")
    for r in report["ratios"]:
        print(f"| {r['device']}, {r['threads']} threads | {r['runtime']} | {r['precision']} | {r['network']} | "
              f"{r['published']} | {r['estimated']} | {r['estimated_1_thread']} | {r['off_by']}x |")
    for kind, b in report["breakdowns"].items():
        print(f"\nwhere the estimate's time goes (ms), {kind}, {b['setting'].split(' | github')[0]}:")
        for model, terms in b.items():
            if model != "setting":
                print(f"  {model}: " + ", ".join(f"{k} {v}" for k, v in terms.items() if v))
    print("\neach row, estimate / published:")
    for r in report["rows"]:
        print(f"  {r['device']} {r['runtime']} {r['precision']} {r['threads']}t {r['model']}: published {r['published_ms']} ms, "
              f"estimated {r['estimated_ms']} ms, {r['ratio']}")
    print("\nthread count implied, not stated (kept out of the scores above), estimate / published:")
    for r in report["implied_thread_rows"]:
        print(f"  {r['device']} {r['runtime']} {r['precision']} {r['threads']}t {r['model']}: published {r['published_ms']} ms, "
              f"estimated {r['estimated_ms']} ms, {r['ratio']} (at 1 thread {r['estimated_1_thread_ms']} ms)")
    print("\nnot scored:")
    for r in report["not_scored"]:
        print(f"  {r['device']} {r['runtime']} {r['model']} {r['precision']}: {r['reason']}")


def table(scores: dict) -> None:
    print()
    print("| | runs | median error | within 1.5x | estimate/published 5%..95% |")
    print("|---|---|---|---|---|")
    for name, s in scores.items():
        print(f"| {name} | {s['runs']} | {s['median_error']}x | {s['within_1_5x']:.0%} | "
              f"{s['ratio_low']}..{s['ratio_high']} |")


def scored(rows: list[dict], ne_rows: list[dict], loads: dict) -> dict:
    """Fit on the rows outside the sealed split; cross-validate there (leave one network out); score the
    sealed rows once with that fit, as the product estimates (no device offsets: no sealed device was fitted)."""
    train, test = [r for r in rows if not r["sealed"]], [r for r in rows if r["sealed"]]
    cv = cross_validate(train, loads)
    p, cores, settings = fit(train, loads)
    fitted_on = (f"{len(train)} published runs ({sum(r['family'] == 'ncnn' for r in train)} ncnn, "
                 f"{sum(r['family'] != 'ncnn' for r in train)} XNNPACK/TFLite) of {len({r['model'] for r in train})} "
                 f"networks on {len({r['device'] for r in train})} devices outside the sealed split")
    model = coefficients(p, cores, fitted_on)
    sealed = predict(test, loads, model, {})
    ne_train, ne_test = [r for r in ne_rows if not r["sealed"]], [r for r in ne_rows if r["sealed"]]
    ne = neural_engine_fit(ne_train, loads)
    model = replace(model, neural_engine=ne, fitted_on=model.fitted_on + f", and {len(ne_train)} Core ML runs")
    return {"cv": cv, "sealed": sealed, "model": model, "ratios": ratios(loads, rows, model),
            "ne_cv": neural_engine_cross_validate(ne_train, loads),
            "ne_sealed": neural_engine_scored(ne_test, loads, ne)}


def show(out: dict) -> None:
    print("cross-validated (outside the sealed split, each network held out), no device offsets - as the product:")
    table(by_family(out["cv"]))
    print("\nthe same, with each device setting's fitted offset (the product never uses them):")
    table(by_family(out["cv"], "ratio_with_offset"))
    print("\nSEALED split (devices no fit saw), no device offsets:")
    table(by_family(out["sealed"]))
    gemm_cv = score([r for r in out["cv"] if r["family"] in GEMM_FAMILIES])
    gemm_sealed = [r for r in out["sealed"] if r["family"] in GEMM_FAMILIES]
    held = coverage(gemm_sealed, gemm_cv["ratio_low"], gemm_cv["ratio_high"])
    print(f"\nthe cross-validated GEMM runs' 5%..95% {gemm_cv['ratio_low']}..{gemm_cv['ratio_high']} holds {held:.0%} of "
          f"the {len(gemm_sealed)} sealed GEMM rows")
    print("\nCore ML on the Neural Engine: cross-validated (iPhone 15 Pro), sealed (iPhone 14 Pro):")
    table({"cross-validated": score(out["ne_cv"]), "sealed": score(out["ne_sealed"])})
    for name, (cv, sealed) in {"GEMM runtimes": ([r for r in out["cv"] if r["family"] in GEMM_FAMILIES], gemm_sealed),
                               "Neural Engine": (out["ne_cv"], out["ne_sealed"])}.items():
        v = validation(cv, sealed, "")
        print(f"{name}: the {CLAIM:.0%} conformal interval from {len(cv)} cross-validated runs, "
              f"{v['ratio_low']}..{v['ratio_high']}, holds {v['interval_coverage']:.0%} of the {len(sealed)} sealed "
              f"runs; claimed: {v['interval_claim']:.0%}")
    print("\nthe Neural Engine's runs, estimate / published (cross-validated; sealed):")
    for split in ("ne_cv", "ne_sealed"):
        print(split, " ".join(f"{r['model']}/{r['precision']}:{r['ratio']}" for r in out[split]))
    print("\nResNet-18 / MobileNetV2, fp32 (estimated for the published run's runtime, and for a GEMM runtime):")
    print("\n| device setting | runtime | published | estimated | estimated, GEMM runtime | sealed |")
    print("|---|---|---|---|---|---|")
    for setting, r in out["ratios"].items():
        print(f"| {setting} | {r['runtime']} | {r['published']} | {r['estimated_same_runtime']} | "
              f"{r['estimated_gemm']} | {r['sealed']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update-profiles", action="store_true",
                        help="write cost_model/fitted.toml and each profile's [validation]")
    parser.add_argument("--sealed-2", action="store_true",
                        help="only score the second sealed split (measurements/sealed-2.csv) with the committed fit")
    args = parser.parse_args()
    if args.sealed_2:
        return score_sealed_2()
    rows = corpus("ncnn.csv") + [r for r in corpus("other-runtimes.csv") if r["threads"]]
    ne_rows = neural_engine_rows()
    loads = workloads({(r["model"], p, r["size"]) for r in rows for p in PRECISIONS}
                      | {(r["model"], "fp32", 224) for r in ne_rows})
    out = scored(rows, ne_rows, loads)
    show(out)
    profiles, on_devices = profile_scores(out["cv"], out["sealed"], (out["ne_cv"], out["ne_sealed"]))
    print("\nthe profiles' devices, ncnn's runs (cross-validated, no device offset):")
    table(on_devices)
    families = family_validation(out["cv"], out["sealed"])
    RESULTS.mkdir(exist_ok=True)
    scores = {"cv": by_family(out["cv"]), "cv_with_offsets": by_family(out["cv"], "ratio_with_offset"),
              "sealed": by_family(out["sealed"])}
    (RESULTS / "estimates.json").write_text(json.dumps({**out, "model": vars(out["model"]), "profiles": profiles,
                                                        "on_devices": on_devices, "families": families,
                                                        "scores": scores}, indent=1, sort_keys=True))
    if args.update_profiles:
        write_cost_model(out["model"], families)
        for name, entry in profiles.items():
            write_profile(name, entry)
    return score_sealed_2()


def score_sealed_2() -> int:
    """Score sealed-2.csv with the committed fit (what the product estimates with), print it and write
    benchmarks/results/sealed-2.json."""
    from edge_distill.devices.cost_model import load_coefficients

    rows, _ = sealed_2()
    loads = workloads({(r["model"], p, r["size"]) for r in rows for p in PRECISIONS})
    report = sealed_2_report(loads, load_coefficients(PROFILES / "cost_model" / "fitted.toml"))
    show_sealed_2(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sealed-2.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
