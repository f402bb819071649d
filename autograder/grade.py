"""Batch grading: find the submissions in folders, grade each, write reports and a gradebook.

Layouts understood, and where the student id comes from (the student level only):

- ``<root>/<student>/...``: the first folder under the root; every notebook
  below it is that student's, whatever its folders are called (a
  ``submitted/<victim>/`` folder inside it is still that student's own files);
- nbgrader's ``submitted/<student>/<assignment>/<notebook>.ipynb``, when the
  root is the ``submitted`` folder itself (then it is the layout above) or
  directly contains one: then the root is an nbgrader course and only its
  ``submitted/`` is read (``source/``, ``release/``, ``autograded/`` hold the
  course's own notebooks and copies);
- a notebook given directly, or lying in the root: the student is its folder's
  name when the file is named after a lab, else the file's stem.

Refused, each as an error row in the gradebook (never graded, never skipped
silently): a symbolic link, to a notebook or to a folder, anywhere below a
root (it is not followed); a notebook that is not a plain file (a FIFO); a
folder that cannot be read; a student folder (or loose notebook) whose name
cannot be a student id (empty, starting with '.', a path separator, control or
invisible characters, longer than ``Bounds.NAME``); two notebooks of one
student for one lab (an error row each, naming all of them). Skipped
silently: ``.ipynb_checkpoints`` folders anywhere (Jupyter's copies), and
hidden files and folders inside a valid student's folder only.

An error row's report goes to ``<out>/<folder>/<lab>.<tag>.json``, where the
folder is a safe name for the student (``report.safe_name``) and the tag comes
from the notebook's path, so error rows never overwrite each other or a
graded report; a rerun removes the error rows of paths it found fine.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from autograder.labs import all_labs
from autograder.notebook import lab_from_path
from autograder.report import (
    GRADER_FAULT,
    Bounds,
    SubmissionReport,
    read_report,
    read_reports,
    report_paths,
    write_gradebook,
    write_report,
)
from autograder.runner import grade_notebook
from autograder.sandbox.limits import Limits

CHECKPOINTS = ".ipynb_checkpoints"
NBGRADER_SUBMITTED = "submitted"


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    error: str = ""  # set when the submission is refused: an error row, never graded


# --- discovery ---------------------------------------------------------------------------------


def student_id_problem(name: str) -> str:
    """Why a folder name cannot be a student id, or "" when it can."""
    if not name.strip():
        return "it is empty"
    if name.startswith("."):
        return "it starts with '.' (a hidden folder)"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        return "it holds control or invisible characters"
    if len(name) > Bounds.NAME.chars:
        return f"it is longer than {Bounds.NAME.chars} characters"
    return ""


def _student_of_file(path: Path) -> str:
    """The student of a notebook outside any student folder: its folder's name when the
    file is named after a lab, else the file's stem (the link's own name, not its target's)."""
    path = Path(os.path.abspath(path))
    lab_names = {lab.name for lab in all_labs()}
    return path.parent.name if path.stem in lab_names else path.stem


def _checked(sub: Submission, refusal: str = "") -> Submission:
    """``sub`` with its error set when its student id is bad or ``refusal`` is given.

    A refused id is shown quoted (``repr``), so that an error row is never taken for,
    or filed with, a real student's (``alice\\x01`` is not ``alice``).
    """
    problem = student_id_problem(sub.student)
    if not problem and not refusal:
        return sub
    reasons = [f"the name {sub.student!r} cannot be a student id ({problem})"] if problem else []
    reasons += [refusal] if refusal else []
    error = f"{'; '.join(reasons)}. {sub.path} was not graded."
    return Submission(repr(sub.student) if problem else sub.student, sub.path, error)


def _student_level(root: Path) -> Path:
    """The folder whose subfolders are the students: ``root/submitted`` for an nbgrader
    course, else ``root``."""
    submitted = root / NBGRADER_SUBMITTED
    return submitted if submitted.is_dir() and not submitted.is_symlink() else root


def _student_at(base: Path, path: Path, folder: bool = False) -> str:
    """The student of ``path`` (a ``folder`` or a notebook) under the student level ``base``."""
    parts = path.relative_to(base).parts
    return parts[0] if folder or len(parts) >= 2 else _student_of_file(path)


def _walk(base: Path) -> list[Submission]:
    """Every notebook under ``base``, and as refused submissions every symbolic link that
    could lead to one (not followed), every notebook that is not a plain file (a FIFO
    would hang the grader) and every folder that cannot be read."""
    found = []

    def unreadable(error: OSError) -> None:
        path = Path(error.filename)
        if path == base:
            raise error
        found.append(_checked(Submission(_student_at(base, path, folder=True), path),
                              f"the folder {path} cannot be read ({error.strerror})"))

    for folder, subfolders, files in os.walk(base, onerror=unreadable, followlinks=False):
        here = Path(folder)
        parts = here.relative_to(base).parts
        # Hidden files and folders are a student's own clutter only inside a valid student
        # folder; elsewhere (a hidden student folder, a hidden notebook in the root) they
        # are refused, never skipped unseen. Checkpoints are Jupyter's copies, everywhere.
        clutter_ok = bool(parts) and not student_id_problem(parts[0])
        kept = []
        for name in sorted(subfolders):
            path = here / name
            if name == CHECKPOINTS or (clutter_ok and name.startswith(".")):
                continue
            if path.is_symlink():  # not followed by os.walk; refused, not ignored
                found.append(_checked(Submission(_student_at(base, path, folder=True), path),
                                      f"{path} is a symbolic link to a folder, not followed"))
            else:
                kept.append(name)
        subfolders[:] = kept
        for name in sorted(files):
            path = here / name
            if not name.endswith(".ipynb") or (clutter_ok and name.startswith(".")):
                continue
            found.append(_checked(Submission(_student_at(base, path), path), _not_plain(path)))
    return found


def _not_plain(path: Path) -> str:
    """Why ``path`` is not a plain file that can be graded, or "" when it is one."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if stat.S_ISLNK(mode):
        return f"{path} is a symbolic link"
    return "" if stat.S_ISREG(mode) else f"{path} is not a plain file"


def _refuse_duplicates(subs: list[Submission]) -> list[Submission]:
    """``subs`` with every group of notebooks claiming one student and lab (told from the
    file names) turned into error rows, each naming all of them."""
    groups = defaultdict(list)
    for sub in subs:
        lab = lab_from_path(sub.path)
        if not sub.error and lab is not None:
            groups[(sub.student, lab.name)].append(sub)
    refused = {}
    for (student, lab), group in groups.items():
        if len(group) > 1:
            note = _duplicate_note(student, lab, [str(s.path) for s in group])
            refused.update({id(s): replace(s, error=note) for s in group})
    return [refused.get(id(sub), sub) for sub in subs]


def _duplicate_note(student: str, lab: str, paths: list[str]) -> str:
    """The error of each of several notebooks claiming one student and lab."""
    return (f"{len(paths)} notebooks are submissions of {student} for {lab}: "
            f"{', '.join(paths)}. One submission per student and lab can be graded, so none "
            f"of them was counted; keep one and grade again.")


def find_submissions(paths) -> list[Submission]:
    """Every submitted notebook under ``paths`` (files or folders), with its student; the
    refused ones carry their error (see the module docstring)."""
    found = []
    for root in map(Path, paths):
        if root.is_file():  # given by the TA: taken as it is, a link too
            found.append(_checked(Submission(_student_of_file(root), root)))
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is neither a notebook nor a folder of submissions.")
        found += _walk(_student_level(root))
    unique, seen = [], set()
    for sub in found:  # one file reached from two overlapping roots is one submission
        key = os.path.abspath(sub.path) if sub.error else os.path.realpath(sub.path)
        if key not in seen:
            seen.add(key)
            unique.append(sub)
    return _refuse_duplicates(unique)


# --- grading -----------------------------------------------------------------------------------


def file_digest(path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def error_tag(path) -> str:
    """The tag of an error row's report file, from the notebook's path (12 hex digits)."""
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:12]


def already_graded(sub: Submission, out_dir: Path) -> SubmissionReport | None:
    """The report of an earlier run for this very file (same student, lab and bytes)."""
    lab = lab_from_path(sub.path)
    if lab is None or sub.error:
        return None
    report = read_report(report_paths(out_dir, sub.student, lab.name)[0])
    if report is None or not report.digest or report.digest != file_digest(sub.path):
        return None
    return report


def _refused_report(sub: Submission) -> SubmissionReport:
    """The error row of a refused submission (its file is not read, not even hashed)."""
    lab = lab_from_path(sub.path)
    return SubmissionReport(sub.student, lab.name if lab else "unknown", str(sub.path),
                            error=sub.error)


def _split_duplicates(
    graded: list[tuple[SubmissionReport, Path]], out_dir: Path
) -> tuple[list[SubmissionReport], list[tuple[SubmissionReport, Path]]]:
    """Find, among the (report, notebook) pairs of this run, the notebooks that turned out
    to be one student's same lab (their names did not tell) and write an error row for
    each instead; their shared report file, which holds only the last of them, is removed.
    Returns (the other reports, the (error row, notebook) pairs)."""
    groups = defaultdict(list)
    for report, path in graded:
        groups[report_paths(out_dir, report.student, report.lab)[0]].append((report, path))
    kept, rows = [], []
    for json_path, group in groups.items():
        if len(group) == 1:
            kept.append(group[0][0])
            continue
        json_path.unlink(missing_ok=True)
        json_path.with_suffix(".md").unlink(missing_ok=True)
        first = group[0][0]
        note = _duplicate_note(first.student, first.lab, [str(path) for _, path in group])
        for report, path in group:
            error = note + (f"\n\n{report.error}" if report.error else "")
            row = SubmissionReport(report.student, report.lab, str(path), error=error)
            write_report(row, out_dir, tag=error_tag(path))
            rows.append((row, path))
    return kept, rows


_TAGGED = re.compile(r".+\.[0-9a-f]{12}\.json")  # an error row's report file


def _remove_stale_reports(out_dir: Path, roots, current: set[Path], refused: set[str]) -> None:
    """Remove what earlier runs wrote and this run contradicts, so that the gradebook does
    not keep it: an error row for a notebook under ``roots`` that this run did not refuse
    again (``current`` holds the error rows it wrote), and a graded report for a notebook
    this run refused (absolute paths in ``refused``)."""
    roots = [Path(os.path.abspath(root)) for root in roots]
    for json_path in out_dir.glob("*/*.json"):
        tagged = _TAGGED.fullmatch(json_path.name) is not None
        if json_path in current:
            continue
        report = read_report(json_path)
        if report is None:
            continue
        path = Path(os.path.abspath(report.path))
        under_roots = any(path == root or path.is_relative_to(root) for root in roots)
        if (tagged and report.error and under_roots) or (not tagged and str(path) in refused):
            json_path.unlink(missing_ok=True)
            json_path.with_suffix(".md").unlink(missing_ok=True)


def grade_file(path, student: str, limits: Limits | None = None) -> SubmissionReport:
    """One submission's report; a grader bug becomes an error row (never the student's
    fault), so that it cannot stop a batch."""
    try:
        return grade_notebook(path, student=student, limits=limits)
    except Exception as e:
        lab = lab_from_path(path)
        return SubmissionReport(
            student, lab.name if lab else "unknown", str(path),
            error=f"internal grader error ({type(e).__name__}: {e}): {GRADER_FAULT}.",
        )  # fmt: skip


def grade_all(paths, out_dir, jobs: int = 1, limits: Limits | None = None,
              progress: bool = True, force: bool = False, cluster: str | None = None,
              **_cluster_opts) -> list[SubmissionReport]:
    """Grade every submission under ``paths`` into ``out_dir``.

    Writes ``out_dir/<student>/<lab>.json`` and ``.md`` per submission (each
    written to a temporary file, then renamed: a batch killed at any moment
    leaves only whole reports) and ``out_dir/gradebook.csv``, rebuilt from all
    the reports in ``out_dir``. A submission whose report is already there for
    the same file content is not graded again, unless ``force``. A refused
    submission is an error row and is never graded (see the module docstring).
    ``limits`` (the sandbox's ``Limits``, which the CLI builds from its options) go
    to ``grade_notebook``; by default, the table's own. With ``cluster`` (a Dask
    scheduler's address, or ``local:N``) the submissions are graded on its workers
    instead of ``jobs`` local threads (``autograder.cluster``); everything else is the
    same.
    """
    submissions = find_submissions(paths)
    out_dir = Path(out_dir)
    error_rows = [(_refused_report(sub), sub.path) for sub in submissions if sub.error]
    for row, path in error_rows:
        write_report(row, out_dir, tag=error_tag(path))
    done, todo = [], []
    for sub in submissions:
        if sub.error:
            continue
        earlier = None if force else already_graded(sub, out_dir)
        if earlier:
            done.append((earlier, sub.path))
        else:
            todo.append(sub)

    def grade_one(sub: Submission) -> SubmissionReport:
        digest = file_digest(sub.path)
        report = grade_file(sub.path, sub.student, limits)
        report.digest = digest
        write_report(report, out_dir)
        return report

    if done and progress:
        print(f"{len(done)} of {len(submissions)} submissions already graded "
              f"(same file); --force grades them again.")
    if cluster:
        from autograder.cluster import grade_on_cluster

        arrived = {}

        def on_report(sub: Submission, report: SubmissionReport) -> None:
            write_report(report, out_dir)
            arrived[id(sub)] = report

        grade_on_cluster(todo, cluster, limits, on_report, progress=progress, **_cluster_opts)
        graded = [arrived[id(sub)] for sub in todo]
    else:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            graded = list(tqdm(pool.map(grade_one, todo), total=len(todo), desc="grading",
                               unit="notebook", disable=not progress or not todo))
    graded_pairs = list(zip(graded, [sub.path for sub in todo], strict=True))
    reports, duplicates = _split_duplicates(done + graded_pairs, out_dir)
    error_rows += duplicates
    current = {report_paths(out_dir, r.student, r.lab, error_tag(path))[0]
               for r, path in error_rows}
    refused = {os.path.abspath(r.path) for r, _ in error_rows}
    _remove_stale_reports(out_dir, paths, current, refused)
    write_gradebook(read_reports(out_dir), out_dir / "gradebook.csv")
    return reports + [r for r, _ in error_rows]
