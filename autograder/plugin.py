"""The grader's pytest plugin (registered as the ``autograder`` pytest11 entry point).

- ``pytest autograder/checks`` grades the reference solution in-process: it
  must pass, which proves the checks agree with the reference.
- ``pytest autograder/checks/test_<topic>.py --submission NB.ipynb`` grades a
  notebook; ``--results FILE`` streams one JSON line per check, so that a
  parent process keeps every result obtained before a crash or a time-out.

Fixtures for checks: ``student`` (the code under test), ``reference`` (the
solutions module), ``rng`` (a numpy Generator seeded from the check's name)
and ``seed`` (that seed as an int). Markers: ``points(n)`` (default 1) and
``timeout(seconds)`` (default 10).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autograder.execute import AnswerSource, SubmissionError, build_namespace
from autograder.report import CRASHED, FAILED, GRADER_ERROR, MISSING_ANSWER, PASSED, TIMEOUT
from autograder.sandbox.limits import Limits
from autograder.sandbox.protocol import PeerGone, RemoteError, student_frames
from autograder.sandbox.wire import GraderObjectRefused
from autograder.student import InProcessStudent, MissingAnswer


class CheckTimeout(BaseException):
    """A check ran past its time limit. A BaseException so that a student's
    ``except Exception`` cannot swallow it."""


def pytest_addoption(parser):
    group = parser.getgroup("autograder", "grading with hidden checks")
    group.addoption("--submission", default=None, help="notebook to grade (default: reference)")
    group.addoption("--results", default=None, help="append one JSON line per check here")
    group.addoption("--transport", default="sandbox", choices=("sandbox", "inprocess"),
                    help="run the submission in a confined child process (default) or, for "
                         "trusted code only, in this one")
    group.addoption("--limits", default=None,
                    help="the grader's Limits as JSON (autograder.sandbox.limits)")
    group.addoption("--reference-from", default=None, metavar="DIR",
                    help="staff only (mutation testing): load the `reference` fixture from "
                         "DIR/<topic>.py, a pristine copy, while the in-process student stays "
                         "solutions.<topic> (the mutant); never used in grading")
    group.addoption("--first-for", default=None, metavar="NAME",
                    help="selfcheck only: run first the checks whose code names NAME (the "
                         "function a seeded mutant replaces), so that a grading that stops at "
                         "the first failure stops sooner; changes the order, never a score")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points a check is worth (default 1)")
    config.addinivalue_line("markers", "timeout(seconds): time limit of a check (default 10)")


# --- helpers -------------------------------------------------------------------------------


def topic_of(item_or_request) -> str:
    """``test_preprocessing.py`` -> ``preprocessing``."""
    return Path(str(item_or_request.fspath)).stem.removeprefix("test_")


def seed_for(check_id: str) -> int:
    """A stable 32-bit seed derived from a check's name (same name, same inputs)."""
    return int.from_bytes(hashlib.sha256(check_id.encode()).digest()[:4], "little")


def check_points(item) -> float:
    marker = item.get_closest_marker("points")
    return float(marker.args[0]) if marker else 1.0


def limits_of(config) -> Limits:
    """The Limits the grader passed (``--limits``), or the defaults."""
    text = config.getoption("limits", None)
    return Limits.from_json(text) if text else Limits()


def check_timeout(item) -> float:
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker else limits_of(item.config).check_seconds


def check_description(item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Raise CheckTimeout in this thread after ``seconds`` (POSIX main thread only;
    elsewhere the parent's time limit on the whole submission still applies)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise CheckTimeout(f"{what} took longer than its time limit of {seconds:g} s "
                           f"(an infinite loop, or code far too slow?).")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def failure_message(excinfo, limits: Limits | None = None) -> tuple[str, str]:
    """What a student reads when a check fails, never the check's code; and its status."""
    exc = excinfo.value
    limits = limits or Limits()
    # Frames come with an exception raised in the student's process, else from this one.
    frames = getattr(exc, "student_frames", None)
    if frames is None:
        frames = student_frames(excinfo.tb)
    if isinstance(exc, PeerGone):
        return (f"your code ended its process during this check ({_last_exit()}): "
                f"sys.exit or os._exit, a crash, too much memory, or an answer the grader "
                f"could not read ({exc})."), CRASHED
    if isinstance(exc, GraderObjectRefused) or isinstance(exc, _grader_errors()):
        return (f"the grader failed on this check ({type(exc).__name__}: {exc}); this is the "
                f"grader's fault, not yours: tell your TA."), GRADER_ERROR
    if isinstance(exc, MemoryError):
        return "\n".join([f"your code ran out of memory (the grader allows "
                           f"{limits.memory_bytes / 2**30:g} GiB): MemoryError {exc}",
                           *frames]), FAILED
    if isinstance(exc, NotImplementedError):
        where = frames[-1].split(" (")[0].strip().removeprefix("in ") if frames else "your code"
        return f"not written yet: `{where}` raises NotImplementedError.", FAILED
    if isinstance(exc, CheckTimeout):
        return str(exc), TIMEOUT
    if isinstance(exc, MissingAnswer):
        return str(exc), MISSING_ANSWER
    if isinstance(exc, pytest.fail.Exception):  # the submission could not be loaded
        return str(exc), FAILED
    if isinstance(exc, AssertionError):
        message = str(exc) or "the check failed."
    else:
        prefix = "your code raised" if frames else "error while checking your answer:"
        name = getattr(exc, "remote_type", None) or type(exc).__name__
        text = str(exc) if not isinstance(exc, RemoteError) else str(exc).removeprefix(f"{name}: ")
        message = f"{prefix} {name}: {text}"
    return "\n".join([message, *frames]), FAILED


def _grader_errors() -> tuple[type, ...]:
    from autograder.sandbox.host import SandboxError

    return (SandboxError, GraderFault)


class GraderFault(RuntimeError):
    """The submission could not be graded for a reason that is not the student's."""


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def reference(request):
    """The reference solution module of this check's topic (``--reference-from DIR``: the
    pristine copy DIR/<topic>.py, so that a mutated solutions.<topic> is the student only)."""
    topic = topic_of(request)
    pristine = request.config.getoption("reference_from", None)
    if pristine:
        return _pristine_reference(Path(pristine), topic)
    return importlib.import_module(f"solutions.{topic}")


_PRISTINE: dict = {}


def _pristine_reference(directory: Path, topic: str):
    """DIR/<topic>.py imported once under its own module name (``_pristine_solutions.<topic>``),
    never as solutions.<topic>: mutation testing's student is that module, mutated."""
    import importlib.util
    import sys

    path = (directory / f"{topic}.py").resolve()
    if path not in _PRISTINE:
        name = f"_pristine_solutions.{topic}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise GraderFault(f"--reference-from: no module at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up
        spec.loader.exec_module(module)
        _PRISTINE[path] = module
    return _PRISTINE[path]


@pytest.fixture(scope="session")
def _loaded_students():
    return {}


@pytest.fixture
def student(request, _loaded_students):
    """The code under test: the submission if ``--submission`` is given, else the reference."""
    topic = topic_of(request)
    path = request.config.getoption("submission")
    if path is None:
        module = importlib.import_module(f"solutions.{topic}")
        yield InProcessStudent.from_module(module, label="reference")
        return
    if topic not in _loaded_students:
        _loaded_students[topic] = _load_student(path, topic, request.config)
        loaded = _loaded_students[topic]
        if not isinstance(loaded, BaseException):
            _write_result(request.config, {"event": "problems", "problems": loaded._problems})
            sandbox = getattr(loaded, "_sandbox", None)
            if sandbox is not None:
                _write_result(request.config, {"event": "sandbox",
                                               "layer": sandbox.describe_layer(),
                                               "enforced": sandbox.enforced})
    loaded = _loaded_students[topic]
    if isinstance(loaded, BaseException):
        raise loaded
    sandbox = getattr(loaded, "_sandbox", None)
    if sandbox is not None and not sandbox.alive:
        # An earlier check hung or killed the process: a fresh one for this check.
        try:
            loaded = _loaded_students[topic] = sandbox.restart()
        except SubmissionError as e:
            _loaded_students[topic] = _as_failure(e)
            raise _loaded_students[topic] from None
    yield loaded
    if sandbox is not None and not sandbox.alive:
        sandbox.close()  # stop a process stuck in a loop now, not at the next check


_SANDBOXES: list = []


def _last_exit() -> str:
    return _SANDBOXES[-1].exit_description() if _SANDBOXES else "unknown"


def _as_failure(error: SubmissionError) -> BaseException:
    """What each check raises when the submission could not be loaded."""
    from autograder.sandbox.host import SandboxError

    if isinstance(error, SandboxError):
        return GraderFault(str(error))
    return pytest.fail.Exception(str(error), pytrace=False)


def _new_sandbox(config, label):
    from autograder.sandbox.host import Sandbox

    sandbox = Sandbox(limits_of(config), label=label)
    _SANDBOXES.append(sandbox)
    return sandbox


def _load_student(path, topic, config):
    """Load a submission into a student, or return the exception each check raises.

    ``path`` is a notebook, or the JSON ``AnswerSource`` that the runner writes
    (so that the child process needs neither nbformat nor the notebook).
    """
    from autograder.labs import lab_for_topic

    try:
        if str(path).endswith(".json"):
            source = AnswerSource.from_json(Path(path).read_text(encoding="utf-8"))
        else:
            from autograder.notebook import load_answers

            source = load_answers(path, lab_for_topic(topic))
        if config.getoption("transport") == "sandbox":
            warm = _SANDBOXES[0] if _SANDBOXES else None  # spawned at session start
            sandbox = warm or _new_sandbox(config, Path(path).stem)
            return sandbox.start(source)
        with time_limit(limits_of(config).load_seconds, "running your answer cells"):
            namespace, problems = build_namespace(source)
    except (SubmissionError, CheckTimeout) as e:
        return _as_failure(e) if isinstance(e, SubmissionError) else pytest.fail.Exception(
            str(e), pytrace=False)
    return InProcessStudent(namespace, label=Path(path).stem, problems=problems)


@pytest.fixture
def seed(request) -> int:
    """The seed of this check, derived from its topic and name."""
    return seed_for(f"{topic_of(request)}::{request.node.name}")


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A numpy random Generator seeded from the check's name."""
    return np.random.default_rng(seed)


# --- time limit and results ----------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    # Only grading checks (those that use the student) get the time limit; the
    # project's own tests in tests/ run notebooks for minutes.
    if "student" not in getattr(item, "fixturenames", ()):
        yield
        return
    with time_limit(check_timeout(item), "this check"):
        yield


def _write_result(config, record: dict) -> None:
    path = config.getoption("results", None)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def names_in_check(item, name: str) -> bool:
    """Whether the code of a check names ``student.<name>`` or the string ``"<name>"``."""
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return False
    return re.search(rf"\bstudent\.{re.escape(name)}\b|[\"']{re.escape(name)}[\"']",
                     source) is not None


def pytest_collection_modifyitems(config, items):
    name = config.getoption("first_for", None)
    if name:  # a stable sort: the checks that name it first, each group in file order
        items.sort(key=lambda item: not names_in_check(item, name.split(".")[0]))


def pytest_collection_finish(session):
    checks = [
        {
            "check": item.name,
            "points": check_points(item),
            "description": check_description(item),
        }
        for item in session.items
    ]
    _write_result(session.config, {"event": "collected", "checks": checks})


_STARTED: dict = {}


def pytest_runtest_logstart(nodeid, location):
    # A "start" line tells the parent which check was running if the process dies.
    config = _CONFIG.get("config")
    _STARTED[nodeid] = time.monotonic()
    if config is not None:
        _write_result(config, {"event": "start", "check": nodeid.split("::")[-1]})


_CONFIG: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _CONFIG["config"] = session.config
    # Start the student's process now: it imports numpy and torch while we import the
    # checks. The fork server may have started one already, ahead of this submission.
    path = session.config.getoption("submission", None)
    if path and session.config.getoption("transport") == "sandbox":
        from autograder.sandbox.host import take_warm_sandbox

        sandbox = take_warm_sandbox(limits_of(session.config), Path(path).stem)
        if sandbox is None:
            from autograder.sandbox.host import WARM_MODULES, setup_imports, spare_imports

            try:  # the runner's JSON answer source says what the lab imports
                source = AnswerSource.from_json(Path(path).read_text(encoding="utf-8"))
                modules = spare_imports(setup_imports(source))
            except (OSError, ValueError, KeyError):
                modules = WARM_MODULES
            sandbox = _new_sandbox(session.config, Path(path).stem)
            sandbox.spawn(modules)
        else:
            _SANDBOXES.append(sandbox)


def pytest_sessionfinish(session):
    for sandbox in _SANDBOXES:
        sandbox.close()
    _write_result(session.config, {"event": "finished"})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and not report.passed):
        points = check_points(item)
        if report.passed:
            message, earned, status = "", points, PASSED
        elif report.skipped:
            message, earned, status = "skipped", 0.0, GRADER_ERROR
        else:
            message, status = failure_message(call.excinfo, limits_of(item.config))
            earned = 0.0
        seconds = time.monotonic() - _STARTED.get(item.nodeid, time.monotonic())
        _write_result(
            item.config,
            {
                "event": "result",
                "check": item.name,
                "points": points,
                "earned": earned,
                "passed": report.passed,
                "status": status,
                "seconds": round(seconds, 4),
                "message": message,
            },
        )
