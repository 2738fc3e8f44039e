"""report.html's banner, intro and tables: every name from an untrusted file is shown as the text it
is (read back with the standard library's HTML parser, as a browser would), and each row's class says
its verdict. Fast: the mutation run of html_report's escaping runs this file once per mutant."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from edge_distill.html_report import to_html
from edge_distill.metrics import Metrics
from edge_distill.provenance import Provenance
from edge_distill.result import Check, Latency, Memory, Report, TargetResult

EVIL = "<b>x</b>&<script>alert(1)</script>\"'"


class _Page(HTMLParser):
    """Tags, the text of the header, h1 and each cell, and each table row's class."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.cells, self.rows, self.header, self.title, self._in = [], [], [], "", "", None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("td", "th"):
            self.cells.append("")
            self._in = "cell"
        elif tag == "tr":
            self.rows.append(dict(attrs).get("class"))
        elif tag in ("header", "h1", "title", "p"):
            self._in = tag
            if tag == "p":
                self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th", "header", "h1", "title", "p"):
            self._in = None

    def handle_data(self, data):
        if self._in in ("cell", "p"):
            self.cells[-1] += data
        elif self._in == "header":
            self.header += data
        elif self._in == "title":
            self.title += data


def _result(checks, target="ort") -> TargetResult:
    prov = Provenance("measured", "host", "onnxruntime", "1.22.0", "CPU", 1, "Linux", "wall time")
    return TargetResult("student", target, "int8", "ort/m.ort", [], 1000, "ab" * 32,
                        Latency(1.0, 1.1, 1.2, 1.3, 1.0, 0.9, 20, 2, 1, prov), Memory(10.0, prov), None,
                        Metrics(80, accuracy=0.8), {}, checks=checks)


def _report(results, command="check", teacher=None) -> Report:
    return Report(command, "1.0", "2026-12-05T00:00:00Z", None, {"reference": f"student{EVIL}", "fingerprint": "f" * 64},
                  teacher, {}, {}, None, {}, results)


def _check(name, passed, message="") -> Check:
    return Check(name, "accuracy", ">=", 0.9, 0.8 if passed is not None else None, "", passed, message=message)


@pytest.fixture(scope="module")
def broken_page():
    checks = [_check(f"a{EVIL}", True, "fine"), _check("b", False, f"m{EVIL}"), _check("c", None)]
    teacher = {"reference": f"teacher{EVIL}", "fingerprint": "1234567890abcdef" + "0" * 48}
    return _Page(to_html(_report([_result(checks), _result([_check("d", True)], target="tfl")], f"check{EVIL}",
                                 teacher)))


def test_no_markup_from_a_name_reaches_the_page(broken_page):
    assert "script" not in broken_page.tags and "b" not in broken_page.tags
    assert f"a{EVIL}" in broken_page.cells  # the check's name, letter for letter


def test_the_banner_says_the_verdict_and_counts_the_checks(broken_page):
    assert broken_page.header == "FAILED: a budget is broken (2/4 checks hold)"
    assert broken_page.title == f"edge-distill check{EVIL}: FAILED: a budget is broken (2/4 checks hold)"


def test_the_intro_names_student_and_teacher_with_their_hashes(broken_page):
    intro = next(c for c in broken_page.cells if c.startswith("Student "))
    assert intro == (f"Student student{EVIL} (sha256 ffffffffffff), teacher teacher{EVIL} (sha256 1234567890ab). "
                     "Created 2026-12-05T00:00:00Z by edge-distill 1.0.")


def test_each_row_is_classed_by_its_worst_check(broken_page):
    # artifacts table: one row broken (a check fails), one holds; checks table: holds, broken, unmeasured, holds
    assert [r for r in broken_page.rows if r is not None] == ["broken", "holds", "holds", "broken", "unmeasured",
                                                              "holds"]


def test_the_checks_table_shows_value_limit_and_verdict(broken_page):
    i = broken_page.cells.index("check")
    assert broken_page.cells[i:i + 6] == ["check", "value", "limit", "verdict", "provenance", "note"]
    row = broken_page.cells.index(f"a{EVIL}")
    assert broken_page.cells[row:row + 6] == [f"a{EVIL}", "0.8", ">= 0.9", "holds", "", "fine"]
    broken = broken_page.cells.index("b")
    # a check that does not hold reads as a sentence, its message (escaped) after the verdict
    assert broken_page.cells[broken:broken + 6] == ["b", "0.8", ">= 0.9", "broken", "",
                                                    f"b: 0.8 (limit >= 0.9) BROKEN: m{EVIL}"]
    unmeasured = broken_page.cells.index("c")
    assert broken_page.cells[unmeasured:unmeasured + 6] == ["c", "n/a", ">= 0.9", "not measured", "",
                                                            "c: n/a (limit >= 0.9) NOT MEASURED"]


@pytest.mark.parametrize("checks, banner, css", [
    ([], "PASSED: no budget was given, so nothing was checked", "passed"),
    ([("a", True)], "PASSED: every budget holds (1/1 checks hold)", "passed"),
    ([("a", True), ("b", None)], "INCOMPLETE: something could not be measured (1/2 checks hold)", "incomplete"),
])
def test_banner_and_its_colour_for_each_verdict(checks, banner, css):
    page = to_html(_report([_result([_check(n, p) for n, p in checks])]))
    assert f"<header class='verdict {css}' id='verdict'>{banner}" in page
    if not checks:
        assert "<h2>Checks</h2><p>No budget was given, so nothing was checked.</p>" in page


def test_a_refused_artifact_is_a_failed_banner():
    refused = _result([])
    refused.failure = {"stage": "build", "exit_code": 2, "reason": "refused"}
    page = to_html(_report([refused, _result([_check("a", True)])]))
    assert "<header class='verdict failed' id='verdict'>REFUSED: a target refused an artifact" in page


def test_control_characters_in_a_name_are_shown_as_escapes():
    page = _Page(to_html(_report([_result([_check("a\x1b[31mred\x07", True)])])))
    assert "a\\x1b[31mred\\x07" in page.cells



def test_a_report_with_nothing_to_plot_is_drawn_without_importing_matplotlib():
    """matplotlib costs a second to import; a page with no results, ladder or trends has no plot to draw."""
    import subprocess
    import sys

    script = ("import sys\nfrom edge_distill.html_report import to_html\nfrom edge_distill.result import Report\n"
              "page = to_html(Report('verify', '0', '', None, {'reference': 'm', 'fingerprint': 'f' * 64}, None, {}, "
              "{}, None, {}, []))\n"
              "print('<figure' in page, 'matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr
