"""Grade one submission: run a lab's hidden checks on it in a child pytest process.

The child is a copy forked from a checks process that has already imported
pytest, numpy, torch and the checks (``autograder.forkserver``), so a
submission does not pay for those imports; ``AUTOGRADER_FORKSERVER=0`` starts
a plain ``python -m pytest`` instead.

The child loads the notebook's answer cells and runs the checks, streaming
one JSON line per check. The parent keeps every result it received, so that:

- a check that hangs costs that check (the child's per-check alarm), and a
  child stuck beyond the submission's time limit is killed with its process
  group: the check it was running fails, the checks not yet run fail with a
  message saying why;
- a child that dies (``os._exit``, a segfault, the OOM killer) costs the
  check it was running; a new child grades the remaining checks.

This process never imports or runs the student's code.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from autograder.execute import AnswerSource, SubmissionError
from autograder.forkserver import ServerPool
from autograder.labs import REPO, Lab
from autograder.notebook import lab_from_path, load_answers
from autograder.report import CheckResult, SubmissionReport
from autograder.sandbox.limits import Limits

PYTEST = (sys.executable, "-m", "pytest")  # a fresh checks process, without the fork server


def _pytest_args(lab: Lab, results: Path, extra: list[str], limits: Limits) -> list[str]:
    """The arguments of pytest that run ``lab``'s checks with the grader's plugin."""
    return [
        str(lab.checks_file),
        "--results", str(results),
        "--limits", limits.to_json(),
        "--rootdir", str(REPO),
        "-p", "autograder.plugin",
        "-p", "no:cacheprovider",
        # Their gc.collect() at the end of a session costs 0.25 s each in a process that
        # has imported torch; the checks start no threads and leak nothing unraisable.
        "-p", "no:unraisableexception", "-p", "no:threadexception",
        "-o", "addopts=",
        "--assert=plain",  # a bare assert must not print the check's source in messages
        "--tb=no",  # the plugin writes the messages; pytest's tracebacks would repr() locals
        "-q", "--no-header", "-rN",
        *extra,
    ]  # fmt: skip


def _child_env() -> dict:
    env = dict(os.environ)
    # Only the grader's plugin: the others installed (nbval, ...) cost seconds to import.
    env.update(MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return env


def _run_child(cmd: list[str], timeout: float) -> tuple[int | None, str]:
    """Run the child in its own process group; kill the group on time-out.

    Returns (exit code or None on time-out, the tail of its output).
    """
    with tempfile.TemporaryDirectory(prefix="grade-") as cwd:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=max(timeout, 1.0))
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            code = None
    return code, output.decode("utf-8", "replace")[-4000:]


_POOLS: dict[Limits, ServerPool] = {}
_POOL_LOCK = threading.Lock()


def close_pools() -> None:
    """Stop every fork server (and so the spare sandbox each keeps)."""
    with _POOL_LOCK:
        for pool in _POOLS.values():
            pool.close()
        _POOLS.clear()


def _pool(limits: Limits) -> ServerPool:
    with _POOL_LOCK:
        if limits not in _POOLS:
            _POOLS[limits] = ServerPool(_child_env(), limits.to_json())
            atexit.register(close_pools)
        return _POOLS[limits]


def _run_checks_child(args: list[str], timeout: float, limits: Limits) -> tuple[int | None, str]:
    """Like ``_run_child`` of ``python -m pytest args``, in a copy of a pre-forked checks
    process (imports done once)."""
    cmd = [*PYTEST, *args]
    if os.environ.get("AUTOGRADER_FORKSERVER", "1") == "0":
        return _run_child(cmd, timeout)
    pool = _pool(limits)
    server = pool.acquire()
    with tempfile.TemporaryDirectory(prefix="grade-") as cwd:
        log = os.path.join(cwd, ".pytest.log")
        try:
            code = server.run(args, cwd, log, timeout)
        except (OSError, ValueError, KeyError, TimeoutError):
            server.close()  # a broken server: a new one next time, this run in a process
            return _run_child(cmd, timeout)
        finally:
            pool.release(server)
        try:
            with open(log, "rb") as f:
                output = f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            output = ""
    return code, output


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a crash: everything before it is good
    return events


@cache
def collect_checks(lab: Lab) -> tuple[dict, ...]:
    """The checks of a lab (name, points, description), without running them."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "collect.jsonl"
        args = _pytest_args(lab, results, ["--collect-only"], Limits())
        code, output = _run_child([*PYTEST, *args], 120)
        for event in _read_events(results):
            if event["event"] == "collected":
                return tuple(event["checks"])
    raise RuntimeError(f"could not collect the checks of {lab.name}:\n{output}")


@dataclass
class ChecksRun:
    """What running a lab's checks on one submission gave."""

    results: list[CheckResult]
    problems: list[str]  # met while loading the answer cells
    sandbox: str = ""  # the layer that graded it (bubblewrap, or the fallback and why)
    enforced: list[str] = field(default_factory=list)


def run_checks(source: AnswerSource, limits: Limits, first_failure: bool = False,
               first_for: str | None = None) -> ChecksRun:
    """Run every check of a lab on a submission's code, within ``limits``; with
    ``first_failure``, stop at the first check that fails (the selfcheck's question about
    a mutant is only whether it loses points) and mark the others not run; with
    ``first_for``, run first the checks that name that function (the plugin's
    ``--first-for``: the mutant's suspects, so that the first failure comes sooner)."""
    lab = source.lab
    time_limit = limits.submission_seconds
    checks = {c["check"]: c for c in collect_checks(lab)}
    results: dict[str, CheckResult] = {}
    problems: list[str] = []
    layer, enforced = "", []
    deadline = time.monotonic() + time_limit
    nodeid = lab.checks_file.relative_to(REPO).as_posix()

    def fail(name: str, message: str, status: str) -> None:
        c = checks[name]
        results[name] = CheckResult(name, c["points"], 0.0, message, c["description"],
                                    status=status, seconds=0.0)

    while len(results) < len(checks):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        with tempfile.TemporaryDirectory() as tmp:
            stream = Path(tmp) / "results.jsonl"
            answers = Path(tmp) / "answers.json"
            answers.write_text(source.to_json(), encoding="utf-8")
            deselect = [f"--deselect={nodeid}::{name}" for name in results]
            extra = ["--submission", str(answers), *deselect, *(["-x"] if first_failure else []),
                     *(["--first-for", first_for] if first_for else [])]
            code, output = _run_checks_child(_pytest_args(lab, stream, extra, limits), remaining,
                                             limits)
            events = _read_events(stream)
        running, finished = None, False
        for event in events:
            if event["event"] == "start":
                running = event["check"]
            elif event["event"] == "result" and event["check"] in checks:
                c = checks[event["check"]]
                # The points are the collected ones, never the stream's; CheckResult bounds
                # earned to [0, points] and checks the status and the seconds.
                results[event["check"]] = CheckResult(
                    event["check"], c["points"], event.get("earned", 0.0),
                    str(event.get("message", "")), c["description"],
                    status=str(event.get("status", "")), seconds=event.get("seconds", 0.0),
                )  # fmt: skip
                running = None
            elif event["event"] == "problems":
                seen = set(problems)
                problems += [p for p in map(str, event["problems"][:50]) if p not in seen]
            elif event["event"] == "sandbox":
                layer, enforced = str(event["layer"]), [str(e) for e in event["enforced"]]
            elif event["event"] == "finished":
                finished = True
        if finished or (first_failure and any(not r.passed for r in results.values())):
            break
        if code is None:  # the whole submission ran out of time
            if running in checks:
                fail(running, f"stopped: the submission's time limit of {time_limit:g} s "
                              f"ran out during this check.", "timeout")
            break
        if running in checks:
            fail(running, f"the checks' process ended (exit code {code}) during this check; "
                          f"this is the grader's fault, not yours: tell your TA.",
                 "grader_error")
        elif not events:
            raise RuntimeError(f"the checks of {lab.name} did not start:\n{output}")
    stopped = first_failure and any(not r.passed for r in results.values())
    for name in checks:
        if name not in results:
            fail(name, "not run: an earlier check failed (stop at the first failure)."
                 if stopped else "not run: the submission's time limit ran out before this "
                 "check.", "not_run")
    return ChecksRun([results[name] for name in checks], problems, layer, enforced)


def grade_notebook(
    path, lab: Lab | None = None, student: str | None = None, limits: Limits | None = None,
    first_failure: bool = False, first_for: str | None = None,
) -> SubmissionReport:  # fmt: skip
    """Grade one notebook and return its report (never raises for a bad submission).

    Inputs:
    - path: the notebook.
    - lab: the lab it is for; by default told from its name or cells.
    - student: the student's name in the report; by default the file's stem.
    - limits: what the submission may use (``Limits``; its submission_seconds bounds all
      its checks together).
    - first_failure: stop at the first failing check (``run_checks``); never for grading.
    - first_for: with first_failure, the name a seeded mutant replaces: its checks run first.
    """
    path = Path(path)
    student = student or path.stem
    lab = lab or lab_from_path(path)  # known even when the file is corrupt
    try:
        source = load_answers(path, lab)
        lab = source.lab
    except SubmissionError as e:
        report = SubmissionReport(student, lab.name if lab else "unknown", str(path), error=str(e))
        if lab is not None:  # show what was at stake: every check at 0
            report.checks = [
                CheckResult(c["check"], c["points"], 0.0, "not graded", c["description"],
                            status="not_run")
                for c in collect_checks(lab)
            ]
        return report
    run = run_checks(source, limits or Limits(), first_failure=first_failure,
                     first_for=first_for if first_failure else None)
    problems = source.problems + [p for p in run.problems if p not in source.problems]
    return SubmissionReport(student, lab.name, str(path), run.results, problems=problems,
                            sandbox=run.sandbox, enforced=run.enforced)
