"""ORT's static int8 recipes: what the option int8_recipe names, and what "auto" tries in turn."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StaticRecipe:
    """One static int8 recipe: what int8_recipe names and `auto` tries."""

    help: str
    per_channel: bool = True
    activations: str = "uint8"  # "int8": signed activations
    symmetric_activations: bool = False
    calibration: str | None = None  # None: the configured calibration method
    float_ops: tuple[str, ...] = ()  # ops left in float: an op type, or "MatMul of activations", "Add of activations"


ATTENTION_OPS = ("Softmax", "LayerNormalization", "MatMul of activations", "Add of activations")
# The candidates `int8_recipe = "auto"` builds, in order: on a tie the earlier one is kept.
STATIC_RECIPES = {
    "onnxruntime": StaticRecipe("edge-distill's default: uint8 asymmetric activations, int8 per-channel weights"),
    "ort-defaults": StaticRecipe("onnxruntime quantize_static's defaults: int8 activations, int8 per-tensor weights, "
                                 "min-max", per_channel=False, activations="int8", calibration="minmax"),
    "per-tensor": StaticRecipe("uint8 activations, int8 per-tensor weights", per_channel=False),
    "symmetric": StaticRecipe("int8 symmetric activations, int8 per-channel weights", activations="int8",
                              symmetric_activations=True),
    "percentile": StaticRecipe("the default with percentile calibration (99.999%)", calibration="percentile"),
    "entropy": StaticRecipe("the default with entropy calibration (2048 bins)", calibration="entropy"),
    "attention-float": StaticRecipe("the default with attention blocks' Softmax, LayerNormalization, MatMul and Add "
                                    "of two activations left in float", float_ops=ATTENTION_OPS),
}
