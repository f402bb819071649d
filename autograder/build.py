"""Build notebooks from the labs and the reference solution.

- ``solved_notebook(lab)``: the lab with every answer cell's stubs replaced by
  the reference code of the same names (the instructor's copy).
- ``mutant_notebook(lab, mutant)``: the solved notebook with one seeded bug.
- ``build_solutions(out)``: writes every solved lab to ``out``.

The labs are the single source of the prose and the stubs; ``solutions/``
the single source of the code. Nothing is written twice.
"""

from __future__ import annotations

import ast
import copy
import importlib
from pathlib import Path

import nbformat

from autograder.labs import Lab, all_labs
from autograder.notebook import nbgrader_meta

_BINDING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def _bound_names(node) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def defined_names(source: str) -> list[str]:
    """Names bound at the top level of a cell (functions, classes, assignments), in order."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, _BINDING):
            names += _bound_names(node)
    return names


def reference_sources(module) -> dict[str, str]:
    """name -> source of its top-level definition (decorators included) in a module."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, _BINDING):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            text = "\n".join(lines[first - 1 : node.end_lineno])
            for name in _bound_names(node):
                found[name] = text
    return found


def solved_source(stub_source: str, module) -> str:
    """The reference code for every name a stub cell defines, in the stub's order."""
    sources = reference_sources(module)
    missing = [n for n in defined_names(stub_source) if n not in sources]
    if missing:
        raise KeyError(f"{module.__name__} does not define {', '.join(missing)}")
    return "\n\n\n".join(sources[n] for n in defined_names(stub_source)) + "\n"


def solved_notebook(lab: Lab) -> nbformat.NotebookNode:
    """The lab notebook with every answer cell holding the reference code."""
    nb = nbformat.read(lab.notebook, as_version=4)
    module = importlib.import_module(lab.solution_module)
    for cell in nb.cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("solution"):
            cell.source = solved_source(cell.source, module)
    return nb


def mutant_notebook(lab: Lab, mutant, solved=None) -> nbformat.NotebookNode:
    """The solved notebook with ``mutant`` appended to the cell that defines its target."""
    nb = copy.deepcopy(solved if solved is not None else solved_notebook(lab))
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and mutant.replaces in defined_names(cell.source):
            cell.source += (
                f"\n\n# Seeded bug: {mutant.description}\n{mutant.source}\n"
                f"{mutant.replaces} = {mutant.name}\n"
            )
            return nb
    raise KeyError(f"mutant {mutant.name}: no answer cell of {lab.name} defines {mutant.replaces}")


def build_solutions(out_dir) -> list[Path]:
    """Write every lab with its reference code to ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lab in all_labs():
        path = out_dir / lab.notebook.name
        nbformat.write(solved_notebook(lab), path)
        written.append(path)
    return written
