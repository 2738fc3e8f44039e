"""A run's report files, all drawn from one `Report`: report.json, junit.xml, report.md and report.html.
With a results store, the run is recorded first, so the HTML's trends end with this run."""

from __future__ import annotations

from pathlib import Path

from .html_report import to_html
from .report import to_json, to_junit, to_markdown
from .result import Report


def write_reports(report: Report, folder: Path, store=None, final_folder: Path | None = None) -> int | None:
    """Write the reports into `folder` (a run's temporary output folder, renamed to `final_folder` once
    whole). With `store` (a `history.Store`), record the run there; return its id."""
    folder = Path(folder)
    document = to_json(report)
    (folder / "report.json").write_text(document)
    (folder / "junit.xml").write_text(to_junit(report))
    (folder / "report.md").write_text(to_markdown(report))
    run_id, trends = None, None
    if store is not None:
        run_id = store.record(document, final_folder or folder)
        trends = {r.name: store.trend(r.name, report.student["reference"]) for r in report.results}
    (folder / "report.html").write_text(to_html(report, trends))
    return run_id
