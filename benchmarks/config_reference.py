"""The configuration reference, generated: toolkit/schemas/config.schema.json (a JSON Schema, draft
2020-12, of edge-distill.toml and of budget files) built from the code's own tables, and
docs/configuration-reference.md rendered from that schema, one table per TOML table.

    python benchmarks/config_reference.py           # writes both files
    python benchmarks/config_reference.py --check   # exit 1 when a committed file differs

What the code holds as data is read from it: the keys and defaults of [slices.discover], [measure.qai_hub],
the budgets (every limit, per slice, per output kind, per precision, regression), [cost], each output
kind's settings and each target's precisions, calibration methods and options; the dataclass defaults of
config.ModelConfig, TargetConfig and Config. The key lists config.py keeps inside its readers, and every
one-line meaning the code does not state, are written here; tests/test_config_schema.py writes a config
per key the schema lists and loads it, and plants an unknown key in every table, so the two cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "toolkit" / "schemas" / "config.schema.json"
PAGE = ROOT / "docs" / "configuration-reference.md"
BUILT_IN_TARGETS = ("ort", "tflite", "coreml")  # a plugin target's options are its own (not in this schema)
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _type(kind) -> dict:
    """A Python type (or tuple of types, as tomlfile.expect takes them) as a JSON Schema type."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = list(dict.fromkeys("number" if k is float or (k is int and float in kinds) else JSON_TYPES[k]
                               for k in kinds))
    return {"type": names[0] if len(names) == 1 else names}


def key(description: str, kind=None, *, default=dataclasses.MISSING, example=None, **extra) -> dict:
    """One key: its type, its default (absent: the key has none) and its one-line meaning."""
    node = {**(_type(kind) if kind is not None else {}), **extra, "description": description}
    if default is not dataclasses.MISSING:
        node["default"] = default
    if example is not None:
        node["examples"] = [example]
    return node


def table(title: str, description: str, properties: dict, required=(), **extra) -> dict:
    """A TOML table: no key outside `properties` (tomlfile.check_keys refuses unknown keys)."""
    node = {"title": title, "description": description, "type": "object", "properties": properties,
            "additionalProperties": False, **extra}
    if required:
        node["required"] = list(required)
    return node


def named(description: str, value: dict, example: dict) -> dict:
    """A table of tables or values keyed by a name the user chooses (an output, a slice, a precision)."""
    return {"type": "object", "description": description, "additionalProperties": value, "examples": [example]}


def field_default(cls, name: str):
    """A config dataclass's default for one field, as TOML would spell it (None: no default)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return dataclasses.MISSING if value is None or value is dataclasses.MISSING else value


# ---- [model] ----

def model_table() -> dict:
    from edge_distill.config import DTYPES, TASKS, ModelConfig

    d = lambda name: field_default(ModelConfig, name)  # noqa: E731
    kinds = output_kinds()
    return table("[model]", "The student, its teacher, and what its inputs and outputs are.", {
        "student": key("the student: `module:factory` (searched beside the config), a .pt2 or .onnx file, or a "
                       "Hugging Face folder; `{cache}/...` is edge-distill's cache folder", str,
                       example="fmnist_models:student"),
        "weights": key("the student's weights, for `module:factory` (.safetensors, or a state-dict .pt with "
                       "trust_pickle)", str, example="student.safetensors"),
        "teacher": key("the teacher, in the student's forms: teacher agreement and the report's reference row",
                       str, example="fmnist_models:teacher"),
        "teacher_weights": key("the teacher's weights, for `module:factory`", str, example="teacher.safetensors"),
        "task": key("the first output's task metric: classification (accuracy, agreement) or embedding (cosine, "
                    "retrieval agreement)", str, default=d("task"), enum=list(TASKS)),
        "labels": key("one name per class, in output order", list, default=d("labels"), items={"type": "string"}),
        "inputs": {"type": "array", "description": "each input's name, shape and dtype; optional for .pt2 and "
                   ".onnx (read from the model)", "items": {"$ref": "#/$defs/input"}},
        "normalization": {"$ref": "#/$defs/normalization"},
        "distilled_from": key("sha256 of the teacher's weights when the student was distilled: another teacher "
                              "file flags the student as stale", str, example="5d2f357f381f2cc7..."),
        "stale_teacher": key("what a stale student (the teacher no longer matches distilled_from) does to the "
                             "run: a warning, or a failed check", str, default=d("stale_teacher"),
                             enum=["warn", "fail"]),
        "trust_pickle": key("allow a pickled .pt (state dict or model): only for files you trust", bool,
                            default=d("trust_pickle")),
        "outputs": named("each output's kind, in output order (the first is the task metric's): a kind's name, "
                         "or a table with the kind and its settings; undeclared outputs' kinds are inferred "
                         "from their shape and dtype",
                         {"anyOf": [key("the kind's name", str, enum=[*kinds, *aliases()]),
                                    *({"$ref": f"#/$defs/output_{k}"} for k in kinds)]}, {"logits": "classification"}),
        "batch_axes": named("where an input takes its batch (default 0; \"none\": one value for every sample of "
                            "a run; a 0-d input has none)",
                            {"anyOf": [{"type": "integer", "minimum": 0}, {"const": "none"}]}, {"state": 1}),
        "state": named("streaming models: each state output and the input it feeds at the next chunk",
                       {"type": "string"}, {"stateN": "state"}),
    }, required=["student"]), {
        "input": table("[[model.inputs]]", "One model input.", {
            "name": key("the input's name in the model", str, example="image"),
            "shape": key("its shape: positive ints, or names (\"batch\") for dynamic axes", list,
                         items={"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]},
                         example=["batch", 1, 28, 28]),
            "dtype": key("its element type", str, default="float32", enum=list(DTYPES)),
        }, required=["name", "shape"]),
        "normalization": table("[model.normalization]", "Metadata for the apps (model.json): "
                               "x = (raw * scale - mean) / std.", {
                                   "scale": key("one number the raw input is multiplied by", (int, float),
                                                example=0.00392156862745098),
                                   "mean": key("subtracted after scaling (a number, or one per channel)",
                                               example=0.0, anyOf=[{"type": "number"},
                                                                   {"type": "array", "items": {"type": "number"}}]),
                                   "std": key("divided by after the mean (a number, or one per channel)",
                                              example=1.0, anyOf=[{"type": "number"},
                                                                  {"type": "array", "items": {"type": "number"}}]),
                               }),
        **{f"output_{name}": spec for name, spec in kinds.items()},
    }


def aliases() -> list[str]:
    from edge_distill.kinds import ALIASES

    return list(ALIASES)


def output_kinds() -> dict[str, dict]:
    """[model.outputs.NAME] per kind: `kind` and the kind's settings (edge_distill.kinds)."""
    from edge_distill.kinds import ALIASES, KINDS

    out = {}
    for name, kind in KINDS.items():
        names = [name, *(a for a, k in ALIASES.items() if k == name)]
        props = {"kind": key(f"{kind.help}", str, enum=names)}
        for setting, default in kind.settings.items():
            choices = kind.choices.get(setting)
            props[setting] = key(SETTING_MEANING[setting], type(default), default=default,
                                 **({"enum": list(choices)} if choices else {}))
        out[name] = table(f"[model.outputs.NAME] kind = \"{name}\"", f"An output of kind {name}: its settings.", props,
                          required=["kind"])
    return out


SETTING_MEANING = {  # the output kinds' settings (kinds/*.py `settings`)
    "axis": "the class axis",
    "decode": "how positions become text for the CER: CTC (collapse repeats, drop the blank) or none",
    "blank": "the CTC blank's class index",
    "data_range": "the PSNR's data range (0: the float output's range over the evaluation set)",
    "layout": "the detector head's layout: yolov8 [B, 4+C, N], yolov5 [B, N, 5+C] or end2end [B, D, 6]",
    "conf": "the confidence threshold before NMS",
    "iou": "NMS's IoU threshold",
    "max_det": "detections kept per image",
}


# ---- [data], [export], [measure], [ladder], [slices], history ----

def run_tables() -> dict:
    from edge_distill.config import CLOUD_KEYS, SLICES_DISCOVER, Config
    from edge_distill.slicefind import SOURCES

    d = lambda name: field_default(Config, name)  # noqa: E731
    positive = {"minimum": 1}
    discover_meaning = {
        "margin": "how much worse than the float student a sample must be to count as failed",
        "alpha": "the family-wise error rate of the Fisher tests (Holm over every hypothesis searched)",
        "min_size": "the fewest samples a slice may have",
        "sources": f"where candidate slices come from: {', '.join(SOURCES)}",
        "fail_on_found": "a slice found fails the check (exit 1)",
    }
    discover = {k: key(discover_meaning[k], type(v), default=v,
                       **({"items": {"enum": list(SOURCES)}} if k == "sources" else {}))
                for k, v in SLICES_DISCOVER.items()}
    cloud = {k: key(CLOUD_MEANING[k], kind, example=CLOUD_EXAMPLES.get(k),
                    **({"items": {"type": "string"}} if kind is list else {}),
                    **({"exclusiveMinimum": 0} if k in ("timeout_s", "poll_s", "concurrency", "samples") else {}))
             for k, kind in CLOUD_KEYS.items()}
    return {
        "data": table("[data]", "The evaluation and calibration data (.npz, or a folder of .npy).", {
            "calibration": key("the calibration data: one array per model input", str, example="calibration.npz"),
            "evaluation": key("the evaluation data: inputs, and optionally labels, slices, slice_NAME masks, "
                              "weights", str, example="eval.npz"),
            "calibration_samples": key("calibration samples picked with `seed`, stratified by label or slice", int,
                                       default=d("calibration_samples"), **positive),
            "seed": key("the seed of every sample selection", int, default=d("seed"), minimum=0),
        }),
        "export": table("[export]", "The ONNX export, proven against the source.", {
            "opset": key("the ONNX opset (>= 18: 18 avoids opset 20's Gelu, which mobile EPs lack)", int,
                         default=d("opset"), minimum=18),
            "tolerance": key("max |ONNX Runtime - source| on real samples, else exit 2", (int, float),
                             default=d("tolerance"), exclusiveMinimum=0),
        }),
        "measure": table("[measure]", "How figures are measured.", {
            "threads": key("runtime threads", int, default=d("threads"), **positive),
            "warmup": key("runs before timing", int, default=d("warmup"), **positive),
            "runs": key("timed runs (>= 20, for a p95 to mean anything)", int, default=d("runs"), minimum=20),
            "device": key("where figures come from: host, a profile, emulated-arm64, adb[:SERIAL], qai-hub:NAME, "
                          "... (edge-distill devices); --device overrides it", str, default=d("device")),
            "sequence_lengths": key("text models: latency measured at each token count", list,
                                    default=d("sequence_lengths"), items={"type": "integer", "minimum": 1}),
            "adb": {"$ref": "#/$defs/adb"},
            "iphone": {"$ref": "#/$defs/iphone"},
            "qai_hub": {"$ref": "#/$defs/qai_hub"},
        }),
        "adb": table("[measure.adb]", "Benchmark binaries for an attached Android phone, built for its ABI.", {
            "benchmark_model": key("LiteRT's benchmark_model", str, example="tools/benchmark_model"),
            "onnxruntime_perf_test": key("ONNX Runtime's onnxruntime_perf_test", str,
                                         example="tools/onnxruntime_perf_test"),
        }),
        "iphone": table("[measure.iphone]", "An attached iPhone.", {
            "app": key("the ios-demo folder whose latency test runs on the phone", str, example="ios-demo"),
        }),
        "qai_hub": table("[measure.qai_hub]", "Qualcomm AI Hub's phones (--device qai-hub:NAME). The API token is "
                         "never read from here (`qai-hub configure`, or $EDGE_DISTILL_QAI_HUB_TOKEN).", cloud),
        "ladder": table("[ladder]", "`edge-distill ladder`: an off-the-shelf model to compare the student with.", {
            "off_the_shelf": key("an off-the-shelf model, in the student's forms (`file.onnx#OUTPUT` picks an "
                                 "output)", str, example="model.onnx"),
            "off_the_shelf_weights": key("its weights, for `module:factory`", str, example="model.safetensors"),
        }),
        "slices": table("[slices]", "Slice discovery.", {"discover": {"$ref": "#/$defs/discover"}}),
        "discover": table("[slices.discover]", "`check` searches each artifact's failures against the float "
                          "student for slices (edge-distill slices discover); absent, no search.", discover),
    }


CLOUD_MEANING = {
    "device": "the phone, by AI Hub's device name",
    "attributes": "or the phone by attributes (\"chipset:qualcomm-snapdragon-8gen3\")",
    "os": "the phone's OS version",
    "options": "the jobs' options, passed through to the service",
    "project": "the AI Hub project the jobs go to",
    "timeout_s": "seconds a job may take",
    "poll_s": "seconds between polls of a job",
    "concurrency": "jobs in flight at once",
    "samples": "samples of the inference job (outputs compared with the host's)",
}
CLOUD_EXAMPLES = {"device": "Samsung Galaxy S24 (Family)", "attributes": ["chipset:qualcomm-snapdragon-8gen3"],
                  "os": "14", "options": "--compute_unit cpu", "project": "my-project", "timeout_s": 3600,
                  "poll_s": 10, "concurrency": 4, "samples": 16}


# ---- [[targets]] ----

def targets_table() -> dict:
    from edge_distill.config import TargetConfig

    d = lambda name: field_default(TargetConfig, name)  # noqa: E731
    entry = table("[[targets]]", "One target (and its precisions) per entry; a target's options are below.", {
        "name": key("the target: ort, tflite, coreml, or a plugin's (edge-distill targets)", str, example="ort"),
        "precisions": key("the precisions built, each its own artifact; `<precision>-auto`: that precision with "
                          "the layers that break a budget raised (mixed precision); left out: the target's float baseline "
                          "alone (fp32; Core ML's fp16), or the recipe's precision", list, items={"type": "string"}, minItems=1,
                          example=["fp32", "int8"]),
        "calibration_method": key("how static int8 calibrates its ranges", str, default=d("calibration_method")),
        "options": key("the target's options (below)", dict, default=d("options")),
        "device": key("this target's own device, over [measure] device (--device overrides both)", str,
                      example="android-midrange"),
        "runtime_version": key("the runtime version an app ships: every artifact must load in it and give this "
                               "host's outputs", str, example="1.22.0"),
        "recipe": key("a mixed-precision search's recipe.toml, rebuilt for the precision it was searched at", str,
                      example="out/ort/int4-auto/recipe.toml"),
        "auto_min_quantized_fraction": key("-auto precisions: the share of the weights that stays quantized",
                                           (int, float), default=d("auto_min_quantized_fraction"), minimum=0,
                                           maximum=1),
        "auto_max_evaluations": key("-auto precisions: the builds and evaluations a search may spend", int,
                                    default=d("auto_max_evaluations"), minimum=1),
        "auto_sensitivity_samples": key("-auto precisions: the search's trials on this many samples (stratified), "
                                        "the choice confirmed on every sample", int, minimum=1, example=500),
        "auto_groups": named("-auto precisions: layers whose names match a group's regular expression are "
                             "searched as one", {"type": "string", "format": "regex"},
                             {"attention": "attention"}),
    }, required=["name"])
    defs, branches = {"target": entry}, []
    for name in BUILT_IN_TARGETS:
        defs[f"options_{name}"], branch = target_branch(name)
        branches.append(branch)
    entry["allOf"] = branches
    return defs


def target_branch(name: str) -> tuple[dict, dict]:
    """A built-in target's options table, and the [[targets]] branch that applies it (and its precisions
    and calibration methods) when `name` is this target."""
    from edge_distill.auto_precision import refusal
    from edge_distill.targets import get_target

    target = get_target(name)
    caps = target.capabilities
    options = {}
    for o in caps.options:
        extra = {"items": {"type": "string"}} if o.type is list else {}
        if o.choices:
            extra["enum"] = list(o.choices)
        if o.minimum is not None:
            extra["minimum"] = o.minimum
        options[o.name] = key(o.help, o.type, default=o.default, **extra)
    auto = [f"{p}-auto" for p in caps.precision_names if _can_mix(target, p, refusal)]
    precisions = "; ".join(f"{p.name}: {p.help}" for p in caps.precisions)
    options_table = table(f"[[targets]] options, name = \"{name}\"", f"{caps.description}. Precisions: "
                          f"{precisions}; -auto: {', '.join(auto)}.", options)
    branch = {"if": {"properties": {"name": {"const": name}}, "required": ["name"]},
              "then": {"properties": {"precisions": {"items": {"enum": [*caps.precision_names, *auto]}},
                                      "calibration_method": {"enum": list(caps.calibration_methods)},
                                      "options": {"$ref": f"#/$defs/options_{name}"}}}}
    return options_table, branch


def _can_mix(target, precision: str, refusal) -> bool:
    """Whether `<precision>-auto` exists on this target with its default options or one option's choice."""
    tries = [{}, *({o.name: c} for o in target.capabilities.options for c in o.choices)]
    return any(refusal(target, precision, options) is None for options in tries)


# ---- [budgets], [cost] ----

BUDGET_MEANING = {  # the scalar limits (budgets.SCALAR_CHECKS); the metric and unit are read from the table
    "latency_p50_ms": "median latency", "latency_p90_ms": "90th percentile latency",
    "latency_p95_ms": "95th percentile latency", "latency_p99_ms": "99th percentile latency",
    "min_accuracy": "accuracy against the labels",
    "min_weighted_accuracy": "accuracy with the data's per-sample weights",
    "max_accuracy_drop": "the float student's accuracy minus the artifact's",
    "min_float_agreement": "same top-1 as the float student",
    "min_teacher_agreement": "same top-1 as the teacher",
    "max_size_mb": "the artifact's size", "max_peak_memory_mb": "peak memory while running",
    "min_speedup_vs_float": "float p50 / artifact p50 (not applied to the float baseline itself)",
    "min_teacher_cosine": "embedding: mean cosine similarity to the teacher's",
    "min_float_cosine": "embedding: mean cosine similarity to the float student's",
    "min_retrieval_agreement": "embedding: same nearest neighbour as the teacher",
    "min_float_retrieval_agreement": "embedding: same nearest neighbour as the float student",
    "min_quantized_fraction": "quantized precisions: the share of the weights really stored in int8/int4",
}
REGRESSION_MEANING = {
    "max_latency_increase": "relative growth of p50, beyond the runs' noise",
    "max_p95_increase": "relative growth of p95, beyond the runs' noise",
    "max_memory_increase": "relative growth of peak memory",
    "max_accuracy_decrease": "absolute drop of accuracy and agreement, overall, per slice and per output",
    "max_size_increase": "relative growth of the artifact's size",
}


def limit(meaning: str, metric: str, comparison: str, unit: str) -> dict:
    bound = "at most" if comparison == "<=" else "at least"
    return key(f"{meaning}: {metric} {bound} this{f' ({unit})' if unit else ''}", (int, float), minimum=0)


def budget_tables() -> dict:
    from edge_distill.budgets import OUTPUT_CHECKS, REGRESSION_LIMITS, SCALAR_CHECKS, SLICE_CHECKS
    from edge_distill.provenance import RANK

    kinds_of = _kinds_of_budget_keys()
    scalars = {k: limit(BUDGET_MEANING[k], *v) for k, v in SCALAR_CHECKS.items()}
    common = {
        "slices": named("per slice of the evaluation data (a slice_NAME mask, or a name in its slices array)",
                        {"$ref": "#/$defs/budget_slice"}, {"high_risk": {"min_accuracy": 0.72}}),
        "outputs": named("per output, the first included, by its kind's keys", {"$ref": "#/$defs/budget_output"},
                         {"text": {"max_cer": 0.02}}),
        "require": key("the weakest provenance a figure may have, overall and in slices: "
                       + " > ".join(sorted(RANK, key=RANK.get, reverse=True)), str, enum=sorted(RANK)),
        "estimate": key("an estimated latency judged as estimated (point) or at the high end of its profile's "
                        "validated range (upper)", str, default="point", enum=["point", "upper"]),
    }
    layered = {
        "precisions": named("a layer per precision: its keys override the ones above for that precision",
                            {"$ref": "#/$defs/budget_layer"}, {"int4": {"max_accuracy_drop": 0.03}}),
        "sequence_length": key("text: the token count the latency limits hold at", int, minimum=1, example=128),
        "regression": {"$ref": "#/$defs/regression"},
    }
    return {
        "budget": table("[budgets]", "What every artifact must satisfy (or a budget file's top level). Limits "
                        "are finite numbers, not negative.", {**scalars, **common, **layered}),
        "budget_layer": table("[budgets.precisions.NAME]", "A precision's layer: the keys of [budgets] but its "
                              "layers (precisions, sequence_length, regression).", {**scalars, **common}),
        "budget_slice": table("[budgets.slices.NAME]", "One slice's limits.",
                              {k: limit(BUDGET_MEANING[k], *v) for k, v in SLICE_CHECKS.items()}),
        "budget_output": table("[budgets.outputs.NAME]", "One output's limits, against the float student's same "
                               "output; a key applies to the output kinds named.",
                               {k: limit(f"{', '.join(kinds_of[k])} outputs", *v) for k, v in OUTPUT_CHECKS.items()}),
        "regression": table("[budgets.regression]", "Against a baseline report (check --baseline REPORT.json).", {
            **{k: key(REGRESSION_MEANING[k], (int, float), default=v, minimum=0)
               for k, v in REGRESSION_LIMITS.items()},
            "slices": named("a slice's own max_accuracy_decrease (the others take the table's)",
                            {"$ref": "#/$defs/regression_slice"}, {"high_risk": {"max_accuracy_decrease": 0.002}}),
        }),
        "regression_slice": table("[budgets.regression.slices.NAME]", "One slice's regression limit.", {
            "max_accuracy_decrease": key(REGRESSION_MEANING["max_accuracy_decrease"], (int, float), minimum=0,
                                         example=0.002)}),
        "budget_file": {"description": "A budget file (verify --budget, ladder --budget): a [budgets] table, or "
                        "the budget's keys at the top level.",
                        "anyOf": [{"type": "object", "properties": {"budgets": {"$ref": "#/$defs/budget"}},
                                   "required": ["budgets"], "additionalProperties": False},
                                  {"$ref": "#/$defs/budget"}]},
    }


def _kinds_of_budget_keys() -> dict[str, list[str]]:
    from edge_distill.kinds import KINDS

    found: dict[str, list[str]] = {}
    for name, kind in KINDS.items():
        for k in kind.budget_keys:
            found.setdefault(k, []).append(name)
    return found


def cost_tables() -> dict:
    from edge_distill.cost import COST_KEYS, FIXED_KEYS

    props = {k: key(meaning, (int, float), minimum=0, **({"default": 12} if k == "amortize_months" else {}),
                    example=None if k == "amortize_months" else COST_EXAMPLES[k])
             for k, meaning in COST_KEYS.items()}
    del props["amortize_months"]["minimum"]
    props["amortize_months"]["exclusiveMinimum"] = 0
    props["price_per_call"] = named("an explicit price per call for a ladder rung, over the device-second price",
                                    {"type": "number"}, {"teacher": 0.002})
    return {"cost": table("[cost]", "`edge-distill ladder`: what each rung costs (a missing price is not a zero).",
                          props, required=FIXED_KEYS)}


COST_EXAMPLES = {"teacher_cost_per_1k": 0.02, "label_corpus_size": 40000, "training_hours": 0.1,
                 "training_price_per_hour": 1.0, "evaluation_cost": 5.0, "upkeep_per_month": 10.0,
                 "price_per_device_second": 0.0002}


def build_schema() -> dict:
    model, model_defs = model_table()
    runs = run_tables()
    defs = {**model_defs, **runs, **targets_table(), **budget_tables(), **cost_tables()}
    top = {
        "history": key("the results store every run is recorded in: a SQLite file or postgresql://... "
                       "(edge_distill.history)", str, example="results.db"),
        "model": {"$ref": "#/$defs/model"},
        **{name: {"$ref": f"#/$defs/{name}"} for name in ("data", "export", "measure")},
        "targets": {"type": "array", "description": "the targets built", "items": {"$ref": "#/$defs/target"}},
        "budgets": {"$ref": "#/$defs/budget"},
        **{name: {"$ref": f"#/$defs/{name}"} for name in ("cost", "ladder", "slices")},
    }
    schema = table("top level", "edge-distill.toml, the project file `check` runs. Paths are relative to its "
                   "folder. Generated by benchmarks/config_reference.py from the code's tables.", top,
                   required=["model"])
    schema.pop("title")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://edge-distill.dev/schemas/config.schema.json", "title": "edge-distill.toml", **schema,
            "$defs": {"model": model, **defs}}


# ---- the page ----

def sections(schema: dict) -> list[dict]:
    """Every table of the schema (a titled object), in the order a reader meets them from the top."""
    found: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
            if "properties" in node and "title" in node and node in found:
                return
            if "properties" in node and "title" in node:
                found.append(node)
            for child in (*node.get("properties", {}).values(), node.get("additionalProperties"), node.get("items"),
                          *node.get("anyOf", ()), *(b["then"] for b in node.get("allOf", ()))):
                walk(child)

    walk({"properties": schema["properties"], "title": "top level", "description": schema["description"],
          "required": schema["required"]})
    return found


def toml_example(name: str, value) -> str:
    """An example as a TOML line: `key = value` (a named table's: `key = { NAME = ... }`)."""
    def inline(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {inline(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(inline(x) for x in v) + "]"
        return json.dumps(v)

    return f"{name} = {inline(value)}"


def refs(node: dict) -> list[str]:
    """The tables a key's value is (its $ref, or its items', its named entries', its alternatives')."""
    found = []
    for sub in (node, node.get("items"), node.get("additionalProperties"), *node.get("anyOf", ())):
        if isinstance(sub, dict):
            found += [sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else refs(sub) if sub is not node else []
    return list(dict.fromkeys(found))


def type_of(node: dict) -> str:
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "$ref" in node:
        return "table"
    if "anyOf" in node:
        return " or ".join(dict.fromkeys(type_of(n) for n in node["anyOf"]))
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    names = {"string": "string", "integer": "int", "number": "number", "boolean": "bool", "array": "array",
             "object": "table"}
    text = " or ".join(names[k] for k in kinds)
    if kind == "array" and "items" in node:
        text = f"array of {type_of(node['items'])}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        text = f"NAME = {type_of(node['additionalProperties'])}"
    bounds = [f">= {node['minimum']}" if "minimum" in node else "", f"> {node['exclusiveMinimum']}"
              if "exclusiveMinimum" in node else "", f"<= {node['maximum']}" if "maximum" in node else ""]
    return " ".join([text, *(b for b in bounds if b)])


def default_of(name: str, node: dict, required: list) -> str:
    if "default" in node:
        return f"`{json.dumps(node['default'])}`"
    return "required" if name in required else "none"


def render(schema: dict) -> str:
    lines = ["# Configuration reference", "",
             "<!-- Generated by `python benchmarks/config_reference.py` from toolkit/schemas/config.schema.json; "
             "tests/test_config_schema.py fails when this page differs. Do not edit by hand. -->", "",
             "Every key of `edge-distill.toml`, table by table: its type, its default and what it means. The same "
             "keys are a JSON Schema, `toolkit/schemas/config.schema.json` (draft 2020-12), for editors and CI; a key not "
             "listed here is refused (exit 2), with the nearest key named. A budget file (`verify --budget`, "
             "`ladder --budget`) holds a `[budgets]` table, or the same keys at its top level. A tour with examples is "
             "in [Configuration](configuration.md).", ""]
    for node in sections(schema):
        required = node.get("required", [])
        lines += [f"## `{node['title']}`", "", node["description"], "", "| key | type | default | meaning |",
                  "|---|---|---|---|"]
        for name, sub in node["properties"].items():
            described = sub if "description" in sub else schema["$defs"][sub["$ref"].rsplit("/", 1)[1]]
            meaning = described["description"]
            titles = [schema["$defs"][ref]["title"] for ref in refs(sub)]
            if titles:
                meaning += " (" + ", ".join(f"[`{t}`](#{_slug(t)})" for t in titles) + ")"
            if "examples" in sub:
                meaning += f"; e.g. `{toml_example(name, sub['examples'][0])}`"
            lines.append(f"| `{name}` | {type_of(sub)} | {default_of(name, sub, required)} | "
                         f"{meaning.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


def _slug(title: str) -> str:
    """Python-Markdown's toc slug of a heading (what mkdocs anchors it with)."""
    import re
    import unicodedata

    value = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def schema_text(schema: dict) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = parser.parse_args()
    schema = build_schema()
    wanted = {SCHEMA: schema_text(schema), PAGE: render(schema)}
    stale = [p for p, text in wanted.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} differs from what benchmarks/config_reference.py writes", file=sys.stderr)
        return 1 if stale else 0
    for p, text in wanted.items():
        p.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
