"""How long each lab takes, solved, top to bottom: the figures behind the README's budgets.

    python benchmarks/notebooks.py                  # every lab
    python benchmarks/notebooks.py 05 transfer_learning
    python benchmarks/notebooks.py --cells --save build/executed 01   # each cell; outputs kept
    python benchmarks/notebooks.py --busy 2          # beside 2 busy processes (a busy laptop)

Each lab's instructor copy (the stubs replaced by the reference) runs in a fresh kernel,
as `make solutions` builds it and as the test suite runs it. Printed per lab: wall-clock
seconds, the kernel's CPU seconds (user + system, all its threads), the slowest cell, and
the budget (5 minutes a lab, about a minute a cell, on 2 idle cores). The load average
is printed before and after: on a busy machine wall times grow and CPU times do not, so
the CPU column is the one to compare between machines of the same speed. With --busy N,
N processes spin beside the labs (benchmarks/cpu_threads.py): a lab should stay within
about 3 times its idle time (labkit.train.configure_cpu leaves the busy cores alone).
--cells prints every code cell's seconds; --save DIR keeps the executed notebooks (their
printed tables are the figures the labs' prose is checked against).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from cpu_threads import competing_load  # benchmarks/, next to this script
from nbclient import NotebookClient

from autograder.build import solved_notebook
from autograder.labs import all_labs, find_lab

LAB_BUDGET_S = 300.0
CELL_BUDGET_S = 60.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cell_seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def run_lab(lab, workdir: Path, save: Path | None = None) -> dict:
    """Run ``lab``'s solved notebook in ``workdir`` (and write it, executed, into ``save``);
    returns its figures."""
    nb = solved_notebook(lab)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, save / lab.notebook.name)
    wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0  # the kernel is reaped
    cells = [(i, _cell_seconds(c)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    slowest = max(cells, key=lambda ic: ic[1], default=(-1, 0.0))
    return {"wall": wall, "cpu": cpu, "slowest_cell": slowest[0], "slowest_s": slowest[1],
            "cells": cells}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labs", nargs="*", help="labs (name, topic or number); default: all")
    parser.add_argument("--cells", action="store_true", help="print every code cell's time")
    parser.add_argument("--save", type=Path, help="write the executed notebooks there")
    parser.add_argument("--busy", type=int, default=0, help="busy processes beside the labs")
    args = parser.parse_args(argv)
    labs = [find_lab(name) for name in args.labs] or all_labs()
    os.environ.setdefault("MPLBACKEND", "Agg")
    with competing_load(args.busy):
        if args.busy:
            print(f"beside {args.busy} busy processes")
        return _run_all(labs, args)


def _run_all(labs, args) -> int:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'lab':<26}{'wall s':>8}{'CPU s':>8}{'slowest cell':>14}{'its s':>7}  budget")
    over = 0
    for lab in labs:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run_lab(lab, Path(tmp), args.save)
        ok = figures["wall"] <= LAB_BUDGET_S and figures["slowest_s"] <= 2 * CELL_BUDGET_S
        over += not ok
        print(f"{lab.name:<26}{figures['wall']:>8.1f}{figures['cpu']:>8.1f}"
              f"{figures['slowest_cell']:>14d}{figures['slowest_s']:>7.1f}  "
              f"{'ok' if ok else 'OVER'}", flush=True)
        if args.cells:
            print("    cells (index: s): " + ", ".join(f"{i}: {t:.1f}" for i, t in figures["cells"]
                                                      if t >= 0.5), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"budget: {LAB_BUDGET_S:.0f} s a lab, about {CELL_BUDGET_S:.0f} s a cell "
          f"(OVER past twice that)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
