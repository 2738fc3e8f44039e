"""A configured precision name, read in one place: its base (what a target builds, "int4") and
whether edge-distill searches which of its layers to raise ("int4-auto", mixed.py). Every other
module asks a `PrecisionSpec`; none takes a precision string apart itself."""

from __future__ import annotations

from dataclasses import dataclass

AUTO_SUFFIX = "-auto"


@dataclass(frozen=True)
class PrecisionSpec:
    base: str  # the precision a target builds: "int4", "int8-dynamic", "fp16"
    auto: bool = False  # the layers that break a budget raised to a higher precision (auto_precision.py)

    @classmethod
    def parse(cls, name: str) -> PrecisionSpec:
        return cls(name.removesuffix(AUTO_SUFFIX), name.endswith(AUTO_SUFFIX))

    @property
    def name(self) -> str:
        """As configured and reported: "int4-auto"."""
        return self.base + AUTO_SUFFIX if self.auto else self.base

    def searched(self) -> PrecisionSpec:
        """The same base with its layers searched: int8 -> int8-auto."""
        return PrecisionSpec(self.base, auto=True)

    @property
    def eight_bit(self) -> bool:
        """int8 in any flavour (static, dynamic): the ladder's rung before 4 bits."""
        return self.base.startswith("int8")


def base_of(name: str) -> str:
    """"int4-auto" -> "int4"; a plain precision is its own base."""
    return PrecisionSpec.parse(name).base


def is_auto(name: str) -> bool:
    return PrecisionSpec.parse(name).auto


def auto_of(name: str) -> str:
    """"int8" -> "int8-auto"."""
    return PrecisionSpec.parse(name).searched().name
