"""README's pictures, regenerated from the code so they never drift from it.

    python benchmarks/screenshots.py

runs `check` on the bundled Fashion-MNIST example twice into a throwaway results store (so the
report has trends), the second time against the latest passing run, and takes report.html's picture
in Debian's headless Chromium (Playwright): docs/screenshots/report-html.png; the terminal's
table of that run, as a colour terminal shows it, is drawn by rich's SVG export:
docs/screenshots/check-table.svg. About 3 minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "fashion-mnist" / "edge-distill.toml"
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT / "tests"))


def _check(work: Path, name: str, *extra: str) -> Path:
    out = work / name
    proc = subprocess.run([sys.executable, "-m", "edge_distill", "check", str(CONFIG), "--out", str(out), "--quiet",
                           "--history", str(work / "runs.db"), *extra], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"check failed ({proc.returncode}): {proc.stderr}")
    return out


def main() -> int:
    from conftest import CHROMIUM, CHROMIUM_FLAGS
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _check(work, "first")
        page_file = _check(work, "second", "--baseline", "latest-passing") / "report.html"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.goto(page_file.as_uri())
            page.screenshot(path=OUT / "report-html.png")  # the first screen: verdict, table, first plots
            browser.close()
        _terminal_svg(json.loads((page_file.parent / "report.json").read_text()))
    print(f"wrote {OUT / 'report-html.png'} and {OUT / 'check-table.svg'}")
    return 0


def _terminal_svg(data: dict) -> None:
    from rich.console import Console
    from rich.text import Text

    from edge_distill.report import to_table
    from edge_distill.result import report_from_dict

    console = Console(record=True, width=170, force_terminal=True, color_system="standard", file=open(os.devnull, "w"))
    console.print(Text.from_ansi(to_table(report_from_dict(data), colour=True)))
    (OUT / "check-table.svg").write_text(console.export_svg(title="edge-distill check"))


if __name__ == "__main__":
    sys.exit(main())
