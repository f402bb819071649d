"""Grading speed: ``python -m autograder grade`` against ``nbgrader autograde``, and
the sandboxed batch with one and two jobs.

    python benchmarks/grading.py --vs-nbgrader [--students 20] [--labs 01_preprocessing ...]
    python benchmarks/grading.py --class-size 200     # --jobs 1 vs --jobs 2, fixed cost
    python benchmarks/grading.py --class-size 60 --cluster local:2   # --jobs 2 vs Dask
    python benchmarks/grading.py --overhead [--students 10] [--before REV]

``--overhead`` prints, per lab and in one run: the in-process time of the
hidden checks on the reference (pytest, trusted transport, no sandbox), the
sandboxed time per submission of a class of reference notebooks graded with
``--jobs 2`` (the time between the first report written and the last, over
N - 1: the steady state, without the batch's one-off start-up, which is
printed too),
and the overhead per submission: that time minus half the in-process time
(two jobs share two cores). With ``--before REV`` (a git revision), the same
classes are also graded by that revision's grader, from a git worktree in
build/, side by side.

``--class-size N`` grades a synthetic Lab 01 class of N notebooks cycling
through the reference, its mutants and the adversarial corpus
(tests/adversarial), once with one job and once with two, and prints
submissions per second, the speed-up, and the fixed cost per submission
(starting the sandboxed student process and the checks' process, with their
imports), measured on their own.

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
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.build import mutant_notebook, solved_notebook
from autograder.grade import grade_all
from autograder.labs import REPO, all_labs, find_lab
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
        lab_start = time.perf_counter()
        # A lab's 20 notebooks with their experiments take most of an hour on 2 cores.
        proc = run_nbgrader(course, "autograde", lab.name, "--force", timeout=4 * 3600)
        if proc.returncode:
            sys.exit(f"nbgrader autograde failed:\n{proc.stderr[-3000:]}")
        # Printed as it goes: the whole run takes hours, a partial result is still a figure.
        print(f"  nbgrader autograde {lab.name}: {time.perf_counter() - lab_start:7.1f} s",
              flush=True)
    seconds = time.perf_counter() - start
    run_nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as f:
        scores = {(r["student_id"], r["assignment"]): float(r["score"]) for r in csv.DictReader(f)}
    return seconds, scores


def make_mixed_class(root: Path, size: int) -> int:
    """Write ``size`` Lab 01 submissions: reference, mutants and adversarial, in turn."""
    lab = find_lab("01_preprocessing")
    solved = solved_notebook(lab)
    kinds = [solved] + [mutant_notebook(lab, m, solved) for m in load_mutants(lab)]
    corpus = sorted((REPO / "tests" / "adversarial").glob("*/01_preprocessing.ipynb"))
    for i in range(size):
        path = root / f"student{i:03d}" / f"{lab.name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        pick = i % (len(kinds) + len(corpus))
        if pick < len(kinds):
            nbformat.write(kinds[pick], path)
        else:
            shutil.copy(corpus[pick - len(kinds)], path)
    return size


def inprocess_checks_seconds(lab) -> float:
    """Wall time of the lab's hidden checks on the reference in this machine's pytest,
    in-process (no sandbox, no notebook): what the checks themselves cost."""
    import subprocess

    cmd = [sys.executable, "-m", "pytest", str(lab.checks_file), "-q", "-p", "no:cacheprovider",
           "-p", "no:nbval", "-o", "addopts="]
    subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=900)  # warm the caches
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, capture_output=True, timeout=900, check=True)
    total = time.perf_counter() - start
    start = time.perf_counter()  # pytest's own start-up, with the same plugins and imports
    subprocess.run([*cmd, "--collect-only"], cwd=REPO, capture_output=True, timeout=900)
    return max(total - (time.perf_counter() - start), 0.0)


def grade_command_seconds(tree: Path, python: str, class_dir: Path, out: Path,
                          jobs: int) -> float:
    """Wall time of ``python -m autograder grade`` run by ``python`` from the tree ``tree``."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "autograder", "grade", str(class_dir), "--out",
                           str(out), "--jobs", str(jobs)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=4 * 3600)
    if proc.returncode:
        sys.exit(f"grading from {tree} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def checkout_before(rev: str) -> tuple[Path, str]:
    """A git worktree of ``rev`` in build/, with a small virtual environment of its own
    (``.venv``, no packages: a .pth file puts the worktree, its labkit and this project's
    site-packages on the path), so that its grader, and the student processes it starts,
    import its own code. Returns (the worktree, its python)."""
    import site
    import subprocess

    tree = REPO / "build" / f"bench-before-{rev}"
    if tree.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                       capture_output=True)
    tree.parent.mkdir(exist_ok=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tree / ".venv")],
                   check=True)
    ours = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    theirs = next((tree / ".venv" / "lib").glob("python*/site-packages"))
    (theirs / "bench-before.pth").write_text(f"{tree}\n{tree / 'labs'}\n{ours}\n")
    return tree, str(tree / ".venv" / "bin" / "python")


def steady_cost(tree, python, class_dir: Path, out: Path, checks: float, n: int):
    """(seconds per submission, overhead per submission, the batch's start-up) of grading
    ``class_dir`` (``n`` notebooks) from ``tree``: the time between the first and the last
    report written, over n - 1, is the steady state; what comes before is start-up."""
    start = time.time()
    grade_command_seconds(tree, python, class_dir, out, 2)
    stamps = sorted(p.stat().st_mtime for p in out.glob("*/*.json"))
    if len(stamps) != n:
        sys.exit(f"{len(stamps)} reports for {n} submissions in {out}")
    per = (stamps[-1] - stamps[0]) / (n - 1)
    return per, per - checks / 2, stamps[0] - start - per


def overhead(students: int, labs, before: str | None) -> None:
    """The sandbox's overhead per submission, per lab (see the module's docstring)."""
    import subprocess

    old = checkout_before(before) if before else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
            work = Path(tmp)
            print(f"per lab: a class of {students} reference notebooks, --jobs 2; per "
                  f"submission: the time between the first and the last report, over "
                  f"{students - 1}; seconds")
            header = f"{'lab':<24} {'checks in-process':>18} {'sandboxed/subm.':>16} " \
                     f"{'overhead/subm.':>15} {'start-up':>9}"
            print(header + (f" {'before: subm.':>14} {'overhead':>9} {'start-up':>9}"
                            if old else ""))
            for lab in labs:
                class_dir = work / lab.name
                for i in range(students):
                    path = class_dir / f"s{i:03d}" / lab.notebook.name
                    path.parent.mkdir(parents=True)
                    nbformat.write(solved_notebook(lab), path)
                checks = inprocess_checks_seconds(lab)
                line = f"{lab.name:<24} {checks:18.2f}"
                line += " {:16.2f} {:15.2f} {:9.1f}".format(*steady_cost(
                    REPO, sys.executable, class_dir, work / f"new-{lab.name}", checks, students))
                if old:
                    line += " {:14.2f} {:9.2f} {:9.1f}".format(*steady_cost(
                        *old, class_dir, work / f"old-{lab.name}", checks, students))
                print(line, flush=True)
    finally:
        if old:
            subprocess.run(["git", "worktree", "remove", "--force", str(old[0])], cwd=REPO,
                           capture_output=True)


def fixed_costs(repeat: int = 5) -> tuple[float, float, float]:
    """Medians of ``repeat`` runs, in seconds: the sandbox's start (process, imports, the
    reference's answer cells); the checks' process as the grader starts it (a copy of a
    warm fork server, with pytest's collection); the same as a fresh ``python -m pytest``."""
    from autograder.forkserver import ForkServer
    from autograder.notebook import load_answers
    from autograder.runner import PYTEST, _child_env, _pytest_args, _run_child
    from autograder.sandbox import Limits, Sandbox

    lab = find_lab("01_preprocessing")
    limits = Limits()
    server = ForkServer(_child_env(), limits.to_json())
    with tempfile.TemporaryDirectory() as tmp:
        nb = Path(tmp) / f"{lab.name}.ipynb"
        nbformat.write(solved_notebook(lab), nb)
        source = load_answers(nb, lab)
        args = _pytest_args(lab, Path(tmp) / "c.jsonl", ["--collect-only"], limits)
        server.run(args, tmp, str(Path(tmp) / "log"), 120)  # warm: imports done
        starts, forked, fresh = [], [], []
        for _ in range(repeat):
            sandbox = Sandbox(limits)
            t = time.perf_counter()
            sandbox.start(source)
            starts.append(time.perf_counter() - t)
            sandbox.close()
            t = time.perf_counter()
            server.run(args, tmp, str(Path(tmp) / "log"), 120)
            forked.append(time.perf_counter() - t)
            t = time.perf_counter()
            _run_child([*PYTEST, *args], 120)
            fresh.append(time.perf_counter() - t)
    server.close()
    return statistics.median(starts), statistics.median(forked), statistics.median(fresh)


def sandbox_batch(size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        make_mixed_class(work / "class", size)
        print(f"synthetic Lab 01 class: {size} notebooks (reference, mutants, adversarial)")
        times = {}
        for jobs in (1, 2):
            t = time.perf_counter()
            reports = grade_all([work / "class"], work / f"grades{jobs}", jobs=jobs,
                                progress=False)
            times[jobs] = time.perf_counter() - t
            print(f"--jobs {jobs}: {times[jobs]:7.1f} s, {size / times[jobs]:.2f} submissions/s, "
                  f"{times[jobs] / size:.2f} s per submission; "
                  f"{sum(r.score for r in reports):g} points given")
        print(f"speed-up of --jobs 2 over --jobs 1: {times[1] / times[2]:.2f}x")
    start, forked, fresh = fixed_costs()
    print(f"fixed cost per submission: sandbox start {start:.2f} s (process, imports, answer "
          f"cells; it runs while the checks' process starts) + checks' process "
          f"{forked:.2f} s (a fork of a warm server, pytest collection) = "
          f"{start + forked:.2f} s; a fresh python -m pytest instead of the fork: {fresh:.2f} s")


def cluster_batch(size: int, address: str) -> None:
    """The same synthetic class with --jobs 2 and on the cluster, side by side, the
    cluster's start-up timed apart (a batch on a running cluster does not pay it)."""
    from autograder.cluster import open_client

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        make_mixed_class(work / "class", size)
        print(f"synthetic Lab 01 class: {size} notebooks (reference, mutants, adversarial)")
        t = time.perf_counter()
        local = grade_all([work / "class"], work / "local", jobs=2, progress=False)
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        with open_client(address):
            pass
        start_s = time.perf_counter() - t
        t = time.perf_counter()
        remote = grade_all([work / "class"], work / "cluster", cluster=address, progress=False)
        cluster_s = time.perf_counter() - t - (start_s if address.startswith("local:") else 0)
        same = sorted((r.student, r.score) for r in local) == \
            sorted((r.student, r.score) for r in remote)
        print(f"--jobs 2:          {local_s:7.1f} s, {size / local_s:.2f} submissions/s")
        print(f"--cluster {address}: {cluster_s:7.1f} s, {size / cluster_s:.2f} submissions/s "
              f"(without the cluster's start-up, {start_s:.1f} s, timed apart)")
        print(f"overhead of the cluster per submission: {(cluster_s - local_s) / size:+.2f} s "
              f"({cluster_s / local_s - 1:+.1%}); same scores: {same}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-nbgrader", action="store_true", help="also time nbgrader autograde")
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--labs", nargs="*", help="lab names (default: every lab)")
    parser.add_argument("--jobs", type=int, default=2, help="our grader's parallel notebooks")
    parser.add_argument("--class-size", type=int, default=0,
                        help="grade a synthetic Lab 01 class of this size with 1 and 2 jobs")
    parser.add_argument("--overhead", action="store_true",
                        help="per lab: checks in-process, sandboxed per submission, overhead")
    parser.add_argument("--before", default=None,
                        help="with --overhead: also grade with this git revision's grader")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="with --class-size: --jobs 2 against this Dask cluster (local:2)")
    args = parser.parse_args(argv)
    if args.class_size and args.cluster:
        cluster_batch(args.class_size, args.cluster)
        return 0
    if args.class_size:
        sandbox_batch(args.class_size)
        return 0
    labs = [find_lab(name) for name in args.labs] if args.labs else all_labs()
    if args.overhead:
        overhead(args.students, labs, args.before)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        work = Path(tmp)
        submissions = make_class(work / "class", labs, args.students)
        n = len(submissions)
        print(f"{args.students} students x {len(labs)} labs = {n} notebooks "
              f"({', '.join(lab.name for lab in labs)})", flush=True)
        ours_s, ours = time_ours(work / "class", work / "grades", args.jobs)
        print(f"python -m autograder grade --jobs {args.jobs}: {ours_s:7.1f} s "
              f"({ours_s / n:.1f} s per notebook)", flush=True)
        if args.vs_nbgrader:
            nb_s, theirs = time_nbgrader(work, labs, submissions)
            print(f"nbgrader autograde:                  {nb_s:7.1f} s "
                  f"({nb_s / n:.1f} s per notebook)", flush=True)
            print(f"ratio nbgrader / ours: {nb_s / ours_s:.1f}x")
            differ = [k for k in ours if abs(ours[k] - theirs.get(k, -1)) > 1e-9]
            print(f"scores that differ: {len(differ)} of {n}", *differ[:5])
    return 0


if __name__ == "__main__":
    sys.exit(main())
