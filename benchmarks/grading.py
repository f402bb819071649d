"""Grading speed: ``python -m autograder grade`` against ``nbgrader autograde``.

    python benchmarks/grading.py --vs-nbgrader [--students 20] [--labs 01_preprocessing ...]

Builds one class of submissions (for every lab, students cycle through the
reference solution, the untouched stubs and each seeded mutant), grades it
with both, in one run, and prints both wall times, their ratio, and whether
the scores agree. The two do different work by design: nbgrader executes
every cell of every notebook (the experiments included), our grader runs only
the answer cells and the hidden checks.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.build import mutant_notebook, solved_notebook
from autograder.grade import grade_all
from autograder.labs import all_labs, find_lab
from autograder.mutants import load_mutants
from autograder.nbgrader_course import build_course, run_nbgrader


def make_class(root: Path, labs, students: int) -> list[tuple[str, str, Path]]:
    """Write ``root/<student>/<lab>.ipynb``; return (student, lab, path) for each."""
    written = []
    for lab in labs:
        solved = solved_notebook(lab)
        kinds = [solved, nbformat.read(lab.notebook, 4)]
        kinds += [mutant_notebook(lab, m, solved) for m in load_mutants(lab)]
        for i in range(students):
            student = f"student{i:03d}"
            path = root / student / lab.notebook.name
            path.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(kinds[i % len(kinds)], path)
            written.append((student, lab.name, path))
    return written


def time_ours(class_dir: Path, out: Path, jobs: int) -> tuple[float, dict]:
    start = time.perf_counter()
    reports = grade_all([class_dir], out, jobs=jobs, progress=False)
    seconds = time.perf_counter() - start
    return seconds, {(r.student, r.lab): r.score for r in reports}


def time_nbgrader(work: Path, labs, submissions) -> tuple[float, dict]:
    course = work / "course"
    build_course(course, labs=list(labs))
    for lab in labs:
        proc = run_nbgrader(course, "generate_assignment", lab.name, "--force")
        if proc.returncode:
            sys.exit(f"nbgrader generate_assignment failed:\n{proc.stderr[-3000:]}")
    for student, lab_name, path in submissions:
        dest = course / "submitted" / student / lab_name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    start = time.perf_counter()
    for lab in labs:
        proc = run_nbgrader(course, "autograde", lab.name, "--force")
        if proc.returncode:
            sys.exit(f"nbgrader autograde failed:\n{proc.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    run_nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as f:
        scores = {(r["student_id"], r["assignment"]): float(r["score"]) for r in csv.DictReader(f)}
    return seconds, scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-nbgrader", action="store_true", help="also time nbgrader autograde")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--labs", nargs="*", help="lab names (default: every lab)")
    parser.add_argument("--jobs", type=int, default=2, help="our grader's parallel notebooks")
    args = parser.parse_args(argv)
    labs = [find_lab(name) for name in args.labs] if args.labs else all_labs()

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        work = Path(tmp)
        submissions = make_class(work / "class", labs, args.students)
        n = len(submissions)
        print(f"{args.students} students x {len(labs)} labs = {n} notebooks "
              f"({', '.join(lab.name for lab in labs)})")
        ours_s, ours = time_ours(work / "class", work / "grades", args.jobs)
        print(f"python -m autograder grade --jobs {args.jobs}: {ours_s:7.1f} s "
              f"({ours_s / n:.1f} s per notebook)")
        if args.vs_nbgrader:
            nb_s, theirs = time_nbgrader(work, labs, submissions)
            print(f"nbgrader autograde:                  {nb_s:7.1f} s "
                  f"({nb_s / n:.1f} s per notebook)")
            print(f"ratio nbgrader / ours: {nb_s / ours_s:.1f}x")
            differ = [k for k in ours if abs(ours[k] - theirs.get(k, -1)) > 1e-9]
            print(f"scores that differ: {len(differ)} of {n}", *differ[:5])
    return 0


if __name__ == "__main__":
    sys.exit(main())
