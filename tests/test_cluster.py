"""Grading on a Dask cluster (autograder.cluster) gives what a local batch gives, and
survives what clusters do: a worker killed in the middle, a submission whose task keeps
killing workers, a batch interrupted and run again. On real LocalClusters of 2 worker
processes, with Lab 01 (the fastest to grade)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import dask
import distributed
import nbformat
import pytest

from autograder.build import mutant_notebook, solved_notebook
from autograder.cluster import KILLED_WORKERS, grade_bytes
from autograder.grade import grade_all
from autograder.labs import all_labs
from autograder.mutants import load_mutants

LAB01 = all_labs()[0]
ADVERSARIAL = Path(__file__).parent / "adversarial"
HOSTILE = ("forged_request_to_grader", "read_reference_files")
EXPECTED = json.loads((ADVERSARIAL / "expected.json").read_text())

pytestmark = pytest.mark.slow


def _make_class(root: Path, n_reference: int = 1) -> dict[str, Path]:
    """Students: the reference (n times), the stubs, a mutant, two hostile submissions."""
    solved = solved_notebook(LAB01)
    notebooks = {f"ref{i}": solved for i in range(n_reference)}
    notebooks["stubs"] = nbformat.read(LAB01.notebook, 4)
    notebooks["mutant"] = mutant_notebook(LAB01, load_mutants(LAB01)[0], solved)
    paths = {}
    for student, nb in notebooks.items():
        path = root / student / LAB01.notebook.name
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        paths[student] = path
    for name in HOSTILE:
        path = root / name / LAB01.notebook.name
        path.parent.mkdir(parents=True)
        shutil.copy(ADVERSARIAL / name / LAB01.notebook.name, path)
        paths[name] = path
    return paths


def _outcome(report) -> tuple:
    """What a report says about the student (not the seconds each check took)."""
    return (report.student, report.lab, report.score, report.max_score, report.error,
            [(c.check, c.earned, c.status, c.message) for c in report.checks],
            report.path, report.digest, report.sandbox)


def _reports(out: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in out.glob("*/*.json"):
        found.setdefault(path.parent.name, []).append(path)
    return found


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes (with nannies, that restart a killed one);
    a task that ends 2 workers is given up (KilledWorker)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=50) as local:
        yield local


def test_cluster_grades_like_the_local_batch(tmp_path):
    paths = _make_class(tmp_path / "class")
    local = grade_all([tmp_path / "class"], tmp_path / "local", jobs=2, progress=False)
    remote = grade_all([tmp_path / "class"], tmp_path / "remote", cluster="local:2",
                       progress=False)
    assert sorted(map(_outcome, remote)) == sorted(map(_outcome, local))
    by_student = {r.student: r for r in remote}
    assert by_student["ref0"].score == by_student["ref0"].max_score
    assert by_student["stubs"].score == 0
    for name in HOSTILE:  # the adversarial corpus's score, on a worker too
        assert by_student[name].score == EXPECTED[name]["score"], name
    # the same files on disk: one report each, the gradebooks equal
    assert sorted(_reports(tmp_path / "remote")) == sorted(paths)
    assert (tmp_path / "remote" / "summary.csv").read_text() == \
        (tmp_path / "local" / "summary.csv").read_text()


def test_worker_killed_mid_batch_loses_nothing(tmp_path, cluster):
    paths = _make_class(tmp_path / "class", n_reference=4)
    out = tmp_path / "out"
    with distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
    result = {}
    batch = threading.Thread(target=lambda: result.update(reports=grade_all(
        [tmp_path / "class"], out, cluster=cluster.scheduler_address, progress=False)))
    batch.start()
    deadline = time.monotonic() + 600
    while not _reports(out) and time.monotonic() < deadline:  # the batch is under way
        time.sleep(0.2)
    assert _reports(out), "no report within 10 minutes"
    os.kill(pids[0], signal.SIGKILL)  # a worker dies with tasks in flight
    batch.join(timeout=900)
    assert not batch.is_alive()
    reports = {r.student: r for r in result["reports"]}
    assert sorted(reports) == sorted(paths)
    assert all(not r.error for r in reports.values()), [r.error for r in reports.values()]
    assert all(reports[f"ref{i}"].score == reports[f"ref{i}"].max_score for i in range(4))
    found = _reports(out)
    assert sorted(found) == sorted(paths) and all(len(v) == 1 for v in found.values())


def _kills_its_worker(name, data, student, original, limits):
    """A task that ends the worker process for one student (what a grader bug that
    crashes a worker would do), and grades the others as the real task does."""
    if student == "killer":
        os._exit(1)
    return grade_bytes(name, data, student, original, limits)


def test_submission_that_kills_workers_is_an_error_row_not_retried_forever(tmp_path, cluster):
    root = tmp_path / "class"
    for student, nb in (("killer", solved_notebook(LAB01)), ("fine", solved_notebook(LAB01))):
        (root / student).mkdir(parents=True)
        nbformat.write(nb, root / student / LAB01.notebook.name)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests
    try:
        reports = grade_all([root], tmp_path / "out", cluster=cluster.scheduler_address,
                            progress=False, task=_kills_its_worker)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    by_student = {r.student: r for r in reports}
    assert by_student["fine"].score == by_student["fine"].max_score > 0
    killer = by_student["killer"]
    assert killer.error == KILLED_WORKERS.format(n=2), killer.error
    assert killer.score == 0


def test_interrupted_batch_resumes(tmp_path, cluster, capsys):
    paths = _make_class(tmp_path / "class")
    out = tmp_path / "out"
    first = [paths["ref0"], paths["stubs"]]  # what a batch stopped early had graded
    grade_all(first, out, cluster=cluster.scheduler_address, progress=False)
    stamps = {p: p.stat().st_mtime_ns for ps in _reports(out).values() for p in ps}
    capsys.readouterr()
    reports = grade_all([tmp_path / "class"], out, cluster=cluster.scheduler_address)
    printed = capsys.readouterr().out
    assert f"2 of {len(paths)} submissions already graded" in printed
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "graded again"
    assert sorted(r.student for r in reports) == sorted(paths)
    assert sorted(_reports(out)) == sorted(paths)
