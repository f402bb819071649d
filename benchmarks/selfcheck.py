"""What running a mutant's suspects first saves in the fast selfcheck (make test's).

    python benchmarks/selfcheck.py 07 08      # default: every lab

`make test` runs ``python -m autograder selfcheck --fast``: each seeded mutant is
graded until its first failing check, which is all the selfcheck asks (is it
caught?). In file order that first failure can come late: a mutant of googlenet
waits behind the layer_table, AlexNet and VGG16 checks. With the suspects first
(the checks whose code names the function the mutant replaces, the plugin's
``--first-for``), it comes sooner. For each lab, both orders run one after the other
on the same machine, and the script prints the wall seconds of each, their ratio,
and that both give the same verdicts (every mutant caught either way).
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as make test runs it

from autograder.labs import all_labs, find_lab  # noqa: E402
from autograder.selfcheck import selfcheck_lab  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", help="labs (01, 01_preprocessing); default: all")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    labs = [find_lab(name) for name in args.labs] if args.labs else all_labs()
    print(f"{'lab':<26} {'file order':>11} {'suspects first':>15} {'ratio':>6}  verdicts")
    total = [0.0, 0.0]
    for lab in labs:
        seconds, verdicts = [], []
        for suspects_first in (False, True):
            start = time.perf_counter()
            result = selfcheck_lab(lab, jobs=args.jobs, every_check=False,
                                   suspects_first=suspects_first)
            seconds.append(time.perf_counter() - start)
            verdicts.append((result.ok, len(result.mutants) - len(result.escaped)))
        same = "same" if verdicts[0] == verdicts[1] else f"DIFFER {verdicts}"
        total = [total[0] + seconds[0], total[1] + seconds[1]]
        print(f"{lab.name:<26} {seconds[0]:>10.0f}s {seconds[1]:>14.0f}s "
              f"{seconds[0] / seconds[1]:>5.2f}x  {same} (caught {verdicts[1][1]})", flush=True)
    print(f"{'all':<26} {total[0]:>10.0f}s {total[1]:>14.0f}s {total[0] / total[1]:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
