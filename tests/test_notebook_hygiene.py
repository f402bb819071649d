"""Every lab notebook: no outputs, valid nbgrader metadata, unique grade ids, a
setup cell, stubs that match the reference's signatures and docstrings, and
hidden checks whose failures cannot print their own code."""

import ast
import importlib
import inspect

import nbformat
import pytest

from autograder.build import defined_names
from autograder.labs import CHECKS_DIR, all_labs
from autograder.mutants import load_mutants
from autograder.notebook import answer_cells, nbgrader_meta, setup_cells

LABS = all_labs()
REQUIRED = {"grade", "grade_id", "locked", "schema_version", "solution"}


def test_there_are_labs():
    assert [lab.name for lab in LABS][:1] == ["01_preprocessing"]


@pytest.fixture(params=LABS, ids=lambda lab: lab.name)
def lab(request):
    return request.param


@pytest.fixture
def nb(lab):
    return nbformat.read(lab.notebook, as_version=4)


def test_notebook_is_valid_and_has_no_outputs(nb):
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_nbgrader_metadata(lab, nb):
    ids = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta:
            continue
        assert REQUIRED <= set(meta), f"{lab.name}: nbgrader metadata lacks {REQUIRED - set(meta)}"
        assert meta["schema_version"] == 3
        ids.append(meta["grade_id"])
        if meta["solution"]:
            assert cell.cell_type == "code" and not meta["grade"] and not meta["locked"]
        if meta["grade"]:
            assert meta["locked"] and meta.get("points", 0) > 0, meta["grade_id"]
    assert len(ids) == len(set(ids)), f"{lab.name}: duplicated grade ids"
    assert setup_cells(nb), f"{lab.name}: no locked setup cell (grade_id 'setup')"


def test_every_answer_cell_is_followed_by_a_visible_check(nb):
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        if nbgrader_meta(cell).get("solution"):
            after = nbgrader_meta(cells[i + 1]) if i + 1 < len(cells) else {}
            assert after.get("grade") or nbgrader_meta(cells[i + 1]).get("solution"), (
                f"answer cell {nbgrader_meta(cell)['grade_id']} has no visible check after it"
            )


def test_stubs_are_unwritten(nb):
    for gid, source in answer_cells(nb):
        assert "raise NotImplementedError()" in source and "# YOUR CODE HERE" in source, gid


def _public_api(obj):
    """Signature and docstring of a function, or of a class and its public methods."""
    api = {"": (str(inspect.signature(obj)), inspect.getdoc(obj))}
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if inspect.isfunction(member) and (not name.startswith("_") or name == "__init__"):
                api[name] = (str(inspect.signature(member)), inspect.getdoc(member))
    return api


def test_stubs_match_the_reference(lab, nb):
    reference = importlib.import_module(lab.solution_module)
    stub_names = []
    for gid, source in answer_cells(nb):
        namespace = {}
        for _, setup in setup_cells(nb):
            exec(compile(setup.replace("%matplotlib inline", ""), "setup", "exec"), namespace)
        exec(compile(source, gid, "exec"), namespace)
        for name in defined_names(source):
            stub_names.append(name)
            assert _public_api(namespace[name]) == _public_api(getattr(reference, name)), (
                f"{lab.name}: the stub of {name} and the reference differ in signature or docstring"
            )
    module_names = [
        node.name for node in ast.parse(inspect.getsource(reference)).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    ]
    assert sorted(module_names) == sorted(stub_names), (
        f"{lab.solution_module} must define exactly the names of the answer cells"
    )


def test_every_lab_has_checks_and_mutants(lab):
    assert lab.checks_file.exists(), f"missing {lab.checks_file}"
    assert len(load_mutants(lab)) >= 6


def test_hidden_check_asserts_carry_messages():
    """A bare assert's failure would show nothing useful (and pytest would show its code)."""
    for path in CHECKS_DIR.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assert):
                assert node.msg is not None, f"{path.name}:{node.lineno}: assert without a message"
