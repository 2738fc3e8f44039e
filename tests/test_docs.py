"""The front door and the docs site: README.md stays short and its two commands stay the ones CI runs,
every relative link in README.md and docs/*.md reaches a file (and a heading, when it names one), the
README's config is the example's own, and `mkdocs build --strict` (the docs extra) builds the site
with the API reference read from the docstrings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text outside code: fenced blocks and inline code spans hold examples, not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug (what mkdocs uses for a heading's anchor)."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {_slug(m.group(1).replace("`", "")) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _dead_links(page: Path, root: Path = ROOT) -> list[str]:
    dead = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not this test's business (no network here)
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.is_relative_to(root) or not resolved.exists():
            dead.append(f"{page.name}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            dead.append(f"{page.name}: {target} (no heading '{anchor}')")
    return dead


def test_every_relative_link_in_the_readme_and_the_docs_resolves():
    assert [p.name for p in PAGES[:1]] == ["README.md"] and len(PAGES) > 10
    dead = [d for page in PAGES for d in _dead_links(page)]
    assert dead == []


def test_the_link_checker_finds_a_dead_link_and_a_dead_anchor(tmp_path):
    """The checker itself, on a page with one good link, one to a missing file and one to a missing heading."""
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-code-heading) [gone](missing.md) [no anchor](other.md#nowhere) "
                    "`[in code](missing2.md)` [web](https://example.org/x)\n```\n[fenced](missing3.md)\n```\n")
    assert _dead_links(page, root=tmp_path) == ["page.md: missing.md (no such file)",
                                                "page.md: other.md#nowhere (no heading 'nowhere')"]


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 250, len(lines)


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)]


def test_ci_runs_the_readme_test_command_and_the_first_command_runs_the_demo():
    first, tests = _bash_blocks((ROOT / "README.md").read_text())[:2]
    assert first.startswith("python3 -m venv .venv") and first.endswith("&& edge-distill demo")
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == tests
    assert '-e ".[test,docs]"' in tests  # the docs extra: the site builds in CI


def test_the_readme_config_is_the_example_config_shortened():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- toml: tests/test_docs.py parses this block -->\n```toml\n(.*?)```", text, re.S).group(1)
    shown = tomllib.loads(block)
    example = tomllib.loads((ROOT / "examples" / "fashion-mnist" / "edge-distill.toml").read_text())

    def differs(part, whole, where=""):
        if isinstance(part, dict):
            return [d for key, value in part.items() for d in differs(value, whole.get(key), f"{where}.{key}")]
        if isinstance(part, list) and part and isinstance(part[0], dict):
            return [d for i, value in enumerate(part) for d in differs(value, whole[i], f"{where}[{i}]")]
        return [] if part == whole else [f"{where}: {part!r} != {whole!r}"]

    assert differs(shown, example) == []


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra: pip install -e '.[docs]'")
def test_the_docs_site_builds_strictly_with_the_api_reference(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    # mkdocstrings rendered run_check's own docstring, not just its name
    from edge_distill.pipeline import run_check

    first_line = run_check.__doc__.strip().splitlines()[0]
    words = re.findall(r"\w+", first_line)[:4]
    assert re.search(r"\W+".join(words), re.sub(r"<[^>]+>", " ", api)), words
    for page in (ROOT / "docs").glob("*.md"):
        assert (site / ("" if page.stem == "index" else page.stem) / "index.html").is_file(), page.name
