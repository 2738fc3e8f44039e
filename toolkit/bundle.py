"""`edge-distill bundle`: put verified artifacts and their metadata into an app.

An app declares where models go and which targets it runs in `edge-distill-app.json`:

    {"platform": "android", "models_dir": "app/src/main/assets/models", "targets": ["tflite", "ort"]}

For every result of the app's targets in a `check` report, the bundle writes the model file(s) and
`<name>.model.json` (schema: schemas/model.schema.json): inputs with layout and normalization,
outputs with labels and decoding (or, for embeddings, how to compare them), the tokenizer of a text
model (its vocab.txt / tokenizer.json copied beside the model), the budgets that held and their provenance, the report's hash,
the teacher, and golden inputs with the outputs this tool measured for them, so the app can check
itself on first run. Only models that passed their budgets are bundled unless `allow_failed`.
Writes are atomic; files the tool did not put there are never touched; nothing escapes the app.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import BadInput
from .files import plain_files, sha256_file, sha256_path, write_atomic

if TYPE_CHECKING:
    from edge_distill.calibration import Dataset

SCHEMA_VERSION = "1"
MANIFEST = ".edge-distill-bundle.json"
APP_FILE = "edge-distill-app.json"
GOLDEN_SAMPLES = 3


@dataclass
class BundleOutcome:
    written: list[str]
    refused: list[str]  # results that failed their budgets: left out, or bundled with allow_failed
    allow_failed: bool = False
    unloadable: list[str] = field(default_factory=list)  # do not load in the app's runtime version

    @property
    def exit_code(self) -> int:
        """2 when an artifact would not load in the app (it would crash it); 1 when a model was left
        out for a broken budget, so CI notices; --allow-failed bundles both, loudly, and exits 0."""
        if self.allow_failed:
            return 0
        return 2 if self.unloadable else 1 if self.refused else 0


def read_app(app: Path) -> dict:
    path = app / APP_FILE
    if not path.is_file():
        raise BadInput(f"not an edge-distill app: no {APP_FILE}", path=app,
                       hint='add {"platform": ..., "models_dir": ..., "targets": [...]} (see android-demo/)')
    try:
        spec = json.loads(path.read_text())
    except ValueError as exc:
        raise BadInput(f"not valid JSON: {exc}", path=path) from exc
    for key in ("platform", "models_dir", "targets"):
        if key not in spec:
            raise BadInput(f"missing '{key}'", path=path)
    # checked before use: a number here was a TypeError, a string of targets matched by substring
    if not isinstance(spec["models_dir"], str):
        raise BadInput(f"'models_dir' must be a folder inside the app, got {spec['models_dir']!r}", path=path)
    if not isinstance(spec["targets"], list) or not all(isinstance(t, str) for t in spec["targets"]):
        raise BadInput(f"'targets' must list target names, e.g. [\"tflite\", \"ort\"], got {spec['targets']!r}",
                       path=path)
    models = (app / spec["models_dir"]).resolve()
    if app.resolve() not in models.parents and models != app.resolve():
        raise BadInput(f"models_dir '{spec['models_dir']}' escapes the app folder", path=path)
    runtimes = spec.get("runtimes", {})
    if not isinstance(runtimes, dict) or not all(isinstance(v, str) for v in runtimes.values()):
        raise BadInput("'runtimes' must map a target to the runtime version the app ships, e.g. "
                       '{"ort": "1.22.0"}', path=path)
    return {**spec, "models_path": models, "runtimes": runtimes}


def bundle(source: Path, app: Path, *, allow_failed: bool = False, progress=print) -> BundleOutcome:
    report_path = source / "report.json"
    if not report_path.is_file():
        raise BadInput("no report.json here: bundle takes the --out folder of `edge-distill check`", path=source)
    report = json.loads(report_path.read_text())
    spec = read_app(app)
    results = [r for r in report["results"] if r["target"] in spec["targets"]]
    if not results:
        raise BadInput(f"the report has no result for the app's targets ({', '.join(spec['targets'])})",
                       path=report_path, hint="run check with one of those targets in [[targets]]")
    never_built = [r for r in results if r.get("failure")]  # no artifact to bundle, even with allow_failed
    results = [r for r in results if not r.get("failure")]
    failed = [r for r in results if not r["passed"]]
    refused = [f"{r['name']} (not built: {r['failure']['reason']})" for r in never_built]
    refused += [f"{r['name']} (broken: {', '.join(_broken(r))})" for r in failed]
    chosen = results if allow_failed else [r for r in results if r["passed"]]
    if not chosen:
        return BundleOutcome([], refused, allow_failed)

    artifacts = {r["name"]: _verified_artifact(source, r, report_path) for r in chosen}  # before any write
    context = _Context(report, report_path)
    unloadable = []
    for result in list(chosen):
        proof = _in_the_apps_runtime(result, artifacts[result["name"]], spec["runtimes"], context, progress)
        if proof is not None and not proof.ok:
            unloadable.append(f"{result['name']}: {proof.error.splitlines()[0][:300]} in {proof.runtime}, the "
                              f"version the app ships")
            if not allow_failed:
                chosen.remove(result)
    if not chosen:
        return BundleOutcome([], refused, allow_failed, unloadable)
    models = spec["models_path"]
    models.mkdir(parents=True, exist_ok=True)
    previous = _manifest(models)
    plan: dict[str, Path | str] = {}  # file name in the app -> source path (or JSON text)
    for result in chosen:
        artifact = artifacts[result["name"]]
        name = _safe_name(result["name"])
        file_name = f"{name}{_suffix(artifact)}"
        plan[file_name] = artifact
        for kind, path in context.tokenizer_files().items():  # text models: the app tokenizes as training did
            plan[f"{name}.{kind}"] = path
        plan[f"{name}.model.json"] = json.dumps(context.model_json(result, file_name, artifact), indent=2) + "\n"
    for content in plan.values():  # every source, before the first write: one link refuses the whole bundle
        if isinstance(content, Path):
            plain_files(content)
    for file_name in plan:
        target = models / file_name
        if target.exists() and file_name not in previous:
            raise BadInput(f"the app already holds '{file_name}', which edge-distill did not write; it will not "
                           "overwrite it", path=target, hint="move it away, or bundle into another app folder")
    for file_name, content in plan.items():
        write_atomic(models / file_name, content)
        progress(f"bundled {models / file_name}")
    write_atomic(models / MANIFEST, json.dumps({"files": sorted(set(previous) | set(plan))}, indent=1) + "\n")
    return BundleOutcome(sorted(plan), refused, allow_failed, unloadable)


def _in_the_apps_runtime(result: dict, artifact: Path, runtimes: dict, context, progress):
    """The proof that the artifact loads, and reproduces its golden outputs, in the runtime version
    the app ships; None where the app names no version or the runtime is the OS's (Core ML)."""
    from edge_distill.targets import get_target

    from .runtimes import prove

    target = get_target(result["target"])
    version, package = runtimes.get(result["target"]), target.capabilities.app_runtime_package
    if not version or not package:
        return None
    runner, data, expected = context.golden_outputs(result, artifact)
    proof = prove(runner, artifact, package, version, {n: data.inputs[n] for n in runner.input_names}, expected,
                  1e-3 if _full_precision(result) else 0.05, progress)
    context.proofs[result["name"]] = proof
    progress(f"{result['name']} in {proof.runtime} (the app's): " + (
        f"loads, golden outputs within {proof.max_abs_diff:.2g}" if proof.ok else "FAILS"))
    return proof


def _verified_artifact(source: Path, result: dict, report_path: Path) -> Path:
    """The artifact a report names, only if it lies inside the check folder and is, byte for byte,
    the file the check verified (the report is untrusted input: it could name any file). Its hash,
    so checked, is the one model.json carries."""

    named = source / str(result.get("artifact", ""))
    artifact = named.resolve()
    if source.resolve() not in artifact.parents:
        raise BadInput(f"the report's artifact '{result.get('artifact')}' is outside the check folder; refused",
                       path=report_path)
    if not artifact.exists():
        raise BadInput(f"the report's artifact '{result['artifact']}' is missing", path=report_path)
    plain_files(named)  # a link to a file inside the folder is refused too: bundle copies what it names
    expected = result.get("sha256")
    if not expected:
        raise BadInput(f"the report carries no sha256 for {result['artifact']} (written by an older edge-distill)",
                       path=report_path, hint="run check again")
    if sha256_path(artifact) != expected:
        raise BadInput(f"{result['artifact']} is not the file the check verified (its sha256 differs from the "
                       "report's); refused", path=artifact, hint="run check again")
    return artifact


def _proof_record(proof) -> dict | None:
    if proof is None:
        return None
    return {"package": proof.package, "version": proof.version, "loads": proof.loaded,
            "golden_max_abs_diff": proof.max_abs_diff, "error": proof.error}


def _full_precision(result: dict) -> bool:
    """fp32 artifacts reproduce the tool's outputs to float rounding; quantized ones within 0.05."""
    from edge_distill.targets import get_target

    return get_target(result["target"]).capabilities.precision(result["precision"]).weight_bits == 32


def _broken(result: dict) -> list[str]:
    return [c["name"].split("/", 1)[-1] for c in result["checks"] if c["passed"] is not True]


def _safe_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    if clean in ("", ".", "..") or clean.startswith("."):
        raise BadInput(f"cannot make a safe file name from {name!r}")
    return clean


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-1:])


def _manifest(models: Path) -> set[str]:
    try:
        return set(json.loads((models / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError):
        return set()


class _Context:
    """What every model.json of one report shares: the config, the data, the golden inputs."""

    def __init__(self, report: dict, report_path: Path):
        from .config import load_config

        self.report, self.report_hash = report, sha256_file(report_path)
        self.cfg = load_config(report["config"]) if report.get("config") else None
        self._golden: Dataset | None = None
        self._outputs: dict = {}
        self.proofs: dict = {}  # result name -> runtimes.Proof in the app's runtime version

    def golden_outputs(self, result: dict, artifact: Path):
        """(runner, golden samples, the artifact's first output on them), computed once per result."""
        if result["name"] not in self._outputs:
            from edge_distill.targets import get_target

            data = self.golden()
            runner = get_target(result["target"]).open_runner(artifact, 1)
            self._outputs[result["name"]] = runner, data, runner.run({n: data.inputs[n] for n in runner.input_names})[0]
        return self._outputs[result["name"]]

    def golden(self):
        if self._golden is None:
            from edge_distill.calibration import InputSpec, load_dataset

            specs = [InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in self.report["student"]["inputs"]]
            data = load_dataset(self._evaluation_data(), specs)
            # One sample of each of the first classes (or the first samples): distinct expected answers.
            index = []
            if data.labels is not None:
                for label in np.unique(data.labels)[:GOLDEN_SAMPLES]:
                    index.append(int(np.flatnonzero(data.labels == label)[0]))
            index = index or list(range(min(GOLDEN_SAMPLES, len(data))))
            self._golden = data.subset(np.array(index))
        return self._golden

    def _evaluation_data(self) -> Path:
        """The data file the report names, read only if it is a plain file (no link followed out of
        where it lies) with the sha256 the check recorded: a crafted report cannot make bundle copy
        samples from an arbitrary file into the app."""
        recorded = self.report["data"]["evaluation"]
        source = Path(recorded["source"])
        if not source.exists():
            raise BadInput("the evaluation data the report names is gone; bundle takes its golden samples from it",
                           path=source)
        plain_files(source)
        if recorded.get("sha256") is None:
            raise BadInput("the report records no sha256 of its evaluation data (written by an older edge-distill)",
                           path=source, hint="run check again with this version")
        if sha256_path(source) != recorded["sha256"]:
            raise BadInput("the evaluation data changed since the check (its sha256 differs from the report's); "
                           "refused", path=source, hint="run check again on this data")
        return source

    def tokenizer_files(self) -> dict[str, Path]:
        """vocab.txt / tokenizer.json of a Hugging Face student folder, by the name they take in the app."""
        if not self.cfg:
            return {}
        folder = Path(self.cfg.resolve(self.cfg.model.student))
        return {name: folder / name for name in ("vocab.txt", "tokenizer.json") if (folder / name).is_file()}

    def _tokenizer(self, name: str) -> dict | None:
        files = self.tokenizer_files()
        if not files:
            return None
        assert self.cfg is not None  # tokenizer files come from a config's student folder
        info: dict[str, Any] = {"files": {kind: f"{name}.{kind}" for kind in files}, "max_length": None}
        config = Path(self.cfg.resolve(self.cfg.model.student)) / "tokenizer_config.json"
        settings = {}
        if config.is_file():
            plain_files(config)  # the report's config names the folder: nothing in it is followed out
            settings = json.loads(config.read_text())
        shapes = [i["shape"] for i in self.report["student"]["inputs"] if i["name"] == "input_ids"]
        data_length = self.golden().inputs["input_ids"].shape[1] if shapes else None
        info.update(kind="wordpiece" if "vocab.txt" in files else "tokenizer.json",
                    lowercase=bool(settings.get("do_lower_case", True)), max_length=data_length,
                    padding="pad to max_length with [PAD]; attention_mask 1 for real tokens, 0 for padding",
                    special_tokens={k: settings.get(k) for k in ("cls_token", "sep_token", "pad_token", "unk_token")
                                    if settings.get(k)})
        return info

    def model_json(self, result: dict, file_name: str, artifact: Path) -> dict:
        m = self.cfg.model if self.cfg else None
        normalization = dict(m.normalization) if m else {}
        labels = list(m.labels) if m else []
        _, data, outputs = self.golden_outputs(result, artifact)
        scale = float(normalization.get("scale", 1.0))  # type: ignore[arg-type]  # one number: load_config says so
        task = m.task if m else "classification"
        golden = _golden_samples(data, outputs, scale, task, labels)
        if task == "embedding":
            dim = int(outputs.shape[-1])
            output = {"name": "output", "meaning": f"sentence embedding ({dim} floats, unit length)", "labels": [],
                      "decoding": "compare by dot product (= cosine similarity); the nearest by dot product is the "
                                  "best match"}
        else:
            output = {"name": "output", "meaning": "logits" if labels else "raw output", "labels": labels,
                      "decoding": "softmax, then argmax: the label at the top index" if labels else "none"}
        layout = result["details"].get("layout", "source")
        passed = [c for c in result["checks"] if c["passed"]]
        latency = result.get("latency")
        return {
            "schema_version": SCHEMA_VERSION,
            "name": result["name"], "target": result["target"], "precision": result["precision"],
            "file": file_name, "sha256": result["sha256"], "size_bytes": result["size_bytes"],
            "task": task,
            "inputs": [{"name": i["name"], "shape": i["shape"], "dtype": i["dtype"],
                        "layout": "NHWC" if layout == "NHWC" else "NCHW" if len(i["shape"]) == 4 else "none",
                        "normalization": {"scale": scale, "mean": normalization.get("mean", 0.0),
                                          "std": normalization.get("std", 1.0),
                                          "formula": "x = (raw * scale - mean) / std"
                                          if not i["dtype"].startswith("int") else "none: token ids as they are"}}
                       for i in self.report["student"]["inputs"]],
            "outputs": [output],
            **({"tokenizer": tok} if (tok := self._tokenizer(file_name.rsplit(".", 1)[0])) else {}),
            "budgets": {"passed": result["passed"],
                        "held": [{"name": c["name"], "limit": c["limit"], "value": c["value"],
                                  "comparison": c["comparison"], "provenance": c.get("provenance")} for c in passed],
                        "broken": _broken(result)},
            "provenance": {"evaluation": result.get("evaluation", {}),
                           "latency": latency["provenance"] if latency else None,
                           "report_sha256": self.report_hash, "tool_version": self.report["tool_version"],
                           "app_runtime": _proof_record(self.proofs.get(result["name"]))},
            "teacher": {"sha256": (self.report.get("teacher") or {}).get("fingerprint"),
                        "distilled_from": m.distilled_from if m else None},
            "golden": {"tolerance": 1e-3 if _full_precision(result) else 0.05, "samples": golden},
        }


def _golden_samples(data, outputs, scale: float, task: str, labels: list[str]) -> list[dict]:
    """Inputs as the app gets them (raw values) with the outputs this tool measured for them."""
    golden = []
    for i in range(len(data)):
        sample: dict[str, Any] = {"inputs": {}, "expected_output": [round(float(v), 5) for v in outputs[i].ravel()]}
        if task == "classification":
            sample["expected_top1"] = int(outputs[i].argmax())
        for name, array in data.inputs.items():
            if np.issubdtype(array.dtype, np.integer):  # token ids and masks stay integers
                sample["inputs"][name] = [int(v) for v in array[i].ravel()]
                continue
            raw = array[i] / scale  # back to the app's raw values (pixels 0..255 for the example)
            sample["inputs"][name] = [round(float(v), 4) for v in raw.ravel()]
        if labels and task == "classification":  # an embedding has no top class to name (was a KeyError)
            sample["expected_label"] = labels[sample["expected_top1"]]
        golden.append(sample)
    return golden
