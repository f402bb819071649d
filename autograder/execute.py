"""Run a submission's code, cell by cell, into the namespace the checks see.

The code comes as an ``AnswerSource`` (the lab's own setup cells, then the
submission's answer cells), made from the notebook by ``autograder.notebook``
in the grader's process and handed to the process that runs it as JSON, so
that this side needs neither nbformat nor the notebook file.
"""

from __future__ import annotations

import json
import linecache
from dataclasses import dataclass, field

from autograder.labs import Lab, find_lab


class SubmissionError(Exception):
    """A submission cannot be graded at all (corrupt file, wrong lab, ...)."""


@dataclass
class AnswerSource:
    """What a submission contributes: the code to run, cell by cell."""

    lab: Lab
    setup: list[tuple[str, str]]  # (cell id, source) of the lab's own setup cells
    answers: list[tuple[str, str]]  # (grade id, source) of the submission's answer cells
    problems: list[str] = field(default_factory=list)  # non-fatal, reported to the student

    def to_json(self) -> str:
        return json.dumps({"lab": self.lab.name, "setup": self.setup, "answers": self.answers,
                           "problems": self.problems})

    @classmethod
    def from_json(cls, text: str) -> AnswerSource:
        data = json.loads(text)
        return cls(find_lab(data["lab"]), [tuple(c) for c in data["setup"]],
                   [tuple(c) for c in data["answers"]], list(data["problems"]))



def _strip_magics(source: str, cell: str, problems: list[str]) -> str:
    """Comment out IPython magics and shell escapes, which are not Python."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("%", "!")):
            lines[i] = "# (ignored by the grader) " + line
            if not line.lstrip().startswith("%matplotlib"):
                problems.append(f"cell {cell!r}, line {i + 1}: IPython command ignored.")
    return "\n".join(lines)


def cell_filename(cell: str) -> str:
    """The file name under which a cell's code runs, as tracebacks show it."""
    return f"<answer cell {cell}>"


def exec_cell(source: str, cell: str, namespace: dict) -> None:
    """Run one cell's code in ``namespace`` with tracebacks that point into the cell."""
    filename = cell_filename(cell)
    # Registering the source lets tracebacks show the student's line.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)


def build_namespace(src: AnswerSource, namespace: dict | None = None) -> tuple[dict, list[str]]:
    """Run the setup cells and then each answer cell; return (namespace, problems).

    An answer cell that raises (a SyntaxError, a NameError at top level, ...)
    is reported as a problem and the other cells still run. ``namespace`` is
    where they run (default: a fresh one).
    """
    namespace = {"__name__": "__student__"} if namespace is None else namespace
    problems = list(src.problems)
    for cell, source in src.setup:
        try:
            exec_cell(_strip_magics(source, cell, []), cell, namespace)
        except Exception as e:
            # The lab's own cell, not the student's: a broken installation or a lab bug.
            raise SubmissionError(
                f"the setup cell of lab {src.lab.name} failed in the grader "
                f"({type(e).__name__}: {e}); this is not your fault: tell your TA."
            ) from None
    for cell, source in src.answers:
        try:
            exec_cell(_strip_magics(source, cell, problems), cell, namespace)
        except SyntaxError as e:
            problems.append(
                f"answer cell {cell!r} has a syntax error at line {e.lineno}: {e.msg}."
            )
        except BaseException as e:  # noqa: BLE001 - a student's SystemExit included
            problems.append(
                f"answer cell {cell!r} raised {type(e).__name__}: {e} when run; "
                f"names defined after that line are missing."
            )
    return namespace, problems
