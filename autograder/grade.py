"""Batch grading: find the submissions in folders, grade each, write reports and a gradebook.

Layouts understood:
- ``<root>/<student>/<NN_topic>.ipynb`` (a folder per student);
- nbgrader's ``submitted/<student>/<assignment>/<notebook>.ipynb``;
- a notebook given directly: the student is its folder's name when the file
  is named after a lab, else the file's stem.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from autograder.labs import all_labs
from autograder.notebook import lab_from_path
from autograder.report import SubmissionReport, read_reports, write_gradebook, write_report
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


def grade_all(paths, out_dir, jobs: int = 1, time_limit: float = DEFAULT_TIME_LIMIT,
              progress: bool = True) -> list[SubmissionReport]:
    """Grade every submission under ``paths`` into ``out_dir``.

    Writes ``out_dir/<student>/<lab>.json`` and ``.md`` per submission and
    ``out_dir/gradebook.csv``, rebuilt from all the reports in ``out_dir``.
    """
    submissions = find_submissions(paths)
    out_dir = Path(out_dir)

    def grade_one(sub: Submission) -> SubmissionReport:
        try:
            report = grade_notebook(sub.path, student=sub.student, time_limit=time_limit)
        except Exception as e:  # a grader bug must not stop the batch either
            lab = lab_from_path(sub.path)
            report = SubmissionReport(
                sub.student, lab.name if lab else "unknown", str(sub.path),
                error=f"internal grader error ({type(e).__name__}: {e}); tell your TA.",
            )  # fmt: skip
        write_report(report, out_dir)
        return report

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(tqdm(pool.map(grade_one, submissions), total=len(submissions),
                            desc="grading", unit="notebook", disable=not progress))
    write_gradebook(read_reports(out_dir), out_dir / "gradebook.csv")
    return reports
