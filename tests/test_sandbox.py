"""Real sandboxes: the walls bubblewrap and the student's own confinement put up, the
fallback, and whole batches of hostile submissions.

Each probe is an answer cell that defines ``probe()``; the test calls it
through the sandbox and reads what it could do. Where an attack succeeded,
the probe says so in its answer (never by failing silently).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder.execute import AnswerSource
from autograder.labs import find_lab
from autograder.sandbox.confine import SANDBOX_UID, SANDBOX_UIDS
from autograder.sandbox.host import BUBBLEWRAP, FALLBACK, Sandbox
from autograder.sandbox.limits import Limits
from autograder.sandbox.modules import build_module, lend, module_spec

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "adversarial"
LAB = find_lab("03_dropout_ensembles")  # a lab whose setup cell imports torch


def sandbox_pids() -> list[int]:
    """Processes of the sandbox's uid, or of bubblewrap, anywhere on this machine."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["State"].split()[0] == "Z":
            continue  # dead, waiting for its parent to reap it
        uid = int(fields["Uid"].split()[0])
        if SANDBOX_UID <= uid < SANDBOX_UID + SANDBOX_UIDS or b"sandbox.child" in cmdline:
            pids.append(int(entry))
    return pids


def no_sandbox_left(seconds: float = 5.0) -> bool:
    """True once no process of any sandbox is left (a killed one takes a moment to go).
    The fork servers of earlier tests are stopped first: their spare sandboxes are alive
    by design, until the grading command that started them exits."""
    from autograder.runner import close_pools

    close_pools()
    deadline = time.monotonic() + seconds
    while sandbox_pids():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def leftover_folders() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("sandbox-")}


def open_sandbox(code: str, limits: Limits | None = None, layer: str | None = None, **kwargs):
    """A started sandbox running ``code`` as Lab 03's only answer cell, after its setup."""
    import nbformat

    from autograder.notebook import setup_cells

    setup = setup_cells(nbformat.read(LAB.notebook, 4))
    source = AnswerSource(LAB, setup, [("probe", code)])
    sandbox = Sandbox(limits or Limits(), layer=layer, **kwargs)
    return sandbox, sandbox.start(source)


def probe(code: str, **kwargs):
    sandbox, student = open_sandbox(code, **kwargs)
    try:
        return student.probe(), sandbox
    finally:
        sandbox.close()


def test_bubblewrap_is_the_layer_here():
    """make test installs bubblewrap, so the tests grade through it, never the fallback."""
    from autograder.sandbox import bwrap

    assert bwrap.usable() == (True, ""), bwrap.usable()


ATTEMPTS = r"""
import ctypes, mmap, os, signal, socket, subprocess

def attempt(action):
    try:
        action()
        return "done"
    except BaseException as e:
        return type(e).__name__ + (f" {e.errno}" if isinstance(e, OSError) else "")

libc = ctypes.CDLL(None, use_errno=True)

def raw(result):
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result

def fill_disk():
    written = 0
    try:
        for i in range(40):
            with open(f"/tmp/fill{i}", "wb") as f:
                for _ in range(16):
                    f.write(b"x" * 2**20)
                    written += 2**20
    finally:
        global disk_written
        disk_written = written

def probe():
    out = {
        "read /etc/shadow": attempt(lambda: open("/etc/shadow").read()),
        "read the reference": attempt(lambda: open(SOLUTIONS).read()),
        "list the checks": attempt(lambda: os.listdir(CHECKS)),
        "os.fork": attempt(os.fork),
        "raw fork": attempt(lambda: raw(libc.fork())),
        "setsid daemon": attempt(lambda: os.fork() or os.setsid()),
        "subprocess": attempt(lambda: subprocess.run(["/bin/true"])),
        "socket": attempt(lambda: socket.socket(socket.AF_UNIX)),
        "raw unix socket": attempt(lambda: raw(libc.socket(1, 1, 0))),
        "new user namespace": attempt(lambda: raw(libc.unshare(0x10000000))),
        "mount": attempt(lambda: raw(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))),
        "3 GiB shared memory": attempt(lambda: mmap.mmap(-1, 3 * 2**30, mmap.MAP_SHARED)),
        "memfd": attempt(lambda: os.memfd_create("x")),
        "SysV shared memory": attempt(lambda: raw(libc.shmget(0, 2**30, 0o1600))),
        "SysV message queue": attempt(lambda: raw(libc.msgget(0, 0o1600))),
        "write /dev/shm": attempt(lambda: open("/dev/shm/x", "w").write("x")),
        "write the repository": attempt(lambda: open(README, "a").write("x")),
        "kill pid 1": attempt(lambda: os.kill(1, signal.SIGKILL)),
        "fill the disk": attempt(fill_disk),
    }
    out["disk written MiB"] = disk_written // 2**20
    out["uid"] = os.getuid()
    out["pids visible"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out["capabilities"] = [l for l in open("/proc/self/status") if l.startswith("CapEff")][0]
    return out
""".replace("SOLUTIONS", repr(str(REPO / "solutions" / "preprocessing.py"))).replace(
    "CHECKS", repr(str(REPO / "autograder" / "checks"))).replace(
    "README", repr(str(REPO / "README.md")))


def test_the_walls_hold():
    """What a hostile student's code tries from inside the bubblewrap sandbox, as root or not."""
    before = leftover_folders()
    readme = (REPO / "README.md").read_bytes()
    limits = replace(Limits(), disk_bytes=64 * 2**20, file_bytes=16 * 2**20)
    out, sandbox = probe(ATTEMPTS, limits=limits)
    assert sandbox.layer == BUBBLEWRAP
    refused = {k: v for k, v in out.items() if isinstance(v, str) and v.startswith("done")}
    assert refused == {}, f"allowed: {refused}"
    assert out["read /etc/shadow"] == "FileNotFoundError 2"  # /etc is not in its world
    assert out["read the reference"] == "FileNotFoundError 2"
    assert out["os.fork"] == out["raw fork"] == "PermissionError 1"  # EPERM: seccomp
    assert out["raw unix socket"] == out["new user namespace"] == "PermissionError 1"
    assert out["fill the disk"] == "OSError 28"  # ENOSPC: the tmpfs is full
    assert out["disk written MiB"] <= 64
    assert out["uid"] != 0 and out["capabilities"].split()[1] == "0" * 16
    assert len(out["pids visible"]) <= 2  # bubblewrap's pid 1 (root's), the student's process
    assert (REPO / "README.md").read_bytes() == readme
    assert no_sandbox_left() and leftover_folders() == before


def test_an_answer_cannot_steer_the_graders_numpy():
    """An object whose __array_interface__ points into memory (or whose __len__,
    __index__ lie) stays a handle: numpy on the grader's side never asks it for an
    address, and the check fails with a message, not a segfault or a leak."""
    from labkit.checks import CheckFailure, assert_close

    code = ("class Pointer:\n"
            "    __array_interface__ = {'shape': (4,), 'typestr': '<f8', 'version': 3,\n"
            "                           'data': (16, False)}\n"
            "    def __index__(self):\n        return 10**9\n"
            "    def __exit__(self, *a):\n        return True\n"
            "    def __enter__(self):\n        return self\n"
            "def probe():\n    return Pointer()\n")
    sandbox, student = open_sandbox(code)
    try:
        pointer = student.probe()
        with pytest.raises(AttributeError):
            getattr(pointer, "__array_interface__")  # noqa: B009 - the lookup numpy makes
        assert np.asarray(pointer).dtype == object
        with pytest.raises(CheckFailure, match="expected numbers"):
            assert_close("probe()", pointer, np.zeros(4))
        with pytest.raises(ZeroDivisionError):  # its __exit__ cannot swallow our error
            with pointer:
                raise ZeroDivisionError
        assert repr(pointer) == "<Pointer in the student's process>"  # never a request
    finally:
        sandbox.close()


def test_a_top_level_loop_that_ignores_alarms_is_killed_from_outside():
    code = ("import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})\n"
            "while True:\n    pass\n")
    start = time.monotonic()
    sandbox, student = open_sandbox(code, limits=replace(Limits(), cell_seconds=2.0))
    try:
        assert any("took longer than 2 s" in p for p in sandbox.problems), sandbox.problems
        assert time.monotonic() - start < 90  # the start-up, the setup cell, then 2 s
    finally:
        sandbox.close()
    assert no_sandbox_left()


def test_random_state_goes_one_way():
    code = ("import numpy as np, torch\n"
            "def draw():\n    return torch.rand(3)\n"
            "def steer():\n    torch.manual_seed(0)\n    np.random.seed(0)\n")
    sandbox, student = open_sandbox(code)
    try:
        torch.manual_seed(123)
        a = student.draw()
        torch.manual_seed(123)
        b = student.draw()
        torch.testing.assert_close(a, b)  # the grader's seed reaches the student's draws
        assert not torch.equal(b, student.draw())  # without a new seed, its state goes on
        student.steer()
        after = torch.rand(5), np.random.random(5)
        torch.manual_seed(0)
        np.random.seed(0)
        steered = torch.rand(5), np.random.random(5)
        # Had the student's state come back, the grader would draw what follows seed 0.
        assert not torch.equal(after[0], steered[0]) and not np.array_equal(after[1], steered[1])
    finally:
        sandbox.close()


def test_a_lent_module_is_the_students_own_copy():
    code = ("import torch\n"
            "def tamper(model):\n"
            "    with torch.no_grad():\n"
            "        for p in model.parameters():\n"
            "            p.zero_()\n"
            "    return model(torch.ones(1, 3))\n")
    spec = module_spec("torch.nn.Linear", 3, 2)
    torch.manual_seed(0)
    ours = build_module(spec)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    sandbox, student = open_sandbox(code)
    try:
        theirs = lend(student, spec, ours.state_dict())
        torch.testing.assert_close(theirs.state_dict()["weight"], state["weight"])
        out = student.tamper(theirs)
        torch.testing.assert_close(out, torch.zeros(1, 2))
        for key, value in ours.state_dict().items():  # the check's copy is untouched
            torch.testing.assert_close(value, state[key])
        with pytest.raises(ValueError, match="not a module that can be built"):
            lend(student, module_spec("os.system", "true"))
    finally:
        sandbox.close()


@pytest.mark.parametrize("transport", ["sandbox", "in-process"])
def test_a_large_state_crosses_in_chunks_and_a_module_is_described(monkeypatch, transport):
    """lend and load_state split a state into requests of at most CHUNK_BYTES; describe
    reports what the student's copy is made of (its flags and modes), without weights."""
    from autograder.sandbox import modules
    from autograder.student import InProcessStudent

    monkeypatch.setattr(modules, "CHUNK_BYTES", 400)  # this model's state is 1,852 bytes
    code = ("import torch\n"
            "def freeze_first(model):\n"
            "    model[0].weight.requires_grad_(False)\n"
            "    model[1].eval()\n")
    spec = module_spec("torch.nn.Sequential", module_spec("torch.nn.Conv2d", 3, 8, 3),
                       module_spec("torch.nn.BatchNorm2d", 8), module_spec("torch.nn.Flatten"),
                       module_spec("torch.nn.Linear", 8, 2))
    torch.manual_seed(1)
    ours = build_module(spec)
    with torch.no_grad():
        ours[1].running_mean.uniform_()
    if transport == "sandbox":
        sandbox, student = open_sandbox(code)
    else:
        sandbox, student = None, InProcessStudent({"freeze_first": _exec(code)["freeze_first"]})
    try:
        theirs = lend(student, spec, ours.state_dict(), train=True)
        for key, value in ours.state_dict().items():
            torch.testing.assert_close(theirs.state_dict()[key], value)
        student.freeze_first(theirs)
        seen = modules.describe(student, theirs)
        assert seen["type"] == "Sequential" and seen["training"] is True
        assert [(m["name"], m["type"], m["training"]) for m in seen["modules"]] == [
            ("", "Sequential", True), ("0", "Conv2d", True), ("1", "BatchNorm2d", False),
            ("2", "Flatten", True), ("3", "Linear", True)]
        assert [(p["name"], p["shape"], p["requires_grad"]) for p in seen["parameters"]] == [
            ("0.weight", [8, 3, 3, 3], False), ("0.bias", [8], True), ("1.weight", [8], True),
            ("1.bias", [8], True), ("3.weight", [2, 8], True), ("3.bias", [2], True)]
        assert [b["name"] for b in seen["buffers"]] == [
            "1.running_mean", "1.running_var", "1.num_batches_tracked"]
        assert seen["state_keys"] == list(ours.state_dict())
        wrong = {"0.weight": ours[0].weight.detach(), "9.weight": torch.zeros(1)}
        missing, unexpected = modules.load_state(student, theirs, wrong)
        assert unexpected == ["9.weight"] and "0.weight" not in missing
        assert set(missing) == set(ours.state_dict()) - {"0.weight"}
        with pytest.raises(Exception, match="expected a torch.nn.Module"):
            modules.describe(student, [1, 2])
    finally:
        if sandbox is not None:
            sandbox.close()


def _exec(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "<student>", "exec"), namespace)  # noqa: S102 - our own test code
    return namespace


@pytest.mark.parametrize("landlock", [True, False])
def test_fallback_fences_files_and_says_so(tmp_path, landlock):
    """Where bubblewrap cannot run: Landlock, or the audit hook alone (a kernel without
    Landlock); the student can neither read the reference nor change a file outside its
    folder, and the layer says it is the weaker one."""
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("keep me")
    code = f'''
import os

def probe():
    results = {{}}
    for name, act in [
        ("read reference", lambda: open({str(REPO / "solutions" / "preprocessing.py")!r}).read()),
        ("delete decoy", lambda: os.remove({str(decoy)!r})),
        ("overwrite decoy", lambda: open({str(decoy)!r}, "w").write("gone")),
        ("rename decoy", lambda: os.rename({str(decoy)!r}, {str(decoy)!r} + ".x")),
        ("write own folder", lambda: open("mine.txt", "w").write("ok")),
    ]:
        try:
            act()
            results[name] = "done"
        except OSError as e:
            results[name] = type(e).__name__
    return results
'''
    results, sandbox = probe(code, layer=FALLBACK, landlock=landlock)
    assert results == {"read reference": "PermissionError", "delete decoy": "PermissionError",
                       "overwrite decoy": "PermissionError", "rename decoy": "PermissionError",
                       "write own folder": "done"}, results
    assert decoy.read_text() == "keep me"
    assert ("Landlock" in " ".join(sandbox.enforced)) is landlock
    assert sandbox.describe_layer().startswith("fallback: WEAKER SANDBOX")


# --- real sandboxes ------------------------------------------------------------------------


def outside_fences(markdown: str) -> list[str]:
    """The lines of a Markdown text that are not inside a fenced code block (CommonMark: a
    fence closes on a run of at least as many backticks as opened it)."""
    lines, fence = [], 0
    for line in markdown.splitlines():
        stripped = line.strip()
        run = len(stripped) - len(stripped.lstrip("`"))
        if fence == 0 and run >= 3:
            fence = run
        elif fence and run >= fence and stripped == "`" * run:
            fence = 0
        elif fence == 0:
            lines.append(line)
    return lines


def test_adversarial_corpus(tmp_path):
    """Every hostile submission gets exactly its score and message through the real
    sandbox; none harms the others, the grader's files or its feedback; nothing of any
    sandbox survives the batch."""
    from autograder.grade import grade_all

    expected = json.loads((CORPUS / "expected.json").read_text())
    layout = expected.pop("layout")
    assert len(expected) >= 40
    readme = (REPO / "README.md").read_bytes()
    before = leftover_folders()
    grade_all([CORPUS], tmp_path, jobs=2, progress=False)
    with open(tmp_path / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    wrong = []
    for name, want in expected.items():
        row = rows.get(name)
        feedback = (tmp_path / name / "01_preprocessing.md").read_text()
        if row is None or float(row["score"]) != want["score"] or want["message"] not in feedback:
            wrong.append(f"{name}: want {want}, got {row and row['score']}\n{feedback[:1500]}")
            continue
        if row["sandbox"] != "bubblewrap" and not row["error"]:
            wrong.append(f"{name}: graded by {row['sandbox']!r}, not bubblewrap")
        for text in want.get("absent", []):
            if text in feedback:
                wrong.append(f"{name}: the feedback shows {text!r} as the student wrote it")
        plain = outside_fences(feedback)
        if sum(line.startswith("**Score") for line in plain) > 1 or any(
                line.startswith("#") and not line.startswith(("# Feedback", "## ", "### `"))
                for line in plain):
            wrong.append(f"{name}: a student's text reads as feedback structure:\n{feedback}")
        if want["score"] == want["max_score"]:
            assert "failed" not in feedback.split("## Checks")[-1], name
    for case, want in layout.items():  # the submissions folder's own tricks
        row = rows.get(want["student"])
        if row is None or float(row["score"]) != want["score"] or \
                want["error"] not in row["error"] or (not want["error"] and row["error"]):
            wrong.append(f"layout {case}: want {want}, got {row}")
    assert not wrong, "\n\n".join(wrong)
    assert (REPO / "README.md").read_bytes() == readme
    assert not (REPO / "PWNED.txt").exists()
    assert not Path("/tmp/adversarial-pwned.txt").exists()
    assert no_sandbox_left(), f"a sandbox process survived the batch: {sandbox_pids()}"
    assert leftover_folders() == before, "a sandbox folder was left behind"


def _honest(tmp_path: Path, students: int) -> Path:
    import nbformat

    from autograder.build import solved_notebook
    from autograder.labs import find_lab

    nb = solved_notebook(find_lab("01_preprocessing"))
    for i in range(students):
        path = tmp_path / "class" / f"s{i}" / "01_preprocessing.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return tmp_path / "class"


# Lab 01's full marks, as the adversarial corpus works them out by hand (its "honest" row).
FULL = json.loads((CORPUS / "expected.json").read_text())["honest"]["max_score"]


def test_batch_is_resumable_and_survives_kill_9(tmp_path):
    """kill -9 in the middle keeps every finished report whole; a rerun grades only the rest;
    --force grades everything again; a changed file is graded again."""
    class_dir, out = _honest(tmp_path, 3), tmp_path / "out"
    cmd = [sys.executable, "-m", "autograder", "grade", str(class_dir), "--out", str(out),
           "--jobs", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = sorted(out.glob("*/*.json"))
    assert 1 <= len(first) < 3, "the batch should be killed after its first report"
    for path in first:
        assert json.loads(path.read_text())["score"] == FULL  # whole, never half-written
    stamps = {p: p.stat().st_mtime_ns for p in first}

    def run(*extra):
        result = subprocess.run(cmd + list(extra), cwd=REPO, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    output = run()
    assert f"{len(first)} of 3 submissions already graded" in output
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first)  # not graded again
    with open(out / "gradebook.csv", newline="") as f:
        assert [float(r["score"]) for r in csv.DictReader(f)] == [FULL] * 3
    changed = class_dir / "s0" / "01_preprocessing.ipynb"
    changed.write_text(changed.read_text().replace("return", "return  ", 1))
    assert "2 of 3 submissions already graded" in run()
    assert "already graded" not in run("--force")


@pytest.mark.parametrize("transport", ["inprocess", "sandbox"])
def test_checks_pass_the_reference_on_both_transports(transport):
    """The same checks, unchanged, grade the solved Lab 01 notebook fully either way."""
    notebook = CORPUS / "honest" / "01_preprocessing.ipynb"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "autograder/checks/test_preprocessing.py"),
         "--submission", str(notebook), "--transport", transport, "-q", "-p", "no:cacheprovider",
         "-p", "no:nbval"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


