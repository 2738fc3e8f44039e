"""`edge-distill.toml`: the project file that `check` runs. Paths in it are relative to its folder.

    [model]
    student = "fmnist_models:student"     # module:factory, or a .pt2 / .onnx file
    weights = "student.safetensors"       # for module:factory (.safetensors or a state-dict .pt)
    teacher = "fmnist_models:teacher"     # optional, same forms
    teacher_weights = "teacher.safetensors"
    task = "classification"
    labels = ["T-shirt/top", ...]
    distilled_from = "<sha256 of the teacher's weights>"   # optional: flags a stale student
    outputs = { logits = "classification", box = "dense" }   # optional: each output's kind, in output
                                          # order (the first is the task metric's); or a table per output:
    [model.outputs.text]                  # kind and its settings (edge_distill.kinds); undeclared outputs'
    kind = "sequence"                     # kinds are inferred from their shape and dtype
    blank = 0
    batch_axes = { state = 1, sr = "none" }   # optional: where an input takes its batch (default 0; "none":
                                          # one value for every sample of a run; a 0-d input has none)
    state = { stateN = "state" }          # optional, streaming models: each state output fed back as the
                                          # next chunk's input (edge_distill.streaming)
    [[model.inputs]]                      # optional for .pt2 / .onnx (read from the model)
    name = "image"
    shape = ["batch", 1, 28, 28]
    dtype = "float32"
    [model.normalization]                 # metadata for the apps: x = (pixel * scale - mean) / std
    scale = 0.00392156862745098

    [data]
    calibration = "calibration.npz"
    evaluation = "eval.npz"
    calibration_samples = 256
    seed = 0

    [export]
    opset = 18
    tolerance = 1e-4                      # max |ONNX Runtime - source| on real samples

    [measure]
    threads = 1
    warmup = 20
    runs = 200

    [measure.qai_hub]                     # --device qai-hub:NAME (Qualcomm AI Hub's phones; devices/cloud.py)
    device = "Samsung Galaxy S24 (Family)"  # or attributes = ["chipset:qualcomm-snapdragon-8gen3"], os = "14"
    options = "--compute_unit cpu"        # the jobs' options, passed through; project = "..." optional
    timeout_s = 3600                      # per job; poll_s = 10, concurrency = 4, samples = 16 (inference job)
                                          # the API token is never read from here (qai-hub configure)

    [[targets]]
    name = "ort"
    precisions = ["fp32", "int8", "int4"]
    calibration_method = "minmax"         # minmax | percentile | entropy
    options = { int4_gather = false }
    runtime_version = "1.22.0"            # optional: the version your app ships; each artifact must load in it
    # "int8-auto", "int4-auto" (ort, tflite, coreml): the precision with the layers that break a budget
    # raised (int4: to int8, then float; int8: to float; edge_distill.mixed); the search's floor and trials:
    auto_min_quantized_fraction = 0.5
    auto_max_evaluations = 32
    auto_sensitivity_samples = 500        # optional: the search's trials on a stratified subset (label and
                                          # slice), the chosen configuration confirmed on every sample
    auto_groups = { attention = "attention", ffn = "intermediate|layer\\.\\d+/output/dense" }  # optional: searched together
    recipe = "out/ort/int4-auto/recipe.toml"  # optional: rebuild a search's choice (its keep_int8 / keep_float)

    [budgets]                             # see edge_distill.budgets

    history = "results.db"                # top level, before the tables: record every run in this store
                                          # (a SQLite file, or postgresql://...); see edge_distill.history
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

from edge_distill.calibration import InputSpec

from .budgets import Budget, parse_budget
from .errors import BadInput
from .tomlfile import check_keys, expect, read_toml

if TYPE_CHECKING:
    from .cost import CostModel

TASKS = ("classification", "embedding")
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")


@dataclass
class ModelConfig:
    student: str
    weights: str | None = None
    teacher: str | None = None
    teacher_weights: str | None = None
    task: str = "classification"
    labels: list[str] = field(default_factory=list)
    inputs: list[InputSpec] = field(default_factory=list)
    normalization: dict[str, float | list[float]] = field(default_factory=dict)
    distilled_from: str | None = None
    stale_teacher: str = "warn"  # "warn" or "fail" when the teacher no longer matches distilled_from
    # output name -> {"kind": ..., its settings}, in the model's output order (edge_distill.kinds)
    outputs: dict[str, dict] = field(default_factory=dict)
    batch_axes: dict[str, int | None] = field(default_factory=dict)  # input -> its batch axis (None: none)
    state: dict[str, str] = field(default_factory=dict)  # state output -> the input it feeds at the next chunk
    trust_pickle: bool = False


@dataclass
class TargetConfig:
    name: str
    precisions: list[str]
    calibration_method: str = "minmax"
    options: dict = field(default_factory=dict)
    device: str | None = None  # overrides [measure] device for this target
    runtime_version: str | None = None  # the runtime version an app ships: every artifact must load in it
    auto_min_quantized_fraction: float = 0.5  # "-auto" precisions: the share of weights that stays quantized
    auto_max_evaluations: int = 32  # "-auto" precisions: builds and evaluations a search may spend
    auto_sensitivity_samples: int | None = None  # "-auto": trials on this many samples (stratified), then confirmed
    auto_groups: dict[str, str] = field(default_factory=dict)  # group name -> regex of layer names, searched as one
    recipe_precision: str | None = None  # the precision a recipe (a search's choice) was searched at
    recipe_options: dict = field(default_factory=dict)  # its layer choices: for that precision's builds only

    def options_for(self, precision: str | None) -> dict:
        """A build's options: the recipe's for the precision it was searched at, then the entry's own."""
        return {**self.recipe_options, **self.options} if precision == self.recipe_precision else self.options


@dataclass
class Config:
    path: Path
    model: ModelConfig
    calibration: Path | None = None
    evaluation: Path | None = None
    calibration_samples: int = 256
    seed: int = 0
    opset: int = 18
    tolerance: float = 1e-4
    threads: int = 1
    warmup: int = 20
    runs: int = 200
    device: str = "host"
    sequence_lengths: list[int] = field(default_factory=list)  # text: latency measured at each token count
    device_tools: dict = field(default_factory=dict)  # [measure.adb]: benchmark binaries for phones; [measure.qai_hub]
    targets: list[TargetConfig] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    cost: CostModel | None = None
    off_the_shelf: str | None = None
    off_the_shelf_weights: str | None = None
    history: str | None = None  # the results store every run is recorded in (edge_distill.history)
    # [slices.discover]: `check` searches each artifact's failures against the float student after its run
    slices_discover: dict | None = None

    @property
    def root(self) -> Path:
        return self.path.parent

    @overload
    def resolve(self, value: str) -> str: ...
    @overload
    def resolve(self, value: str | None) -> str | None: ...

    def resolve(self, value: str | None) -> str | None:
        """A path relative to the config's folder; a module:factory reference stays as it is.
        `{cache}` stands for edge-distill's cache folder, where an example's setup step leaves what it
        builds ($EDGE_DISTILL_CACHE, else ~/.cache/edge-distill)."""
        if value is None or _is_factory(value):
            return value
        if "{cache}" in value:
            from .places import cache_home

            value = value.replace("{cache}", str(cache_home()))
        return str((self.root / Path(value).expanduser()).resolve())


def _is_factory(ref: str) -> bool:
    return ":" in ref and not ref.endswith((".pt2", ".onnx", ".pt", ".pth")) and "/" not in ref.split(":")[0]


def parse_inputs(items, where: str, path: Path) -> list[InputSpec]:
    specs = []
    for i, item in enumerate(expect(items, list, "inputs", where, path)):
        sub = f"{where}.inputs[{i}]"
        check_keys(expect(item, dict, "inputs", where, path), {"name", "shape", "dtype"}, sub, path)
        if "name" not in item or "shape" not in item:
            raise BadInput(f"[{sub}] needs 'name' and 'shape'", path=path)
        shape = expect(item["shape"], list, "shape", sub, path)
        for dim in shape:
            if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and dim < 1):
                raise BadInput(f"'shape' in [{sub}] holds {dim!r}: use positive ints or names like \"batch\"",
                               path=path)
        dtype = item.get("dtype", "float32")
        if dtype not in DTYPES:
            raise BadInput(f"'dtype' in [{sub}] must be one of {DTYPES}, got {dtype!r}", path=path)
        specs.append(InputSpec(name=expect(item["name"], str, "name", sub, path), shape=tuple(shape), dtype=dtype))
    return specs


def load_config(path: str | Path) -> Config:
    path = Path(path).resolve()
    data = read_toml(path)
    check_keys(data, {"model", "data", "export", "measure", "targets", "budgets", "cost", "ladder", "history",
                      "slices"},
               "top level", path)
    if "model" not in data:
        raise BadInput("missing [model] table", path=path)
    cfg = Config(path=path, model=_read_model(expect(data["model"], dict, "model", "top level", path), path))
    cfg.history = expect(data.get("history"), (str, type(None)), "history", "top level", path)
    section = lambda name: expect(data.get(name, {}), dict, name, "top level", path)  # noqa: E731
    _read_data(cfg, section("data"))
    _read_export(cfg, section("export"))
    _read_measure(cfg, section("measure"))
    for i, t in enumerate(expect(data.get("targets", []), list, "targets", "top level", path)):
        cfg.targets.append(_read_target(t, f"targets[{i}]", path))
    if "budgets" in data:
        cfg.budget = parse_budget(section("budgets"), path)
    if "cost" in data:
        from .cost import parse_cost

        cfg.cost = parse_cost(section("cost"), path)
    lad = section("ladder")
    check_keys(lad, {"off_the_shelf", "off_the_shelf_weights"}, "ladder", path)
    cfg.off_the_shelf = _text(lad, "off_the_shelf", path, "ladder")
    cfg.off_the_shelf_weights = _text(lad, "off_the_shelf_weights", path, "ladder")
    cfg.slices_discover = _read_slices(section("slices"), path)
    return cfg


SLICES_DISCOVER = {"margin": 0.03, "alpha": 0.01, "min_size": 20, "sources": ["metadata", "clusters", "confidence",
                                                                         "labels"], "fail_on_found": False}


def _read_slices(table: dict, path: Path) -> dict | None:
    """[slices.discover]: settings of the step `check` runs (`slices discover` against the float student,
    each artifact in turn); absent, no step."""
    check_keys(table, {"discover"}, "slices", path)
    if "discover" not in table:
        return None
    d = expect(table["discover"], dict, "discover", "slices", path)
    check_keys(d, set(SLICES_DISCOVER), "slices.discover", path)
    out = {**SLICES_DISCOVER, **d}
    for key, default in SLICES_DISCOVER.items():
        kind = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(out[key], kind) or isinstance(out[key], bool) != isinstance(default, bool):
            raise BadInput(f"[slices.discover] {key} must be like {default!r}, got {out[key]!r}", path=path)
    return out


def _read_model(m: dict, path: Path) -> ModelConfig:
    check_keys(m, {"student", "weights", "teacher", "teacher_weights", "task", "labels", "inputs",
                   "normalization", "distilled_from", "stale_teacher", "trust_pickle", "outputs", "batch_axes",
                   "state"}, "model", path)
    outputs = {name: _output_spec(spec, name, path)
               for name, spec in expect(m.get("outputs", {}), dict, "outputs", "model", path).items()}
    if "student" not in m:
        raise BadInput("[model] needs 'student' (module:factory, .pt2 or .onnx)", path=path)
    task = m.get("task", "classification")
    if task not in TASKS:
        raise BadInput(f"'task' in [model] must be one of {TASKS}, got {task!r}", path=path)
    if m.get("stale_teacher", "warn") not in ("warn", "fail"):
        raise BadInput(f"'stale_teacher' in [model] must be \"warn\" or \"fail\", got {m['stale_teacher']!r}",
                       path=path)
    return ModelConfig(
        student=expect(m["student"], str, "student", "model", path),
        weights=_text(m, "weights", path), teacher=_text(m, "teacher", path),
        teacher_weights=_text(m, "teacher_weights", path),
        task=task, labels=[str(x) for x in expect(m.get("labels", []), list, "labels", "model", path)],
        inputs=parse_inputs(m.get("inputs", []), "model", path),
        normalization=_normalization(m.get("normalization", {}), path),
        distilled_from=_text(m, "distilled_from", path),
        stale_teacher=m.get("stale_teacher", "warn"),
        trust_pickle=expect(m.get("trust_pickle", False), bool, "trust_pickle", "model", path),
        outputs=dict(outputs),
        batch_axes={name: _batch_axis(v, name, path)
                    for name, v in expect(m.get("batch_axes", {}), dict, "batch_axes", "model", path).items()},
        state={out: expect(fed, str, out, "model.state", path)
               for out, fed in expect(m.get("state", {}), dict, "state", "model", path).items()},
    )


def _text(table: dict, key: str, path: Path, where: str = "model") -> str | None:
    """An optional string key (a path, a module:factory, a hash): anything else is the config's fault."""
    return expect(table[key], str, key, where, path) if key in table else None


def _batch_axis(value, name: str, path: Path) -> int | None:
    if value == "none":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(f"[model] batch_axes: '{name}' must be an axis (0, 1, ...) or \"none\", got {value!r}",
                       path=path)
    return value


def _output_spec(spec, name: str, path: Path) -> dict:
    """[model] outputs = { NAME = "kind" }, or [model.outputs.NAME] kind = "..." with the kind's settings."""
    from .kinds import ALIASES, KINDS

    spec = {"kind": spec} if isinstance(spec, str) else dict(expect(spec, dict, name, "model.outputs", path))
    kind = ALIASES.get(spec.get("kind"), spec.get("kind"))
    if kind not in KINDS:
        raise BadInput(f"[model.outputs.{name}] kind must be one of {', '.join(KINDS)}, got {spec.get('kind')!r}",
                       path=path)
    check_keys(spec, {"kind", *KINDS[kind].settings}, f"model.outputs.{name}", path)
    for key, default in KINDS[kind].settings.items():
        allowed = (int, float) if isinstance(default, float) else type(default)
        if key in spec and (isinstance(spec[key], bool) is not isinstance(default, bool)
                            or not isinstance(spec[key], allowed)):
            raise BadInput(f"'{key}' in [model.outputs.{name}] must be {type(default).__name__}, got {spec[key]!r}",
                           path=path)
        choices = KINDS[kind].choices.get(key)
        if key in spec and choices and spec[key] not in choices:
            raise BadInput(f"'{key}' in [model.outputs.{name}] must be one of {', '.join(choices)}, got {spec[key]!r}",
                           path=path)
    return {**spec, "kind": kind}


def output_kinds(items) -> dict[str, dict]:
    """`verify --kind OUTPUT=KIND[,KEY=VALUE...]`, checked as [model.outputs.OUTPUT] is."""
    declared = {}
    for item in items:
        name, sep, rest = item.partition("=")
        kind, *pairs = rest.split(",")
        if not sep or not name or any("=" not in p for p in pairs):
            raise BadInput(f"--kind {item!r}: expected OUTPUT=KIND[,KEY=VALUE...], e.g. out=detection,layout=yolov8")
        spec = {"kind": kind, **{k: _typed(v) for k, v in (p.split("=", 1) for p in pairs)}}
        declared[name] = _output_spec(spec, name, Path("--kind"))
    return declared


def _typed(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _normalization(value, path: Path) -> dict:
    """[model.normalization]: `scale` is one number (bundle divides the golden inputs by it; a list there
    was a TypeError when bundling)."""
    table = expect(value, dict, "normalization", "model", path)
    check_keys(table, {"scale", "mean", "std"}, "model.normalization", path)
    if "scale" in table:
        expect(table["scale"], (int, float), "scale", "model.normalization", path)
    for key in ("mean", "std"):  # a number, or one per channel
        values = table.get(key, [])
        for x in values if isinstance(values, list) else [values]:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise BadInput(f"'{key}' in [model.normalization] must be a number or a list of numbers, got "
                               f"{table[key]!r}", path=path)
    return table


def _read_data(cfg: Config, d: dict) -> None:
    path = cfg.path
    check_keys(d, {"calibration", "evaluation", "calibration_samples", "seed"}, "data", path)
    cfg.calibration = Path(cfg.resolve(d["calibration"])) if _text(d, "calibration", path, "data") is not None else None
    cfg.evaluation = Path(cfg.resolve(d["evaluation"])) if _text(d, "evaluation", path, "data") is not None else None
    cfg.calibration_samples = _positive_int(d, "calibration_samples", 256, "data", path)
    cfg.seed = expect(d.get("seed", 0), int, "seed", "data", path)
    if isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise BadInput(f"'seed' in [data] must be a non-negative int, got {d['seed']!r}", path=path)


def _read_export(cfg: Config, e: dict) -> None:
    path = cfg.path
    check_keys(e, {"opset", "tolerance"}, "export", path)
    cfg.opset = _positive_int(e, "opset", 18, "export", path)
    if cfg.opset < 18:
        raise BadInput(f"'opset' in [export] must be >= 18 (the dynamo exporter's floor), got {cfg.opset}", path=path)
    cfg.tolerance = float(expect(e.get("tolerance", 1e-4), (int, float), "tolerance", "export", path))
    if not math.isfinite(cfg.tolerance) or cfg.tolerance <= 0:
        raise BadInput(f"'tolerance' in [export] must be a positive number (max |ONNX - source|), got "
                       f"{e['tolerance']!r}", path=path)


def _read_measure(cfg: Config, me: dict) -> None:
    path = cfg.path
    check_keys(me, {"threads", "warmup", "runs", "device", "adb", "iphone", "qai_hub", "sequence_lengths"}, "measure",
               path)
    lengths = expect(me.get("sequence_lengths", []), list, "sequence_lengths", "measure", path)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lengths):
        raise BadInput(f"'sequence_lengths' in [measure] must be positive ints (tokens), got {lengths}", path=path)
    cfg.sequence_lengths = sorted(set(lengths))
    cfg.device = expect(me.get("device", "host"), str, "device", "measure", path)
    adb = expect(me.get("adb", {}), dict, "adb", "measure", path)
    check_keys(adb, {"benchmark_model", "onnxruntime_perf_test"}, "measure.adb", path)
    cfg.device_tools = {k: cfg.resolve(expect(v, str, k, "measure.adb", path)) for k, v in adb.items()}
    iphone = expect(me.get("iphone", {}), dict, "iphone", "measure", path)
    check_keys(iphone, {"app"}, "measure.iphone", path)
    if "app" in iphone:  # the ios-demo folder whose latency test runs on the phone
        cfg.device_tools["ios_app"] = cfg.resolve(expect(iphone["app"], str, "app", "measure.iphone", path))
    if "qai_hub" in me:
        cfg.device_tools["qai_hub"] = _read_cloud(expect(me["qai_hub"], dict, "qai_hub", "measure", path), path)
    cfg.threads = _positive_int(me, "threads", 1, "measure", path)
    cfg.warmup = _positive_int(me, "warmup", 20, "measure", path)
    cfg.runs = _positive_int(me, "runs", 200, "measure", path)
    if cfg.runs < 20:
        raise BadInput(f"'runs' in [measure] must be >= 20 for a p95 to mean anything, got {cfg.runs}", path=path)


def _read_target(t, where: str, path: Path) -> TargetConfig:
    check_keys(expect(t, dict, "targets", "top level", path),
               {"name", "precisions", "calibration_method", "options", "device", "runtime_version", "recipe",
                "auto_min_quantized_fraction", "auto_max_evaluations", "auto_groups", "auto_sensitivity_samples"},
               where, path)
    if "name" not in t:
        raise BadInput(f"[{where}] needs 'name'", path=path)
    name = expect(t["name"], str, "name", where, path)
    # absent: the target's float baseline (fp32; Core ML's is fp16), filled in by plan_targets
    precisions = expect(t.get("precisions", []), list, "precisions", where, path)
    if "precisions" in t and not precisions:
        raise BadInput(f"[{where}] lists no precision: name one (e.g. \"fp32\", \"int8\") or leave 'precisions' out "
                       "for the target's float baseline", path=path)
    options = expect(t.get("options", {}), dict, "options", where, path)
    recipe_precision: str | None = None
    recipe_options: dict = {}
    if "recipe" in t:  # a mixed-precision search's choice, rebuilt for the precision it was searched at
        recipe = (path.parent / expect(t["recipe"], str, "recipe", where, path)).resolve()
        recipe_precision, recipe_options = read_recipe(recipe, name)
        precisions = precisions or [recipe_precision]  # none listed: the precision the recipe was searched at
        if recipe_precision not in precisions:
            raise BadInput(f"[{where}] has a recipe for {recipe_precision}, which it does not build "
                           f"(precisions: {', '.join(map(str, precisions))})", path=path)
    floor = expect(t.get("auto_min_quantized_fraction", 0.5), (int, float), "auto_min_quantized_fraction", where, path)
    if not 0 <= floor <= 1:
        raise BadInput(f"'auto_min_quantized_fraction' in [{where}] must be between 0 and 1, got {floor}", path=path)
    return TargetConfig(
        name=name, precisions=[str(p) for p in precisions],
        calibration_method=expect(t.get("calibration_method", "minmax"), str, "calibration_method", where, path),
        options=options, device=expect(t["device"], str, "device", where, path) if "device" in t else None,
        runtime_version=expect(t["runtime_version"], str, "runtime_version", where, path)
        if "runtime_version" in t else None,
        auto_min_quantized_fraction=float(floor), auto_max_evaluations=_positive_int(t, "auto_max_evaluations", 32, where, path),
        auto_sensitivity_samples=(_positive_int(t, "auto_sensitivity_samples", 1, where, path)
                                  if "auto_sensitivity_samples" in t else None),
        auto_groups=_groups(t.get("auto_groups", {}), where, path), recipe_precision=recipe_precision,
        recipe_options=recipe_options)


def _groups(table, where: str, path: Path) -> dict[str, str]:
    """auto_groups: layers whose names match a group's regex are left in float together."""
    import re

    groups = expect(table, dict, "auto_groups", where, path)
    for name, pattern in groups.items():
        try:
            re.compile(expect(pattern, str, name, f"{where}.auto_groups", path))
        except re.error as exc:
            raise BadInput(f"auto_groups.{name} in [{where}] is not a regular expression ({exc})", path=path) from None
    return dict(groups)


def read_recipe(path: Path, target: str) -> tuple[str, dict]:
    """The precision a recipe file (written by an -auto precision's search) is for, and the options it
    sets, for a [[targets]] entry of `target`."""
    data = read_toml(path)
    check_keys(data, {"target", "precision", "options"}, "recipe", path)
    if data.get("target") != target:
        raise BadInput(f"this recipe is for target {data.get('target')!r}, not {target!r}", path=path)
    precision = expect(data.get("precision"), str, "precision", "recipe", path)
    return precision, dict(expect(data.get("options", {}), dict, "options", "recipe", path))


CLOUD_KEYS = {"device": str, "attributes": list, "os": str, "options": str, "project": str,
              "timeout_s": (int, float), "poll_s": (int, float), "concurrency": int, "samples": int}


def _read_cloud(table: dict, path: Path) -> dict:
    """[measure.qai_hub]: which AI Hub phone, the jobs' options and bounds. The token is never read here."""
    where = "measure.qai_hub"
    if any(k in table for k in ("api_token", "token")):  # the value is never repeated: it is a secret
        raise BadInput(f"[{where}] holds an API token: the config is no place for it, and it is not read from there",
                       path=path, hint="`qai-hub configure --api_token ...`, or $EDGE_DISTILL_QAI_HUB_TOKEN in CI")
    check_keys(table, CLOUD_KEYS, where, path)
    found = {k: expect(v, CLOUD_KEYS[k], k, where, path) for k, v in table.items()}
    if not all(isinstance(a, str) for a in found.get("attributes", [])):
        raise BadInput(f"'attributes' in [{where}] must be strings such as \"chipset:qualcomm-snapdragon-8gen3\"",
                       path=path)
    for key in ("timeout_s", "poll_s", "concurrency", "samples"):
        if key in found and found[key] <= 0:
            raise BadInput(f"'{key}' in [{where}] must be > 0, got {found[key]}", path=path)
    return found


def _positive_int(table: dict, key: str, default: int, where: str, path: Path) -> int:
    value = expect(table.get(key, default), int, key, where, path)
    if value < 1:
        raise BadInput(f"'{key}' in [{where}] must be >= 1, got {value}", path=path)
    return value


def record_fingerprint(config: str | Path, digest: str) -> None:
    """Write `distilled_from = "<digest>"` into the config's [model] table, in place and atomically;
    the config is validated first, so a file this tool would not accept is never rewritten."""
    import re

    from .files import write_atomic

    config = Path(config)
    load_config(config)
    text = config.read_text()
    line = f'distilled_from = "{digest}"'
    if re.search(r"(?m)^distilled_from\s*=.*$", text):
        text = re.sub(r"(?m)^distilled_from\s*=.*$", line, text, count=1)
    elif re.search(r"(?m)^\[model\]\s*$", text):
        text = re.sub(r"(?m)^\[model\]\s*$", "[model]\n" + line, text, count=1)
    else:
        raise BadInput("has no [model] table to record the fingerprint in", path=config)
    write_atomic(config, text)
