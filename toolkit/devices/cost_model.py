"""How long a core takes for a graph's work: the fitted cost model of the estimated profiles.

    time = sum over op classes of  FLOPs / (core peak x efficiency[class] x threads ** thread_scaling)
           (int8: x int8_kernel_use[SMMLA | SDOT | widening], how much of its peak each kind of kernel gets)
         + light elements x light_cycles / (clock x threads ** thread_scaling)
         + gathered elements x gather_cycles / (clock x threads ** thread_scaling)   (GEMM runtimes' dense
                                                                     convolutions: their lowered input)
         + matrix weight bytes x stream_cycles_per_byte / clock     (batch-1 fully connected layers stream
                                                                     their weights once: memory, not compute)
         + ops x op_overhead_cycles / clock
         (ONNX Runtime before 1.23.2, SERIAL_GROUPS: float depthwise FLOPs leave the threaded sum and run on
          one thread as im2col, FLOPs / 2 x gather_cycles / clock, and a one-row GEMM at the pointwise efficiency)
    then x exp(core_speed[core kind] + family_speed[runtime family])

The peak is the core's (device_profiles/cost_model/cores.toml: pipes x lanes x clock, in the arithmetic the run
uses); the efficiencies, cycles and scaling are fitted once, on published runs of standard networks
(device_profiles/cost_model/fitted.toml, written by benchmarks/estimates.py), and are the same for every
device but one per kind of core. Per-device offsets are fitted too, so that one device's quirks do
not bend the shared figures, but they are not used: they describe ncnn's builds on that device, and
do not carry to other runtimes on it (benchmarks/estimates.py measures this).

Runtime families differ in known ways, which is what lets a model fitted mostly on ncnn's runs
estimate XNNPACK (LiteRT), ONNX Runtime's MLAS and Core ML's CPU: ncnn computes "fp32" models in
fp16 on cores that have fp16 arithmetic and runs 3x3 stride-1 convolutions as Winograd; the others
compute fp32 in fp32 and run every dense convolution as a GEMM - XNNPACK's indirect GEMM and MLAS's
im2col feed the same microkernels (tiles of output pixels x output channels, the reduction over
input channels x kernel area) as a 1x1 convolution, so a dense convolution runs at the pointwise
efficiency plus the cost of gathering its lowered input (pixels x channels x kernel area elements:
im2col writes and reads them, the indirect GEMM reads them through pointers). A speed per runtime
family (fitted on the GEMM runtimes' published runs) takes the rest of what differs.

Matrix products come in two kinds (graph_work): one row against a weight matrix (a batch-1 fully
connected layer: "gemm", its weights streamed once, memory-bound) and many rows (a transformer's
tokens, attention's scores and mixing: "matmul"). Every runtime runs the second on the microkernel
of a 1x1 convolution, so it is costed at the pointwise efficiency; softmax and the normalizations
around it are light elements (memory-bound, cycles per element), like every elementwise op.
"""

from __future__ import annotations

import math
from functools import lru_cache
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from edge_distill.targets import Precision

from ..errors import BadInput
from ..tomlfile import read_toml
from .graph_work import DENSE, DEPTHWISE, GEMM, LIGHT, MATMUL, OP_CLASSES, POINTWISE, OpWork

GEMM_KERNELS = "gemm"  # XNNPACK (LiteRT), ONNX Runtime's MLAS, Core ML's CPU: every target's runtime
# ONNX Runtime's CPU provider before 1.23.2 (onnxruntime PR #26103, as PR #28482 says): MLAS ran a grouped
# convolution's groups one after another, each as im2col and a one-row GEMM, threading only over a group's
# own output map (PR #25255: "no meaningful performance gain when increasing the number of threads").
# A depthwise convolution there gathers kernel-area elements per output and gains nothing from threads.
SERIAL_GROUPS = "mlas-serial-groups"
GEMM_FAMILIES = {GEMM_KERNELS, SERIAL_GROUPS}  # one fitted family speed: the same microkernels
WINOGRAD_FAMILIES = {"ncnn"}  # the families whose 3x3 stride-1 convolutions are Winograd
FP16_FOR_FP32_FAMILIES = {"ncnn"}  # the families that compute an fp32 model in fp16 where the core can


@dataclass(frozen=True)
class Core:
    kind: str
    clock_ghz: float
    fp32_flops_per_cycle: float
    fp16_arithmetic: bool = False
    int8_dot_product: bool = False
    int8_matmul: bool = False

    def peak(self, arithmetic: str) -> float:
        """Operations per second of one core in this arithmetic (fp32, fp16 or int8)."""
        fp32 = self.clock_ghz * 1e9 * self.fp32_flops_per_cycle
        if arithmetic == "fp16":
            return fp32 * (2 if self.fp16_arithmetic else 1)
        if arithmetic == "int8":
            return fp32 * {"matmul": 8, "dot": 4, "widening": 2}[self.int8_kernel]
        return fp32

    @property
    def int8_kernel(self) -> str:
        """The instructions int8 products run on: SMMLA (8 per 32-bit lane), SDOT (4), or widening multiplies (2)."""
        return "matmul" if self.int8_matmul else "dot" if self.int8_dot_product else "widening"


@dataclass
class Workload:
    """A graph's work summed per op class: all an estimate needs of the graph."""
    flops: dict[str, float] = field(default_factory=dict)
    light_elements: float = 0.0
    matrix_weights: float = 0.0  # weight elements of the matrix-vector products (batch-1 fully connected layers)
    heavy_outputs: float = 0.0  # output elements of convolutions and matrix products
    gathered: float = 0.0  # dense convolutions' lowered input elements (graph_work.OpWork.gathered)
    ops: int = 0
    weights: float = 0.0  # all weight elements
    peak_activations: float = 0.0  # the largest op's activation elements

    @classmethod
    def of(cls, work: list[OpWork]) -> Workload:
        load = cls(flops={c: 0.0 for c in OP_CLASSES if c != LIGHT}, ops=len(work))
        for op in work:
            if op.op_class == LIGHT:
                load.light_elements += op.act_elems
            else:
                load.flops[op.op_class] += op.flops
                load.heavy_outputs += op.out_elems
                load.gathered += op.gathered
            if op.op_class == GEMM:
                load.matrix_weights += op.weight_elems
            load.weights += op.weight_elems
            load.peak_activations = max(load.peak_activations, op.act_elems)
        return load

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())


@dataclass(frozen=True)
class Coefficients:
    """The fitted figures of cost_model/fitted.toml: per arithmetic kind ("float" or "int8")."""
    efficiency: dict[str, dict[str, float]]  # kind -> op class -> fraction of the core's peak
    light_cycles: dict[str, float]  # kind -> cycles per element of elementwise/pooling/data ops
    stream_cycles_per_byte: float
    op_overhead_cycles: float
    thread_scaling: float
    # ln(time) per core kind: how far a kind of core stays from its peak (in-order little cores more than
    # out-of-order big ones), pooled over the corpus's devices with that core
    core_speed: dict[str, float] = field(default_factory=dict)
    # int8 kernel -> the share of its peak int8 kernels reach, against widening multiplies' (SDOT and
    # SMMLA code gets less of its larger peak: packing and requantizing do not speed up)
    int8_kernel_use: dict[str, float] = field(default_factory=dict)
    # kind -> cycles per gathered element of a GEMM runtime's dense convolution
    gather_cycles: dict[str, float] = field(default_factory=dict)
    # ln(time) per runtime family, against ncnn's: what else differs between the kernels
    family_speed: dict[str, float] = field(default_factory=dict)
    # fixed_us, op_us, efficiency, depthwise_efficiency, output_ns_per_byte
    neural_engine: dict[str, float] = field(default_factory=dict)
    fitted_on: str = ""
    # network family -> its error on GEMM runtimes: sealed_/cv_ runs, median_error, within_1_5x
    family_validation: dict[str, dict] = field(default_factory=dict)


@lru_cache(maxsize=None)  # read once per process: every estimate and its provenance line use it
def load_coefficients(path: Path | None = None) -> Coefficients:
    path = path or Path(str(files("edge_distill") / "device_profiles" / "cost_model" / "fitted.toml"))
    data = read_toml(path)
    try:
        return Coefficients(efficiency={k: dict(v) for k, v in data["efficiency"].items()},
                            light_cycles=dict(data["light_cycles"]),
                            stream_cycles_per_byte=data["stream_cycles_per_byte"],
                            op_overhead_cycles=data["op_overhead_cycles"], thread_scaling=data["thread_scaling"],
                            core_speed=dict(data.get("core_speed", {})),
                            int8_kernel_use=dict(data.get("int8_kernel_use", {})),
                            gather_cycles=dict(data["gather_cycles"]), family_speed=dict(data["family_speed"]),
                            neural_engine=dict(data["neural_engine"]), fitted_on=data.get("fitted_on", ""),
                            family_validation={k: dict(v) for k, v in data.get("family_validation", {}).items()})
    except (KeyError, TypeError) as exc:
        raise BadInput(f"the cost model lacks {exc}", path=path) from exc


@lru_cache(maxsize=None)
def load_cores(path: Path | None = None) -> dict[str, dict]:
    return read_toml(path or Path(str(files("edge_distill") / "device_profiles" / "cost_model" / "cores.toml")))


def core_of(kind: str, clock_ghz: float, cores: dict[str, dict] | None = None) -> Core:
    cores = cores if cores is not None else load_cores()
    if kind not in cores:
        raise BadInput(f"unknown core '{kind}'; known: {', '.join(sorted(cores))}")
    spec = cores[kind]
    return Core(kind, clock_ghz, spec["fp32_flops_per_cycle"], spec.get("fp16_arithmetic", False),
                spec.get("int8_dot_product", False), spec.get("int8_matmul", False))


def arithmetic_of(precision: Precision, family: str, core: Core) -> str:
    """What the core computes in: the precision's arithmetic, except where the family runs fp32 in fp16."""
    if precision.arithmetic == "fp32" and family in FP16_FOR_FP32_FAMILIES and core.fp16_arithmetic:
        return "fp16"
    return precision.arithmetic


def seconds(load: Workload, core: Core, precision: Precision, family: str, threads: int, c: Coefficients,
            offset: float = 0.0) -> float:
    """The model's latency of one inference, in seconds."""
    arithmetic = arithmetic_of(precision, family, core)
    kind = "int8" if arithmetic == "int8" else "float"
    use = c.int8_kernel_use.get(core.int8_kernel, 1.0) if kind == "int8" else 1.0
    efficiency = {op_class: e * use for op_class, e in c.efficiency[kind].items()}
    parallel = threads ** c.thread_scaling
    clock = core.clock_ghz * 1e9
    gemm_convolutions = family not in WINOGRAD_FAMILIES
    compute = serial = 0.0
    for op_class, flops in load.flops.items():
        if op_class == DEPTHWISE and family == SERIAL_GROUPS and kind == "float":
            serial = serial_depthwise_seconds(flops, core, arithmetic, c)
            continue
        # a GEMM runtime's dense convolution runs a 1x1 convolution's microkernel (the gathering is counted
        # below), and so does every runtime's matrix product over many rows
        runs_as = POINTWISE if (op_class in DENSE and gemm_convolutions) or op_class == MATMUL else op_class
        compute += flops / (core.peak(arithmetic) * efficiency[runs_as])
    if gemm_convolutions:
        compute += load.gathered * c.gather_cycles[kind] / clock
    compute += load.light_elements * c.light_cycles[kind] / clock
    weight_bytes = 2.0 if arithmetic == "fp16" and precision.weight_bits > 16 else precision.weight_bits / 8
    streamed = load.matrix_weights * weight_bytes * c.stream_cycles_per_byte / clock
    overhead = load.ops * c.op_overhead_cycles / clock
    speed = offset + c.core_speed.get(core.kind, 0.0) + c.family_speed.get(family_fitted(family), 0.0)
    return (compute / parallel + serial + streamed + overhead) * math.exp(speed)


def serial_depthwise_seconds(flops: float, core: Core, arithmetic: str, c: Coefficients) -> float:
    """A float depthwise convolution as ONNX Runtime before 1.23.2 ran it (SERIAL_GROUPS), on one thread:
    im2col of kernel-area elements per output (flops / 2), then the one-row GEMM at the pointwise efficiency."""
    return (flops / 2 * c.gather_cycles["float"] / (core.clock_ghz * 1e9)
            + flops / (core.peak(arithmetic) * c.efficiency["float"][POINTWISE]))


def family_fitted(family: str) -> str:
    """The family whose fitted speed a family takes (ONNX Runtime's older grouped convolutions run on
    the same GEMM microkernels as the rest)."""
    return GEMM_KERNELS if family in GEMM_FAMILIES else family


def neural_engine_seconds(load: Workload, precision: Precision, tops: float, c: Coefficients) -> float:
    """Apple's Neural Engine: a fixed cost per prediction and per op, the work at a fraction of its peak
    (`tops`: the fp16 figure, or the int8 one where the chip doubles it for int8 activations), and the
    outputs of convolutions and matrix products written at their activations' width (int8 halves
    it). Compressed weights are expanded to fp16 as they load: weight-only int8, int4 and palettes
    run at fp16 speed."""
    ne = c.neural_engine
    work = sum(f for k, f in load.flops.items() if k != DEPTHWISE) / ne["efficiency"] \
        + load.flops[DEPTHWISE] / ne["depthwise_efficiency"]
    written = load.heavy_outputs * precision.activation_bits / 8 * ne["output_ns_per_byte"] * 1e-9
    return ne["fixed_us"] * 1e-6 + load.ops * ne["op_us"] * 1e-6 + work / (tops * 1e12) + written


NETWORK_FAMILIES = ("depthwise", "dense conv", "transformer", "hybrid")


def network_family(load: Workload) -> str:
    """The kind of network a graph is, by where its FLOPs are (each kind's estimates err their own way):
    transformer (half or more in matrix products), hybrid (convolutions with 15% or more in matrix
    products), dense conv (30% or more in dense spatial convolutions), else depthwise (separable:
    depthwise and 1x1 convolutions)."""
    total = load.total_flops or 1.0
    matrix = (load.flops.get(GEMM, 0.0) + load.flops.get(MATMUL, 0.0)) / total
    dense = sum(load.flops.get(c, 0.0) for c in DENSE) / total
    if matrix >= 0.5:
        return "transformer"
    if matrix >= 0.15:
        return "hybrid"
    return "dense conv" if dense >= 0.3 else "depthwise"


def families_said(c: Coefficients) -> str:
    """Each network family's sealed-split error on GEMM runtimes, in one line (what `devices` shows)."""
    parts = []
    for family in NETWORK_FAMILIES:
        v = c.family_validation.get(family, {})
        parts.append(f"{family} {v['sealed_median_error']:g}x, {v['sealed_within_1_5x']:.0%} within 1.5x "
                     f"of {v['sealed_runs']}" if v.get("sealed_runs") else f"{family} no sealed runs")
    return "by network family on the sealed split's GEMM runs: " + ", ".join(parts)


def family_said(family: str, c: Coefficients) -> str:
    """What the corpus says of estimates of one network family on GEMM runtimes."""
    v = c.family_validation.get(family, {})
    if not v.get("sealed_runs") and not v.get("cv_runs"):
        return f"a {family} network: no published runs of that family in the corpus, its error is unknown"
    said = lambda split: (f"median error {v[split + '_median_error']:g}x, "  # noqa: E731
                          f"{v[split + '_within_1_5x']:.0%} within 1.5x on {v[split + '_runs']} runs"
                          if v.get(split + "_runs") else "no runs")
    return f"a {family} network: sealed split {said('sealed')}; cross-validated {said('cv')}"


def unfitted_core_said(kind: str, c: Coefficients) -> str:
    """A warning for a core kind with no published runs in the fitted corpus (empty for one with runs):
    its speed is then the corpus average, and such cores' sealed estimates were off by 2x and more."""
    if kind in c.core_speed:
        return ""
    return (f"no published run of a {kind} is in the fitted corpus, so its speed is the corpus average: "
            "unvalidated for this core (cores in that position were off by 2x and more on sealed runs)")
