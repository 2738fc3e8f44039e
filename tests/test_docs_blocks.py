"""The docs' code blocks are executed or parsed: every ```toml block in README.md and docs/*.md is TOML
(and the README's whole project file loads with the config loader), and every `edge-distill ...`
command shown in a shell block names a command that exists (its --help exits 0)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_distill.cli import main
from edge_distill.config import load_config

from conftest import EXAMPLE

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = ("sh", "bash", "console", "shell")


def blocks(languages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(page:line, text) of each fenced block in one of `languages`."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M):
            if match.group(1) in languages:
                found.append((f"{page.name}:{text[:match.start()].count(chr(10)) + 1}", match.group(2)))
    return found


TOML_BLOCKS = blocks(("toml",))


@pytest.mark.parametrize("where, block", TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_every_toml_block_parses(where, block):
    assert tomllib.loads(block), where


def test_the_readme_config_loads_beside_the_example_files(tmp_path):
    """The README's whole project file, validated by the loader where the files it names exist (the
    reference block of docs/configuration.md names a recipe and device tools no folder holds: parsed only)."""
    (where, block), = [(w, b) for w, b in TOML_BLOCKS if w.startswith("README.md")]
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLE, folder)
    (folder / "edge-distill.toml").write_text(block)
    assert [t.name for t in load_config(folder / "edge-distill.toml").targets] == ["ort"], where


def commands_shown() -> list[tuple[str, list[str]]]:
    """(page:line, the command's words) of every `edge-distill ...` line in a shell block."""
    shown = []
    for where, block in blocks(SHELLS):
        for line in block.splitlines():
            match = re.match(r"^\$?\s*edge-distill\s+(.*)", line)
            if match:
                shown.append((where, _command_words(match.group(1).split())))
    return shown


def _command_words(words: list[str]) -> list[str]:
    """The command and subcommand names at the start of `words` (`slices discover`), as the CLI knows them."""
    group, path = main, []
    for word in words:
        commands = getattr(group, "commands", {})
        if word not in commands:
            break
        path.append(word)
        group = commands[word]
    return path or words[:1]


COMMANDS = commands_shown()


@pytest.mark.parametrize("where, words", COMMANDS, ids=[f"{w}:{' '.join(c)}" for w, c in COMMANDS])
def test_every_command_shown_in_the_docs_exists(where, words):
    done = CliRunner().invoke(main, [*words, "--help"])
    assert done.exit_code == 0, f"{where}: edge-distill {' '.join(words)}: {done.output}"


def test_a_block_that_is_not_toml_and_a_command_that_does_not_exist_are_caught():
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads('labels = ["a", ...]')
    assert CliRunner().invoke(main, [*_command_words(["chekc", "x.toml"]), "--help"]).exit_code == 2
