"""Grading a batch on a Dask cluster: the same sandboxed grading, on other machines.

``grade_all(..., cluster=ADDRESS)`` hands each submission to a Dask worker instead of
a local thread. ``ADDRESS`` is a scheduler (``tcp://scheduler:8786``) or ``local:N``,
a ``LocalCluster`` of N worker processes on this machine (one submission at a time
each, as one local job).

What travels, and what does not:

- a task carries the notebook's bytes, its file name (the lab is told from it), the
  student's name and the ``Limits``: workers need no shared disk;
- the worker writes the bytes to a private temporary folder and grades that file with
  ``grade_notebook``, exactly as a local job does: the student's code runs in the
  worker's sandbox (bubblewrap), never in the worker's own process, and the worker
  loads only what the local grader loads (the project installed in its environment);
- the report comes back as plain data (``SubmissionReport.to_dict()``); the client
  writes it with the local batch's write-then-rename, so the output folder, the
  resumability (the same file digest is skipped), ``--force`` and the gradebook are
  the local batch's.

A worker keeps the warm state of a local batch between tasks (the
checks' fork server and its spare sandbox, started when the worker joins:
``warm_grader``). Faults are
Dask's: the tasks of a worker that dies are rerun elsewhere; a submission whose task
has ended ``allowed-failures`` workers (Dask's ``distributed.scheduler.allowed-failures``,
3 by default, set to ``ALLOWED_FAILURES`` for a ``local:N`` cluster) becomes an error
row, never retried forever.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

from autograder.report import GRADER_FAULT, SubmissionReport
from autograder.sandbox.limits import Limits

# A local cluster's tolerance: a task that ended this many workers is an error row.
ALLOWED_FAILURES = 2
_LOCAL = re.compile(r"^local:(\d+)$")

KILLED_WORKERS = ("not graded: every grading worker that took this submission died during it "
                  "({n} tries). This is the grader's fault, not yours: tell your TA.")


class ClusterError(RuntimeError):
    """The cluster cannot be used as asked (a bad address, Dask missing, no scheduler)."""


def _distributed():
    try:
        import distributed
    except ImportError as e:  # the staff extra installs it
        raise ClusterError("grading on a cluster needs Dask: pip install -e '.[staff]' "
                           "(make setup installs it)") from e
    return distributed


@contextmanager
def open_client(address: str):
    """A Dask client of ``address`` (``local:N`` starts and stops a LocalCluster)."""
    distributed = _distributed()
    import dask

    match = _LOCAL.match(address)
    if match:
        workers = int(match.group(1))
        if workers < 1:
            raise ClusterError(f"--cluster {address}: a local cluster needs 1 worker or more")
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}), \
                distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                         processes=True, dashboard_address=":0",
                                         silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            yield client
    else:
        if "://" not in address:
            raise ClusterError(f"--cluster {address!r}: give a scheduler address "
                               f"(tcp://host:8786) or local:N")
        try:
            client = distributed.Client(address, timeout="30s")
        except OSError as e:
            raise ClusterError(f"--cluster {address}: no Dask scheduler answered ({e}); "
                               f"start one with `dask scheduler` and workers with "
                               f"`dask worker {address}`") from e
        with client:
            yield client


def warm_grader(limits: Limits):
    """A worker plugin: the checks' fork server started when the worker joins (so the
    first submission does not pay for it), closed when it leaves. (Defined on first use:
    Dask is imported only to grade on a cluster.)"""
    distributed = _distributed()

    class WarmGrader(distributed.WorkerPlugin):
        name = "autograder-warm"

        def __init__(self, limits: Limits):
            self.limits = limits

        def setup(self, worker):
            from autograder import runner

            pool = runner._pool(self.limits)
            pool.release(pool.acquire())

        def teardown(self, worker):
            from autograder.runner import close_pools

            close_pools()

    return WarmGrader(limits)


def grade_bytes(name: str, data: bytes, student: str, original: str,
                limits: Limits) -> dict:
    """A worker's task: grade the notebook ``data`` (file name ``name``) for ``student``;
    the report as plain data, its path the client's ``original``."""
    from autograder.grade import grade_file

    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    with tempfile.TemporaryDirectory(prefix="autograder-task-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        report = grade_file(path, student, limits)
    report.path = original
    return report.to_dict()


def grade_on_cluster(submissions, address: str, limits: Limits | None, on_report,
                     progress: bool = True, task=grade_bytes) -> None:
    """Grade ``submissions`` (``grade.Submission``) on the cluster at ``address``; call
    ``on_report(sub, report)`` on the client as each report arrives (in completion
    order). ``task`` is the worker's function (tests replace it to kill workers)."""
    distributed = _distributed()
    from tqdm import tqdm

    limits = limits or Limits()
    with open_client(address) as client:
        link = _dashboard(client)
        if link and progress:
            print(f"Dask dashboard: {link}")
        client.register_plugin(warm_grader(limits))
        futures = {}
        for sub in submissions:
            data = Path(sub.path).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            future = client.submit(task, Path(sub.path).name, data, sub.student, str(sub.path),
                                   limits, key=f"grade-{sub.student}-{digest[:16]}",
                                   pure=False)
            futures[future] = (sub, digest)
        bar = tqdm(total=len(futures), desc="grading", unit="notebook",
                   disable=not progress or not futures)
        for future in distributed.as_completed(futures):
            sub, digest = futures[future]
            try:
                report = SubmissionReport.from_dict(future.result())
            except distributed.KilledWorker:
                report = _error_row(sub, KILLED_WORKERS.format(n=_allowed_failures() + 1))
            except Exception as e:  # a grader bug must not stop the batch
                report = _error_row(sub, f"internal grader error ({type(e).__name__}: {e}): "
                                         f"{GRADER_FAULT}.")
            report.digest = digest
            on_report(sub, report)
            bar.update()
        bar.close()


def _error_row(sub, message: str) -> SubmissionReport:
    from autograder.notebook import lab_from_path

    lab = lab_from_path(sub.path)
    return SubmissionReport(sub.student, lab.name if lab else "unknown", str(sub.path),
                            error=message)


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures", ALLOWED_FAILURES))


def _dashboard(client) -> str:
    """The dashboard's address when the scheduler serves one (it needs bokeh)."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:
        return ""
    return client.dashboard_link if "dashboard" in services else ""
