"""The grader on real notebooks: a folder of submissions through the CLI, and
submissions that break in every way a student's can."""

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace

import nbformat
import pytest

from autograder.build import solved_notebook
from autograder.labs import CHECKS_DIR, find_lab
from autograder.notebook import nbgrader_meta
from autograder.runner import grade_notebook
from autograder.sandbox.limits import Limits

LAB = find_lab("preprocessing")


def write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def with_cell(nb, grade_id, source):
    """A copy of ``nb`` whose answer cell ``grade_id`` holds ``source``."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == grade_id:
            cell.source = source
    return nb


@pytest.fixture(scope="module")
def solved():
    return solved_notebook(LAB)


def test_grade_a_class_folder(tmp_path, solved):
    """A stub notebook scores 0%, the reference 100%, and a corrupt file is an error row."""
    subs = tmp_path / "submissions"
    write(solved, subs / "alice" / "01_preprocessing.ipynb")
    write(nbformat.read(LAB.notebook, 4), subs / "bob" / "01_preprocessing.ipynb")
    (subs / "carol").mkdir()
    (subs / "carol" / "01_preprocessing.ipynb").write_bytes(b'{"cells": [ \x00 truncated')
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(subs), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["student"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["alice"]["percent"] == "100.0" and rows["alice"]["error"] == ""
    assert rows["bob"]["percent"] == "0.0" and rows["bob"]["error"] == ""
    assert float(rows["alice"]["max_score"]) == float(rows["bob"]["max_score"]) > 0
    assert rows["carol"]["percent"] == "0.0"
    assert "not a valid notebook" in rows["carol"]["error"]
    # one column per check, holding the points earned
    check_cols = [c for c in rows["alice"] if c.startswith("01_preprocessing:")]
    assert len(check_cols) >= 15
    assert all(rows["bob"][c] == "0" for c in check_cols)
    assert rows["alice"]["statuses"] == f"passed:{len(check_cols)}"
    # the summary: a row per student, the lab's points in its column's name, a total
    summary = {r["student"]: r for r in csv.DictReader((out / "summary.csv").open())}
    points = rows["alice"]["max_score"]
    column = f"01_preprocessing (/{points})"
    assert list(summary["alice"]) == ["student", column, "total", "max_total", "percent"]
    assert summary["alice"][column] == summary["alice"]["total"] == points
    assert summary["alice"]["percent"] == "100.0"
    assert summary["bob"][column] == summary["carol"][column] == "0"
    assert summary["carol"]["max_total"] == points and summary["carol"]["percent"] == "0.0"

    umask = os.umask(0o022)
    os.umask(umask)  # the grader's child inherited it: reports get 0666 less the umask
    for name in ("gradebook.csv", "summary.csv", "bob/01_preprocessing.json",
                 "bob/01_preprocessing.md"):
        mode = (out / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name}: mode {mode:o} with umask {umask:o}"
    bob = json.loads((out / "bob" / "01_preprocessing.json").read_text())
    assert bob["score"] == 0 and all(not c["message"] == "" for c in bob["checks"])
    feedback = (out / "bob" / "01_preprocessing.md").read_text()
    assert "not written yet: `mean_image` raises NotImplementedError" in feedback
    assert "could not be graded" in (out / "carol" / "01_preprocessing.md").read_text()


def test_feedback_never_shows_check_code(tmp_path, solved):
    nb = with_cell(solved, "mean_image", "def mean_image(x):\n    return x.mean(axis=0)\n")
    sample_std = "def channel_std(x):\n    return x.std(axis=(0, 2, 3), ddof=1)\n"
    nb = with_cell(nb, "channel_std", sample_std)
    report = grade_notebook(write(nb, tmp_path / "eve" / "01_preprocessing.ipynb"))
    assert 0 < report.score < report.max_score
    feedback = report.to_markdown()
    code_lines = [
        line.strip() for line in (CHECKS_DIR / "test_preprocessing.py").read_text().splitlines()
        if len(line.strip()) > 25 and not line.strip().startswith(('"""', "#"))
        and '"""' not in line
    ]
    leaked = [line for line in code_lines if line in feedback]
    assert not leaked, leaked


def test_broken_cells_cost_only_their_checks(tmp_path, solved):
    """A syntax error, an infinite loop and os._exit each cost the checks they touch."""
    nb = with_cell(solved, "channel_std", "def channel_std(x)\n    return 0\n")  # SyntaxError
    loop = (
        "import numpy as np\n"
        "def mean_image(x):\n"
        "    while np.asarray(x).shape[1] == 1:  # only the hand-made example loops\n"
        "        pass\n"
        "    return np.asarray(x).mean(axis=0, dtype=np.float64)\n"
    )
    nb = with_cell(nb, "mean_image", loop)
    crash = (
        "import os\n"
        "def channel_mean(x):\n"
        "    if x.shape[0] == 3:\n"
        "        os._exit(3)\n"
        "    return x.mean(axis=(0, 2, 3), dtype=np.float64)\n"
    )
    nb = with_cell(nb, "channel_mean", crash)
    report = grade_notebook(write(nb, tmp_path / "mallory" / "01_preprocessing.ipynb"))
    by_name = {c.check: c for c in report.checks}
    assert any("syntax error at line 1" in p for p in report.problems), report.problems
    assert "does not define `channel_std`" in by_name["test_channel_std_is_population_std"].message
    assert "time limit" in by_name["test_mean_image_by_hand"].message
    assert by_name["test_mean_image_matches_reference"].passed
    assert "exit code 3" in by_name["test_channel_mean_by_hand"].message
    assert by_name["test_channel_mean_matches_torch"].passed
    assert by_name["test_unknown_mode_raises"].passed


def test_missing_cell_and_renamed_file(tmp_path, solved):
    nb = nbformat.from_dict(json.loads(json.dumps(solved)))
    nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != "channel_std"]
    report = grade_notebook(write(nb, tmp_path / "homework-final.ipynb"))
    assert report.lab == "01_preprocessing"  # told from its answer cells
    assert any("'channel_std' is missing" in p for p in report.problems)
    assert not {c.check: c for c in report.checks}["test_channel_std_is_population_std"].passed
    assert {c.check: c for c in report.checks}["test_mean_image_by_hand"].passed


def test_wrong_lab_is_a_clear_error(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    report = grade_notebook(write(nb, tmp_path / "01_preprocessing.ipynb"))
    assert "none of the answer cells of lab 01_preprocessing" in report.error
    assert report.score == 0 and report.max_score > 0


def test_submission_time_limit(tmp_path, solved):
    slow = "import time\ndef mean_image(x):\n    time.sleep(60)\n"
    nb = with_cell(solved, "mean_image", slow)
    limits = replace(Limits(), submission_seconds=8.0)
    report = grade_notebook(write(nb, tmp_path / "01_preprocessing.ipynb"), limits=limits)
    messages = " ".join(c.message for c in report.checks)
    assert "time limit" in messages and report.score < report.max_score


def test_find_submissions_layouts(tmp_path):
    """<student>/<lab>.ipynb, nbgrader's submitted/<student>/<assignment>/, and loose files."""
    from autograder.grade import find_submissions

    nb = nbformat.v4.new_notebook()
    write(nb, tmp_path / "class" / "alice" / "01_preprocessing.ipynb")
    write(nb, tmp_path / "class" / "alice" / ".ipynb_checkpoints" / "01_preprocessing.ipynb")
    submitted = tmp_path / "course" / "submitted"
    write(nb, submitted / "bob" / "01_preprocessing" / "01_preprocessing.ipynb")
    write(nb, tmp_path / "loose" / "carol.ipynb")
    found = find_submissions([tmp_path / "class", tmp_path / "course", tmp_path / "loose"])
    assert sorted(s.student for s in found) == ["alice", "bob", "carol"]
    with pytest.raises(FileNotFoundError, match="neither a notebook nor a folder"):
        find_submissions([tmp_path / "nowhere"])


def test_first_failure_stops_a_mutant_at_its_first_failing_check(tmp_path, solved):
    """The selfcheck's --fast: a mutant's grading ends at the first check it fails, the
    rest are not run (and say why); the same failure as in a full grading."""
    from autograder.build import mutant_notebook
    from autograder.mutants import load_mutants

    lab = find_lab("01")
    mutant = load_mutants(lab)[0]
    path = tmp_path / "mutant" / lab.notebook.name
    path.parent.mkdir()
    nbformat.write(mutant_notebook(lab, mutant, solved), path)
    full = grade_notebook(path, lab, student="full")
    fast = grade_notebook(path, lab, student="fast", first_failure=True)
    failed_full = [c.check for c in full.checks if not c.passed]
    statuses = [c.status for c in fast.checks]
    first = next(i for i, c in enumerate(fast.checks) if not c.passed and c.status != "not_run")
    assert fast.checks[first].check == failed_full[0]
    assert all(s == "passed" for s in statuses[:first]), statuses
    assert statuses[first + 1:] and all(s == "not_run" for s in statuses[first + 1:]), statuses
    assert all("an earlier check failed" in c.message for c in fast.checks[first + 1:])
    assert fast.score < full.max_score


def test_first_for_runs_a_mutants_suspects_first(tmp_path):
    """The selfcheck's --first-for reorders the checks, the ones that name the function
    first (in file order), the others after (in file order), and drops or adds none."""
    from autograder.runner import PYTEST, _pytest_args, _read_events, _run_child, collect_checks

    lab = find_lab("07")
    results = tmp_path / "collect.jsonl"
    args = _pytest_args(lab, results, ["--collect-only", "--first-for", "googlenet"], Limits())
    code, output = _run_child([*PYTEST, *args], 120)
    assert code == 0, output
    collected = next(e for e in _read_events(results) if e["event"] == "collected")
    order = [c["check"] for c in collected["checks"]]
    plain = [c["check"] for c in collect_checks(lab)]
    suspects = [n for n in plain if n.startswith("test_googlenet")]
    assert len(suspects) >= 3
    assert order == suspects + [n for n in plain if n not in suspects]
