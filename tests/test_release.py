"""The student release: it holds what students need and nothing of the
solutions or the hidden checks, and it works on its own."""

import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder.build import solved_notebook
from autograder.labs import REPO, all_labs
from autograder.release import build_release, find_leaks, reference_fingerprints

LABS = all_labs()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("dist") / "student")


def test_release_holds_what_students_need(release):
    top = sorted(p.name for p in release.iterdir())
    assert top == [".gitignore", "Makefile", "README.md", "data", "environment.yml", "labs",
                   "requirements.txt"]
    assert sorted(p.name for p in (release / "labs").glob("*.ipynb")) == [
        lab.notebook.name for lab in LABS
    ]
    assert (release / "labs" / "labkit" / "train.py").exists()
    # lab 05's pretrained network: shipped, since nothing is downloaded at run time
    for name in ("cards.json", "shapes_resnet.pt"):
        assert (release / "data" / "zoo" / name).read_bytes() == \
            (REPO / "data" / "zoo" / name).read_bytes(), name
    assert "make lab" in (release / "README.md").read_text()
    assert "-e ." not in (release / "environment.yml").read_text()
    # students get what the labs need, not the staff's tools (nbgrader adds its menus to
    # JupyterLab): the release's requirements are the repository's student list
    shipped = (release / "requirements.txt").read_text()
    assert shipped == (REPO / "requirements.txt").read_text()
    for tool in ("nbgrader", "nbval", "pytest", "ruff"):
        assert tool not in shipped and tool not in (release / "environment.yml").read_text()
    assert find_leaks(release) == []


def test_release_data_readme_cites_only_what_it_ships(release):
    """Every file the release's data/README names is shipped, made on first use (the data
    sets), or flagged by the note as the repository's (tests, benchmarks)."""
    from autograder.release import DATA_README_NOTE, REPO_ONLY

    text = (release / "data" / "README.md").read_text()
    assert text.startswith(DATA_README_NOTE)
    generated = ("shapes/", "shapes_target/", "shapes_scenes/", "cifar10/", "data/cifar10")
    cited = set()
    for token in re.findall(r"`([^`]+)`", text):
        for word in token.split():
            word = word.strip("'\"()")
            if re.fullmatch(r"[\w./-]+\.(py|pt|json)|[\w-]+/[\w./-]*", word):
                cited.add(word)
    assert "data/pretrain.py" in cited and "zoo/shapes_resnet.pt" in cited
    missing = []
    for word in sorted(cited):
        if word.startswith(REPO_ONLY + generated):
            continue
        if not any((where / word).exists() for where in (release, release / "data")):
            missing.append(word)
    assert not missing, f"data/README.md cites files the release lacks: {missing}"


def test_release_locks_the_setup_and_the_visible_checks(release):
    for lab in LABS:
        nb = nbformat.read(release / "labs" / lab.notebook.name, as_version=4)
        for cell in nb.cells:
            grading = cell.metadata.get("nbgrader", {})
            locked = bool(grading.get("locked") or grading.get("grade"))
            flags = (cell.metadata.get("editable", True), cell.metadata.get("deletable", True))
            where = f"{lab.name}: cell {grading.get('grade_id', cell.source[:40])!r}"
            assert flags == ((False, False) if locked else (True, True)), where
            if grading.get("solution"):
                assert not locked, f"{where} is an answer cell and must stay editable"


def test_every_reference_function_is_fingerprinted():
    prints = reference_fingerprints()
    assert "solutions.preprocessing.Preprocessor.transform" in prints
    assert len(prints) >= 30


def test_leak_detector_fails_loudly(release, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(release, leaky)
    # the reference pasted into a helper file, with other formatting and comments
    source = (REPO / "solutions" / "preprocessing.py").read_text()
    (leaky / "labs" / "labkit" / "extra.py").write_text("# helpers\n" + source.replace('"', "'"))
    # a solved notebook under another name, a notebook with outputs, caches, a hidden check
    nbformat.write(solved_notebook(LABS[0]), leaky / "labs" / "answers.ipynb")
    nb = nbformat.read(leaky / "labs" / LABS[0].notebook.name, 4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    nbformat.write(nb, leaky / "labs" / LABS[0].notebook.name)
    (leaky / "labs" / "labkit" / "__pycache__").mkdir()
    shutil.copy(REPO / "autograder" / "checks" / "test_preprocessing.py", leaky / "data")
    leaks = "\n".join(find_leaks(leaky))
    assert "labs/labkit/extra.py: holds the body of the reference" in leaks
    assert "labs/answers.ipynb: holds the body of the reference" in leaks
    assert f"labs/{LABS[0].notebook.name}: a notebook with stored outputs" in leaks
    assert "__pycache__" in leaks and "data/test_preprocessing.py" in leaks


def _visible(labs_dir, notebook):
    proc = subprocess.run(
        [sys.executable, "-m", "labkit.visible", notebook],
        cwd=labs_dir, capture_output=True, text=True, timeout=1200,
        env={"PATH": "/usr/bin:/bin", "HOME": str(labs_dir.parent), "MPLBACKEND": "Agg",
             "LAB_DATA_DIR": str(REPO / "data"), "PYTHONPATH": str(labs_dir),
             # the release's own zoo, not the repository's (LAB_DATA_DIR holds one too)
             "LAB_ZOO_DIR": str(labs_dir.parent / "data" / "zoo")},
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.name)
def test_release_works_on_its_own(release, tmp_path, lab):
    """Outside the repository, the visible checks fail on the stubs with
    NotImplementedError and pass once the reference is pasted in."""
    copy = tmp_path / "student"
    shutil.copytree(release, copy)
    labs = copy / "labs"
    code, out = _visible(labs, lab.notebook.name)
    assert code == 1, out
    checks = [line for line in out.splitlines() if line.startswith("  ")]
    assert checks, out
    assert all("FAILED" in line and "NotImplementedError" in line for line in checks), out
    # not an empty `NotImplementedError: ` (labkit.stubs): what to write, and where to start
    assert all("is not written yet" in line for line in checks), out
    assert f"0 of {len(checks)} visible checks pass" in out, out
    assert f"next in {lab.notebook.name}: write `" in out, out
    nbformat.write(solved_notebook(lab), labs / lab.notebook.name)
    code, out = _visible(labs, lab.notebook.name)
    assert code == 0 and "All visible checks passed" in out, out
