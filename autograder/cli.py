"""Command line: ``python -m autograder <command>``.

    selfcheck [LAB ...]           reference 100%, stubs 0%, every mutant caught
    grade PATH ... --out DIR      grade notebooks or folders into DIR
    build-solutions --out DIR     write every lab with the reference code in it
    build-nbgrader --out DIR      an nbgrader course: config and source/ notebooks
    build-release --out DIR       the student release: labs, labkit, data scripts
    list                          the labs, their checks and mutants
"""

from __future__ import annotations

import argparse
import sys
import time

from autograder.labs import all_labs, find_lab


def cmd_selfcheck(args) -> int:
    from autograder.selfcheck import mutant_table, selfcheck_lab

    labs = [find_lab(name) for name in args.labs] if args.labs else all_labs()
    ok = True
    for lab in labs:
        start = time.perf_counter()
        result = selfcheck_lab(lab, jobs=args.jobs, progress=sys.stderr.isatty(),
                               every_check=args.verbose or not args.fast)
        print(f"{result.summary()}   ({time.perf_counter() - start:.0f} s)", flush=True)
        if args.verbose:
            print("\n".join(mutant_table(result)))
        for line in result.details():
            print(line)
        ok &= result.ok
    if not labs:
        print("no labs found in labs/")
        return 1
    return 0 if ok else 1


def limits_from(args):
    """The one ``Limits`` of this run, from the command line (every other number is the
    table's default: autograder/sandbox/limits.py)."""
    from dataclasses import replace

    from autograder.sandbox.limits import Limits, MiB

    limits = Limits()
    if getattr(args, "time_limit", None) is not None:
        limits = replace(limits, submission_seconds=float(args.time_limit))
    if getattr(args, "check_time_limit", None) is not None:
        limits = replace(limits, check_seconds=float(args.check_time_limit))
    if getattr(args, "memory_mib", None) is not None:
        limits = replace(limits, memory_bytes=int(args.memory_mib) * MiB)
    if getattr(args, "disk_mib", None) is not None:
        limits = replace(limits, disk_bytes=int(args.disk_mib) * MiB)
    return limits


def cmd_grade(args) -> int:
    from autograder.grade import grade_all

    reports = grade_all(args.paths, args.out, jobs=args.jobs, limits=limits_from(args),
                        force=args.force, cluster=args.cluster)
    for r in sorted(reports, key=lambda r: (r.student, r.lab)):
        status = f"error: {r.error.splitlines()[0]}" if r.error else f"{r.percent:5.1f}%"
        print(f"{r.student:<20} {r.lab:<26} {r.score:>6g} /{r.max_score:>4g}  {status}")
    print(f"gradebook: {args.out}/summary.csv (a row per student), "
          f"{args.out}/gradebook.csv (a column per check); {len(reports)} submissions")
    return 0


def cmd_build_solutions(args) -> int:
    from autograder.build import build_solutions

    for path in build_solutions(args.out):
        print(path)
    return 0


def cmd_build_nbgrader(args) -> int:
    from autograder.nbgrader_course import build_course

    for path in build_course(args.out):
        print(path)
    return 0


def cmd_build_release(args) -> int:
    from autograder.release import build_release

    root = build_release(args.out)
    print(f"student release written to {root}")
    return 0


def cmd_list(args) -> int:
    from autograder.mutants import load_mutants
    from autograder.runner import collect_checks

    for lab in all_labs():
        checks = collect_checks(lab)
        points = sum(c["points"] for c in checks)
        print(f"{lab.name}: {len(checks)} checks ({points:g} points), "
              f"{len(load_mutants(lab))} mutants")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("selfcheck", help="prove the checks: reference 100%%, stubs 0%%, mutants")
    p.add_argument("labs", nargs="*", help="labs to check (name or topic); default: all")
    p.add_argument("--jobs", type=int, default=2, help="notebooks graded at once")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="list which checks catch each mutant")
    p.add_argument("--fast", action="store_true",
                   help="stop grading each mutant at its first failing check (make test)")
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("grade", help="grade notebooks or folders of submissions")
    p.add_argument("paths", nargs="+", help="notebooks, or folders <student>/<NN_topic>.ipynb")
    p.add_argument("--out", required=True, help="folder for the reports and gradebook.csv")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded at once")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for all the checks of one submission (default 300)")
    p.add_argument("--check-time-limit", type=float, default=None,
                   help="seconds per check without its own limit (default 10)")
    p.add_argument("--memory-mib", type=int, default=None,
                   help="memory of a student's process beyond the lab's imports (default 2048)")
    p.add_argument("--disk-mib", type=int, default=None,
                   help="size of a student's only writable folder (default 256)")
    p.add_argument("--force", action="store_true",
                   help="grade again submissions already graded into --out (same file)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="grade on a Dask cluster: a scheduler (tcp://host:8786) or local:N "
                        "(N worker processes here); --jobs is then unused")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("build-solutions", help="write the labs with the reference code")
    p.add_argument("--out", required=True, help="folder to write the solved notebooks to")
    p.set_defaults(func=cmd_build_solutions)

    p = sub.add_parser("build-nbgrader", help="write an nbgrader course directory")
    p.add_argument("--out", required=True, help="the course directory to write")
    p.set_defaults(func=cmd_build_nbgrader)

    p = sub.add_parser("build-release", help="write the student release")
    p.add_argument("--out", required=True, help="folder to write the release to (replaced)")
    p.set_defaults(func=cmd_build_release)

    p = sub.add_parser("list", help="list the labs with their checks and mutants")
    p.set_defaults(func=cmd_list)

    args = parser.parse_args(argv)
    from autograder.cluster import ClusterError

    try:
        return args.func(args)
    except (KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
