"""Hidden checks inside a notebook's kernel: the one line of nbgrader's hidden tests.

In the nbgrader course (``autograder/nbgrader_course.py``) each graded cell
starts with a hidden test region of one line::

    ### BEGIN HIDDEN TESTS
    __import__("autograder.nbgrader_hooks", fromlist=["_"]).hidden_checks("01_preprocessing", [...])
    ### END HIDDEN TESTS

``hidden_checks`` runs the named hidden checks of the lab (the same pytest
checks, seeds, points and time limits as ``python -m autograder grade``)
against the objects of the calling namespace, i.e. the notebook's kernel;
prints one line per check (name, points, the student-facing message, never
the check's code); and publishes the points earned as the cell's
``execute_result``. nbgrader reads that number as the cell's partial credit
(``nbgrader.utils.determine_grade`` and ``get_partial_grade``: the first
``execute_result`` of a grade cell, when it parses as a float between 0 and
the cell's points, is its score).

This is nbgrader's model, not the grader's: here the student's code, the
reference solution and the checks share the kernel's process. Where that
matters, grade with ``python -m autograder grade``.

``python -m autograder.nbgrader_hooks map LAB`` prints, as JSON, what each
check of a lab reads from the student, found by running every check in-process
on the reference through a recording student; ``autograder.nbgrader_course``
gives each check to an answer cell from it.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import plugin as grader_plugin
from autograder.labs import REPO, find_lab
from autograder.student import InProcessStudent


class _StudentPlugin:
    """Overrides the grader plugin's ``student`` fixture with a given object."""

    def __init__(self, student):
        self._student = student

    @pytest.fixture
    def student(self):
        return self._student


class _Recording(InProcessStudent):
    """A student that notes, per check, every name a check reads from it."""

    def __init__(self, namespace):
        super().__init__(namespace, label="reference")
        self.__dict__["_reads"] = {}
        self.__dict__["_current"] = None

    def __getattr__(self, name):
        current = self.__dict__["_current"]
        if current is not None and not name.startswith("_"):
            self.__dict__["_reads"].setdefault(current, []).append(name)
        return super().__getattr__(name)


class _RecordingPlugin(_StudentPlugin):
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self._student.__dict__["_current"] = item.name


def _run_checks(lab, plugin, selectors=None) -> list[dict]:
    """Run a lab's checks (all, or those named in ``selectors``) in this process
    with ``plugin``; return the grader plugin's result events. Prints nothing."""
    targets = [str(lab.checks_file)]
    if selectors:
        targets = [f"{lab.checks_file}::{s}" for s in selectors]
    with tempfile.TemporaryDirectory(prefix="hidden-") as tmp:
        results = Path(tmp) / "results.jsonl"
        args = [
            *targets, "--results", str(results), "--rootdir", str(REPO),
            "-p", "no:cacheprovider", "-o", "addopts=",
            "--assert=plain", "-q", "--no-header", "-rN", "--capture=sys",
        ]  # fmt: skip
        saved = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the grader's plugin
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                # The grader's plugin first, so that ``plugin``'s student fixture overrides its.
                pytest.main(args, plugins=[grader_plugin, plugin])
        finally:
            if saved is None:
                os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
            else:
                os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = saved
        events = []
        if results.exists():
            for line in results.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
    return [e for e in events if e.get("event") == "result"]


def reads_of_checks(lab_name: str) -> dict[str, dict]:
    """check name -> {"points", "passed", "reads"}: every check of a lab run in this
    process on the reference solution; ``reads`` lists the names it read from the
    student, in first-read order."""
    lab = find_lab(lab_name)
    student = _Recording(vars(importlib.import_module(lab.solution_module)))
    results = _run_checks(lab, _RecordingPlugin(student))
    reads = student.__dict__["_reads"]
    return {
        r["check"]: {"points": r["points"], "passed": r["passed"],
                     "reads": list(dict.fromkeys(reads.get(r["check"], [])))}
        for r in results
    }  # fmt: skip


def _publish(value: float) -> None:
    """Show ``value`` as this cell's ``execute_result`` (its Out[n]) now, in the
    middle of the cell, so that it comes before any error a later line raises."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    hook = getattr(shell, "displayhook", None)
    if hook is None:
        print(value)
        return
    # The display hook's steps, without its check for a trailing ";" in the cell.
    hook.start_displayhook()
    hook.write_output_prompt()
    data, metadata = hook.compute_format_data(value)
    hook.write_format_data(data, metadata)
    hook.finish_displayhook()


def hidden_checks(lab_name: str, selectors, namespace: dict | None = None) -> float:
    """Run the hidden checks ``selectors`` (check names, or check functions for all
    their parameters) of lab ``lab_name`` on the names of ``namespace`` (by default
    the caller's globals: the notebook's kernel); print a line per check and
    publish the points earned as the cell's result. Returns those points."""
    if namespace is None:
        namespace = inspect.currentframe().f_back.f_globals
    lab = find_lab(lab_name)
    student = InProcessStudent(namespace, label="notebook")
    selectors = list(selectors)
    results = _run_checks(lab, _StudentPlugin(student), selectors) if selectors else []
    earned = sum(r["earned"] for r in results)
    possible = sum(r["points"] for r in results)
    print(f"Hidden checks: {earned:g} / {possible:g} points")
    for r in results:
        mark = "passed" if r["passed"] else "FAILED"
        print(f"  {mark} {r['check']} ({r['earned']:g}/{r['points']:g})")
        if r["message"]:
            print("    " + r["message"].replace("\n", "\n    "))
    if not results:
        print("  (the hidden checks did not run: tell your TA)")
    _publish(float(earned))
    return float(earned)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "map":
        print("usage: python -m autograder.nbgrader_hooks map LAB", file=sys.stderr)
        return 2
    print(json.dumps(reads_of_checks(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
