"""Run the visible checks of lab notebooks: ``python -m labkit.visible labs/*.ipynb``.

Each notebook runs from its first cell up to its last visible check cell
(nbgrader ``grade: true``), so that the checks see the data and the answers
they need, and the long experiments after them are skipped. Every visible
check cell is reported as passed or failed with its error; the exit status is
non-zero when one failed. This is what ``make test`` runs in the student
release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def _is_check(cell) -> bool:
    return cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade", False)


def run_visible_checks(path, timeout=600) -> list[tuple[str, str]]:
    """Run a notebook up to its last visible check.

    Inputs:
    - path: the notebook.
    - timeout: seconds allowed per cell.

    Returns:
    - list of (check cell's grade_id, "" when it passed, else the error), in order.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    last = max((i for i, c in enumerate(nb.cells) if _is_check(c)), default=-1)
    nb.cells = nb.cells[: last + 1]
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    results = []
    for cell in nb.cells:
        if _is_check(cell):
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            message = f"{errors[0].ename}: {errors[0].evalue}" if errors else ""
            results.append((cell.metadata["nbgrader"]["grade_id"], message))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="lab notebooks to check")
    args = parser.parse_args(argv)
    failed = total = 0
    for path in args.notebooks:
        results = run_visible_checks(path)
        done = sum(not message for _, message in results)
        print(f"{path}: {done} of {len(results)} visible checks pass")
        for grade_id, message in results:
            print(f"  {'ok    ' if not message else 'FAILED'} {grade_id}"
                  + (f": {message.splitlines()[0][:200]}" if message else ""))
        # An unwritten stub's message names it (labkit.stubs): the first one is where to go on.
        unwritten = [m for _, m in results if "is not written yet" in m]
        if unwritten:
            name = unwritten[0].split("`")[1]
            print(f"next in {Path(path).name}: write `{name}` (its answer cell), then rerun.")
        failed += len(results) - done
        total += len(results)
    if failed:
        print(f"{total - failed} of {total} visible checks pass: each FAILED line says what "
              f"to write or fix.")
    else:
        print("All visible checks passed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
