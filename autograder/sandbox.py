"""The sandboxed student: a submission's code in its own confined process.

``Sandbox(source)`` starts ``autograder.sandbox_child`` in a fresh temporary
directory with a minimal environment, hands it the answer cells and the
limits, and returns a ``SandboxStudent``: the same interface as
``InProcessStudent`` (``student.mean_image(x)``), with every call crossing the
process boundary as plain data (``autograder.rpc``). The grader's process
never runs the student's code; the student's process never holds the
reference or the expected answers.

What the sandbox enforces (see ``sandbox_child.confine``):

- by the OS: memory (RLIMIT_DATA: what the setup cell's imports use plus
  ``memory_bytes``), file size written, open files, CPU seconds; a fresh
  temporary directory as the working directory and ``HOME``; a minimal
  environment; Landlock (Linux >= 5.13): reading only the Python libraries,
  the lab's ``labkit`` and data, writing only its own directory, no TCP, no
  signals to processes outside the sandbox; as root, also an empty network
  namespace, the ``nobody`` user and RLIMIT_NPROC; death with the grader
  (PR_SET_PDEATHSIG); the whole process group killed when it is closed;
- by the grader: a time limit per check and per submission, the student's
  output discarded, and messages of at most 256 MiB;
- best effort, in Python: an audit hook refusing subprocesses, forks,
  signals, sockets, opening the grader's files and changing files outside its
  folder (native code goes around it).
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder.execute import AnswerSource, SubmissionError, _strip_magics
from autograder.labs import REPO
from autograder.rpc import Endpoint, PeerGone
from autograder.student import MissingAnswer


@dataclass
class Limits:
    """What a student's process may use."""

    memory_bytes: int = 2 * 2**30  # beyond what the setup cell's imports use
    file_bytes: int = 64 * 2**20
    processes: int = 256  # tasks (threads included) of the unprivileged user, as root
    cpu_seconds: int = 600
    load_seconds: float = 60.0  # the setup and answer cells
    cell_seconds: float = 10.0  # one answer cell
    protected_paths: list[str] = field(default_factory=list)  # also refused (audit hook)
    landlock: bool = True  # False only to test the audit hook alone, as without Landlock


def _read_paths() -> list[str]:
    """What a student's process may read: the interpreter, the libraries, labkit, the data."""
    from labkit.data import data_dir

    repo, tmp = str(REPO), tempfile.gettempdir()

    def fenced(entry: str) -> bool:  # what must stay out of reach, and its ancestors
        entry = os.path.realpath(entry)
        return any(entry == p or entry.startswith(p + os.sep) or p.startswith(entry + os.sep)
                   for p in (repo, tmp)) or entry == os.sep

    paths = {"/usr", "/lib", "/lib64", "/bin", "/etc", str(REPO / "labs"), str(data_dir())}
    for entry in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path):
        if entry and os.path.isdir(entry) and not fenced(entry):
            paths.add(entry)
        elif entry.startswith(str(REPO / ".venv")):  # a virtual environment in the repository
            paths.add(entry)
    return sorted(p for p in paths if os.path.exists(p))


def _readable_by_everyone(paths) -> bool:
    """Can an unprivileged user reach these paths (every folder above them o+x)?"""
    for path in paths:
        p = Path(path).resolve()
        for folder in [p, *p.parents]:
            try:
                if folder.is_dir() and not folder.stat().st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    return True


def _drop_user(read_paths) -> str | None:
    """The user to run as when the grader is root: ``nobody``, if it can read the
    libraries (a Python installed under /root cannot be read by it)."""
    if os.geteuid() != 0:
        return None
    return "nobody" if _readable_by_everyone(read_paths) else None


def _child_env(tmp: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "MPLCONFIGDIR": tmp,
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    for key in ("LAB_DATA_DIR", "LAB_DATASET", "VIRTUAL_ENV"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def setup_imports(source: AnswerSource) -> list[str]:
    """The top-level modules that the lab's setup cells import (numpy, torch, labkit...)."""
    names = []
    for cell, code in source.setup:
        try:
            tree = ast.parse(_strip_magics(code, cell, []))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
    return list(dict.fromkeys(names))


class Sandbox:
    """One student's process. ``start()`` (again after a crash) and ``close()``."""

    def __init__(self, source: AnswerSource, limits: Limits | None = None, label="student"):
        self.source, self.limits, self.label = source, limits or Limits(), label
        self.proc: subprocess.Popen | None = None
        self.endpoint: Endpoint | None = None
        self.tmp: str | None = None
        self.problems: list[str] = []
        self.enforced: list[str] = []

    @property
    def alive(self) -> bool:
        return (self.proc is not None and self.proc.poll() is None and self.endpoint is not None
                and not self.endpoint.broken)

    def spawn(self) -> None:
        """Start the process, which imports what the lab's setup cells import while the
        caller does something else (the grader imports its checks meanwhile)."""
        self.close()
        self.tmp = tempfile.mkdtemp(prefix="sandbox-")
        os.chmod(self.tmp, 0o700)
        ours, theirs = socket.socketpair()
        log = open(os.path.join(self.tmp, ".sandbox.log"), "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.sandbox_child", str(theirs.fileno()),
                 *setup_imports(self.source)],
                cwd=self.tmp, env=_child_env(self.tmp), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, pass_fds=[theirs.fileno()], start_new_session=True,
            )  # fmt: skip
        finally:
            theirs.close()
            log.close()
        self.endpoint = Endpoint(ours, public_only=True)
        self._loaded = False

    def start(self) -> SandboxStudent:
        """Load the submission in the spawned process (spawning a fresh one if there is
        none, or if it was used: after a crash or a time-out); return the student."""
        if self.proc is None or getattr(self, "_loaded", True):
            self.spawn()
        self._loaded = True
        config = {
            "tmp": self.tmp, "memory_bytes": self.limits.memory_bytes,
            "file_bytes": self.limits.file_bytes, "processes": self.limits.processes,
            "cpu_seconds": self.limits.cpu_seconds, "cell_seconds": self.limits.cell_seconds,
            "read_paths": _read_paths(), "landlock": self.limits.landlock,
            "drop_user": _drop_user([sys.base_prefix, sys.prefix]),
            "protected_paths": [str(REPO / "autograder"), str(REPO / "solutions"),
                                *self.limits.protected_paths],
        }  # fmt: skip
        self.endpoint.deadline = time.monotonic() + self.limits.load_seconds
        try:
            self.problems, self.enforced = self.endpoint.request(
                "load", config, self.source.to_json())
        except TimeoutError:
            self.close()
            raise SubmissionError(
                f"your answer cells took longer than {self.limits.load_seconds:g} s to run "
                f"(an infinite loop or a long computation at the top level of a cell?)."
            ) from None
        except PeerGone:
            why = self.exit_description()
            self.close()
            raise SubmissionError(f"your answer cells ended the grading process ({why}).") from None
        except Exception as e:  # the lab's setup failed: not the student's fault
            self.close()
            raise SubmissionError(f"the grader could not start your code ({e}); tell your TA."
                                  ) from None
        finally:
            if self.endpoint is not None:
                self.endpoint.deadline = None
        return SandboxStudent(self)

    def exit_description(self) -> str:
        if self.proc is None:
            return "not started"
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (too much memory?)" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exit code {code}"

    def close(self) -> None:
        """Kill the process and everything it started; remove its directory."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        if self.endpoint is not None:
            self.endpoint.sock.close()
            self.endpoint = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


class SandboxStudent:
    """``student.<name>`` for a submission running in a ``Sandbox``."""

    def __init__(self, sandbox: Sandbox):
        self._sandbox = sandbox
        self._problems = sandbox.problems

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        endpoint = self._sandbox.endpoint
        if endpoint is None or endpoint.broken:
            raise PeerGone("your process had stopped before this check.")
        found, value = endpoint.request("name", name)
        if not found:
            hint = " (see the problems at the top of your feedback)" if self._problems else ""
            raise MissingAnswer(
                f"your code does not define `{name}`: its answer cell is missing, "
                f"renamed, or stopped with an error before defining it{hint}."
            )
        return value

    def __repr__(self):
        return f"<student {self._sandbox.label} (sandboxed)>"
