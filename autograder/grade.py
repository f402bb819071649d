"""Batch grading: find the submissions in folders, grade each, write reports and a gradebook.

Layouts understood:
- ``<root>/<student>/<NN_topic>.ipynb`` (a folder per student);
- nbgrader's ``submitted/<student>/<assignment>/<notebook>.ipynb``;
- a notebook given directly: the student is its folder's name when the file
  is named after a lab, else the file's stem.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from autograder.labs import all_labs
from autograder.notebook import lab_from_path
from autograder.report import (
    SubmissionReport,
    read_report,
    read_reports,
    write_gradebook,
    write_report,
)
from autograder.runner import DEFAULT_TIME_LIMIT, grade_notebook


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path


def _student_of_file(path: Path) -> str:
    lab_names = {lab.name for lab in all_labs()}
    return path.parent.name if path.stem in lab_names else path.stem


def find_submissions(paths) -> list[Submission]:
    """Every submitted notebook under ``paths`` (files or folders), with its student."""
    found = []
    for root in map(Path, paths):
        if root.is_file():
            found.append(Submission(_student_of_file(root.resolve()), root))
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is neither a notebook nor a folder of submissions.")
        for path in sorted(root.rglob("*.ipynb")):
            parts = path.relative_to(root).parts
            if any(p.startswith(".") for p in parts):  # .ipynb_checkpoints and hidden files
                continue
            if "submitted" in parts[:-1]:  # nbgrader: submitted/<student>/<assignment>/
                student = parts[parts.index("submitted") + 1]
            elif len(parts) >= 2:
                student = parts[0]
            else:
                student = _student_of_file(path)
            found.append(Submission(student, path))
    return found


def file_digest(path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def already_graded(sub: Submission, out_dir: Path) -> SubmissionReport | None:
    """The report of an earlier run for this very file (same student, lab and bytes)."""
    lab = lab_from_path(sub.path)
    if lab is None:
        return None
    report = read_report(out_dir / sub.student / f"{lab.name}.json")
    if report is None or not report.digest or report.digest != file_digest(sub.path):
        return None
    return report


def grade_all(paths, out_dir, jobs: int = 1, time_limit: float = DEFAULT_TIME_LIMIT,
              progress: bool = True, force: bool = False) -> list[SubmissionReport]:
    """Grade every submission under ``paths`` into ``out_dir``.

    Writes ``out_dir/<student>/<lab>.json`` and ``.md`` per submission (each
    written to a temporary file, then renamed: a batch killed at any moment
    leaves only whole reports) and ``out_dir/gradebook.csv``, rebuilt from all
    the reports in ``out_dir``. A submission whose report is already there for
    the same file content is not graded again, unless ``force``.
    """
    submissions = find_submissions(paths)
    out_dir = Path(out_dir)
    done, todo = [], []
    for sub in submissions:
        earlier = None if force else already_graded(sub, out_dir)
        (done if earlier else todo).append(earlier or sub)

    def grade_one(sub: Submission) -> SubmissionReport:
        digest = file_digest(sub.path)
        try:
            report = grade_notebook(sub.path, student=sub.student, time_limit=time_limit)
        except Exception as e:  # a grader bug must not stop the batch either
            lab = lab_from_path(sub.path)
            report = SubmissionReport(
                sub.student, lab.name if lab else "unknown", str(sub.path),
                error=f"internal grader error ({type(e).__name__}: {e}); tell your TA.",
            )  # fmt: skip
        report.digest = digest
        write_report(report, out_dir)
        return report

    if done and progress:
        print(f"{len(done)} of {len(submissions)} submissions already graded "
              f"(same file); --force grades them again.")
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        graded = list(tqdm(pool.map(grade_one, todo), total=len(todo), desc="grading",
                           unit="notebook", disable=not progress))
    write_gradebook(read_reports(out_dir), out_dir / "gradebook.csv")
    return done + graded
