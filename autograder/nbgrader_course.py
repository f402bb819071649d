"""An nbgrader course directory built from the labs, the reference and the hidden checks.

``build_course(out)`` writes ``out/nbgrader_config.py`` and, for every lab,
``out/source/<NN_topic>/<NN_topic>.ipynb``: the lab with

- in every answer cell, the reference code of each function or method body
  between ``### BEGIN SOLUTION`` / ``### END SOLUTION``, indented like the
  body, so that nbgrader's stub replacement gives back exactly the lab's stub
  (signature and docstring kept). Reference members that the stub lacks (a
  private helper method) ride inside the solution region of the method before
  them, so that they vanish from the release;
- at the top of every graded (visible check) cell, a ``### BEGIN HIDDEN
  TESTS`` region of one line that runs, in the kernel, the hidden checks of
  the answer cell it follows (``autograder.nbgrader_hooks.hidden_checks``) and
  shows their points as the cell's result: nbgrader's partial credit. The
  region comes *before* the visible checks so that its result is the cell's
  first ``execute_result``, ahead of any error a failing visible check
  raises: nbgrader then scores the cell with the hidden checks' points
  whatever the visible checks do, like ``python -m autograder grade``. The
  cell's ``points`` are the sum of its hidden checks' points.

Which answer cell a hidden check belongs to is found, not written down: each
check runs in-process on the reference through a recording student that notes
the names it reads (``python -m autograder.nbgrader_hooks map LAB``), and the
check goes to the last answer cell, in notebook order, that defines one of
them; its graded cell is the first graded cell after that answer cell.

In this mode the reference (inside the checks) and the checks run in the
student's kernel: that is nbgrader's model. ``python -m autograder grade``
keeps the student's code out of the grader's process.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from autograder.build import defined_names
from autograder.labs import REPO, Lab, all_labs
from autograder.notebook import nbgrader_meta

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CELL_TIMEOUT = 600  # seconds per cell; the labs' experiments take 1-2 minutes on 2 CPU cores
WARNING_PATTERN = r"\w*Warning\b"
# nbgrader's course id (release_assignment and collect refuse to run without one).
COURSE_ID = "advanced-convnets"

CONFIG = f'''\
"""nbgrader configuration of the course, written by `python -m autograder build-nbgrader`.

Run nbgrader from this directory: nbgrader generate_assignment 01_preprocessing, ...
The labs import `labkit` and the hidden tests import `autograder`: run nbgrader with
the course repository's environment (its .venv), whose python the python3 kernel uses.
"""

import os

c = get_config()  # noqa: F821

# The course's id, and its exchange (where release_assignment puts a lab for students to
# fetch, and their submit puts their work for collect) inside this folder, instead of
# nbgrader's system-wide /srv/nbgrader/exchange. On a shared JupyterHub, set this to one
# folder that every student and instructor can reach, in everyone's nbgrader_config.py.
c.CourseDirectory.course_id = {COURSE_ID!r}
c.Exchange.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exchange")


# The labs' stubs: nbgrader replaces each solution region with this, indented like it.
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}

# The experiments of a lab run for a minute or two per cell on 2 CPU cores.
c.Execute.timeout = {CELL_TIMEOUT}
c.Execute.kernel_name = "python3"

# nbgrader gives a grade cell 0 points for any output on stderr; warnings (a
# DeprecationWarning from a library, a UserWarning from torch) are not failures.
c.IgnorePattern.pattern = {WARNING_PATTERN!r}
c.IgnorePattern.enabled = True
'''


# --- solution regions -----------------------------------------------------------------------


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(lines: list[str], old: str, new: str) -> list[str]:
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
        elif line.startswith(old):
            out.append(new + line[len(old) :])
        else:
            raise ValueError(f"cannot re-indent {line!r} from {len(old)} to {len(new)} spaces")
    return out


def _docstring_end(node) -> int | None:
    """The last line (1-based) of a def's or class's docstring, or None."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):  # fmt: skip
        return body[0].end_lineno
    return None


def _body_lines(node, lines: list[str]) -> list[str]:
    """The source lines of a function's body after its docstring (comments included)."""
    end = _docstring_end(node)
    if end is not None:
        start = end  # 0-based index of the line after the docstring
    else:
        start = node.body[0].lineno - 1
        while start - 1 >= node.lineno and lines[start - 1].strip().startswith("#"):
            start -= 1
    body = lines[start : node.end_lineno]
    while body and not body[0].strip():
        body.pop(0)
    return body


def _member_lines(node, lines: list[str]) -> list[str]:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return lines[first - 1 : node.end_lineno]


def _member_names(node) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _stub_region(node, lines: list[str]) -> tuple[int, int] | None:
    """(first, last) 0-based lines of a stub body ``# YOUR CODE HERE`` /
    ``raise NotImplementedError()``, or None when the function is no stub."""
    last = node.body[-1]
    if not (isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last)):
        return None
    first = last.lineno - 2
    if first < 0 or lines[first].strip() != "# YOUR CODE HERE":
        return None
    return first, last.end_lineno - 1


_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def solution_source(stub: str, module) -> str:
    """An answer cell's stub with each stubbed body holding the reference body in a
    solution region; nbgrader's ``ClearSolutions`` turns it back into ``stub``."""
    ref_text = Path(module.__file__).read_text(encoding="utf-8")
    ref_lines = ref_text.splitlines()
    ref = {n.name: n for n in ast.parse(ref_text).body if isinstance(n, (*_FUNC, ast.ClassDef))}
    lines = stub.split("\n")
    # (first, last, replacement lines) of every stub body, filled in below.
    edits: list[tuple[int, int, list[str]]] = []

    def fill(stub_fn, ref_fn, extras=()):
        region = _stub_region(stub_fn, lines)
        if region is None:
            return
        indent = _indent(lines[region[1]])
        body = _body_lines(ref_fn, ref_lines)
        ref_indent = _indent(body[0]) if body else indent
        new = [indent + BEGIN_SOLUTION, *_reindent(body, ref_indent, indent)]
        for extra in extras:  # members one level up: same shift
            member_indent = ref_indent[:-4] if len(ref_indent) >= 4 else ""
            new += ["", *_reindent(_member_lines(extra, ref_lines), member_indent, indent[:-4])]
        new.append(indent + END_SOLUTION)
        edits.append((region[0], region[1], new))

    for node in ast.parse(stub).body:
        if isinstance(node, (*_FUNC, ast.ClassDef)) and node.name not in ref:
            raise KeyError(f"{module.__name__} does not define {node.name}")
        if isinstance(node, _FUNC):
            fill(node, ref[node.name])
        elif isinstance(node, ast.ClassDef):
            ref_cls = ref[node.name]
            stub_members = {n for m in node.body for n in _member_names(m)}
            stub_methods = [m for m in node.body if isinstance(m, _FUNC)]
            ref_methods = {m.name: m for m in ref_cls.body if isinstance(m, _FUNC)}
            # Reference members the stub lacks go with the stubbed method before them.
            extras: dict[str, list] = {m.name: [] for m in stub_methods}
            previous = None
            pending = []
            for member in ref_cls.body[(1 if _docstring_end(ref_cls) else 0) :]:
                names = _member_names(member)
                if names and set(names) & stub_members:
                    if isinstance(member, _FUNC) and member.name in extras:
                        previous = member.name
                        extras[previous] += pending
                        pending = []
                    continue
                (extras[previous] if previous else pending).append(member)
            if pending:
                if not stub_methods:
                    raise ValueError(f"{node.name}: reference members with no stub method "
                                     f"to hide them in")
                extras[stub_methods[0].name] += pending
            for method in stub_methods:
                if method.name not in ref_methods:
                    raise KeyError(f"{module.__name__}.{node.name} has no method {method.name}")
                fill(method, ref_methods[method.name], extras[method.name])
    for first, last, new in sorted(edits, reverse=True):
        lines[first : last + 1] = new
    source = "\n".join(lines)
    if "YOUR CODE HERE" in clear_solutions(source, stub=""):
        raise ValueError(f"a stub in the cell of {defined_names(stub)} is not a function "
                         f"body that can be filled")
    if clear_solutions(source) != stub:
        raise ValueError(f"the solution regions of {defined_names(stub)} do not give back the stub")
    return source


def clear_solutions(source: str, stub: str = CODE_STUB) -> str:
    """What nbgrader's ClearSolutions makes of a code cell (a check of our regions;
    the round-trip test runs nbgrader itself)."""
    out, inside = [], False
    for line in source.split("\n"):
        if BEGIN_SOLUTION in line:
            inside = True
            out += [_indent(line) + s for s in stub.split("\n") if s]
        elif END_SOLUTION in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


# --- hidden checks ---------------------------------------------------------------------------


def check_reads(lab: Lab) -> dict[str, dict]:
    """check -> {"points", "passed", "reads"}, from a child process (a clean pytest)."""
    proc = subprocess.run(
        [sys.executable, "-m", "autograder.nbgrader_hooks", "map", lab.name],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"mapping the checks of {lab.name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assign_checks(nb, reads: dict[str, dict]) -> dict[str, list[str]]:
    """graded cell's grade id -> the checks it runs (see the module's docstring)."""
    answers: list[tuple[int, set[str]]] = []  # (cell index, names defined)
    graded: list[int] = []
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            answers.append((i, set(defined_names(cell.source))))
        elif meta.get("grade"):
            graded.append(i)
    mapping: dict[str, list[str]] = {nbgrader_meta(nb.cells[g])["grade_id"]: [] for g in graded}
    for check, info in reads.items():
        owners = [i for i, names in answers if names & set(info["reads"])]
        if not owners:
            raise ValueError(f"check {check} reads {info['reads']}: no answer cell defines them")
        after = [g for g in graded if g > owners[-1]]
        if not after:
            raise ValueError(f"check {check}: no graded cell after its answer cell")
        mapping[nbgrader_meta(nb.cells[after[0]])["grade_id"]].append(check)
    return mapping


def _selectors(checks: list[str], cell_of: dict[str, str]) -> list[str]:
    """Check names, with a parametrized check given by its function when all its
    parameters belong to the same cell (a shorter line)."""
    out: list[str] = []
    for check in checks:
        func = check.split("[")[0]
        same = [c for c in cell_of if c.split("[")[0] == func]
        if "[" in check and len({cell_of[c] for c in same}) == 1:
            if func not in out:
                out.append(func)
        else:
            out.append(check)
    return out


def hidden_line(lab: Lab, selectors: list[str]) -> str:
    return (f'__import__("autograder.nbgrader_hooks", fromlist=["_"]).hidden_checks('
            f'{lab.name!r}, {selectors!r})')


def source_notebook(lab: Lab, reads: dict[str, dict] | None = None) -> nbformat.NotebookNode:
    """The lab as nbgrader's source notebook: solutions and hidden tests in it."""
    nb = nbformat.read(lab.notebook, as_version=4)
    reads = reads if reads is not None else check_reads(lab)
    failing = [c for c, info in reads.items() if not info["passed"]]
    if failing:
        raise RuntimeError(f"the reference fails checks of {lab.name}: {', '.join(failing)}")
    module = importlib.import_module(lab.solution_module)
    mapping = assign_checks(nb, reads)
    cell_of = {check: gid for gid, checks in mapping.items() for check in checks}
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            cell.source = solution_source(cell.source, module)
        elif meta.get("grade"):
            checks = mapping[meta["grade_id"]]
            if not checks:
                raise ValueError(f"graded cell {meta['grade_id']} of {lab.name} has no "
                                 f"hidden check")
            points = sum(reads[c]["points"] for c in checks)
            meta["points"] = int(points) if float(points).is_integer() else points
            line = hidden_line(lab, _selectors(checks, cell_of))
            cell.source = f"{BEGIN_HIDDEN}\n{line}\n{END_HIDDEN}\n{cell.source}"
    return nb


def build_course(out_dir, labs: list[Lab] | None = None) -> list[Path]:
    """Write the nbgrader course directory ``out_dir``; return the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / "nbgrader_config.py"
    config.write_text(CONFIG, encoding="utf-8")
    written = [config]
    for lab in labs if labs is not None else all_labs():
        path = out_dir / "source" / lab.name / f"{lab.name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nb = source_notebook(lab)
        nbformat.validate(nb)
        nbformat.write(copy.deepcopy(nb), path)
        written.append(path)
    return written




def run_nbgrader(course, *args, timeout=3600, cwd=None) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``course`` (or ``cwd``, a student's folder) with its state
    (HOME, Jupyter and IPython directories) under ``course/../home``, so that no global
    state is read or written.

    nbgrader needs this project's environment: its ``bin`` on PATH (nbgrader calls
    alembic) and a kernel that imports labkit and autograder.
    """
    course = Path(course)
    home = course.parent / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MPLBACKEND": "Agg",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }  # fmt: skip
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd or course,
                          env=env, capture_output=True, text=True, timeout=timeout)
