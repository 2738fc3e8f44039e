"""edge-distill.toml parsed and validated (toolkit/config.py), on small hand-written files (no model, no CLI):
every default, every value kept, and each refusal's exact message naming the key, the table and the file.
Fast: the mutation run of toolkit/config.py runs this file once per mutant."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_distill.calibration import InputSpec
from edge_distill.config import load_config, output_kinds, read_recipe, record_fingerprint
from edge_distill.errors import BadInput

MODEL = '[model]\nstudent = "pkg.models:student"\n'


def _write(tmp_path: Path, text: str, name: str = "edge-distill.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str):
    return load_config(_write(tmp_path, text))


def _refusal(tmp_path: Path, text: str) -> str:
    """The message of the BadInput a config is refused with, its file's path taken off the front."""
    path = _write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_config(path)
    assert caught.value.path == str(path.resolve())
    message = str(caught.value)
    prefix = f"{path.resolve()}: "
    assert message.startswith(prefix), message
    return message[len(prefix):]


# ---- defaults and kept values --------------------------------------------------------------------------

def test_a_minimal_config_takes_every_default(tmp_path):
    cfg = _load(tmp_path, MODEL)
    assert cfg.path == (tmp_path / "edge-distill.toml").resolve()
    assert cfg.root == tmp_path.resolve()
    m = cfg.model
    assert (m.student, m.weights, m.teacher, m.teacher_weights) == ("pkg.models:student", None, None, None)
    assert (m.task, m.labels, m.inputs, m.normalization) == ("classification", [], [], {})
    assert (m.distilled_from, m.stale_teacher, m.trust_pickle) == (None, "warn", False)
    assert (m.outputs, m.batch_axes, m.state) == ({}, {}, {})
    assert (cfg.calibration, cfg.evaluation, cfg.calibration_samples, cfg.seed) == (None, None, 256, 0)
    assert (cfg.opset, cfg.tolerance) == (18, 1e-4)
    assert (cfg.threads, cfg.warmup, cfg.runs, cfg.device) == (1, 20, 200, "host")
    assert (cfg.sequence_lengths, cfg.device_tools, cfg.targets) == ([], {}, [])
    assert (cfg.cost, cfg.off_the_shelf, cfg.off_the_shelf_weights, cfg.history) == (None, None, None, None)
    assert cfg.slices_discover is None
    assert cfg.budget.limits == {} and cfg.budget.slices == {}


def test_every_value_is_kept(tmp_path):
    cfg = _load(tmp_path, """history = "results.db"
[model]
student = "student.onnx"
weights = "w.safetensors"
teacher = "pkg:teacher"
teacher_weights = "t.safetensors"
task = "embedding"
labels = [1, "b"]
distilled_from = "abc"
stale_teacher = "fail"
trust_pickle = true
batch_axes = { state = 1, sr = "none", x = 0 }
state = { state_out = "state_in" }
[model.normalization]
scale = 0.5
mean = [0.1, 0.2]
[[model.inputs]]
name = "image"
shape = ["batch", 1, 28, 28]
[[model.inputs]]
name = "ids"
shape = [1, 7]
dtype = "int64"
[data]
calibration = "data/cal.npz"
evaluation = "eval.npz"
calibration_samples = 1
seed = 7
[export]
opset = 19
tolerance = 2
[measure]
threads = 4
warmup = 1
runs = 20
device = "adb:pixel"
sequence_lengths = [128, 32, 32, 1]
[measure.adb]
benchmark_model = "tools/benchmark_model"
[measure.iphone]
app = "ios-demo"
[ladder]
off_the_shelf = "pkg:big"
off_the_shelf_weights = "big.safetensors"
[budgets]
max_size_mb = 5
""")
    m = cfg.model
    assert (m.student, m.weights, m.teacher, m.teacher_weights) == ("student.onnx", "w.safetensors", "pkg:teacher",
                                                                  "t.safetensors")
    assert (m.task, m.labels, m.distilled_from, m.stale_teacher, m.trust_pickle) == (
        "embedding", ["1", "b"], "abc", "fail", True)
    assert m.batch_axes == {"state": 1, "sr": None, "x": 0}
    assert m.state == {"state_out": "state_in"}
    assert m.normalization == {"scale": 0.5, "mean": [0.1, 0.2]}
    assert m.inputs == [InputSpec("image", ("batch", 1, 28, 28), "float32"), InputSpec("ids", (1, 7), "int64")]
    root = tmp_path.resolve()
    assert (cfg.calibration, cfg.evaluation) == (root / "data" / "cal.npz", root / "eval.npz")
    assert (cfg.calibration_samples, cfg.seed, cfg.opset) == (1, 7, 19)
    assert cfg.tolerance == 2.0 and isinstance(cfg.tolerance, float)
    assert (cfg.threads, cfg.warmup, cfg.runs, cfg.device) == (4, 1, 20, "adb:pixel")
    assert cfg.sequence_lengths == [1, 32, 128]  # sorted, each once
    assert cfg.device_tools == {"benchmark_model": str(root / "tools" / "benchmark_model"),
                                "ios_app": str(root / "ios-demo")}
    assert (cfg.off_the_shelf, cfg.off_the_shelf_weights, cfg.history) == ("pkg:big", "big.safetensors", "results.db")
    assert cfg.budget.limits == {"max_size_mb": 5}


def test_resolve_keeps_factories_and_resolves_paths_against_the_configs_folder(tmp_path, monkeypatch):
    cfg = _load(tmp_path, MODEL)
    root = tmp_path.resolve()
    assert cfg.resolve(None) is None
    assert cfg.resolve("pkg.models:student") == "pkg.models:student"
    for path in ("model.pt2", "a:model.onnx", "w.pt", "w.pth", "dir/x:y"):  # files, not module:factory
        assert cfg.resolve(path) == str(root / path)
    assert cfg.resolve("sub/../m.onnx") == str(root / "m.onnx")
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(tmp_path / "cache"))
    assert cfg.resolve("{cache}/fmnist/student.onnx") == str(root / "cache" / "fmnist" / "student.onnx")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cfg.resolve("~/m.onnx") == str(root / "home" / "m.onnx")


def test_outputs_by_kind_name_alias_and_table(tmp_path):
    cfg = _load(tmp_path, MODEL + """[model.outputs]
logits = "classification"
box = "regression"
[model.outputs.det]
kind = "detection"
layout = "end2end"
conf = 1
max_det = 10
[model.outputs.text]
kind = "sequence"
decode = "none"
blank = 3
""")
    assert cfg.model.outputs == {"logits": {"kind": "classification"}, "box": {"kind": "dense"},
                                 "det": {"kind": "detection", "layout": "end2end", "conf": 1, "max_det": 10},
                                 "text": {"kind": "sequence", "decode": "none", "blank": 3}}
    assert list(cfg.model.outputs) == ["logits", "box", "det", "text"]  # the model's output order


def test_targets_with_their_options_and_defaults(tmp_path):
    cfg = _load(tmp_path, MODEL + """[[targets]]
name = "ort"
[[targets]]
name = "tflite"
precisions = ["fp32", 8]
calibration_method = "entropy"
options = { int4_gather = false }
device = "adb:pixel"
runtime_version = "1.22.0"
auto_min_quantized_fraction = 1
auto_max_evaluations = 3
auto_sensitivity_samples = 1
auto_groups = { attention = "attention", ffn = "layer\\\\.\\\\d+/dense" }
""")
    first, second = cfg.targets
    # no precisions listed: [] here, the target's float baseline once plan_targets knows the target
    assert (first.name, first.precisions, first.calibration_method, first.options) == ("ort", [], "minmax", {})
    assert (first.device, first.runtime_version, first.auto_min_quantized_fraction) == (None, None, 0.5)
    assert (first.auto_max_evaluations, first.auto_sensitivity_samples, first.auto_groups) == (32, None, {})
    assert (first.recipe_precision, first.recipe_options) == (None, {})
    assert (second.name, second.precisions, second.calibration_method) == ("tflite", ["fp32", "8"], "entropy")
    assert (second.options, second.device, second.runtime_version) == ({"int4_gather": False}, "adb:pixel", "1.22.0")
    assert second.auto_min_quantized_fraction == 1.0 and isinstance(second.auto_min_quantized_fraction, float)
    assert (second.auto_max_evaluations, second.auto_sensitivity_samples) == (3, 1)
    assert second.auto_groups == {"attention": "attention", "ffn": "layer\\.\\d+/dense"}


def test_a_recipe_sets_the_options_of_the_precision_it_was_searched_at_only(tmp_path):
    (tmp_path / "out").mkdir()
    _write(tmp_path, 'target = "ort"\nprecision = "int8"\noptions = { keep_float = ["a"], block_size = 32 }\n',
           "out/recipe.toml")
    cfg = _load(tmp_path, MODEL + """[[targets]]
name = "ort"
precisions = ["fp32", "int8"]
recipe = "out/recipe.toml"
options = { block_size = 64 }
""")
    t = cfg.targets[0]
    assert (t.recipe_precision, t.recipe_options) == ("int8", {"keep_float": ["a"], "block_size": 32})
    assert t.options_for("int8") == {"keep_float": ["a"], "block_size": 64}  # the entry's own options win
    assert t.options_for("fp32") == {"block_size": 64}
    assert t.options_for(None) == {"block_size": 64}


def test_read_recipe(tmp_path):
    path = _write(tmp_path, 'target = "tflite"\nprecision = "int4"\n', "r.toml")
    assert read_recipe(path, "tflite") == ("int4", {})
    with pytest.raises(BadInput) as caught:
        read_recipe(path, "ort")
    assert str(caught.value) == f"{path}: this recipe is for target 'tflite', not 'ort'"
    with pytest.raises(BadInput) as caught:  # the other way round too (a name that sorts after it)
        read_recipe(path, "xnnpack")
    assert str(caught.value) == f"{path}: this recipe is for target 'tflite', not 'xnnpack'"
    bad = _write(tmp_path, 'target = "ort"\nprecision = 4\n', "bad.toml")
    with pytest.raises(BadInput) as caught:
        read_recipe(bad, "ort")
    assert str(caught.value) == f"{bad}: 'precision' in [recipe] must be str, got 4"
    extra = _write(tmp_path, 'target = "ort"\nprecision = "int8"\nprecisions = 1\n', "extra.toml")
    with pytest.raises(BadInput, match=r"unknown key 'precisions' in \[recipe\]"):
        read_recipe(extra, "ort")


def test_slices_discover_defaults_and_overrides(tmp_path):
    defaults = {"margin": 0.03, "alpha": 0.01, "min_size": 20, "sources": ["metadata", "clusters", "confidence",
                                                                           "labels"], "fail_on_found": False}
    assert _load(tmp_path, MODEL + "[slices.discover]\n").slices_discover == defaults
    cfg = _load(tmp_path, MODEL + "[slices.discover]\nmargin = 1\nmin_size = 5\nfail_on_found = true\n"
                                  'sources = ["labels"]\n')
    assert cfg.slices_discover == {**defaults, "margin": 1, "min_size": 5, "fail_on_found": True,
                                   "sources": ["labels"]}
    assert _load(tmp_path, MODEL + "[slices]\n").slices_discover is None


def test_a_cost_table_is_parsed(tmp_path):
    cfg = _load(tmp_path, MODEL + """[cost]
teacher_cost_per_1k = 2
label_corpus_size = 1000
training_hours = 3
training_price_per_hour = 4
evaluation_cost = 5
upkeep_per_month = 6
""")
    assert cfg.cost.fixed == 2 * 1000 / 1000 + 3 * 4 + 5


def test_a_cloud_device_table(tmp_path):
    cfg = _load(tmp_path, MODEL + """[measure.qai_hub]
device = "Samsung Galaxy S24"
attributes = ["chipset:x"]
timeout_s = 0.5
poll_s = 1
concurrency = 1
samples = 1
""")
    assert cfg.device_tools == {"qai_hub": {"device": "Samsung Galaxy S24", "attributes": ["chipset:x"],
                                            "timeout_s": 0.5, "poll_s": 1, "concurrency": 1, "samples": 1}}


# ---- refusals: the key, the table, the allowed values --------------------------------------------------

REFUSED = [
    ("[modle]\n", "unknown key 'modle' in [top level]\n  hint: did you mean 'model'?"),
    ("[data]\nseed = 1\n", "missing [model] table"),
    ("history = 1\n" + MODEL, "'history' in [top level] must be str or NoneType, got 1"),
    ("data = 3\n" + MODEL, "'data' in [top level] must be dict, got 3"),
    ("targets = 3\n" + MODEL, "'targets' in [top level] must be list, got 3"),
    ("[model]\nweights = \"w\"\n", "[model] needs 'student' (module:factory, .pt2 or .onnx)"),
    ("[model]\nstudent = 3\n", "'student' in [model] must be str, got 3"),
    (MODEL + "task = \"detect\"\n", "'task' in [model] must be one of ('classification', 'embedding'), got 'detect'"),
    (MODEL + "stale_teacher = \"error\"\n", "'stale_teacher' in [model] must be \"warn\" or \"fail\", got 'error'"),
    (MODEL + "trust_pickle = 1\n", "'trust_pickle' in [model] must be bool, got 1"),
    (MODEL + "labels = \"a\"\n", "'labels' in [model] must be list, got 'a'"),
    (MODEL + "studnet = 1\n", "unknown key 'studnet' in [model]\n  hint: did you mean 'student'?"),
    (MODEL + "batch_axes = { x = -1 }\n", "[model] batch_axes: 'x' must be an axis (0, 1, ...) or \"none\", got -1"),
    (MODEL + "batch_axes = { x = true }\n",
     "[model] batch_axes: 'x' must be an axis (0, 1, ...) or \"none\", got True"),
    (MODEL + "batch_axes = { x = \"all\" }\n",
     "[model] batch_axes: 'x' must be an axis (0, 1, ...) or \"none\", got 'all'"),
    (MODEL + "batch_axes = { x = 1.0 }\n",
     "[model] batch_axes: 'x' must be an axis (0, 1, ...) or \"none\", got 1.0"),
    (MODEL + "state = { s = 1 }\n", "'s' in [model.state] must be str, got 1"),
    (MODEL + "outputs = { o = \"boxes\" }\n", "[model.outputs.o] kind must be one of classification, sequence, dense, "
                                              "segmentation, detection, embedding, indices, state, got 'boxes'"),
    (MODEL + "outputs = { o = 3 }\n", "'o' in [model.outputs] must be dict, got 3"),
    (MODEL + "[model.outputs.o]\nblank = 0\n", "[model.outputs.o] kind must be one of classification, sequence, "
                                               "dense, segmentation, detection, embedding, indices, state, got None"),
    (MODEL + "[model.outputs.o]\nkind = \"sequence\"\nblnk = 0\n",
     "unknown key 'blnk' in [model.outputs.o]\n  hint: did you mean 'blank'?"),
    (MODEL + "[model.outputs.o]\nkind = \"sequence\"\nblank = true\n", "'blank' in [model.outputs.o] must be int, got True"),
    (MODEL + "[model.outputs.o]\nkind = \"sequence\"\nblank = 1.5\n", "'blank' in [model.outputs.o] must be int, got 1.5"),
    (MODEL + "[model.outputs.o]\nkind = \"detection\"\nconf = \"high\"\n",
     "'conf' in [model.outputs.o] must be float, got 'high'"),
    (MODEL + "[model.outputs.o]\nkind = \"detection\"\nconf = false\n",
     "'conf' in [model.outputs.o] must be float, got False"),
    (MODEL + "[model.outputs.o]\nkind = \"sequence\"\ndecode = \"greedy\"\n",
     "'decode' in [model.outputs.o] must be one of ctc, none, got 'greedy'"),
    (MODEL + "[model.normalization]\nscale = [1, 2]\n", "'scale' in [model.normalization] must be int or float, "
                                                       "got [1, 2]"),
    (MODEL + "normalization = 2\n", "'normalization' in [model] must be dict, got 2"),
    (MODEL + "inputs = {}\n", "'inputs' in [model] must be list, got {}"),
    (MODEL + "[[model.inputs]]\nname = \"x\"\n", "[model.inputs[0]] needs 'name' and 'shape'"),
    (MODEL + "[[model.inputs]]\nshape = [1]\n", "[model.inputs[0]] needs 'name' and 'shape'"),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = [1]\nshap = 1\n",
     "unknown key 'shap' in [model.inputs[0]]\n  hint: did you mean 'shape'?"),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = 1\n", "'shape' in [model.inputs[0]] must be list, got 1"),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = [1]\n[[model.inputs]]\nname = \"y\"\nshape = [0]\n",
     "'shape' in [model.inputs[1]] holds 0: use positive ints or names like \"batch\""),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = [true]\n",
     "'shape' in [model.inputs[0]] holds True: use positive ints or names like \"batch\""),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = [2.0]\n",
     "'shape' in [model.inputs[0]] holds 2.0: use positive ints or names like \"batch\""),
    (MODEL + "[[model.inputs]]\nname = \"x\"\nshape = [1]\ndtype = \"float64\"\n",
     "'dtype' in [model.inputs[0]] must be one of ('float32', 'float16', 'int64', 'int32', 'uint8', 'bool'), "
     "got 'float64'"),
    (MODEL + "[data]\nevaluaton = \"e.npz\"\n", "unknown key 'evaluaton' in [data]\n  hint: did you mean 'evaluation'?"),
    (MODEL + "[data]\ncalibration_samples = 0\n", "'calibration_samples' in [data] must be >= 1, got 0"),
    (MODEL + "[data]\ncalibration_samples = 1.5\n", "'calibration_samples' in [data] must be int, got 1.5"),
    (MODEL + "[data]\nseed = -1\n", "'seed' in [data] must be a non-negative int, got -1"),
    (MODEL + "[data]\nseed = true\n", "'seed' in [data] must be int, got True"),
    (MODEL + "[export]\nopset = 17\n", "'opset' in [export] must be >= 18 (the dynamo exporter's floor), got 17"),
    (MODEL + "[export]\nopst = 18\n", "unknown key 'opst' in [export]\n  hint: did you mean 'opset'?"),
    (MODEL + "[export]\ntolerance = 0\n", "'tolerance' in [export] must be a positive number (max |ONNX - source|), "
                                          "got 0"),
    (MODEL + "[export]\ntolerance = -1e-3\n", "'tolerance' in [export] must be a positive number "
                                              "(max |ONNX - source|), got -0.001"),
    (MODEL + "[export]\ntolerance = nan\n", "'tolerance' in [export] must be a positive number "
                                            "(max |ONNX - source|), got nan"),
    (MODEL + "[export]\ntolerance = inf\n", "'tolerance' in [export] must be a positive number "
                                            "(max |ONNX - source|), got inf"),
    (MODEL + "[export]\ntolerance = \"1e-4\"\n", "'tolerance' in [export] must be int or float, got '1e-4'"),
    (MODEL + "[measure]\nruns = 19\n", "'runs' in [measure] must be >= 20 for a p95 to mean anything, got 19"),
    (MODEL + "[measure]\nthreads = 0\n", "'threads' in [measure] must be >= 1, got 0"),
    (MODEL + "[measure]\nwarmup = 0\n", "'warmup' in [measure] must be >= 1, got 0"),
    (MODEL + "[measure]\nrun = 20\n", "unknown key 'run' in [measure]\n  hint: did you mean 'runs'?"),
    (MODEL + "[measure]\ndevice = 1\n", "'device' in [measure] must be str, got 1"),
    (MODEL + "[measure]\nsequence_lengths = [8, 0]\n",
     "'sequence_lengths' in [measure] must be positive ints (tokens), got [8, 0]"),
    (MODEL + "[measure]\nsequence_lengths = [true]\n",
     "'sequence_lengths' in [measure] must be positive ints (tokens), got [True]"),
    (MODEL + "[measure]\nsequence_lengths = [8.0]\n",
     "'sequence_lengths' in [measure] must be positive ints (tokens), got [8.0]"),
    (MODEL + "[measure.adb]\nbenchmark = \"b\"\n", "unknown key 'benchmark' in [measure.adb]\n  hint: did you mean "
                                                    "'benchmark_model'?"),
    (MODEL + "[measure.adb]\nbenchmark_model = 1\n", "'benchmark_model' in [measure.adb] must be str, got 1"),
    (MODEL + "[measure.iphone]\napp = 1\n", "'app' in [measure.iphone] must be str, got 1"),
    (MODEL + "[measure.iphone]\nbundle = \"x\"\n", "unknown key 'bundle' in [measure.iphone]\n  hint: allowed keys: app"),
    (MODEL + "[measure]\nqai_hub = 1\n", "'qai_hub' in [measure] must be dict, got 1"),
    (MODEL + "[measure.qai_hub]\ntoken = \"s3cr3t\"\n", "[measure.qai_hub] holds an API token: the config is no place "
     "for it, and it is not read from there\n  hint: `qai-hub configure --api_token ...`, or "
     "$EDGE_DISTILL_QAI_HUB_TOKEN in CI"),
    (MODEL + "[measure.qai_hub]\napi_token = \"s3cr3t\"\n", "[measure.qai_hub] holds an API token: the config is no "
     "place for it, and it is not read from there\n  hint: `qai-hub configure --api_token ...`, or "
     "$EDGE_DISTILL_QAI_HUB_TOKEN in CI"),
    (MODEL + "[measure.qai_hub]\ndevices = \"x\"\n",
     "unknown key 'devices' in [measure.qai_hub]\n  hint: did you mean 'device'?"),
    (MODEL + "[measure.qai_hub]\nconcurrency = 2.5\n", "'concurrency' in [measure.qai_hub] must be int, got 2.5"),
    (MODEL + "[measure.qai_hub]\nattributes = [\"a\", 1]\n", "'attributes' in [measure.qai_hub] must be strings such "
                                                            "as \"chipset:qualcomm-snapdragon-8gen3\""),
    (MODEL + "[measure.qai_hub]\ntimeout_s = 0\n", "'timeout_s' in [measure.qai_hub] must be > 0, got 0"),
    (MODEL + "[measure.qai_hub]\npoll_s = -1\n", "'poll_s' in [measure.qai_hub] must be > 0, got -1"),
    (MODEL + "[measure.qai_hub]\nconcurrency = 0\n", "'concurrency' in [measure.qai_hub] must be > 0, got 0"),
    (MODEL + "[measure.qai_hub]\nsamples = 0\n", "'samples' in [measure.qai_hub] must be > 0, got 0"),
    (MODEL + "[[targets]]\nname = \"ort\"\n[[targets]]\nprecisions = [\"fp32\"]\n", "[targets[1]] needs 'name'"),
    (MODEL + "[[targets]]\nname = 1\n", "'name' in [targets[0]] must be str, got 1"),
    ("targets = [1]\n" + MODEL, "'targets' in [top level] must be dict, got 1"),
    (MODEL + "[[targets]]\nname = \"ort\"\nprecision = [\"int8\"]\n",
     "unknown key 'precision' in [targets[0]]\n  hint: did you mean 'precisions'?"),
    (MODEL + "[[targets]]\nname = \"ort\"\nprecisions = \"int8\"\n", "'precisions' in [targets[0]] must be list, "
                                                                    "got 'int8'"),
    (MODEL + "[[targets]]\nname = \"ort\"\noptions = 1\n", "'options' in [targets[0]] must be dict, got 1"),
    (MODEL + "[[targets]]\nname = \"ort\"\ncalibration_method = 1\n",
     "'calibration_method' in [targets[0]] must be str, got 1"),
    (MODEL + "[[targets]]\nname = \"ort\"\ndevice = 1\n", "'device' in [targets[0]] must be str, got 1"),
    (MODEL + "[[targets]]\nname = \"ort\"\nruntime_version = 1.22\n",
     "'runtime_version' in [targets[0]] must be str, got 1.22"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_min_quantized_fraction = 1.5\n",
     "'auto_min_quantized_fraction' in [targets[0]] must be between 0 and 1, got 1.5"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_min_quantized_fraction = -0.1\n",
     "'auto_min_quantized_fraction' in [targets[0]] must be between 0 and 1, got -0.1"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_max_evaluations = 0\n",
     "'auto_max_evaluations' in [targets[0]] must be >= 1, got 0"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_sensitivity_samples = 0\n",
     "'auto_sensitivity_samples' in [targets[0]] must be >= 1, got 0"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_groups = { a = \"(\" }\n",
     "auto_groups.a in [targets[0]] is not a regular expression (missing ), unterminated subpattern at position 0)"),
    (MODEL + "[[targets]]\nname = \"ort\"\nauto_groups = { a = 1 }\n", "'a' in [targets[0].auto_groups] must be str, "
                                                                       "got 1"),
    (MODEL + "[ladder]\noff_the_shelve = \"x\"\n",
     "unknown key 'off_the_shelve' in [ladder]\n  hint: did you mean 'off_the_shelf'?"),
    (MODEL + "[slices]\ndiscovr = {}\n", "unknown key 'discovr' in [slices]\n  hint: did you mean 'discover'?"),
    (MODEL + "[slices]\ndiscover = 1\n", "'discover' in [slices] must be dict, got 1"),
    (MODEL + "[slices.discover]\nmargins = 1\n",
     "unknown key 'margins' in [slices.discover]\n  hint: did you mean 'margin'?"),
    (MODEL + "[slices.discover]\nmargin = \"big\"\n", "[slices.discover] margin must be like 0.03, got 'big'"),
    (MODEL + "[slices.discover]\nalpha = true\n", "[slices.discover] alpha must be like 0.01, got True"),
    (MODEL + "[slices.discover]\nmin_size = 2.5\n", "[slices.discover] min_size must be like 20, got 2.5"),
    (MODEL + "[slices.discover]\nmin_size = true\n", "[slices.discover] min_size must be like 20, got True"),
    (MODEL + "[slices.discover]\nfail_on_found = 1\n", "[slices.discover] fail_on_found must be like False, got 1"),
    (MODEL + "[slices.discover]\nsources = \"labels\"\n",
     "[slices.discover] sources must be like ['metadata', 'clusters', 'confidence', 'labels'], got 'labels'"),
    (MODEL + "weights = true\n", "'weights' in [model] must be str, got True"),
    (MODEL + "teacher = 3\n", "'teacher' in [model] must be str, got 3"),
    (MODEL + "teacher_weights = 3\n", "'teacher_weights' in [model] must be str, got 3"),
    (MODEL + "distilled_from = 1\n", "'distilled_from' in [model] must be str, got 1"),
    (MODEL + "[[model.inputs]]\nname = true\nshape = [1]\n", "'name' in [model.inputs[0]] must be str, got True"),
    (MODEL + "[data]\ncalibration = 5\n", "'calibration' in [data] must be str, got 5"),
    (MODEL + "[data]\nevaluation = []\n", "'evaluation' in [data] must be str, got []"),
    (MODEL + "[ladder]\noff_the_shelf = 1\n", "'off_the_shelf' in [ladder] must be str, got 1"),
    (MODEL + "[ladder]\noff_the_shelf_weights = 1\n", "'off_the_shelf_weights' in [ladder] must be str, got 1"),
    (MODEL + "[model.normalization]\nmea = 1\n",
     "unknown key 'mea' in [model.normalization]\n  hint: did you mean 'mean'?"),
    (MODEL + "[model.normalization]\nmean = \"a\"\n",
     "'mean' in [model.normalization] must be a number or a list of numbers, got 'a'"),
    (MODEL + "[model.normalization]\nstd = [1, \"x\"]\n",
     "'std' in [model.normalization] must be a number or a list of numbers, got [1, 'x']"),
    (MODEL + "[model.normalization]\nstd = true\n",
     "'std' in [model.normalization] must be a number or a list of numbers, got True"),
    (MODEL + "[[targets]]\nname = \"ort\"\nprecisions = []\n",
     "[targets[0]] lists no precision: name one (e.g. \"fp32\", \"int8\") or leave 'precisions' out for the "
     "target's float baseline"),
    (MODEL + "[budgets]\nmax_size = 1\n", "unknown key 'max_size' in [budgets]\n  hint: did you mean 'max_size_mb'?"),
    (MODEL + "[cost]\ntraining_hours = 1\n", "[cost] is missing teacher_cost_per_1k, label_corpus_size, "
     "training_price_per_hour, evaluation_cost, upkeep_per_month (a missing price is not a zero): teacher_cost_per_1k: "
     "price of 1,000 teacher inferences, to label the distillation corpus; label_corpus_size: inputs labelled by the "
     "teacher for distillation; training_price_per_hour: price of one training hour; evaluation_cost: one-off cost of "
     "evaluating the student; upkeep_per_month: monthly cost of keeping the student current (re-distilling when the "
     "teacher moves)"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED, ids=[m.split("\n")[0][:60] for _, m in REFUSED])
def test_a_bad_config_is_refused_with_the_key_the_table_and_the_file(tmp_path, text, message):
    assert _refusal(tmp_path, text) == message


def test_a_recipe_for_a_precision_the_target_does_not_build_is_refused(tmp_path):
    _write(tmp_path, 'target = "ort"\nprecision = "int4"\n', "recipe.toml")
    assert _refusal(tmp_path, MODEL + "[[targets]]\nname = \"ort\"\nprecisions = [\"fp32\", \"int8\"]\n"
                                      "recipe = \"recipe.toml\"\n") == (
        "[targets[0]] has a recipe for int4, which it does not build (precisions: fp32, int8)")


def test_a_recipe_without_precisions_builds_the_precision_it_was_searched_at(tmp_path):
    _write(tmp_path, 'target = "ort"\nprecision = "int8"\n', "recipe.toml")
    cfg = _load(tmp_path, MODEL + "[[targets]]\nname = \"ort\"\nrecipe = \"recipe.toml\"\n")
    assert (cfg.targets[0].precisions, cfg.targets[0].recipe_precision) == (["int8"], "int8")


def test_normalization_keeps_scale_mean_and_std_per_channel(tmp_path):
    cfg = _load(tmp_path, MODEL + "[model.normalization]\nscale = 0.5\nmean = [0.485, 1]\nstd = 0.25\n")
    assert cfg.model.normalization == {"scale": 0.5, "mean": [0.485, 1], "std": 0.25}


def test_a_missing_config_is_refused(tmp_path):
    with pytest.raises(BadInput) as caught:
        load_config(tmp_path / "none.toml")
    assert str(caught.value) == f"{tmp_path / 'none.toml'}: file not found"


def test_edges_that_are_accepted(tmp_path):
    cfg = _load(tmp_path, MODEL + """batch_axes = { x = 0 }
[[model.inputs]]
name = "x"
shape = [1]
[data]
seed = 0
calibration_samples = 1
[export]
opset = 18
tolerance = 1e-12
[measure]
runs = 20
threads = 1
warmup = 1
sequence_lengths = [1]
[[targets]]
name = "ort"
auto_min_quantized_fraction = 0
auto_max_evaluations = 1
""")
    assert (cfg.model.batch_axes, cfg.seed, cfg.calibration_samples, cfg.opset) == ({"x": 0}, 0, 1, 18)
    assert (cfg.tolerance, cfg.runs, cfg.threads, cfg.warmup, cfg.sequence_lengths) == (1e-12, 20, 1, 1, [1])
    assert (cfg.targets[0].auto_min_quantized_fraction, cfg.targets[0].auto_max_evaluations) == (0.0, 1)


# ---- verify --kind ---------------------------------------------------------------------------------------

def test_kind_flags_are_typed_and_checked_as_the_config_is():
    assert output_kinds(["det=detection,layout=yolov5,conf=0.5,max_det=10", "out=regression",
                         "seq=sequence,blank=2,decode=none"]) == {
        "det": {"kind": "detection", "layout": "yolov5", "conf": 0.5, "max_det": 10},
        "out": {"kind": "dense"}, "seq": {"kind": "sequence", "blank": 2, "decode": "none"}}
    assert output_kinds([]) == {}


@pytest.mark.parametrize("flag", ["outdetection", "=dense", "out=sequence,blank", "out=detection,conf=0.5,iou"])
def test_a_malformed_kind_flag_is_refused_with_its_form(flag):
    with pytest.raises(BadInput) as caught:
        output_kinds([flag])
    assert str(caught.value) == f"--kind {flag!r}: expected OUTPUT=KIND[,KEY=VALUE...], e.g. out=detection,layout=yolov8"


def test_kind_flag_values_are_read_as_int_float_bool_or_text():
    assert output_kinds(["s=sequence,decode=ctc,blank=0"])["s"]["blank"] == 0
    with pytest.raises(BadInput) as caught:  # "True" reads as a bool, which an int setting refuses
        output_kinds(["s=sequence,blank=True"])
    assert str(caught.value) == "--kind: 'blank' in [model.outputs.s] must be int, got True"
    with pytest.raises(BadInput) as caught:
        output_kinds(["s=sequence,blank=false"])
    assert str(caught.value) == "--kind: 'blank' in [model.outputs.s] must be int, got False"
    with pytest.raises(BadInput) as caught:  # 1.5 reads as a float
        output_kinds(["s=sequence,blank=1.5"])
    assert str(caught.value) == "--kind: 'blank' in [model.outputs.s] must be int, got 1.5"
    with pytest.raises(BadInput) as caught:  # "x" stays text
        output_kinds(["d=detection,conf=x"])
    assert str(caught.value) == "--kind: 'conf' in [model.outputs.d] must be float, got 'x'"


# ---- record_fingerprint ---------------------------------------------------------------------------------

def test_the_fingerprint_replaces_an_earlier_one(tmp_path):
    path = _write(tmp_path, MODEL + 'distilled_from = "old"\nlabels = ["a"]\n')
    record_fingerprint(path, "new")
    assert path.read_text() == MODEL + 'distilled_from = "new"\nlabels = ["a"]\n'
    assert load_config(path).model.distilled_from == "new"


def test_the_fingerprint_goes_under_the_model_table(tmp_path):
    path = _write(tmp_path, 'history = "h.db"\n\n[model]  \nstudent = "a:b"\n[data]\nseed = 1\n')
    record_fingerprint(path, "abc")
    assert path.read_text() == 'history = "h.db"\n\n[model]\ndistilled_from = "abc"\nstudent = "a:b"\n[data]\nseed = 1\n'


def test_the_fingerprint_needs_a_model_table_header_of_its_own(tmp_path):
    text = 'model = { student = "a:b" }\n'
    path = _write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        record_fingerprint(path, "abc")
    assert str(caught.value) == f"{path}: has no [model] table to record the fingerprint in"
    assert path.read_text() == text


def test_a_config_the_tool_would_refuse_is_never_rewritten(tmp_path):
    text = MODEL + 'distilled_from = "old"\ntask = "nope"\n'
    path = _write(tmp_path, text)
    with pytest.raises(BadInput, match="'task' in \\[model\\]"):
        record_fingerprint(path, "new")
    assert path.read_text() == text


def test_configs_built_in_code_take_the_defaults_of_an_empty_file(tmp_path):
    """The library builds Config, ModelConfig and TargetConfig directly: their defaults are the file's."""
    from dataclasses import asdict

    from edge_distill.config import Config, ModelConfig, TargetConfig

    loaded = _load(tmp_path, MODEL + "[[targets]]\nname = \"ort\"\n")
    built = Config(path=loaded.path, model=ModelConfig(student="pkg.models:student"),
                   targets=[TargetConfig(name="ort", precisions=[])])
    assert asdict(built) == asdict(loaded)


def test_a_kind_flag_value_holding_an_equals_sign_is_one_value():
    with pytest.raises(BadInput) as caught:
        output_kinds(["d=detection,layout=yolo=v8"])
    assert str(caught.value) == "--kind: 'layout' in [model.outputs.d] must be one of yolov8, yolov5, end2end, got 'yolo=v8'"


def test_the_fingerprint_rewrites_the_key_and_not_a_later_string_that_looks_like_it(tmp_path):
    text = MODEL + 'distilled_from = "old"\nlabels = ["""\ndistilled_from = "a label"\n"""]\n'
    path = _write(tmp_path, text)
    record_fingerprint(path, "new")
    assert path.read_text() == text.replace('"old"', '"new"')


def test_the_fingerprint_goes_under_the_model_header_and_not_a_later_string_that_looks_like_it(tmp_path):
    text = MODEL + 'labels = ["""\n[model]\n"""]\n'
    path = _write(tmp_path, text)
    record_fingerprint(path, "new")
    assert path.read_text() == text.replace("[model]\n", '[model]\ndistilled_from = "new"\n', 1)
