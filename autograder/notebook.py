"""Load layer: read a submission notebook and turn its answer cells into code.

A lab's answer cells are the code cells whose nbgrader metadata says
``solution: true``; its setup cell (imports) is the locked code cell with
``grade_id: setup``. The student's namespace is the *lab's own* setup cell
(never the submission's copy of it) followed by the submission's answer
cells, in the lab's order. Nothing else of the notebook runs: experiments and
visible checks are for the student, not for grading.

Bad input is a ``SubmissionError`` with a message a student or a TA can act
on, never a crash of the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from autograder.execute import AnswerSource, SubmissionError
from autograder.labs import Lab, all_labs

SETUP_ID = "setup"


def read_notebook(path) -> nbformat.NotebookNode:
    """Read and validate a notebook file, or raise SubmissionError saying what is wrong."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SubmissionError(f"cannot read {path.name}: {e.strerror or e}.") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SubmissionError(
            f"{path.name} is not a valid notebook file (not JSON: {e}). It may be truncated "
            f"or saved by another program; open it in JupyterLab, save it, and submit again."
        ) from None
    if not isinstance(data, dict) or "cells" not in data:
        raise SubmissionError(f"{path.name} is JSON but not a Jupyter notebook (no cells).")
    try:
        # reads() also joins each cell's source, stored as a list of lines, into one string.
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises several kinds of validation errors
        raise SubmissionError(f"{path.name} is not a valid Jupyter notebook: {e}") from None
    return nb


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def answer_cells(nb) -> list[tuple[str, str]]:
    """The (grade id, source) of every answer cell of a notebook, in order."""
    cells = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution"):
            cells.append((meta.get("grade_id", ""), cell.source))
    return cells


def setup_cells(nb) -> list[tuple[str, str]]:
    """The (grade id, source) of the setup cells (``grade_id`` starting with ``setup``)."""
    return [
        (nbgrader_meta(c)["grade_id"], c.source)
        for c in nb.cells
        if c.cell_type == "code" and nbgrader_meta(c).get("grade_id", "").startswith(SETUP_ID)
    ]


def lab_from_path(path) -> Lab | None:
    """The lab a file is named after (``01_preprocessing.ipynb``), or that its folder
    is named after (nbgrader's ``<assignment>/``), or None."""
    path = Path(path)
    for candidate in (path.stem, path.parent.name):
        for lab in all_labs():
            if candidate == lab.name:
                return lab
    return None


def identify_lab(path, nb) -> Lab:
    """Which lab a submission is: by file name, then folder name, then answer cells."""
    lab = lab_from_path(path)
    if lab is not None:
        return lab
    labs = all_labs()
    ids = {gid for gid, _ in answer_cells(nb)}
    best, overlap = None, 0
    for lab in labs:
        n = len(ids & {gid for gid, _ in answer_cells(nbformat.read(lab.notebook, 4))})
        if n > overlap:
            best, overlap = lab, n
    if best is None:
        names = ", ".join(lab.name for lab in labs)
        raise SubmissionError(
            f"cannot tell which lab {Path(path).name} is: its name is none of {names} and it has "
            f"none of their answer cells. Submit the lab notebook you were given, renamed "
            f"back to its original name."
        )
    return best


def load_answers(path, lab: Lab | None = None) -> AnswerSource:
    """Read a submission and return the code to grade.

    Inputs:
    - path: the submitted notebook.
    - lab: the lab it is for; by default told from its name or its cells.

    Raises SubmissionError when nothing can be graded (corrupt file, a
    notebook of another lab). A missing or duplicated answer cell is only a
    problem: the rest is graded.
    """
    nb = read_notebook(path)
    lab = lab or identify_lab(path, nb)
    lab_nb = nbformat.read(lab.notebook, as_version=4)
    expected = [gid for gid, _ in answer_cells(lab_nb)]
    submitted: dict[str, str] = {}
    problems = []
    for gid, source in answer_cells(nb):
        if gid in submitted:
            problems.append(f"answer cell {gid!r} appears twice; only the first one is graded.")
        else:
            submitted[gid] = source
    if expected and not set(expected) & set(submitted):
        raise SubmissionError(
            f"{Path(path).name} has none of the answer cells of lab {lab.name} "
            f"({', '.join(expected)}): is it the right notebook?"
        )
    answers = []
    for gid in expected:
        if gid in submitted:
            answers.append((gid, submitted[gid]))
        else:
            problems.append(
                f"answer cell {gid!r} is missing from your notebook (was it deleted?); "
                f"what it should define counts as not written."
            )
    extra = sorted(set(submitted) - set(expected))
    if extra:
        problems.append(f"answer cells not in this lab were ignored: {', '.join(extra)}.")
    return AnswerSource(lab=lab, setup=setup_cells(lab_nb), answers=answers, problems=problems)
