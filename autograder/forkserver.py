"""A pre-forked checks process: pytest, numpy, torch and the checks imported once.

Starting ``python -m pytest`` for each submission costs seconds of imports
(python, pytest, numpy, torch, the checks, the reference). A ``ForkServer``
is a process that has done those imports once and then forks a copy of itself
per submission; the copy runs ``pytest.main`` with the grader's plugin, in its
own session (so the runner can kill it and anything it started), and exits.

The server only imports trusted code and never runs a check itself, so every
submission starts from the same clean state. It never runs student code:
that happens in a sandbox (``autograder.sandbox``). The server keeps one
spare sandbox spawned ahead of need (a fresh process that has already
imported what the last request's lab imports), hands it to the next copy, spawns the
next spare while that copy grades, and kills and reaps the used one when the
copy is done: a sandbox is never reused, and its start-up overlaps the
previous submission's checks.

Protocol on the server's stdin/stdout, one JSON object per line:
``{"args": [...], "cwd": DIR, "log": FILE}`` -> ``{"pid": N}`` then ``{"exit": CODE}``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from autograder.sandbox.confine import die_with_parent

PRELOAD = ("numpy", "torch", "pytest", "autograder.plugin", "labkit.checks")


class ForkServer:
    """The grader's handle on one server process (one submission at a time)."""

    def __init__(self, env: dict, limits_json: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.forkserver", limits_json], env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, timeout: float | None):
        if timeout is not None and not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise OSError("the fork server is gone")
        return json.loads(line)

    def run(self, args: list[str], cwd: str, log: str, timeout: float) -> int | None:
        """Run ``pytest args`` in a fresh copy; kill its session after ``timeout`` seconds.

        Returns the exit code, or None on time-out. Raises OSError if the server died.
        """
        self.proc.stdin.write((json.dumps({"args": args, "cwd": cwd, "log": log}) + "\n").encode())
        self.proc.stdin.flush()
        pid = self._read(60)["pid"]
        deadline = time.monotonic() + max(timeout, 1.0)
        try:
            return self._read(max(deadline - time.monotonic(), 0.01))["exit"]
        except TimeoutError:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._read(60)  # the server reports the killed copy's exit
            return None

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class ServerPool:
    """Fork servers shared by the grading threads, one per thread at a time."""

    def __init__(self, env: dict, limits_json: str):
        self.env, self.limits_json, self.idle, self.lock = env, limits_json, [], threading.Lock()

    def acquire(self) -> ForkServer:
        with self.lock:
            while self.idle:
                server = self.idle.pop()
                if server.alive:
                    return server
        return ForkServer(self.env, self.limits_json)

    def release(self, server: ForkServer) -> None:
        with self.lock:
            if server.alive:
                self.idle.append(server)

    def close(self) -> None:
        with self.lock:
            for server in self.idle:
                server.close()
            self.idle.clear()


# --- the server process --------------------------------------------------------------------


def _child(request: dict, spare) -> None:
    """In the forked copy: a new session, the request's directory and log, the spare
    sandbox, then pytest."""
    os.setsid()
    try:  # die with the server, which dies when the grader closes its stdin
        die_with_parent()
    except (OSError, AttributeError):
        pass
    os.chdir(request["cwd"])
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if spare is not None:
        from autograder.sandbox.host import offer_warm_sandbox

        offer_warm_sandbox(spare)
    import pytest

    code = 1
    try:
        code = int(pytest.main(request["args"]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _spare(limits, modules):
    """A fresh sandbox that imports ``modules``, spawned now; None where it cannot start
    (each copy then spawns its own)."""
    from autograder.sandbox.host import Sandbox

    if modules is None:
        return None
    try:
        sandbox = Sandbox(limits, label="spare")
        sandbox.spawn(modules)
        return sandbox
    except OSError:
        return None


def _setup_imports_by_checks_file() -> dict[str, list[str]]:
    """checks file -> what its lab's setup cells import (what a spare sandbox imports).
    Read as plain JSON: nbformat's import and validation cost seconds at start-up."""
    from autograder.execute import AnswerSource
    from autograder.labs import all_labs
    from autograder.sandbox.host import setup_imports, spare_imports

    table = {}
    for lab in all_labs():
        cells = []
        for cell in json.loads(lab.notebook.read_text(encoding="utf-8")).get("cells", []):
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
            if cell.get("cell_type") == "code" and grade_id.startswith("setup"):  # notebook.py
                source = cell.get("source", "")
                cells.append((grade_id, "".join(source) if isinstance(source, list) else source))
        table[str(lab.checks_file)] = spare_imports(setup_imports(AnswerSource(lab, cells, [])))
    return table


def serve(limits_json: str) -> None:
    import importlib

    from autograder.labs import all_labs
    from autograder.sandbox.limits import Limits

    limits = Limits.from_json(limits_json)

    for name in PRELOAD:
        importlib.import_module(name)
    for lab in all_labs():  # the checks and the reference: what every copy would import
        importlib.import_module(f"autograder.checks.test_{lab.topic}")
        importlib.import_module(f"solutions.{lab.topic}")

    out = sys.stdout.buffer
    imports = _setup_imports_by_checks_file()
    spare = None
    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request, spare)
        out.write((json.dumps({"pid": pid}) + "\n").encode())
        out.flush()
        # The next spare starts while this copy grades, with the imports of this lab (a
        # batch is most often one lab): a wrong guess only costs the next one its imports.
        lab_imports = imports.get(request["args"][0]) if request.get("args") else None
        used, spare = spare, _spare(limits, lab_imports)
        _, status = os.waitpid(pid, 0)
        if used is not None:
            used.close()  # kill and reap it, whatever the copy did with it
        out.write((json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n").encode())
        out.flush()
    if spare is not None:
        spare.close()


if __name__ == "__main__":
    serve(sys.argv[1])
