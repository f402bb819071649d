"""The nbgrader course: built from the labs, it round-trips through nbgrader's
generate_assignment to exactly the labs, and nbgrader's own flow (autograde,
generate_feedback, export) scores submissions like ``python -m autograder grade``.

nbgrader runs in a child process with HOME and the Jupyter directories inside
the test's tmp dir, so that no global state is read or written.
"""

import ast
import copy
import csv
import html
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from autograder.build import mutant_notebook, reference_sources, solved_notebook
from autograder.labs import all_labs, find_lab
from autograder.mutants import load_mutants
from autograder.nbgrader_course import (
    BEGIN_HIDDEN,
    BEGIN_SOLUTION,
    COURSE_ID,
    build_course,
    clear_solutions,
    run_nbgrader,
    solution_source,
)
from autograder.notebook import nbgrader_meta
from autograder.runner import grade_notebook

LAB01 = find_lab("preprocessing")

# Metadata that nbgrader's generate_assignment adds to a cell, so that the release
# differs from the lab there and only there: `checksum` and `cell_type` in the nbgrader
# metadata (ComputeChecksums: what autograde compares to see whether a cell changed),
# and the cell-level `editable` / `deletable` flags (LockCells: JupyterLab's lock).
NBGRADER_ADDED = {"checksum", "cell_type"}
LOCK_FLAGS = {"editable", "deletable"}


def nbgrader(course: Path, *args, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    proc = run_nbgrader(course, *args, timeout=timeout, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbgrader") / "course"
    written = build_course(root)
    assert root / "nbgrader_config.py" in written
    return root


def test_course_layout(course):
    for lab in all_labs():
        assert (course / "source" / lab.name / f"{lab.name}.ipynb").exists()
    config = (course / "nbgrader_config.py").read_text()
    compile(config, "nbgrader_config.py", "exec")
    assert "IgnorePattern" in config and "code_stub" in config and "timeout" in config


def test_every_check_is_graded_once_and_points_add_up(course):
    from autograder.runner import collect_checks

    for lab in all_labs():
        nb = nbformat.read(course / "source" / lab.name / f"{lab.name}.ipynb", 4)
        selected, points = [], 0.0
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade") and cell.cell_type == "code":
                assert cell.source.startswith(BEGIN_HIDDEN), meta["grade_id"]
                line = cell.source.split("\n")[1]
                call = ast.parse(line).body[0].value
                selected += ast.literal_eval(call.args[1])
                points += meta["points"]
        checks = collect_checks(lab)
        names = [c["check"] for c in checks]
        covered = [n for n in names if n in selected or n.split("[")[0] in selected]
        assert covered == names
        assert len(selected) == len(set(selected))
        assert points == sum(c["points"] for c in checks)


def test_solution_regions_hide_reference_helpers():
    stub = next(c.source for c in nbformat.read(LAB01.notebook, 4).cells
                if nbgrader_meta(c).get("grade_id") == "preprocessor")  # fmt: skip
    import solutions.preprocessing as ref

    source = solution_source(stub, ref)
    assert source.count(BEGIN_SOLUTION) == 3  # __init__, fit, transform
    assert "_check_images" in source and "_check_images" not in clear_solutions(source)
    assert clear_solutions(source) == stub


def test_generate_assignment_gives_back_the_labs(course):
    start = time.perf_counter()
    nbgrader(course, "generate_assignment", "*", "--force")
    print(f"generate_assignment, 4 labs: {time.perf_counter() - start:.1f} s")
    for lab in all_labs():
        release = nbformat.read(course / "release" / lab.name / f"{lab.name}.ipynb", 4)
        original = nbformat.read(lab.notebook, 4)
        assert release.metadata == original.metadata
        assert len(release.cells) == len(original.cells), lab.name
        for i, (got, want) in enumerate(zip(release.cells, original.cells, strict=True)):
            where = f"{lab.name} cell {i}"
            assert got.cell_type == want.cell_type, where
            assert got.source == want.source, where
            got_meta = {k: v for k, v in got.metadata.items() if k not in LOCK_FLAGS}
            got_meta.setdefault("nbgrader", None)
            want_meta = dict(want.metadata)
            want_meta.setdefault("nbgrader", None)
            if got_meta["nbgrader"] is not None:
                # The labs' points equal their hidden checks' points (see
                # test_every_check_is_graded_once_and_points_add_up), so they compare too.
                got_meta["nbgrader"] = {k: v for k, v in got_meta["nbgrader"].items()
                                        if k not in NBGRADER_ADDED}  # fmt: skip
            assert got_meta == want_meta, where
        assert not any(BEGIN_HIDDEN in c.source or BEGIN_SOLUTION in c.source
                       for c in release.cells)  # fmt: skip


# --- end to end: Lab 01 through nbgrader's flow ------------------------------------------------

MUTANT = "channel_std uses the sample standard deviation (ddof=1)"  # fails a visible check too


def _text_of_html(page: str) -> str:
    """The text a reader sees: tags dropped, entities decoded."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _code_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= 12}


def without_experiments(nb):
    """The notebook with the code cells after its last graded cell emptied: the experiments,
    which carry no points. Autograde runs every cell of every submission; what this test
    compares is scores, and lab 01's training runs would triple its time."""
    nb = copy.deepcopy(nb)
    graded = [i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("grade")]
    for cell in nb.cells[graded[-1] + 1:]:
        if cell.cell_type == "code" and not nbgrader_meta(cell):
            cell.source = "# (an experiment: left out of this test, it carries no points)"
    return nb


@pytest.mark.slow
def test_nbgrader_flow_scores_like_the_grader(tmp_path):
    course = tmp_path / "course"
    build_course(course, labs=[LAB01])
    nbgrader(course, "generate_assignment", LAB01.name, "--force")
    solved = without_experiments(solved_notebook(LAB01))
    mutant = next(m for m in load_mutants(LAB01) if m.description == MUTANT)
    # nbgrader's submit records the account that runs it: that student hands in the
    # reference.
    me = pwd.getpwuid(os.getuid()).pw_name
    students = {
        me: solved,
        "stubs": nbformat.read(LAB01.notebook, 4),
        "mutant": mutant_notebook(LAB01, mutant, solved),
    }
    # The README's sequence as written: the course's config names the course and keeps
    # the exchange inside the course folder. One student fetches, solves and submits;
    # the two others are put where collect puts submissions (submitted/).
    nbgrader(course, "release_assignment", LAB01.name)
    assert (course / "exchange" / COURSE_ID / "outbound" / LAB01.name).is_dir()
    desk = tmp_path / "students-desk"
    desk.mkdir()
    student_args = ["--course", COURSE_ID, f"--Exchange.root={course / 'exchange'}"]
    nbgrader(course, "fetch_assignment", LAB01.name, *student_args, cwd=desk)
    fetched = desk / LAB01.name / f"{LAB01.name}.ipynb"
    assert fetched.is_file()
    nbformat.write(solved, fetched)
    nbgrader(course, "submit", LAB01.name, *student_args, cwd=desk)
    nbgrader(course, "collect", LAB01.name)
    assert (course / "submitted" / me / LAB01.name / f"{LAB01.name}.ipynb").is_file()
    for student in ("stubs", "mutant"):
        path = course / "submitted" / student / LAB01.name / f"{LAB01.name}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(students[student], path)

    start = time.perf_counter()
    nbgrader(course, "autograde", LAB01.name, "--force")
    autograde_s = time.perf_counter() - start
    nbgrader(course, "generate_feedback", LAB01.name, "--force")
    nbgrader(course, "export")
    print(f"autograde of 3 students: {autograde_s:.0f} s")

    with open(course / "grades.csv", newline="") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f)}
    for student in students:
        report = grade_notebook(
            course / "submitted" / student / LAB01.name / f"{LAB01.name}.ipynb", LAB01, student
        )
        assert not report.error, report.error
        row = exported[student]
        assert float(row["max_score"]) == report.max_score
        assert float(row["score"]) == pytest.approx(report.score), (student, report.to_markdown())
    assert float(exported[me]["score"]) == float(exported[me]["max_score"])
    assert float(exported["stubs"]["score"]) == 0
    assert 0 < float(exported["mutant"]["score"]) < float(exported["mutant"]["max_score"])

    # The feedback shows neither the reference's code (the stubs student never wrote
    # any) nor the hidden checks' code (anyone's), only the one-line call to them.
    import solutions.preprocessing as ref

    lab_text = "\n".join(c.source for c in nbformat.read(LAB01.notebook, 4).cells)
    reference_lines = {line for line in _code_lines("\n".join(reference_sources(ref).values()))
                       if line not in lab_text}  # fmt: skip
    check_lines = {line for line in _code_lines(LAB01.checks_file.read_text())
                   if line not in lab_text}  # fmt: skip
    assert reference_lines and check_lines
    for student in students:
        page = course / "feedback" / student / LAB01.name / f"{LAB01.name}.html"
        text = _text_of_html(page.read_text(encoding="utf-8"))
        leaked = [line for line in check_lines if line in text]
        assert not leaked, (student, leaked[:5])
        shown = [line for line in reference_lines if line in text]
        if student == "stubs":
            assert not shown, shown[:5]
        else:  # their own code is the reference's: the comparison does see code in the page
            assert shown


def test_config_sets_timeout_stub_kernel_and_ignores_warnings(course):
    from nbgrader.preprocessors import ClearSolutions, Execute, IgnorePattern
    from traitlets.config.loader import PyFileConfigLoader

    from autograder.nbgrader_course import CELL_TIMEOUT, CODE_STUB

    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    execute = Execute(config=config)
    assert execute.timeout == CELL_TIMEOUT >= 300 and execute.kernel_name == "python3"
    assert ClearSolutions(config=config).code_stub["python"] == CODE_STUB
    ignore = IgnorePattern(config=config)
    assert ignore.enabled
    cell = nbformat.v4.new_code_cell("x = 1")
    warning = nbformat.v4.new_output(
        "stream", name="stderr", text="/x.py:3: UserWarning: the mean of an empty slice\n")
    error = nbformat.v4.new_output("stream", name="stderr", text="Traceback: it broke\n")
    cell.outputs = [warning, error]
    cleaned, _ = ignore.preprocess_cell(cell, {}, 0)
    assert cleaned.outputs == [error]
