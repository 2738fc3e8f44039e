"""`edge-distill advise`: the ladder's rule as questions, for when nothing is measured yet.

The rule: climb only when the cheaper rung fails. (1) Is latency or cost per call the real
problem? (2) Does a small off-the-shelf model meet the bar? (3) Does 8- or 4-bit quantization of
the current model? (4) Is there a strong, stable teacher and representative inputs? (5) Is the task
narrow and the volume high enough for distillation's fixed cost to pay back? Then distill, and
quantize the student.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import BadInput

# int8 typically buys up to ~2-4x on CPU for compute-bound models, int4 mostly size; beyond this
# factor quantization alone is unlikely to close the gap.
QUANTIZATION_REACH = 3.0
HIGH_VOLUME_PER_MONTH = 1_000_000


@dataclass
class Answers:
    latency_budget_ms: float
    current_latency_ms: float | None
    monthly_calls: int
    task: str  # narrow | broad
    teacher: str  # strong | weak | none
    teacher_stable: bool
    tolerance: str  # low | medium | high: tolerated quality loss
    data: str  # none | unlabelled | labelled
    off_the_shelf: bool  # a small ready-made model exists for the task

    def validate(self) -> None:
        for name, value, allowed in (("task", self.task, ("narrow", "broad")),
                                     ("teacher", self.teacher, ("strong", "weak", "none")),
                                     ("tolerance", self.tolerance, ("low", "medium", "high")),
                                     ("data", self.data, ("none", "unlabelled", "labelled"))):
            if value not in allowed:
                raise BadInput(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.latency_budget_ms <= 0 or (self.current_latency_ms is not None and self.current_latency_ms <= 0):
            raise BadInput("latencies must be positive milliseconds")
        if self.monthly_calls < 0:
            raise BadInput("--monthly-calls must not be negative")


@dataclass
class Advice:
    rung: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (question, answer and reason)
    confirm: str = ""


def advise(a: Answers) -> Advice:
    a.validate()
    steps = []
    gap = None if a.current_latency_ms is None else a.current_latency_ms / a.latency_budget_ms
    if gap is not None and gap <= 1:
        steps.append(("1. Is latency or cost per call the problem?",
                      f"No: {a.current_latency_ms:g} ms already meets {a.latency_budget_ms:g} ms. Keep the model."))
        return Advice("keep the current model", steps, "edge-distill check (with your budgets) to confirm on the device")
    steps.append(("1. Is latency or cost per call the problem?",
                  "Yes: " + (f"the model is {gap:.1f}x over the {a.latency_budget_ms:g} ms budget"
                             if gap else f"no current figure given; the budget is {a.latency_budget_ms:g} ms")))
    if a.off_the_shelf and a.task == "broad":
        steps.append(("2. Does a small off-the-shelf model meet the bar?",
                      "Try it first: the task is broad, where general small models are strongest."))
        return Advice("off-the-shelf model", steps,
                      "edge-distill ladder with [ladder] off_the_shelf set, to measure it against the teacher")
    steps.append(("2. Does a small off-the-shelf model meet the bar?",
                  "None at hand" if not a.off_the_shelf else
                  "Unlikely for a narrow task: general models waste capacity on what the task never sees"))
    if gap is None or gap <= QUANTIZATION_REACH or a.tolerance == "low":
        reason = ("within reach of int8/int4 (up to ~3x)" if gap is None or gap <= QUANTIZATION_REACH
                  else "the quality tolerance is low, and quantization is the least invasive change")
        steps.append(("3. Does 8- or 4-bit quantization of the current model meet the target?",
                      f"Start here: {reason}."))
        return Advice("quantize the current model (int8, then int4)", steps,
                      "edge-distill ladder: it measures teacher int8 and int4 before any student")
    steps.append(("3. Does 8- or 4-bit quantization of the current model meet the target?",
                  f"Unlikely alone: {gap:.1f}x over budget is beyond what int8/int4 usually buys (~3x)"))
    if a.teacher != "strong" or a.data == "none":
        missing = [w for w, bad in (("a strong teacher", a.teacher != "strong"),
                                    ("representative inputs", a.data == "none")) if bad]
        steps.append(("4. Is there a strong teacher and a representative set of inputs?",
                      f"No: missing {' and '.join(missing)}. Distillation would copy weakness or miss the inputs "
                      "that matter; get these first, or use a smaller architecture trained on labels."))
        return Advice("quantize the current model, and fix the teacher/data gap before distilling", steps,
                      "edge-distill ladder, to see how far quantization gets")
    steps.append(("4. Is there a strong teacher and a representative set of inputs?",
                  "Yes" + ("" if a.teacher_stable else ", but the teacher moves: budget for re-distillation "
                           "(stale_teacher = \"fail\" in the config catches a stale student)")))
    if a.task == "broad" or a.monthly_calls < HIGH_VOLUME_PER_MONTH:
        why = "the task is broad" if a.task == "broad" else f"{a.monthly_calls:,} calls a month is a low volume"
        steps.append(("5. Is the task narrow and the volume high enough for distillation to pay back?",
                      f"Doubtful: {why}. Price it with [cost] before committing."))
        return Advice("quantize first; distill only if the ladder's payback volume is below your volume", steps,
                      "edge-distill ladder --all with a [cost] table: it reports the payback volume")
    steps.append(("5. Is the task narrow and the volume high enough for distillation to pay back?",
                  f"Yes: a narrow task at {a.monthly_calls:,} calls a month."))
    steps.append(("Then", "Distill, then quantize the student: the stack beats either alone."))
    return Advice("distill a student, then quantize it (int8, then int4)", steps,
                  "edge-distill ladder --all with a [cost] table, then edge-distill check on the student")
