"""The ladder's decisions on figures each test fixes (no build): which rung meets the budget, the order
of a subject's rungs by what they measured, the notes on a rung that saved nothing, the verdict, the
payback volume of the cost model, and the rungs a target's precisions give. Fast: they run once per
mutant of toolkit/ladder.py (benchmarks/mutation.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_distill import ladder
from edge_distill.auto_precision import Where
from edge_distill.config import TargetConfig
from edge_distill.cost import CostModel
from edge_distill.errors import BadInput
from edge_distill.ladder import _cost_summary, _rung, _verdict, order_by_measured_cost, rung_precisions
from edge_distill.metrics import Metrics
from edge_distill.evaluate import References
from edge_distill.pipeline import PlannedTarget, Run, Subject
from edge_distill.provenance import Provenance
from edge_distill.result import Check, Latency, Memory, Rung, TargetResult

PROVENANCE = Provenance("measured", "host", "onnxruntime", "1", "cpu", 1, "linux", "stand-in figures")
COST_VALUES = {"teacher_cost_per_1k": 2.0, "label_corpus_size": 50_000, "training_hours": 10.0,
               "training_price_per_hour": 3.0, "evaluation_cost": 20.0, "upkeep_per_month": 5.0,
               "amortize_months": 12.0}


def _result(name: str, checks: list[tuple[str, bool | None]], size: int = 100, p50: float | None = 1.0):
    subject, _, rest = name.partition("/")
    target, _, precision = rest.partition("-")
    latency = None if p50 is None else Latency(p50, p50, p50, p50, p50, p50, 20, 5, 1, PROVENANCE)
    return TargetResult(subject, target, precision, "a", [], size, "0" * 64, latency, Memory(None, None, "measured"),
                        None, Metrics(samples=10), {}, qualified=True,
                        checks=[Check(f"{name}/{key}", key, ">=", 0.8, 0.7, "", passed) for key, passed in checks])


def _measured(name: str, size: int, p50: float | None) -> Rung:
    return Rung(name, measured=True, meets_budget=True, size_bytes=size, p50_ms=p50)


def test_a_rung_meets_the_budget_only_when_every_check_holds():
    holds = _rung("student/ort-int8", _result("student/ort-int8", [("min_accuracy", True), ("p95", True)]), None)
    broken = _rung("student/ort-int8", _result("student/ort-int8", [("min_accuracy", True), ("p95", False)]), None)
    unmeasured = _rung("student/ort-int8", _result("student/ort-int8", [("min_accuracy", False), ("p95", None)]),
                       None)
    assert (holds.meets_budget, holds.broken) == (True, [])
    assert (broken.meets_budget, broken.broken) == (False, ["p95"])
    assert (unmeasured.meets_budget, unmeasured.broken) == (None, ["min_accuracy", "p95"])  # not measured: no verdict
    assert (holds.size_bytes, holds.p50_ms, holds.cost_per_call, holds.measured) == (100, 1.0, None, True)


def test_a_rungs_cost_per_call_is_its_p50_at_the_device_seconds_price():
    cost = CostModel({**COST_VALUES, "price_per_device_second": 0.5}, {"teacher/ort-fp32": 0.25})
    priced = _rung("student/ort-int8", _result("student/ort-int8", [], p50=4.0), cost)
    fixed = _rung("teacher/ort-fp32", _result("teacher/ort-fp32", [], p50=4.0), cost)
    no_latency = _rung("student/ort-int4", _result("student/ort-int4", [], p50=None), cost)
    assert priced.cost_per_call == pytest.approx(4.0 / 1000 * 0.5)
    assert (fixed.cost_per_call, no_latency.cost_per_call, no_latency.p50_ms) == (0.25, None, None)


def test_rungs_are_ordered_by_measured_size_then_latency_with_a_note_on_what_saved_nothing():
    fp32 = _measured("student/ort-fp32", 200, 2.0)
    int8 = _measured("student/ort-int8", 60, 1.0)
    int4 = _measured("student/ort-int4", 80, 2.5)  # kept its convolutions in float: larger than int8, slower than fp32
    ordered = order_by_measured_cost([fp32, int8, int4])
    assert [r.name for r in ordered] == ["student/ort-int8", "student/ort-int4", "student/ort-fp32"]
    assert int4.note == ("saved nothing in size: 80 bytes against 60 for student/ort-int8; "
                         "no faster than student/ort-fp32: p50 2.5 ms against 2 ms")
    assert (fp32.note, int8.note) == ("", "")


def test_a_rung_as_large_as_a_wider_one_saved_nothing_and_equal_ones_keep_the_planned_order():
    fp32 = _measured("student/ort-fp32", 100, 2.0)
    int8 = _measured("student/ort-int8", 100, 2.0)  # the same size and the same p50: no saving, no speedup
    int4 = _measured("student/ort-int4", 40, None)  # no latency: sorted after any of its size with one
    assert [r.name for r in order_by_measured_cost([fp32, int8, int4])] == [
        "student/ort-int4", "student/ort-fp32", "student/ort-int8"]
    assert int8.note == ("saved nothing in size: 100 bytes against 100 for student/ort-fp32; "
                         "no faster than student/ort-fp32: p50 2 ms against 2 ms")
    assert int4.note == ""
    same_size = [_measured("student/ort-fp32", 50, None), _measured("student/ort-int8", 50, 1.0)]
    assert [r.name for r in order_by_measured_cost(same_size)] == ["student/ort-int8", "student/ort-fp32"]


def test_the_verdict_names_the_cheapest_rung_and_whether_distillation_is_needed():
    assert _verdict(None, []) == ("no rung meets the budget: relax the budget, or distill a stronger or smaller "
                                  "student")
    assert _verdict("teacher/ort-int8", []) == ("teacher/ort-int8 is the cheapest rung that meets every budget: "
                                                "quantizing the model you have is enough: no distillation needed")
    assert _verdict("off-the-shelf/ort-fp32", []).endswith(": an off-the-shelf model is enough: no distillation needed")
    assert _verdict("student/ort-int4", []).endswith(": the distilled student is needed")


def _priced(name: str, per_call: float | None, meets: bool | None = True) -> Rung:
    return Rung(name, measured=True, meets_budget=meets, cost_per_call=per_call, size_bytes=1, p50_ms=1.0)


def test_the_payback_volume_is_the_monthly_fixed_cost_over_the_saving_per_call():
    cost = CostModel(dict(COST_VALUES), {})
    rungs = [_priced("teacher/ort-fp32", 0.004), _priced("teacher/ort-int8", 0.003),
             _priced("teacher/ort-int4", 0.0001, meets=False),  # cheapest, but breaks the budget
             _priced("student/ort-fp32", 0.002), _priced("student/ort-int8", 0.001)]
    summary = _cost_summary(cost, rungs, whole=True)
    fixed = 2.0 * 50_000 / 1000 + 10.0 * 3.0 + 20.0  # teacher labels + training + evaluation: 150
    monthly = fixed / 12 + 5.0  # the one-off cost spread over 12 months, and the upkeep
    saving = 0.003 - 0.001
    assert summary["fixed_cost_of_distillation"] == pytest.approx(150.0)
    assert (summary["baseline"], summary["student"]) == ("teacher/ort-int8", "student/ort-int8")
    assert summary["saving_per_call"] == pytest.approx(saving)
    assert summary["payback_calls_per_month"] == round(monthly / saving) == 8750
    assert summary["payback_note"] == "student/ort-int8 pays back against teacher/ort-int8 above 8,750 calls a month"
    assert (summary["upkeep_per_month"], summary["amortize_months"]) == (5.0, 12.0)


def test_no_payback_when_the_student_costs_as_much_or_a_side_is_missing():
    cost = CostModel(dict(COST_VALUES), {})
    assert _cost_summary(None, [], whole=False) is None
    dearer = _cost_summary(cost, [_priced("teacher/ort-int8", 0.001), _priced("student/ort-int8", 0.001)], True)
    assert dearer["payback_calls_per_month"] is None
    assert dearer["payback_note"] == "student/ort-int8 costs no less per call than teacher/ort-int8: it never pays back"
    no_teacher = _cost_summary(cost, [_priced("teacher/ort-int8", 0.001, meets=False),
                                      _priced("student/ort-int8", 0.0005)], True)
    assert no_teacher["payback_note"] == ("no measured teacher or off-the-shelf rung meets the budget: the student is "
                                          "needed whatever the volume")
    assert "baseline" not in no_teacher
    no_student = _cost_summary(cost, [_priced("teacher/ort-int8", 0.001), _priced("student/ort-int8", None)], False)
    assert no_student["payback_note"] == ("no measured student rung meets the budget "
                                          "(run `ladder --all` to measure them all)")
    assert _cost_summary(cost, [_priced("off-the-shelf/ort-fp32", 0.002)], True)["payback_note"] == \
        "no measured student rung meets the budget"


def test_the_rungs_are_the_widest_the_8_bit_and_the_4_bit_precision_the_config_prefers():
    planned = lambda precisions: PlannedTarget(TargetConfig("ort", precisions), precisions, None)  # noqa: E731
    assert rung_precisions(planned(["fp32"])) == ("fp32", "int8", "int4")
    assert rung_precisions(planned(["int8-dynamic"])) == ("fp32", "int8-dynamic", "int4")


class StandInTarget:
    """A test double of a target for the climb: its float baseline, and whether it mixes precisions."""

    def __init__(self, refuses: str | None = None):
        self.capabilities = SimpleNamespace(float_baseline=lambda: "fp32", options_with_defaults=lambda o: o)
        self.refuses = refuses

    def layers(self, path):
        raise AssertionError("the climb reads no layers itself")

    def mixing_refused(self, precision, options):
        return self.refuses


def _climb_with(monkeypatch, tmp_path, figures: dict, refuses: str | None = None):
    """_climb over stand-in results (`figures`: precision -> (checks, size, p50)); what it asked to build."""
    asked = {"measured": [], "auto": []}

    def attempted(measure, out, folder, subject, target, precision, qualified=False):
        asked["measured"].append((precision, folder, subject, qualified))
        checks, size, p50 = figures[precision]
        return _result(f"{subject}/ort-{precision}", checks, size, p50)

    def build_auto(planned, precision, where, build, progress):
        asked["auto"].append((precision, where, build))
        return _result(f"student/ort-{precision}", [("min_accuracy", True)], 90, 1.5)

    monkeypatch.setattr(ladder, "get_target", lambda name: StandInTarget(refuses))
    monkeypatch.setattr(ladder, "attempted", attempted)
    monkeypatch.setattr(ladder, "build_auto", build_auto)
    monkeypatch.setattr(ladder, "trial_builder", lambda run, subject, refs: ("trial builder", subject.name))
    run = Run(SimpleNamespace(cost=None), None, tmp_path, tmp_path / "work")
    subject = Subject(None, tmp_path / "student/onnx/model.onnx", "student/ort", "student", qualified=True)
    refs, results = References(), []
    rungs = ladder._climb(run, PlannedTarget(TargetConfig("ort", ["fp32"]), ["fp32"], None), subject,
                          tuple(figures), refs, results)
    return rungs, results, refs, asked


def test_an_8_bit_rung_that_breaks_a_budget_float_layers_can_mend_gets_its_auto_rung(monkeypatch, tmp_path):
    figures = {"fp32": ([("min_accuracy", True)], 200, 2.0), "int8": ([("min_accuracy", False)], 60, 1.0),
               "int4": ([("min_accuracy", False)], 40, 1.2)}
    rungs, results, refs, asked = _climb_with(monkeypatch, tmp_path, figures)
    assert [r.name for r in results] == ["student/ort-fp32", "student/ort-int8", "student/ort-int8-auto",
                                         "student/ort-int4"]
    assert [r.name for r in rungs] == ["student/ort-int4", "student/ort-int8", "student/ort-int8-auto",
                                       "student/ort-fp32"]
    assert [r.meets_budget for r in rungs] == [False, False, True, True]
    assert asked["measured"] == [(p, "student/ort", "student", True) for p in ("fp32", "int8", "int4")]
    (precision, where, build), = asked["auto"]
    assert (precision, where, build) == ("int8-auto", Where(tmp_path, tmp_path / "work", Path("student")),
                                         ("trial builder", "student"))
    assert (refs.float_latency.p50_ms, refs.float_size) == (2.0, 200)  # fp32: the speedup's reference


def test_no_auto_rung_where_float_layers_cannot_help(monkeypatch, tmp_path):
    holds = {"fp32": ([("min_accuracy", True)], 200, 2.0), "int8": ([("min_accuracy", True)], 60, 1.0)}
    slow = {"fp32": ([("min_accuracy", True)], 200, 2.0), "int8": ([("latency_p95_ms", False)], 60, 3.0)}
    broken_4_bit = {"fp32": ([("min_accuracy", True)], 200, 2.0), "int4": ([("min_accuracy", False)], 40, 1.0)}
    for figures, refuses in ((holds, None), (slow, None), (broken_4_bit, None), (slow | {"int8": (
            [("min_accuracy", False)], 60, 1.0)}, "no per-layer exclusions")):
        _, results, _, asked = _climb_with(monkeypatch, tmp_path, figures, refuses)
        assert asked["auto"] == [] and len(results) == len(figures)


class StandInModel:
    """A test double of a loaded model: its outputs are its name."""

    def __init__(self, name: str):
        self.name = name

    def predict(self, data):
        return f"{self.name} outputs"


def _run_ladder_with(monkeypatch, tmp_path, meets: dict, *, whole=False, target=None, teacher=True,
                     off_the_shelf=False):
    """run_ladder over stand-in stages: `meets` says, per subject, whether its rungs meet the budget."""
    asked = {"plan": [], "exports": [], "climbs": [], "extra": []}
    planned = PlannedTarget(TargetConfig("ort", ["fp32"]), ["fp32"], None)
    loaded = SimpleNamespace(teacher=StandInModel("teacher") if teacher else None, student=StandInModel("student"),
                             evaluation="eval",
                             load_extra=lambda cfg, ref, weights: asked["extra"].append((ref, weights))
                             or StandInModel("off-the-shelf"))

    def climb(run, planned, subject, precisions, refs, results):
        assert subject.qualified and subject.onnx_path == tmp_path / subject.name / "onnx" / "model.onnx"
        asked["climbs"].append((subject.name, subject.folder, subject.model.name, precisions, refs.float_outputs,
                                refs.teacher_outputs, run.out))
        return [Rung(f"{subject.name}/ort-{p}", measured=True, meets_budget=meets[subject.name], size_bytes=1)
                for p in precisions]

    monkeypatch.setattr(ladder, "plan_targets", lambda cfg, names, device: asked["plan"].append((names, device))
                        or [planned])
    monkeypatch.setattr(ladder, "load_inputs", lambda cfg, progress: loaded)
    monkeypatch.setattr(ladder, "labels_match", lambda loaded, outputs, task: None)
    monkeypatch.setattr(ladder, "export_verified", lambda cfg, model, data, out, folder, progress:
                        asked["exports"].append(folder) or f"export of {model.name}")
    monkeypatch.setattr(ladder, "_climb", climb)
    monkeypatch.setattr(ladder, "build_report", lambda command, cfg, loaded, export, refs, results, ladder: (
        command, export, refs.float_outputs, refs.teacher_outputs, ladder))
    cfg = SimpleNamespace(targets=[TargetConfig("tflite", []), TargetConfig("ort", [])], cost=None, path="cfg.toml",
                          off_the_shelf="shelf.onnx" if off_the_shelf else None, off_the_shelf_weights="w",
                          model=SimpleNamespace(task="classification"))
    if whole is None:  # the default: stop at the first subject that meets the budget
        return ladder.run_ladder(cfg, tmp_path, target=target, device="dev"), asked
    report = ladder.run_ladder(cfg, tmp_path, target=target, whole=whole, device="dev")
    return report, asked


def test_the_climb_stops_at_the_first_subject_with_a_rung_that_meets_the_budget(monkeypatch, tmp_path):
    (command, export, float_out, teacher_out, found), asked = _run_ladder_with(
        monkeypatch, tmp_path, {"teacher": True, "off-the-shelf": True, "student": True}, off_the_shelf=True)
    assert (command, export, float_out, teacher_out) == ("ladder", "export of teacher", None, "teacher outputs")
    assert found.chosen == "teacher/ort-fp32" and found.whole is False
    assert found.order == ["teacher/ort-fp32", "teacher/ort-int8", "teacher/ort-int4", "off-the-shelf/ort-fp32",
                           "student/ort-fp32", "student/ort-int8", "student/ort-int4"]
    assert [r.measured for r in found.rungs] == [True] * 3 + [False] * 4
    assert found.rungs[3].note == "not measured: teacher/ort-fp32 already meets the budget"
    assert found.rungs[3].meets_budget is None
    assert asked["plan"] == [(["tflite"], "dev")]  # the first configured target when none is named
    assert asked["exports"] == ["teacher/onnx"] and asked["extra"] == [("shelf.onnx", "w")]
    assert found.verdict.startswith("teacher/ort-fp32 is the cheapest rung") and found.cost is None
    (*_, default), _ = _run_ladder_with(monkeypatch, tmp_path, {"teacher": True, "student": True}, whole=None)
    assert not default.whole and [r.measured for r in default.rungs] == [True] * 3 + [False] * 3


def test_the_student_is_reached_when_nothing_cheaper_meets_and_all_measures_every_subject(monkeypatch, tmp_path):
    (_, export, float_out, teacher_out, found), asked = _run_ladder_with(
        monkeypatch, tmp_path, {"teacher": False, "off-the-shelf": False, "student": True}, off_the_shelf=True,
        target="ort")
    assert found.chosen == "student/ort-fp32" and all(r.measured for r in found.rungs)
    assert (export, float_out, teacher_out) == ("export of student", "student outputs", "teacher outputs")
    assert asked["plan"] == [(["ort"], "dev")]
    assert [c[:4] for c in asked["climbs"]] == [
        ("teacher", "teacher/ort", "teacher", ("fp32", "int8", "int4")),
        ("off-the-shelf", "off-the-shelf/ort", "off-the-shelf", ("fp32",)),  # an off-the-shelf model: as it is
        ("student", "student/ort", "student", ("fp32", "int8", "int4"))]
    assert [c[4:] for c in asked["climbs"]] == [(f"{s} outputs", "teacher outputs", tmp_path)
                                                for s in ("teacher", "off-the-shelf", "student")]
    assert asked["exports"] == ["teacher/onnx", "off-the-shelf/onnx", "student/onnx"]

    (_, _, _, _, whole), _ = _run_ladder_with(monkeypatch, tmp_path, {"teacher": True, "student": False}, whole=True)
    assert whole.chosen == "teacher/ort-fp32" and whole.whole and all(r.measured for r in whole.rungs)
    assert whole.order[3:] == ["student/ort-fp32", "student/ort-int8", "student/ort-int4"]

    (_, _, _, _, none), _ = _run_ladder_with(monkeypatch, tmp_path, {"teacher": False, "student": False})
    assert none.chosen is None and none.verdict.startswith("no rung meets the budget")


def test_the_ladder_needs_a_teacher(monkeypatch, tmp_path):
    with pytest.raises(BadInput, match=r"^cfg.toml: the ladder starts from the teacher: set \[model\] teacher"):
        _run_ladder_with(monkeypatch, tmp_path, {"student": True}, teacher=False)


def test_the_rungs_skip_widths_between_the_widest_and_8_bits():
    planned = lambda name, precisions: PlannedTarget(TargetConfig(name, precisions), precisions, None)  # noqa: E731
    assert rung_precisions(planned("tflite", ["fp16"])) == ("fp32", "int8", "int4")  # fp16: neither widest nor 8
    assert rung_precisions(planned("coreml", ["palettize4"])) == ("fp16", "int8", "palettize4")
    assert rung_precisions(planned("coreml", ["w8a8"])) == ("fp16", "w8a8", "int4")


def test_a_broken_checks_name_loses_its_rungs_name_whatever_its_length():
    rung = _rung("student/tflite-int8", _result("student/tflite-int8", [("min_accuracy", False)]), None)
    assert rung.broken == ["min_accuracy"]


def test_the_fixed_cost_is_rounded_to_four_places():
    cost = CostModel({**COST_VALUES, "evaluation_cost": 20.123456}, {})
    assert _cost_summary(cost, [], whole=True)["fixed_cost_of_distillation"] == 150.1235
