"""Untrusted text stays text: what a student controls (messages, problems, errors,
folder and file names) can never forge a score, a heading or a formula, run a
script, flood a file, or make the grader read or write outside its folders.

No sandbox here: reports are built by hand, and discovery runs with
``grade_notebook`` replaced by a stub, so the whole file takes about a second.
Every expected string is written out by hand.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

import autograder.grade
from autograder.grade import find_submissions, grade_all
from autograder.report import CheckResult, SubmissionReport, gradebook_csv, write_report

FEEDBACK_BOUND = 256 * 1024  # bytes, the bound on a whole Markdown feedback file


# --- helpers ---------------------------------------------------------------------------------


def report_with(message="", *, student="alice", problems=(), error="", description="",
                **extra) -> SubmissionReport:
    """A Lab 01 report with one failed check (3 points) whose message is ``message``."""
    check = CheckResult("test_a", 3, 0, message, description)
    return SubmissionReport(student, "01_preprocessing", "alice/01_preprocessing.ipynb",
                            [check], problems=list(problems), error=error, **extra)


def outside_fences(md: str) -> list[str]:
    """The lines of ``md`` outside fenced code blocks, by CommonMark's rule: a fence opened
    by n backticks (at most 3 spaces in) closes only on a line of at least n backticks."""
    outside, fence = [], 0
    for line in md.split("\n"):
        if fence:
            close = re.fullmatch(r" {0,3}(`+) *", line)
            if close and len(close.group(1)) >= fence:
                fence = 0
            continue
        opening = re.fullmatch(r" {0,3}(`{3,})[^`]*", line)
        if opening:
            fence = len(opening.group(1))
            continue
        outside.append(line)
    return outside


def rendered(md: str) -> str:
    """The HTML a CommonMark renderer makes of ``md`` (mistune, which nbconvert brings)."""
    mistune = pytest.importorskip("mistune")
    return mistune.html(md)


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def notebook(path: Path, text: str = '{"cells": [ truncated') -> Path:
    """A file named like a notebook (its content never matters: grading is stubbed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def graded(monkeypatch):
    """Replace grading by a stub; return the list of (student, path) it was asked to grade."""
    calls = []

    def stub(path, lab=None, student=None, limits=None, time_limit=None):
        calls.append((student, Path(path)))
        return SubmissionReport(student, "01_preprocessing", str(path),
                                [CheckResult("test_a", 3, 3)])

    monkeypatch.setattr(autograder.grade, "grade_notebook", stub)
    return calls


def gradebook_rows(out: Path) -> list[dict]:
    with open(out / "gradebook.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def all_files(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(folder) for f in files]


# --- Markdown ----------------------------------------------------------------------------------

FAKE = "**Score: 37 / 37 (100%)**"


@pytest.mark.parametrize("message", [
    f"wrong\n```\n{FAKE}\n# Hacked\n```",
    f"wrong\n````\n{FAKE}\n# Hacked\n````",
    f"wrong\n`````````` {FAKE}\n```\n# Hacked",
])
def test_a_message_cannot_forge_a_score_or_a_heading(message):
    """The message stays inside its fence, even when it holds fences of its own."""
    md = report_with(message).to_markdown()
    outside = outside_fences(md)
    assert [line for line in outside if line.startswith("**Score")] == ["**Score: 0 / 3 (0%)**"]
    assert [line for line in outside if line.startswith("#")] == [
        "# Feedback: 01_preprocessing (alice)", "## Checks", "## What to fix", "### `test_a`"]
    html = rendered(md)
    assert html.count("<h1") == 1 and "<strong>Score: 37" not in html
    assert "Hacked</h" not in html


def test_problems_and_errors_cannot_forge_a_score_either():
    md = report_with(problems=[f"cell 2:\n{FAKE}\n# Hacked"]).to_markdown()
    assert [line for line in outside_fences(md) if FAKE in line or "Hacked" in line] == []
    md = report_with(error=f"cannot read\n```\n{FAKE}\n# Hacked").to_markdown()
    assert [line for line in outside_fences(md) if FAKE in line or "Hacked" in line] == []
    assert "<strong>Score" not in rendered(md)


@pytest.mark.parametrize("evil", [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<details open><summary>x</summary>",
])
def test_raw_html_is_inert_everywhere(evil):
    """In messages, problems, descriptions and the student id: no tag survives, even if the
    file is shown as HTML."""
    for md in (
        report_with(evil).to_markdown(),
        report_with(problems=[evil]).to_markdown(),
        report_with(description=evil).to_markdown(),
        report_with(student=evil).to_markdown(),
        report_with(error=evil).to_markdown(),
    ):
        assert "<script" not in md and "<img" not in md and "<details" not in md
        assert "&lt;" in md
        html = rendered(md)
        assert "<script" not in html and "<img" not in html and "<details" not in html


def test_a_newline_in_the_student_id_cannot_break_the_header():
    md = report_with(student=f"alice\n{FAKE}\n# Hacked").to_markdown()
    lines = md.split("\n")
    assert lines[0].startswith("# Feedback: 01_preprocessing (alice ")
    assert lines[1] == ""
    assert [line for line in outside_fences(md) if line.startswith(("**Score", "#"))] == [
        lines[0], "**Score: 0 / 3 (0%)**", "## Checks", "## What to fix", "### `test_a`"]
    assert "<strong>Score: 37" not in rendered(md)


def test_a_description_cannot_break_the_table():
    md = report_with(description="mean | 37 / 37 | passed |\n| `x` | 1 | 1").to_markdown()
    rows = [line for line in md.split("\n") if line.startswith("| `test_a`")]
    assert len(rows) == 1
    assert rows[0].count("|") - rows[0].count("\\|") == 4  # the three columns' four pipes
    assert "| failed |" in rows[0]


def test_control_characters_and_ansi_escapes_are_stripped():
    evil = ("\x1b[31mred\x1b[0m \x1b]8;;http://evil\x07link\x1b]8;;\x07 \x1b]0;title\x1b\\"
            "bell\x07 nul\x00 back\x08 \u202eevil\u202c \x9b31mc1\r\ntab\there")
    report = report_with(evil, student="bob\x1b[2J", problems=[evil], error="")
    md = report.to_markdown()
    as_json = json.dumps(report.to_dict())
    for text in (md, report.to_dict()["checks"][0]["message"], gradebook_csv([report])):
        for bad in ("\x1b", "\x07", "\x00", "\x08", "\u202e", "\u202c", "\x9b", "\r", "\t"):
            assert bad not in text, (bad, text)
    assert "red link bell nul back evil c1\ntab here" in report.checks[0].message.replace(
        "   ", " ")
    assert "\\u001b" not in as_json and "\\u0007" not in as_json
    assert "# Feedback: 01_preprocessing (bob)" in md


# --- bounds ---------------------------------------------------------------------------------


def test_a_huge_single_line_message_gives_a_small_feedback_file(tmp_path):
    """0.2 MB on one line: the message is cut, visibly, and the file stays small."""
    report = report_with("x" * 200_000)
    json_path, md_path = write_report(report, tmp_path)
    assert md_path.stat().st_size < 20_000
    assert json_path.stat().st_size < 20_000
    assert re.search(r"\[\.\.\. \d+ characters cut\]", md_path.read_text())
    assert len(json.loads(json_path.read_text())["checks"][0]["message"]) <= 4_000


def test_many_lines_are_cut_too():
    report = report_with("\n".join(f"line {i}" for i in range(10_000)))
    message = report.checks[0].message
    assert message.count("\n") < 60
    assert re.search(r"\[\.\.\. \d+ lines cut\]", message)
    assert message.startswith("line 0\n")


def test_the_whole_feedback_is_bounded(tmp_path):
    """Hundreds of huge messages and problems made of characters that grow when escaped."""
    checks = [CheckResult(f"test_{i}", 1, 0, "&<`" * 5_000) for i in range(100)]
    report = SubmissionReport("alice", "01_preprocessing", "x.ipynb", checks,
                              problems=["&<>" * 5_000] * 500)
    _, md_path = write_report(report, tmp_path)
    size = md_path.stat().st_size
    assert 100_000 < size <= FEEDBACK_BOUND
    md = md_path.read_text()
    assert "**Score: 0 / 100 (0%)**" in md
    assert md.count("| `test_") == 100  # the table is whole; the messages are what is cut
    assert "cut" in md.split("\n")[-2] or "cut" in md.split("\n")[-1]
    assert len(report.to_dict()["problems"]) <= 50


# --- CSV --------------------------------------------------------------------------------------


@pytest.mark.parametrize("evil, cell", [
    ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
    ("+1+1", "'+1+1"),
    ("-1+1", "'-1+1"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "'=1+1"),
    ("\r=1+1", "'=1+1"),
    ("\tplain", "plain"),
    ("\rplain", "plain"),
    ("ok\n=1+1", "ok =1+1"),
])
def test_gradebook_cells_cannot_be_formulas(evil, cell):
    """OWASP's rule on the text columns (student, lab, error, sandbox); scores stay numbers."""
    report = SubmissionReport(evil, "01_preprocessing", "x.ipynb", [CheckResult("test_a", 3, 0)],
                              error=evil, sandbox=evil)
    (row,) = rows_of(gradebook_csv([report]))
    assert row["student"] == cell
    assert row["error"] == cell
    assert row["sandbox"] == cell
    assert row["score"] == "0" and row["max_score"] == "3" and row["01_preprocessing:test_a"] == "0"


def test_gradebook_has_sandbox_and_statuses_columns():
    checks = [CheckResult("test_a", 1, 1, status="passed", seconds=0.5),
              CheckResult("test_b", 1, 0, "slow", status="timeout", seconds=10.0),
              CheckResult("test_c", 1, 0, "x"),
              CheckResult("test_d", 1, 0, "boom", status="grader_error")]
    report = SubmissionReport("alice", "01_preprocessing", "x.ipynb", checks,
                              sandbox="bubblewrap", enforced=["memory", "no network"])
    (row,) = rows_of(gradebook_csv([report]))
    assert row["sandbox"] == "bubblewrap"
    assert row["statuses"] == "passed:1 failed:1 timeout:1 grader_error:1"
    data = report.to_dict()
    assert [c["status"] for c in data["checks"]] == ["passed", "timeout", "failed", "grader_error"]
    assert [c["seconds"] for c in data["checks"]] == [0.5, 10.0, 0.0, 0.0]
    assert data["sandbox"] == "bubblewrap" and data["enforced"] == ["memory", "no network"]


# --- statuses, clamping, sandbox line ---------------------------------------------------------


def test_earned_is_clamped_when_made_and_when_read_back():
    assert CheckResult("test_a", 3, 99).earned == 3
    assert CheckResult("test_a", 3, -5).earned == 0
    assert CheckResult("test_a", 3, float("nan")).earned == 0
    assert CheckResult("test_a", 10**400, 10**400).points == 0  # "{:g}" would raise
    old = {"student": "alice", "lab": "01_preprocessing", "path": "x.ipynb",
           "checks": [{"check": "test_a", "points": 3, "earned": 99, "message": ""},
                      {"check": "test_b", "points": 2, "earned": 0, "message": "wrong"}]}
    report = SubmissionReport.from_dict(old)
    assert [c.earned for c in report.checks] == [3, 0]
    assert report.score == 3 and report.max_score == 5
    assert [c.status for c in report.checks] == ["passed", "failed"]  # derived, old report
    assert [c.seconds for c in report.checks] == [0.0, 0.0]


def test_a_check_cannot_claim_passed_without_its_points():
    assert CheckResult("test_a", 3, 0, status="passed").status == "failed"
    assert CheckResult("test_a", 3, 0, status="no such status").status == "failed"


def test_a_grader_error_is_never_the_students_fault():
    checks = [CheckResult("test_a", 3, 0, "RuntimeError: lost the sandbox", status="grader_error")]
    md = SubmissionReport("alice", "01_preprocessing", "x.ipynb", checks,
                          sandbox="bubblewrap").to_markdown()
    assert "this is the grader's fault, not yours; tell your TA" in md
    assert "## What to fix" not in md


def test_the_sandbox_line():
    def md(sandbox):
        return report_with("wrong", sandbox=sandbox).to_markdown()

    assert "Graded in the bubblewrap sandbox." in md("bubblewrap")
    weaker = md("fallback: Landlock + audit hook (weaker)")
    assert "Graded in the bubblewrap sandbox." not in weaker
    warning = [line for line in weaker.split("\n") if "Warning" in line]
    assert len(warning) == 1 and "fallback: Landlock + audit hook (weaker)" in warning[0]


# --- discovery -----------------------------------------------------------------------------


def test_a_symlinked_notebook_is_refused(tmp_path, graded):
    subs, out = tmp_path / "class", tmp_path / "out"
    victim = notebook(tmp_path / "victim" / "01_preprocessing.ipynb")
    bob = notebook(subs / "bob" / "01_preprocessing.ipynb")
    (subs / "mallory").mkdir()
    (subs / "mallory" / "01_preprocessing.ipynb").symlink_to(victim)
    (subs / "trudy").mkdir()
    (subs / "trudy" / "01_preprocessing.ipynb").symlink_to(bob)
    grade_all([subs], out, progress=False)
    assert graded == [("bob", bob)]
    rows = {r["student"]: r for r in gradebook_rows(out)}
    assert set(rows) == {"bob", "mallory", "trudy"}
    assert "symbolic link" in rows["mallory"]["error"] and "symbolic link" in rows["trudy"]["error"]
    assert rows["mallory"]["score"] == "0" and rows["bob"]["score"] == "3"


def test_a_symlinked_folder_is_refused(tmp_path, graded):
    subs, out = tmp_path / "class", tmp_path / "out"
    notebook(tmp_path / "elsewhere" / "victim" / "01_preprocessing.ipynb")
    subs.mkdir()
    (subs / "eve").symlink_to(tmp_path / "elsewhere" / "victim")
    notebook(subs / "alice" / "01_preprocessing.ipynb")
    (subs / "alice" / "more").symlink_to(tmp_path / "elsewhere")
    grade_all([subs], out, progress=False)
    assert [student for student, _ in graded] == ["alice"]
    rows = gradebook_rows(out)
    eve = [r for r in rows if r["student"] == "eve"]
    assert len(eve) == 1 and "symbolic link" in eve[0]["error"]
    alice_errors = [r for r in rows if r["student"] == "alice" and r["error"]]
    assert len(alice_errors) == 1 and "symbolic link" in alice_errors[0]["error"]


def test_a_nested_submitted_folder_belongs_to_its_student(tmp_path):
    nested = tmp_path / "class" / "mallory" / "submitted" / "victim" / "01_preprocessing"
    notebook(nested / "01_preprocessing.ipynb")
    course = tmp_path / "course" / "submitted" / "trudy" / "01_preprocessing"
    notebook(course / "submitted" / "victim" / "01_preprocessing" / "01_preprocessing.ipynb")
    notebook(tmp_path / "course" / "source" / "01_preprocessing" / "01_preprocessing.ipynb")
    found = find_submissions([tmp_path / "class", tmp_path / "course"])
    assert sorted(s.student for s in found) == ["mallory", "trudy"]
    assert not any(getattr(s, "error", "") for s in found)
    # given the submitted/ folder itself, its children are the students
    assert [s.student for s in find_submissions([tmp_path / "course" / "submitted"])] == ["trudy"]


def test_two_submissions_for_one_student_and_lab_are_two_error_rows(tmp_path, graded):
    first = notebook(tmp_path / "a" / "alice" / "01_preprocessing.ipynb")
    second = notebook(tmp_path / "b" / "alice" / "01_preprocessing.ipynb")
    third = notebook(tmp_path / "a" / "carol" / "01_preprocessing.ipynb")
    out = tmp_path / "out"
    grade_all([tmp_path / "a", tmp_path / "b"], out, progress=False)
    assert graded == [("carol", third)]
    alice = [r for r in gradebook_rows(out) if r["student"] == "alice"]
    assert len(alice) == 2
    for row in alice:
        assert str(first) in row["error"] and str(second) in row["error"]
        assert row["score"] == "0"


def test_two_notebooks_found_to_be_the_same_lab_are_two_error_rows(tmp_path, graded):
    """Neither is named after its lab, so only grading tells; neither overwrites the other."""
    subs, out = tmp_path / "class", tmp_path / "out"
    notebook(subs / "alice" / "homework.ipynb")
    notebook(subs / "alice" / "final.ipynb")
    grade_all([subs], out, progress=False)
    rows = gradebook_rows(out)
    assert len(rows) == 2 and all("homework.ipynb" in r["error"] for r in rows)
    assert all("final.ipynb" in r["error"] and r["score"] == "0" for r in rows)


@pytest.mark.parametrize("folder", ["..dotdot", ".evil", "alice\n=1+1", "x" * 101,
                                    "bob\x1b[2J", "back\\slash"])
def test_a_folder_name_that_cannot_be_an_id_is_an_error_row(tmp_path, graded, folder):
    subs, out = tmp_path / "class", tmp_path / "out"
    notebook(subs / folder / "01_preprocessing.ipynb")
    notebook(subs / "carol" / "01_preprocessing.ipynb")
    grade_all([subs], out, progress=False)
    assert [student for student, _ in graded] == ["carol"]
    rows = gradebook_rows(out)
    assert len(rows) == 2
    (bad,) = [r for r in rows if r["student"] != "carol"]
    assert "cannot be a student id" in bad["error"] and bad["score"] == "0"
    assert "\n" not in bad["student"] and "\x1b" not in bad["student"]
    assert bad["student"] != folder  # shown quoted, so never mistaken for a real id
    inside = out.resolve()
    for path in all_files(out):
        assert path.resolve().is_relative_to(inside)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class", "out"]


def test_hidden_inside_a_student_folder_is_skipped_a_hidden_student_folder_is_not(tmp_path):
    subs = tmp_path / "class"
    notebook(subs / "alice" / "01_preprocessing.ipynb")
    notebook(subs / "alice" / ".ipynb_checkpoints" / "01_preprocessing-checkpoint.ipynb")
    notebook(subs / "alice" / ".01_preprocessing.ipynb")
    notebook(subs / "alice" / ".hidden" / "01_preprocessing.ipynb")
    notebook(subs / ".ipynb_checkpoints" / "01_preprocessing-checkpoint.ipynb")
    notebook(subs / ".evil" / "01_preprocessing.ipynb")
    notebook(subs / ".evil" / ".02_normalization.ipynb")
    notebook(subs / ".stray.ipynb")
    found = sorted(find_submissions([subs]), key=lambda s: str(s.path))
    assert [s.path.relative_to(subs).as_posix() for s in found] == [
        ".evil/.02_normalization.ipynb", ".evil/01_preprocessing.ipynb", ".stray.ipynb",
        "alice/01_preprocessing.ipynb"]
    for refused in found[:3]:
        assert "cannot be a student id" in getattr(refused, "error", "")
    assert found[3].student == "alice" and not found[3].error


def test_a_formula_as_an_id_is_graded_and_neutralized(tmp_path, graded):
    subs, out = tmp_path / "class", tmp_path / "out"
    notebook(subs / '=HYPERLINK("http:evil")' / "01_preprocessing.ipynb")
    grade_all([subs], out, progress=False)
    assert [student for student, _ in graded] == ['=HYPERLINK("http:evil")']
    (row,) = gradebook_rows(out)
    assert row["student"] == '\'=HYPERLINK("http:evil")' and row["score"] == "3"
    assert row["error"] == ""


def test_a_notebook_that_is_not_a_plain_file_is_refused(tmp_path):
    """A FIFO (an archive can hold one) would hang whoever reads it."""
    subs = tmp_path / "class"
    (subs / "mallory").mkdir(parents=True)
    os.mkfifo(subs / "mallory" / "01_preprocessing.ipynb")
    (found,) = find_submissions([subs])
    assert found.student == "mallory" and "not a plain file" in getattr(found, "error", "")


def test_a_folder_that_cannot_be_read_is_an_error_row(tmp_path, monkeypatch):
    """os.walk skips what it cannot list unless told; a whole student must not vanish."""
    subs = tmp_path / "class"
    notebook(subs / "alice" / "01_preprocessing.ipynb")
    notebook(subs / "bob" / "01_preprocessing.ipynb")
    scandir = os.scandir

    def refusing(path="."):
        if Path(path).name == "bob":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    found = sorted(find_submissions([subs]), key=lambda s: s.student)
    assert [s.student for s in found] == ["alice", "bob"]
    assert not found[0].error and "cannot be read (Permission denied)" in found[1].error
