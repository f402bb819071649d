"""What the Makefile promises about the files people work in: `make lab` opens a
git-ignored working copy that it never overwrites, and `make clean` deletes build outputs
and caches only, never the working copy, the nbgrader course or the grades."""

import shutil
import subprocess

from autograder.labs import REPO, all_labs


def _make(folder, *args):
    return subprocess.run(["make", "-s", "-C", str(folder), *args], capture_output=True,
                          text=True, timeout=60)


def _project_copy(tmp_path):
    copy = tmp_path / "project"
    (copy / "labs").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", copy)
    for lab in all_labs():
        shutil.copy(lab.notebook, copy / "labs")
    return copy


def test_working_copy_is_made_once_and_never_overwritten(tmp_path):
    copy = _project_copy(tmp_path)
    proc = _make(copy, "work")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (copy / "work").glob("*.ipynb"))
    assert names == [lab.notebook.name for lab in all_labs()]
    first = copy / "work" / all_labs()[0].notebook.name
    first.write_text("a student's answers")
    (copy / "work" / all_labs()[1].notebook.name).unlink()  # "start that lab again"
    proc = _make(copy, "work")
    assert proc.returncode == 0, proc.stderr
    assert first.read_text() == "a student's answers"
    assert (copy / "work" / all_labs()[1].notebook.name).read_bytes() == \
        all_labs()[1].notebook.read_bytes()
    assert proc.stdout.strip() == f"new in work/: {all_labs()[1].notebook.name}"


def test_clean_keeps_work_course_and_grades(tmp_path):
    copy = _project_copy(tmp_path)
    for folder in ("build/solutions", "work", "course/submitted", "grades", ".pytest_cache"):
        (copy / folder).mkdir(parents=True)
        (copy / folder / "file").write_text("state")
    proc = _make(copy, "clean")
    assert proc.returncode == 0, proc.stderr
    assert not (copy / "build").exists() and not (copy / ".pytest_cache").exists()
    for folder in ("work", "course/submitted", "grades"):
        assert (copy / folder / "file").read_text() == "state", folder


def test_state_folders_are_git_ignored():
    for path in ("work/01_preprocessing.ipynb", "course/gradebook.db", "grades/summary.csv",
                 "build/solutions/x.ipynb"):
        proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert proc.returncode == 0, f"{path} is not git-ignored"
    proc = subprocess.run(["git", "check-ignore", "-q", "labs/01_preprocessing.ipynb"],
                          cwd=REPO)
    assert proc.returncode == 1, "labs/ must stay tracked"
