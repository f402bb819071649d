"""The instructor's copy of every lab (stubs replaced by the reference code)
runs top to bottom under nbval: every visible check passes on the reference
and every experiment runs."""

import os
import subprocess
import sys

import pytest

from autograder.build import build_solutions
from autograder.labs import all_labs


@pytest.mark.slow
@pytest.mark.parametrize("lab", all_labs(), ids=lambda lab: lab.name)
def test_solved_lab_runs_top_to_bottom(tmp_path, lab):
    paths = {p.name: p for p in build_solutions(tmp_path)}
    notebook = paths[lab.notebook.name]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider",
         "--nbval-cell-timeout=600", "-o", "addopts=", "-q", str(notebook)],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
