"""The student release: what instructors hand to students, and nothing else.

``build_release(out)`` writes ``out/``: the lab notebooks (stubs, no outputs),
``labs/labkit``, the data scripts, ``requirements.txt``, an
``environment.yml``, a Makefile (``make lab``; ``make test`` runs only the
visible checks) and a README for students. No solutions, no hidden checks, no
mutants, no caches.

``find_leaks(root)`` lists what in a folder should not be in a release; the
test suite runs it on every release it builds.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
from pathlib import Path

import nbformat

from autograder.labs import REPO, all_labs

STUDENT_MAKEFILE = """\
# make lab: set up .venv and open the labs; make test: run the visible checks.
PYTHON ?= python3
BIN := .venv/bin
STAMP := .venv/.installed
LAB_ARGS ?=
ROOT_ARG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test data data-cifar10

$(STAMP): requirements.txt
\t@test -x $(BIN)/python || $(PYTHON) -m venv .venv
\t$(BIN)/python -m pip install --quiet -r requirements.txt
\t@touch $(STAMP)

setup: $(STAMP)

lab: setup
\tcd labs && ../$(BIN)/jupyter lab $(ROOT_ARG) $(LAB_ARGS)

test: setup  ## the visible checks of every lab (they fail until you write the answers)
\tcd labs && ../$(BIN)/python -m labkit.visible *.ipynb

data: setup
\t$(BIN)/python data/make_shapes.py

data-cifar10: setup
\t$(BIN)/python data/download_cifar10.py
"""

STUDENT_README = """\
# Advanced convolutional networks: the labs

The notebooks of the course's labs, with `labkit`, the small library they use
(data loading, training loop, plots, numerical checks).

## Two commands

```bash
make lab     # set up .venv (first time: a few minutes) and open the labs in JupyterLab
make test    # run the visible checks of every lab
```

Python 3.10+ with `venv`, and `make`. With conda instead:
`conda env create -f environment.yml`, then `cd labs && jupyter lab`.
Options for JupyterLab: `make lab LAB_ARGS="--no-browser --port 8899"`.

## How to work

1. Open the labs in order, starting with `01_preprocessing.ipynb`.
2. Fill in each cell marked `# YOUR CODE HERE` (delete the
   `raise NotImplementedError()`), then run the visible checks in the cell
   after it: their messages say what is wrong.
3. Run the whole notebook (*Kernel → Restart and run all*): the experiments
   at the end run on your code, each in about a minute on 2 CPU cores.
4. Submit the notebook under its original name. It is graded by hidden checks
   that test more cases than the visible ones; only the answer cells are
   graded, and they may use only the imports of the first code cell and what
   your other answer cells define.

## The data

The labs run offline on *shapes*, a generated data set shaped like CIFAR-10;
the first lab generates it under `data/` (about ten seconds, then cached).
Lab 05's pretrained network ships in `data/zoo/` (weights and card; keep it).
With internet access, `make data-cifar10` downloads the real CIFAR-10, and
`LAB_DATASET=cifar10 make lab` runs the labs on it.

## Labs

{labs}
"""

# data/README.md cites the repository's tests and benchmarks, which students do not get.
REPO_ONLY = ("tests/", "benchmarks/")
DATA_README_NOTE = (
    "> In the labs' release: the `tests/` and `benchmarks/` this page cites belong to the\n"
    "> course's repository and are not shipped; everything else it names is here or is\n"
    "> made on first use.\n\n")

# What a release holds, relative to the repository.
# data/zoo is lab 05's pretrained network (weights and card): nothing is downloaded at
# run time, so students need the shipped file; pretrain.py is how it was made.
RELEASE_FILES = ["requirements.txt", "data/make_shapes.py", "data/download_cifar10.py",
                 "data/pretrain.py", "data/README.md", "data/zoo/cards.json",
                 "data/zoo/shapes_resnet.pt"]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")


def _student_environment() -> str:
    """environment.yml without the editable install of the repository (and its staff
    extra): students get requirements.txt only."""
    text = (REPO / "environment.yml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines(True)
             if not line.strip().startswith(("- -e ", "#"))]
    return "# conda env create -f environment.yml && conda activate convnets-labs\n" + \
        "".join(lines)


def build_release(out_dir) -> Path:
    """Write the student release to ``out_dir`` (replaced if it exists); return it."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "labs").mkdir(parents=True)
    for lab in all_labs():
        nb = nbformat.read(lab.notebook, as_version=4)
        for cell in nb.cells:  # labs are committed clean; make sure of it anyway
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            grading = cell.metadata.get("nbgrader", {})
            if grading.get("locked") or grading.get("grade"):
                # What nbgrader's LockCells does: JupyterLab then refuses to edit or delete
                # the setup and the visible checks a student is meant to pass.
                cell.metadata["editable"] = False
                cell.metadata["deletable"] = False
        nbformat.write(nb, out / "labs" / lab.notebook.name)
    shutil.copytree(REPO / "labs" / "labkit", out / "labs" / "labkit", ignore=_IGNORE)
    for name in RELEASE_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, out / name)
    data_readme = out / "data" / "README.md"
    data_readme.write_text(DATA_README_NOTE + data_readme.read_text(encoding="utf-8"),
                           encoding="utf-8")
    (out / "environment.yml").write_text(_student_environment(), encoding="utf-8")
    (out / "Makefile").write_text(STUDENT_MAKEFILE, encoding="utf-8")
    (out / ".gitignore").write_text(".venv/\n__pycache__/\ndata/*/\n!data/zoo/\n", encoding="utf-8")
    labs = "\n".join(f"- `labs/{lab.notebook.name}`" for lab in all_labs())
    (out / "README.md").write_text(STUDENT_README.format(labs=labs), encoding="utf-8")
    leaks = find_leaks(out)
    if leaks:
        raise RuntimeError("the release would leak:\n" + "\n".join(leaks))
    return out


# --- leak detection ------------------------------------------------------------------------


def _normalize(code: str) -> str:
    return re.sub(r"\s+", "", code)


def _body_fingerprints(nodes, prefix="") -> dict[str, str]:
    """qualified name -> normalized source of the body (without docstring) of every
    function among ``nodes``, methods included; trivial bodies are left out."""
    found = {}
    for node in nodes:
        if isinstance(node, ast.ClassDef):
            found.update(_body_fingerprints(node.body, f"{prefix}{node.name}."))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring is shared with the stub on purpose
            text = _normalize("\n".join(ast.unparse(stmt) for stmt in body))
            if len(text) >= 30 and "raiseNotImplementedError" not in text:
                found[prefix + node.name] = text
    return found


def reference_fingerprints() -> dict[str, str]:
    """The function bodies of every reference solution module."""
    prints = {}
    for lab in all_labs():
        module = importlib.import_module(lab.solution_module)
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        for name, text in _body_fingerprints(tree.body).items():
            prints[f"{lab.solution_module}.{name}"] = text
    return prints


def _code_of(path: Path) -> str | None:
    """The Python code a file holds (a notebook's code cells), or None for other files."""
    if path.suffix == ".py":
        return path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        cells = [c.source for c in nb.cells if c.cell_type == "code"]
        return "\n".join(line for c in cells for line in c.splitlines()
                         if not line.lstrip().startswith(("%", "!")))
    return None


def find_leaks(root) -> list[str]:
    """Everything under ``root`` that a student release must not hold."""
    root = Path(root)
    leaks = []
    hidden = {p.name for p in (REPO / "autograder" / "checks").glob("test_*.py")}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        parts = set(path.relative_to(root).parts)
        if parts & {"solutions", "autograder", "__pycache__", "build", ".ipynb_checkpoints"}:
            leaks.append(f"{rel}: a folder that stays with the instructors")
        elif path.suffix == ".pyc" or path.name in hidden:
            leaks.append(f"{rel}: compiled code or a hidden check")
    prints = reference_fingerprints()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            if any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells):
                leaks.append(f"{rel}: a notebook with stored outputs")
        code = _code_of(path)
        if code is None:
            continue
        try:  # compare like with like: both sides as ast.unparse writes them
            flat = _normalize(ast.unparse(ast.parse(code)))
        except SyntaxError:
            flat = _normalize(code)
        for name, body in prints.items():
            if body in flat:
                leaks.append(f"{rel}: holds the body of the reference {name}")
    return leaks
