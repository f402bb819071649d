"""In a notebook, an unwritten stub says which function to write (labkit.stubs); other
exceptions are shown as usual."""

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder.labs import REPO

CELLS = [
    "import labkit",
    "def mean_image(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()",
    "class Preprocessor:\n    def fit(self, x):\n        raise NotImplementedError()",
    "mean_image(0)",
    "Preprocessor().fit(0)",
    "raise NotImplementedError('a library said this')",
    "import functools\ndef helper():\n    raise NotImplementedError()\n"
    "functools.reduce(lambda a, b: helper(), [1, 2])",  # raised under a library's frame
    "1 / 0",
]


def errors(nb):
    out = []
    for cell in nb.cells[3:]:
        (error,) = [o for o in cell.outputs if o.output_type == "error"]
        out.append((error.ename, error.evalue, "\n".join(error.traceback)))
    return out


def run(allow_errors):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=120, allow_errors=allow_errors, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "labs")}}).execute()
    return nb


def test_an_unwritten_stub_says_what_to_write():
    nb = run(allow_errors=True)
    stub, method, library, nested, other = errors(nb)
    assert stub[:2] == ("NotImplementedError", "`mean_image` is not written yet: replace `raise "
                        "NotImplementedError()` in its answer cell with your code, run that "
                        "cell, then this one."), stub
    assert method[1].startswith("`Preprocessor.fit` is not written yet"), method
    assert library[1] == "a library said this" and "Traceback" in library[2], library
    assert nested[1].startswith("`helper` is not written yet"), nested
    assert other[0] == "ZeroDivisionError" and "Traceback" in other[2], other


def test_run_all_still_stops_at_an_unwritten_stub():
    with pytest.raises(CellExecutionError, match="`mean_image` is not written yet"):
        run(allow_errors=False)
