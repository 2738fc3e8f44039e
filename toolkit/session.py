"""One run of a command, as the CLI runs it: the config, the output folder (written whole or not at
all), the progress, the device, the shard, the results store and the baseline, opened once before any
work. Each command is one method; a Python user gets what the CLI does (baseline comparison, the run
recorded in the store, the four report files) from the same call:

    from edge_distill import Options, check
    outcome = check("edge-distill.toml", Path("out"), Options(baseline="latest-passing"))
    outcome.exit_code   # 0 every budget holds, 1 a budget is broken, 3 something not measured
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import Config, load_config
from .progress import Progress
from .result import Report


@dataclass(frozen=True)
class Options:
    """How a command runs around its work. `force`: write into an output folder holding files edge-distill
    did not write. `device` overrides every configured device. `baseline`: a report.json, a run id of the
    results store, or latest-passing[@BRANCH]. `history`: the results store (else the config's, else
    $EDGE_DISTILL_HISTORY); `record=False` opens none. `budget`: a budget file instead of the config's
    [budgets]. `any_cpu`: compare latencies with a baseline measured on another CPU too. `resume`: pick up
    a device cloud's unfinished jobs. `shard`: "I/N", this run's share of the cells."""

    force: bool = False
    device: str | None = None
    baseline: str | None = None
    history: str | None = None
    record: bool = True
    budget: Path | None = None
    any_cpu: bool = False
    resume: bool = False
    shard: str | None = None


@dataclass
class Outcome:
    """A command's report, the folder its files were written to, and its run id in the results store."""

    report: Report
    folder: Path
    run_id: int | None = None
    store_url: str | None = None  # the store's URL without its password

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


@dataclass
class Session:
    """Everything a command's run shares, opened by `Session.open` before any work: a store that cannot
    be opened, or a baseline that cannot be found, fails first."""

    cfg: Config | None
    out: Path
    options: Options = Options()
    progress: Any = Progress(False)
    store: Any = None  # history.Store
    baseline: dict | None = None  # regression.baseline_of's
    shard: Any = None  # shards.Shard: this run's share of the cells

    @classmethod
    def open(cls, config: Path | Config | None, out: Path, options: Options = Options(),
             progress: Any = Progress(False)) -> Session:
        """`config`: an edge-distill.toml (or a loaded Config; None for `verify` and `merge-reports`)."""
        cfg = load_config(Path(config)) if isinstance(config, (str, Path)) else config
        if cfg is not None and options.budget:
            from .budgets import load_budget_file

            cfg.budget = load_budget_file(options.budget)
        shard = None
        if options.shard:  # a bad I/N fails before the store is opened
            from .shards import Shard

            shard = Shard.parse(options.shard)
        if cfg is not None and options.resume:  # a device cloud's unfinished jobs are picked up by their ids
            cfg.device_tools.setdefault("qai_hub", {})["resume"] = True
        session = cls(cfg, Path(out), options, progress, shard=shard)
        session.store = session._open_store() if options.record else None
        session.baseline = session._resolve_baseline()
        return session

    def _open_store(self):
        from .history import Store, store_url

        cfg = self.cfg
        url = store_url(self.options.history, cfg.history if cfg else None, cfg.root if cfg else None)
        return Store(url) if url else None

    def _resolve_baseline(self) -> dict | None:
        """--baseline: a report.json, a run id of the results store, or latest-passing[@BRANCH]."""
        value = self.options.baseline
        if value is None:
            return None
        from .regression import baseline_of, load_baseline

        if value.isdigit() or value.split("@")[0] == "latest-passing":
            from .history import resolve_baseline
            from .pipeline import student_reference

            assert self.cfg is not None  # only `check` takes a baseline
            data, folder, label = resolve_baseline(self.store, value, student_reference(self.cfg))
            return baseline_of(data, Path(folder or ".") / "report.json", label)
        return load_baseline(Path(value))

    def _written(self, run: Callable[[Path], Report]) -> Outcome:
        """`run` writes into the temporary output folder; its report is compared with the baseline, the
        reports are written beside it, the run recorded in the store, and the folder becomes `out`."""
        from .outputs import output_folder
        from .report_files import write_reports

        with output_folder(self.out, self.options.force) as tmp:
            report = run(tmp)
            if self.baseline:
                from .regression import compare

                assert self.cfg is not None
                compare(report, self.baseline, self.cfg.budget.regression, run_dir=tmp, any_cpu=self.options.any_cpu)
            run_id = write_reports(report, tmp, self.store, self.out)
        return Outcome(report, self.out, run_id, self.store.safe_url if self.store is not None else None)

    def _config(self) -> Config:
        if self.cfg is None:
            raise TypeError("this command needs a config: Session.open(config, ...)")
        return self.cfg

    def check(self, command: str = "check") -> Outcome:
        """`edge-distill check`: every target and precision built, measured and judged; with
        [slices.discover], each artifact's failing slices searched after the run."""
        from .pipeline import run_check

        cfg = self._config()

        def run(tmp: Path) -> Report:
            report = run_check(cfg, tmp, self.progress, device=self.options.device, shard=self.shard, command=command)
            if cfg.slices_discover:
                from .discover import check_step

                check_step(cfg, tmp, report, self.progress)
            return report

        return self._written(run)

    def export_auto(self, request) -> Outcome:
        """`export --auto`: `check` of one target at its -auto precision (a `pipeline.ExportRequest`), with
        the config's data and budgets."""
        from .pipeline import auto_export_config

        self.cfg = auto_export_config(self._config(), request)
        return self.check(command="export")

    def export(self, request) -> dict:
        """`edge-distill export` (a `pipeline.ExportRequest`): the verified ONNX and the target's artifact."""
        from .outputs import output_folder
        from .pipeline import run_export

        with output_folder(self.out, self.options.force) as tmp:
            return run_export(request, tmp, self.cfg, self.progress)

    def ladder(self, target: str | None = None, whole: bool = False) -> Outcome:
        """`edge-distill ladder` on one configured target (default: the first); `whole`: every rung."""
        from .ladder import run_ladder

        cfg = self._config()
        return self._written(lambda tmp: run_ladder(cfg, tmp, self.progress, target=target, whole=whole,
                                                    device=self.options.device))

    def sensitivity(self, target: str, precision: str) -> Outcome:
        """`edge-distill sensitivity`: each layer of one target's precision, left in float alone."""
        from .pipeline import run_sensitivity

        cfg = self._config()
        return self._written(lambda tmp: run_sensitivity(cfg, tmp, target, precision, self.progress,
                                                         device=self.options.device))

    def verify(self, request) -> Outcome:
        """`edge-distill verify` (a `pipeline.Verification`): one artifact against a budget."""
        from .pipeline import run_verify

        return self._written(lambda tmp: run_verify(request, self.progress))

    def merge(self, shards: list[Path]) -> Outcome:
        """`merge-reports`: the shards' --out folders as one report."""
        from .shards import merge

        report = merge(shards)
        return self._written(lambda tmp: report)

    def discover(self, question, seed: int | None = None):
        """`slices discover` (a `discover.Question`); `seed`: the clustering's (default: the config's)."""
        from .discover import run_discover
        from .outputs import output_folder

        cfg = self._config()
        settings = dataclasses.replace(question.settings, seed=cfg.seed if seed is None else seed)
        with output_folder(self.out, self.options.force) as tmp:
            return run_discover(cfg, tmp, dataclasses.replace(question, settings=settings), self.progress)


def check(config: Path | Config, out: Path, options: Options = Options(),
          progress: Any = Progress(False)) -> Outcome:
    """What `edge-distill check` does, as one call: the config read, the store and the baseline opened,
    every target built, measured and judged, compared with the baseline, the reports written into `out`
    and the run recorded in the store."""
    return Session.open(config, out, options, progress).check()
