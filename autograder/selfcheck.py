"""The TA's selfcheck: prove, per lab, that the hidden checks can be trusted.

- the reference solution scores 100%;
- the untouched stubs score 0% (every check fails on them);
- every seeded mutant loses points (some check catches it).

All three are graded like real submissions: notebooks, child processes.
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from tqdm import tqdm

from autograder.build import mutant_notebook, solved_notebook
from autograder.labs import Lab
from autograder.mutants import load_mutants
from autograder.report import SubmissionReport
from autograder.runner import grade_notebook


@dataclass
class LabSelfcheck:
    lab: Lab
    reference: SubmissionReport
    stubs: SubmissionReport
    mutants: list[tuple[object, SubmissionReport]] = field(default_factory=list)

    @property
    def escaped(self):
        return [m for m, r in self.mutants if r.error or r.score >= r.max_score]

    @property
    def ok(self) -> bool:
        return (
            not self.reference.error
            and self.reference.max_score > 0
            and self.reference.score == self.reference.max_score
            and not self.stubs.error
            and self.stubs.score == 0
            and not self.escaped
            and len(self.mutants) > 0
        )

    def summary(self) -> str:
        r, s = self.reference, self.stubs
        caught = len(self.mutants) - len(self.escaped)
        return (
            f"{self.lab.name:<24} reference {r.percent:5.1f}% ({r.score:g}/{r.max_score:g})   "
            f"stubs {s.percent:5.1f}% ({s.score:g}/{s.max_score:g})   "
            f"mutants caught {caught}/{len(self.mutants)}   {'OK' if self.ok else 'FAILED'}"
        )

    def details(self) -> list[str]:
        """What went wrong, for a TA to fix."""
        out = []
        if self.reference.error:
            out.append(f"  reference not graded: {self.reference.error}")
        for c in self.reference.checks:
            if not c.passed:
                out.append(f"  reference fails {c.check}: {c.message}")
        for c in self.stubs.checks:
            if c.earned > 0:
                out.append(f"  stubs pass {c.check}: this check cannot fail on an unwritten lab")
        for m in self.escaped:
            out.append(f"  mutant not caught: {m.name} ({m.description})")
        if not self.mutants:
            out.append(f"  no mutants: add some to {self.lab.mutants_module}")
        if self.reference.problems:
            out += [f"  reference problem: {p}" for p in self.reference.problems]
        return out


def selfcheck_lab(lab: Lab, jobs: int = 2, progress: bool = False,
                  every_check: bool = True, suspects_first: bool = True) -> LabSelfcheck:
    """Grade the reference, the stubs and every mutant of one lab; with ``progress``, a bar
    on stderr counts the graded notebooks (a lab takes minutes). Without ``every_check``
    a mutant's grading stops at its first failing check: enough to know it is caught,
    not which checks catch it (``mutant_table`` then lists the first one only); with
    ``suspects_first`` as well, the checks that name the function a mutant replaces run
    first (benchmarks/selfcheck.py measures what it saves)."""
    solved = solved_notebook(lab)
    mutants = load_mutants(lab)
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
        jobs_list = [("reference", solved), ("stubs", nbformat.read(lab.notebook, 4))]
        jobs_list += [(m.name, mutant_notebook(lab, m, solved)) for m in mutants]
        paths = []
        for name, nb in jobs_list:
            path = Path(tmp) / name / lab.notebook.name
            path.parent.mkdir()
            nbformat.write(nb, path)
            paths.append((name, path))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
                tqdm(total=len(paths), desc=lab.name, unit="notebook", leave=False,
                     disable=not progress, file=sys.stderr) as bar:
            # Stopping at a mutant's first failure, its suspects run first: the checks
            # that name the function it replaces.
            suspects = [None, None] + [m.replaces if suspects_first else None for m in mutants]
            futures = [pool.submit(grade_notebook, path, lab, student=name,
                                   first_failure=not every_check and i >= 2,
                                   first_for=suspects[i])
                       for i, (name, path) in enumerate(paths)]
            for _ in as_completed(futures):
                bar.update(1)
            reports = [future.result() for future in futures]
    return LabSelfcheck(lab, reports[0], reports[1], list(zip(mutants, reports[2:], strict=True)))


def mutant_table(result: LabSelfcheck) -> list[str]:
    """One line per mutant: its bug and the checks that caught it."""
    lines = []
    for m, r in result.mutants:
        caught_by = [c.check for c in r.checks if not c.passed]
        if not caught_by:
            verdict = "NOT CAUGHT"
        else:
            more = ", ..." if len(caught_by) > 3 else ""
            verdict = f"caught by {len(caught_by)}: {', '.join(caught_by[:3])}{more}"
        lines.append(f"    {m.name:<34} {verdict}")
    return lines
