"""The cost model's decisions (toolkit/devices/cost_model.py), each on made-up coefficients whose
result is worked out by hand in the comments: no fitted figure, no graph export, fast enough to run
once per mutant (benchmarks/mutation.py, module "cost-model")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_distill.devices.cost_model import (SERIAL_GROUPS, Coefficients, Core, Workload, arithmetic_of, core_of,
                                             families_said, family_fitted, family_said, load_coefficients,
                                             network_family, neural_engine_seconds, seconds, unfitted_core_said)
from edge_distill.devices.graph_work import OpWork
from edge_distill.errors import BadInput
from edge_distill.targets import Precision

FP32 = Precision("fp32", 32, 32, "fp32")
INT8 = Precision("int8", 8, 8, "int8")
FP16_NE = Precision("fp16", 16, 16, "fp16", "neural engine")
W8A8_NE = Precision("w8a8", 8, 8, "int8", "neural engine")

# Every figure distinct, so that a class costed at another class's figure shows.
COEFFICIENTS = Coefficients(
    efficiency={"float": {"conv3x3_s1": 0.5, "conv": 0.4, "depthwise": 0.1, "pointwise": 0.8, "gemm": 0.25},
                "int8": {"conv3x3_s1": 0.6, "conv": 0.45, "depthwise": 0.15, "pointwise": 0.9, "gemm": 0.35}},
    light_cycles={"float": 2.0, "int8": 3.0}, stream_cycles_per_byte=0.7, op_overhead_cycles=1000.0,
    thread_scaling=0.8, core_speed={"Test-core": 0.1}, int8_kernel_use={"widening": 1.0, "dot": 0.5, "matmul": 0.25},
    gather_cycles={"float": 1.5, "int8": 0.5}, family_speed={"gemm": -0.2},
    neural_engine={"fixed_us": 150.0, "op_us": 2.0, "efficiency": 0.4, "depthwise_efficiency": 0.05,
                   "output_ns_per_byte": 0.03},
    family_validation={"depthwise": {"sealed_runs": 25, "sealed_median_error": 1.2, "sealed_within_1_5x": 0.96,
                                     "cv_runs": 64, "cv_median_error": 1.29, "cv_within_1_5x": 0.8},
                       "dense conv": {"sealed_runs": 0, "cv_runs": 17, "cv_median_error": 1.21, "cv_within_1_5x": 0.76},
                       "transformer": {"sealed_runs": 0, "cv_runs": 0}})

LOAD = Workload(flops={"conv3x3_s1": 4e8, "conv": 1e8, "depthwise": 2e7, "pointwise": 3e8, "gemm": 1e6, "matmul": 5e7},
                light_elements=1e6, matrix_weights=5e5, heavy_outputs=1e6, gathered=2e6, ops=50)
# 2 GHz, 8 fp32 FLOP per cycle: 16 GFLOP/s fp32; fp16 arithmetic (32), SDOT (int8: 64)
CORE = Core("Test-core", 2.0, 8.0, fp16_arithmetic=True, int8_dot_product=True)


def test_a_cores_peak_is_its_lanes_times_its_clock_in_each_arithmetic():
    # 2 GHz x 8 = 16e9 fp32; fp16 twice where the core has it; int8: SMMLA 8x, SDOT 4x, widening 2x fp32's
    assert CORE.peak("fp32") == 16e9 and CORE.peak("fp16") == 32e9 and CORE.peak("int8") == 64e9
    plain = Core("Old", 1.5, 4.0)
    assert plain.peak("fp16") == 6e9 and plain.peak("int8") == 12e9 and plain.int8_kernel == "widening"
    smmla = Core("New", 1.0, 16.0, True, True, True)
    assert smmla.int8_kernel == "matmul" and smmla.peak("int8") == 128e9
    assert Core("Dot", 1.0, 16.0, int8_dot_product=True).int8_kernel == "dot"


def test_a_workload_sums_each_op_class():
    work = [OpWork("Conv", "conv", 10.0, 3.0, 7.0, 4.0, 5.0),
            OpWork("Relu", "light", 1.0, 2.0, 11.0, 11.0),
            OpWork("Gemm", "gemm", 6.0, 10.0, 2.0, 1.0),
            OpWork("MatMul", "matmul", 8.0, 0.0, 20.0, 12.0),
            OpWork("Conv", "pointwise", 30.0, 4.0, 5.0, 6.0)]
    load = Workload.of(work)
    assert load.flops == {"conv3x3_s1": 0.0, "conv": 10.0, "depthwise": 0.0, "pointwise": 30.0, "gemm": 6.0,
                          "matmul": 8.0}
    assert load.light_elements == 11.0  # the light op's elements, not its flops
    assert load.matrix_weights == 10.0  # only the matrix-vector product's weights are streamed
    assert load.heavy_outputs == 4.0 + 1.0 + 12.0 + 6.0
    assert load.gathered == 5.0
    assert load.ops == 5 and load.weights == 3.0 + 2.0 + 10.0 + 0.0 + 4.0 and load.peak_activations == 20.0
    assert load.total_flops == 54.0
    empty = Workload.of([])
    assert empty == Workload(flops={c: 0.0 for c in ("conv3x3_s1", "conv", "depthwise", "pointwise", "gemm", "matmul")})
    assert (empty.ops, empty.weights, empty.peak_activations, empty.total_flops) == (0, 0.0, 0.0, 0.0)


def test_an_empty_graph_costs_nothing_but_the_neural_engines_fixed_cost():
    empty = Workload.of([])
    assert seconds(empty, CORE, FP32, "gemm", 1, COEFFICIENTS) == 0.0
    assert seconds(empty, CORE, INT8, "ncnn", 4, COEFFICIENTS) == 0.0
    assert neural_engine_seconds(empty, FP16_NE, 17.5, COEFFICIENTS) == pytest.approx(150e-6, rel=1e-12)


def test_a_gemm_runtimes_fp32_latency_worked_by_hand():
    # dense convolutions and the many-row matmul run at the pointwise efficiency 0.8:
    #   (4e8 + 1e8 + 3e8 + 5e7) / (16e9 x 0.8) = 0.06640625; depthwise 2e7 / (16e9 x 0.1) = 0.0125;
    #   gemm 1e6 / (16e9 x 0.25) = 0.00025; gathered 2e6 x 1.5 / 2e9 = 0.0015; light 1e6 x 2 / 2e9 = 0.001
    #   compute 0.08165625 over 4 ** 0.8 threads; streamed 5e5 weights x 4 bytes x 0.7 / 2e9 = 0.0007;
    #   overhead 50 x 1000 / 2e9 = 2.5e-5; speed exp(0.1 - 0.2)
    expected = (0.08165625 / 4 ** 0.8 + 0.0007 + 2.5e-5) * math.exp(-0.1)
    assert seconds(LOAD, CORE, FP32, "gemm", 4, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0250292, rel=1e-5)
    # a device offset adds to the speed (the fit uses it; estimates pass none)
    assert seconds(LOAD, CORE, FP32, "gemm", 4, COEFFICIENTS, offset=0.3) == pytest.approx(
        expected * math.exp(0.3), rel=1e-12)


def test_onnx_runtimes_older_depthwise_runs_as_im2col_and_a_gemm_on_one_thread():
    # ONNX Runtime before 1.23.2: the depthwise 2e7 FLOPs leave the threaded sum and run serially as im2col
    # of 2e7 / 2 = 1e7 elements x 1.5 cycles / 2e9 = 0.0075 plus a GEMM at the pointwise efficiency,
    # 2e7 / (16e9 x 0.8) = 0.0015625; the rest as test_a_gemm_runtimes_fp32_latency_worked_by_hand without
    # depthwise: (0.08165625 - 0.0125) / 4 ** 0.8; the GEMM runtimes' fitted speed (-0.2) applies
    threaded = (0.08165625 - 0.0125) / 4 ** 0.8
    expected = (threaded + 0.0075 + 0.0015625 + 0.0007 + 2.5e-5) * math.exp(-0.1)
    assert seconds(LOAD, CORE, FP32, SERIAL_GROUPS, 4, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0294982, rel=1e-5)
    # threads do not speed up the serial part: from 1 to 4 threads it stays, the rest shrinks by 4 ** 0.8
    one = seconds(LOAD, CORE, FP32, SERIAL_GROUPS, 1, COEFFICIENTS)
    assert one == pytest.approx((0.08165625 - 0.0125 + 0.0075 + 0.0015625 + 0.0007 + 2.5e-5) * math.exp(-0.1),
                                rel=1e-12)
    # its int8 (QLinearConv's own depthwise kernel) is threaded as every GEMM runtime's is
    assert seconds(LOAD, CORE, INT8, SERIAL_GROUPS, 4, COEFFICIENTS) == pytest.approx(
        seconds(LOAD, CORE, INT8, "gemm", 4, COEFFICIENTS), rel=1e-12)
    assert family_fitted(SERIAL_GROUPS) == "gemm" and family_fitted("gemm") == "gemm"
    assert family_fitted("ncnn") == "ncnn"


def test_ncnns_fp32_runs_in_fp16_with_winograd_and_no_gathering():
    # fp16 peak 32e9; each convolution at its own class: 4e8 / (32e9 x 0.5) = 0.025, 1e8 / (32e9 x 0.4)
    # = 0.0078125, 2e7 / (32e9 x 0.1) = 0.00625, (3e8 + 5e7) / (32e9 x 0.8) = 0.013671875,
    # 1e6 / (32e9 x 0.25) = 0.000125, light 0.001; no gathering; one thread;
    # weights streamed as fp16: 5e5 x 2 x 0.7 / 2e9 = 0.00035; overhead 2.5e-5; speed exp(0.1), no family's
    expected = (0.053859375 + 0.00035 + 2.5e-5) * math.exp(0.1)
    assert seconds(LOAD, CORE, FP32, "ncnn", 1, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    # on a core without fp16 arithmetic ncnn's fp32 is fp32: 16e9 peak, weights 4 bytes
    plain = Core("Test-core", 2.0, 8.0)
    expected = (2 * 0.053859375 - 0.001 + 0.0007 + 2.5e-5) * math.exp(0.1)
    assert seconds(LOAD, plain, FP32, "ncnn", 1, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    # an fp32-arithmetic precision of 8-bit weights (weight-only) on ncnn's fp16 path reads its 8-bit weights
    w8 = Precision("w8", 8, 32, "fp32")
    expected = (0.053859375 + 5e5 * 1 * 0.7 / 2e9 + 2.5e-5) * math.exp(0.1)
    assert seconds(LOAD, CORE, w8, "ncnn", 1, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)


def test_int8_runs_at_its_kernels_share_of_the_int8_peak():
    # SDOT: peak 64e9, its kernels at 0.5 of the int8 efficiencies: pointwise 0.45, depthwise 0.075, gemm 0.175
    #   8.5e8 / 28.8e9 + 2e7 / 4.8e9 + 1e6 / 11.2e9; gathered 2e6 x 0.5 / 2e9 = 0.0005; light 1e6 x 3 / 2e9
    #   = 0.0015; over 2 ** 0.8 threads; weights 1 byte: 5e5 x 0.7 / 2e9 = 0.000175; overhead 2.5e-5
    compute = 8.5e8 / 28.8e9 + 2e7 / 4.8e9 + 1e6 / 11.2e9 + 0.0005 + 0.0015
    expected = (compute / 2 ** 0.8 + 0.000175 + 2.5e-5) * math.exp(-0.1)
    assert seconds(LOAD, CORE, INT8, "gemm", 2, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    # SMMLA: 128e9 at a quarter; widening multiplies: 32e9 at the whole int8 efficiency: the same products
    # per second as SDOT here (128 x 0.25 = 32 x 1 = 64 x 0.5), so the same latency
    for core in (Core("Test-core", 2.0, 8.0, True, True, True), Core("Test-core", 2.0, 8.0)):
        assert seconds(LOAD, core, INT8, "gemm", 2, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    halved = Coefficients(**{**vars(COEFFICIENTS), "int8_kernel_use": {"dot": 0.25}})
    # a kernel the fit has no figure for gets its whole peak's share (widening: 32e9, as SDOT's 64e9 x 0.5), and
    # a kind of core it has no speed for, none: exp(0 - 0.2)
    assert seconds(LOAD, Core("Unlisted", 2.0, 8.0), INT8, "gemm", 2, halved) == pytest.approx(
        expected * math.exp(-0.1), rel=1e-12)
    compute_half = 2 * (8.5e8 / 28.8e9 + 2e7 / 4.8e9 + 1e6 / 11.2e9) + 0.0005 + 0.0015
    assert seconds(LOAD, CORE, INT8, "gemm", 2, halved) == pytest.approx(
        (compute_half / 2 ** 0.8 + 0.000175 + 2.5e-5) * math.exp(-0.1), rel=1e-12)


def test_the_arithmetic_a_run_computes_in():
    assert arithmetic_of(FP32, "ncnn", CORE) == "fp16"
    assert arithmetic_of(FP32, "gemm", CORE) == "fp32"
    assert arithmetic_of(FP32, "ncnn", Core("Old", 1.0, 4.0)) == "fp32"
    assert arithmetic_of(INT8, "ncnn", CORE) == "int8"


def test_the_neural_engine_latency_worked_by_hand():
    # fixed 150 us + 50 ops x 2 us; (8.51e8 FLOPs at 0.4 + depthwise 2e7 at 0.05) = 2.5275e9 at 17.5e12;
    # 1e6 outputs x 2 bytes (16-bit activations) x 0.03 ns
    expected = 150e-6 + 100e-6 + 2.5275e9 / 17.5e12 + 1e6 * 2 * 0.03e-9
    assert neural_engine_seconds(LOAD, FP16_NE, 17.5, COEFFICIENTS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.000454428571, rel=1e-9)
    # int8 activations write half the bytes
    expected_int8 = 150e-6 + 100e-6 + 2.5275e9 / 35e12 + 1e6 * 1 * 0.03e-9
    assert neural_engine_seconds(LOAD, W8A8_NE, 35.0, COEFFICIENTS) == pytest.approx(expected_int8, rel=1e-12)


def _load(**flops) -> Workload:
    return Workload(flops=flops)


def test_network_families_at_their_boundaries():
    assert network_family(_load(gemm=25.0, matmul=25.0, pointwise=50.0)) == "transformer"  # matrix products 0.5
    assert network_family(_load(matmul=60.0, gemm=1.0, pointwise=39.0)) == "transformer"  # BERT-like: 0.61
    assert network_family(_load(conv3x3_s1=60.0, pointwise=40.0)) == "dense conv"  # ResNet-like: 0.6
    assert network_family(_load(matmul=49.0, pointwise=51.0)) == "hybrid"
    assert network_family(_load(matmul=15.0, pointwise=85.0)) == "hybrid"  # 0.15
    assert network_family(_load(gemm=14.0, conv3x3_s1=30.0, pointwise=56.0)) == "dense conv"
    assert network_family(_load(gemm=14.0, pointwise=86.0)) == "depthwise"
    assert network_family(_load(conv3x3_s1=20.0, conv=10.0, pointwise=70.0)) == "dense conv"  # dense 0.3
    assert network_family(_load(conv=30.0, pointwise=70.0)) == "dense conv"
    assert network_family(_load(conv3x3_s1=29.0, pointwise=71.0)) == "depthwise"
    assert network_family(_load(pointwise=1.0)) == "depthwise"  # classes absent from the counts are 0
    assert network_family(Workload()) == "depthwise"  # an empty graph


def test_what_the_families_say_of_themselves():
    assert families_said(COEFFICIENTS) == (
        "by network family on the sealed split's GEMM runs: depthwise 1.2x, 96% within 1.5x of 25, "
        "dense conv no sealed runs, transformer no sealed runs, hybrid no sealed runs")
    assert family_said("depthwise", COEFFICIENTS) == (
        "a depthwise network: sealed split median error 1.2x, 96% within 1.5x on 25 runs; "
        "cross-validated median error 1.29x, 80% within 1.5x on 64 runs")
    assert family_said("dense conv", COEFFICIENTS) == (
        "a dense conv network: sealed split no runs; cross-validated median error 1.21x, 76% within 1.5x on 17 runs")
    unknown = "a {} network: no published runs of that family in the corpus, its error is unknown"
    assert family_said("transformer", COEFFICIENTS) == unknown.format("transformer")
    assert family_said("hybrid", COEFFICIENTS) == unknown.format("hybrid")


FITTED = """
stream_cycles_per_byte = 0.7
op_overhead_cycles = 1000.0
thread_scaling = 0.8
[light_cycles]
float = 2.0
[gather_cycles]
float = 1.5
[family_speed]
gemm = -0.2
[neural_engine]
fixed_us = 150.0
[efficiency.float]
pointwise = 0.8
"""


def test_the_fitted_file_is_read_and_a_missing_table_named(tmp_path):
    path = tmp_path / "fitted.toml"
    path.write_text(FITTED)
    c = load_coefficients(path)
    assert (c.efficiency, c.light_cycles, c.gather_cycles) == ({"float": {"pointwise": 0.8}}, {"float": 2.0},
                                                               {"float": 1.5})
    assert (c.stream_cycles_per_byte, c.op_overhead_cycles, c.thread_scaling) == (0.7, 1000.0, 0.8)
    assert (c.family_speed, c.neural_engine) == ({"gemm": -0.2}, {"fixed_us": 150.0})
    assert (c.core_speed, c.int8_kernel_use, c.fitted_on, c.family_validation) == ({}, {}, "", {})
    broken = tmp_path / "broken.toml"
    broken.write_text(FITTED.replace("[neural_engine]\nfixed_us = 150.0\n", ""))
    with pytest.raises(BadInput, match="the cost model lacks 'neural_engine'") as caught:
        load_coefficients(broken)
    assert caught.value.path == str(broken)


def test_a_core_is_built_from_its_kind_and_an_unknown_kind_refused():
    cores = {"Big": {"fp32_flops_per_cycle": 16, "fp16_arithmetic": True, "int8_dot_product": True,
                     "int8_matmul": True}, "Little": {"fp32_flops_per_cycle": 4}}
    assert core_of("Big", 3.0, cores) == Core("Big", 3.0, 16, True, True, True)
    assert core_of("Little", 1.2, cores) == Core("Little", 1.2, 4, False, False, False)
    with pytest.raises(BadInput, match=r"^unknown core 'Middle'; known: Big, Little$"):
        core_of("Middle", 2.0, cores)
    assert core_of("Cortex-A76", 2.4).fp32_flops_per_cycle == 16  # the shipped cores.toml by default


def test_the_shipped_fitted_file_is_read_by_default():
    import tomllib

    import edge_distill

    path = Path(edge_distill.__file__).parent / "device_profiles" / "cost_model" / "fitted.toml"
    data = tomllib.loads(path.read_text())
    shipped = load_coefficients()
    assert (shipped.thread_scaling, shipped.efficiency["float"], shipped.neural_engine) == (
        data["thread_scaling"], data["efficiency"]["float"], data["neural_engine"])


def test_a_core_without_fitted_runs_is_said_to_be_at_the_corpus_average():
    assert unfitted_core_said("Test-core", COEFFICIENTS) == ""  # fitted: core_speed has it
    assert unfitted_core_said("Cortex-X3", COEFFICIENTS) == (
        "no published run of a Cortex-X3 is in the fitted corpus, so its speed is the corpus average: "
        "unvalidated for this core (cores in that position were off by 2x and more on sealed runs)")
    # and it is estimated at that average: no core speed, only the family's
    x3 = Core("Cortex-X3", 2.0, 8.0, fp16_arithmetic=True, int8_dot_product=True)
    assert seconds(LOAD, x3, FP32, "gemm", 4, COEFFICIENTS) == pytest.approx(
        seconds(LOAD, CORE, FP32, "gemm", 4, COEFFICIENTS) * math.exp(-0.1), rel=1e-12)
    shipped = load_coefficients()
    assert unfitted_core_said("Cortex-X3", shipped) and not unfitted_core_said("Cortex-A76", shipped)
