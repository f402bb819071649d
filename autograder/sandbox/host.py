"""The grader's side of a sandbox: start the student's process, load a submission, talk.

``Sandbox(limits)`` starts ``autograder.sandbox.child`` walled in by
bubblewrap (``autograder.sandbox.bwrap``) or, where bubblewrap cannot run,
in the weaker fallback (``autograder.sandbox.fallback``), and says which in
``layer`` and ``enforced``. ``spawn()`` starts the process, which imports the
lab's modules while the grader does something else; ``start(source)`` loads
a submission into it and returns a ``SandboxStudent``: the same interface as
``InProcessStudent`` (``student.mean_image(x)``), every call crossing as
plain data through a one-way ``Client``.

Time limits are the grader's, enforced from outside: a request that does not
complete by its deadline (a cell, a check, the load) ends with the process
killed. A process is never reused for another submission, nor after a
failure.
"""

from __future__ import annotations

import ast
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from autograder.execute import AnswerSource, SubmissionError, _strip_magics
from autograder.labs import REPO
from autograder.sandbox import bwrap
from autograder.sandbox.limits import Limits
from autograder.sandbox.protocol import Client, PeerGone
from autograder.student import MissingAnswer

BUBBLEWRAP = "bubblewrap"
FALLBACK = "fallback"
FALLBACK_WARNING = ("WEAKER SANDBOX: bubblewrap could not run on the grading machine, so this "
                    "submission ran under the fallback (Landlock and an audit hook)")
# Imported by a new process when nothing says what its lab imports; torch always (see
# child.load: it is imported before the address-space limit in every lab).
WARM_MODULES = ("numpy", "torch", "labkit", "labkit.checks")


def spare_imports(lab_imports) -> list[str]:
    """What a process spawned for a lab imports ahead of need: its setup's, and torch."""
    return list(dict.fromkeys([*lab_imports, "torch"]))


def _data_dir() -> str | None:
    try:
        from labkit.data import data_dir

        return str(data_dir())
    except Exception:  # noqa: BLE001 - no data folder: nothing to bind
        return None


def _child_env(tmp: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "MPLCONFIGDIR": tmp,
           "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
           "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
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


def choose_layer() -> tuple[str, str]:
    """(the layer new sandboxes use, why not bubblewrap when it is the fallback)."""
    if os.environ.get("AUTOGRADER_SANDBOX") == FALLBACK:
        return FALLBACK, "AUTOGRADER_SANDBOX=fallback was set"
    ok, why = bwrap.usable()
    return (BUBBLEWRAP, "") if ok else (FALLBACK, why)


class Sandbox:
    """One student's process. ``spawn()``, ``start(source)``, and ``close()``.

    Inputs:
    - limits: the ``Limits`` (every number it enforces).
    - label: who this is, for messages.
    - layer: force BUBBLEWRAP or FALLBACK (default: bubblewrap where it can run).
    - landlock: False to test the fallback's audit hook alone.
    """

    def __init__(self, limits: Limits, label: str = "student", layer: str | None = None,
                 landlock: bool = True):
        self.limits, self.label = limits, label
        self.layer, self.layer_note = (layer, "") if layer else choose_layer()
        self.landlock = landlock
        self.proc: subprocess.Popen | None = None  # None once adopted by a forked copy
        self.pid: int | None = None
        self.client: Client | None = None
        self.tmp: str | None = None
        self.stderr = None
        self.used = False
        self.problems: list[str] = []
        self.enforced: list[str] = []
        self.source: AnswerSource | None = None
        self.skip: dict[int, str] = {}  # answer cells that hung or ended the process: why

    @property
    def alive(self) -> bool:
        """Still answering: started, no broken request, its end of the socket open."""
        if self.pid is None or self.client is None or self.client.broken:
            return False
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:  # readable with nothing to read: the process is gone
            if select.select([self.client.sock], [], [], 0)[0]:
                return self.client.sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False
        return True

    def adopt(self) -> None:
        """In a copy forked from the process that spawned this sandbox: use it without
        being its parent (the spawner kills and reaps it once the copy is done)."""
        self.proc = None

    def describe_layer(self) -> str:
        if self.layer == BUBBLEWRAP:
            return BUBBLEWRAP
        return f"{FALLBACK}: {FALLBACK_WARNING} ({self.layer_note})"

    # --- the process ---------------------------------------------------------------------

    def spawn(self, modules=WARM_MODULES) -> None:
        """Start a fresh process that imports ``modules`` while the caller goes on."""
        self.close()
        self.used = False
        ours, theirs = socket.socketpair()
        # The child's own output before it confines itself (a failed start), in a file
        # nobody else can open; it discards everything once confined.
        self.stderr = tempfile.TemporaryFile(prefix="sandbox-stderr-")
        if self.layer == BUBBLEWRAP:
            tmp = bwrap.SANDBOX_TMP
            argv = [sys.executable, "-m", "autograder.sandbox.child", str(theirs.fileno()),
                    BUBBLEWRAP, *modules]
            cmd = bwrap.command(argv, _child_env(tmp), self.limits, _data_dir())
            cwd = "/"
        else:
            self.tmp = tmp = tempfile.mkdtemp(prefix="sandbox-")
            os.chmod(tmp, 0o700)
            cmd = [sys.executable, "-m", "autograder.sandbox.child", str(theirs.fileno()),
                   FALLBACK, *modules]
            cwd = tmp
        env = _child_env(tmp) if self.layer == FALLBACK else {"PATH": "/usr/bin:/bin"}
        try:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.stderr,
                stderr=self.stderr, pass_fds=[theirs.fileno()], start_new_session=True,
            )  # fmt: skip
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.client = Client(ours, self.limits)

    def _fallback_config(self) -> dict:
        from autograder.sandbox.fallback import read_paths

        return {"tmp": self.tmp, "read_paths": read_paths(_data_dir()), "landlock": self.landlock,
                "protected_paths": [str(REPO / "autograder"), str(REPO / "solutions")]}

    def _request(self, deadline: float, op: str, *args):
        self.client.deadline = deadline
        try:
            return self.client.request(op, *args)
        finally:
            if self.client is not None:
                self.client.deadline = None

    def _load(self, source: AnswerSource) -> None:
        """Run the lab's setup cells in a fresh process (the spawned one, if unused), which
        then confines itself."""
        if self.pid is None or self.used:
            self.spawn(spare_imports(setup_imports(source)))
        self.used = True
        start = time.monotonic()
        config = self._fallback_config() if self.layer == FALLBACK else None
        try:
            # The slot picks the uid: the outer bubblewrap's pid, unique while it lives.
            enforced = self._request(start + self.limits.start_seconds, "load",
                                     self.limits.to_json(), source.to_json(), config, self.pid)
            self.enforced = _bounded_strings(enforced, "what the sandbox enforces")
        except (TimeoutError, PeerGone) as e:
            why = "timed out" if isinstance(e, TimeoutError) else self.exit_description()
            tail = self._stderr_tail()
            self.close()
            raise SandboxError(f"the student's process did not start ({why}){tail}") from None
        except Exception as e:  # noqa: BLE001 - the lab's setup failed: not the student's fault
            self.close()
            raise SandboxError(f"the lab's setup failed in the sandbox ({e})") from None

    def start(self, source: AnswerSource, skip: dict | None = None) -> SandboxStudent:
        """Load a submission, cell by cell, each timed from outside. A cell that runs past
        its limit or ends the process costs that cell: a fresh process runs the others."""
        self.source = source
        skip, deadline = dict(skip or {}), time.monotonic() + self.limits.load_seconds
        while True:
            self._load(source)
            problems, bad = list(source.problems), None
            for index, (cell, _) in enumerate(source.answers):
                if index in skip:
                    continue
                cell_deadline = min(time.monotonic() + self.limits.cell_seconds, deadline)
                try:
                    answer = self._request(cell_deadline, "run_cell", index)
                    problems += _bounded_strings(answer, "the problems of a cell")
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        self.close()
                        raise SubmissionError(
                            f"your answer cells took longer than {self.limits.load_seconds:g} s "
                            f"to run (an infinite loop or a long computation at the top level "
                            f"of a cell?).") from None
                    bad = (index, f"answer cell {cell!r} took longer than "
                                  f"{self.limits.cell_seconds:g} s to run (an infinite loop or a "
                                  f"long computation at the top level of the cell?); names it "
                                  f"defines are missing.")
                    break
                except PeerGone as e:
                    if e.ended:
                        how = f"ended the grading process ({self.exit_description()})"
                    else:
                        how = f"broke the grader's protocol ({e})"
                    bad = (index, f"answer cell {cell!r} {how}; names it defines are missing.")
                    break
            if bad is None:
                break
            skip[bad[0]] = bad[1]
            self.close()
        self.problems = problems + list(skip.values())
        self.skip = skip  # a restart after a failed check skips the same cells
        return SandboxStudent(self)

    def restart(self) -> SandboxStudent:
        """The same submission in a fresh process (after a check killed or hung the last)."""
        return self.start(self.source, self.skip)

    def exit_description(self) -> str:
        if self.pid is None:
            return "not started"
        if self.proc is None:
            return self._adopted_exit_description()
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

    @staticmethod
    def _wait_for_end(sock, seconds: float = 5.0) -> None:
        """Wait until every process that held the other end of ``sock`` is gone (the end
        of stream), so that nothing of the sandbox outlives ``close``."""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if select.select([sock], [], [], max(deadline - time.monotonic(), 0))[0]:
                    if not sock.recv(1 << 16):
                        return
        except OSError:
            return

    def _adopted_exit_description(self) -> str:
        """The exit of a process this one did not start (the fork server's spare): read off
        /proc while it waits, a zombie, for its parent to reap it (stat's field 52)."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                break
            if fields[0] == "Z" and len(fields) >= 50:
                code = os.waitstatus_to_exitcode(int(fields[49]))
                if code < 0:
                    return f"killed by {signal.Signals(-code).name}"
                return f"exit code {code}"
            time.sleep(0.05)
        return "it ended or stopped answering"

    def _stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        try:
            self.stderr.seek(0)
            text = self.stderr.read()[-1500:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text}" if text else ""

    def close(self) -> None:
        """Kill the process and everything it started; remove its folder."""
        reaped = self.proc is not None and self.proc.returncode is not None
        if self.pid is not None and not reaped:  # a reaped pid may be someone else's now
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = self.pid = None
        if self.client is not None:
            self._wait_for_end(self.client.sock)
            self.client.sock.close()
            self.client = None
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


MAX_PROBLEMS, MAX_PROBLEM_CHARS = 50, 2000


def _bounded_strings(value, what: str) -> list[str]:
    """``value`` if it is a list of strings (at most MAX_PROBLEMS, each bounded): the
    student's process answers that, or it breaks the protocol."""
    if type(value) is not list or any(type(v) is not str for v in value):
        raise PeerGone(f"the student's process answered {what} with something else.")
    return [v[:MAX_PROBLEM_CHARS] for v in value[:MAX_PROBLEMS]]


_WARM: list[Sandbox] = []  # set in a copy forked from the fork server: its spare sandbox


def offer_warm_sandbox(sandbox: Sandbox) -> None:
    """In a forked copy: the spare sandbox its server spawned ahead of this submission."""
    sandbox.adopt()
    _WARM[:] = [sandbox]


def take_warm_sandbox(limits: Limits, label: str) -> Sandbox | None:
    """The spare sandbox offered to this process, if there is one for these limits."""
    if not _WARM:
        return None
    sandbox = _WARM.pop()
    if sandbox.limits != limits or not sandbox.alive:
        sandbox.close()
        return None
    sandbox.label = label
    return sandbox


class SandboxError(SubmissionError):
    """The sandbox itself failed (not the student's fault): a grader error."""


class SandboxStudent:
    """``student.<name>`` for a submission running in a ``Sandbox``."""

    def __init__(self, sandbox: Sandbox):
        self._sandbox = sandbox
        self._problems = sandbox.problems

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        client = self._sandbox.client
        if client is None or client.broken:
            raise PeerGone("your process had stopped before this check.")
        answer = client.request("name", name)
        if type(answer) is not tuple or len(answer) != 2 or type(answer[0]) is not bool:
            raise PeerGone("the student's process answered a name lookup with something else.")
        found, value = answer
        if not found:
            hint = " (see the problems at the top of your feedback)" if self._problems else ""
            raise MissingAnswer(
                f"your code does not define `{name}`: its answer cell is missing, "
                f"renamed, or stopped with an error before defining it{hint}."
            )
        return value

    def _build_module(self, spec, state_dict=None, train=None):
        return self._sandbox.client.request("build_module", spec, state_dict, train)

    def _describe_module(self, module):
        return self._sandbox.client.request("describe_module", module)

    def _load_state(self, module, chunk):
        return self._sandbox.client.request("load_state", module, chunk)

    def __repr__(self):
        return f"<student {self._sandbox.label} (sandboxed)>"
