"""The sandbox transport: plain data across, handles for the rest, hostile code contained.

The RPC tests run both ends in this process (a thread serves the "student"
side) so that they are fast; the corpus and batch tests start real sandboxes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder.rpc import Endpoint, PeerGone, RemoteError
from autograder.wire import Decoder, Encoder, WireError, recv_message, send_message

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "adversarial"


class Counter:
    """A student-side object that is not plain data."""

    def __init__(self, start):
        self.value = start
        self._secret = "hidden"

    def add(self, n):
        self.value += n
        return self

    def __len__(self):
        return 3


class CustomError(Exception):
    pass


def student_side_namespace():
    def update_stats(stats, x):
        stats["running_mean"] *= 0.5  # in place, as batch norm's running statistics
        stats["count"] = stats.get("count", 0) + 1
        stats["new"] = np.zeros(2)
        return None

    def replace_array(stats):
        stats["running_mean"] = stats["running_mean"] * 2  # a new array, not in place

    def fail(kind):
        if kind == "value":
            raise ValueError("bad value")
        raise CustomError("custom")

    def square_sum(t):
        return (t**2).sum()

    def call_model(model, x):
        model.eval()
        with torch.no_grad():
            return model(x)

    def read_private(model):
        return model._parameters

    return {"Counter": Counter, "update_stats": update_stats, "replace_array": replace_array,
            "fail": fail, "square_sum": square_sum, "call_model": call_model,
            "read_private": read_private, "echo": lambda v: v}


@pytest.fixture
def remote():
    """A grader-side endpoint talking to a student-side endpoint served by a thread."""
    ours, theirs = socket.socketpair()
    names = student_side_namespace()
    server = Endpoint(theirs, ops={"name": lambda n: (n in names, names.get(n))})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = Endpoint(ours, public_only=True)

    class Student:
        def __getattr__(self, name):
            found, value = client.request("name", name)
            assert found, name
            return value

    yield Student()
    ours.close()
    thread.join(timeout=5)


def test_plain_data_round_trip(remote):
    values = [
        None, True, 3, -(2**70), 1.5, float("nan"), float("-inf"), 2 + 3j, "é", b"\x00\xff",
        (1, [2, (3,)]), {1: "int key", (2, 3): "tuple key", "s": {4, 5}}, frozenset({1}),
        np.arange(6, dtype=np.int16).reshape(2, 3), np.float32(2.5), np.zeros((0, 3)),
        np.array([True, False]), np.dtype("float64"), np.float64, slice(1, None, 2), ...,
        torch.arange(4.0).reshape(2, 2), torch.tensor(3, dtype=torch.int64), torch.float16,
        torch.Size([2, 3]), torch.device("cpu"), torch.zeros(0, dtype=torch.bfloat16),
    ]
    back = remote.echo(values)
    assert len(back) == len(values)
    for got, sent in zip(back, values, strict=True):
        assert type(got) is type(sent), (got, sent)
        if isinstance(sent, (np.ndarray, np.generic)):
            assert got.dtype == sent.dtype and got.shape == sent.shape
            np.testing.assert_array_equal(got, sent)
        elif isinstance(sent, torch.Tensor):
            assert got.dtype == sent.dtype and torch.equal(got, sent)
        elif isinstance(sent, float) and sent != sent:
            assert got != got
        else:
            assert got == sent


def test_objects_stay_in_the_student_process_as_handles(remote):
    c = remote.Counter(5)
    assert type(c).__name__ == "Proxy"
    assert c.add(2) is c  # the same remote object comes back as the same handle
    assert c.value == 7
    c.value = 10
    assert c.value == 10 and len(c) == 3
    assert remote.echo(c) is c  # a handle sent back is the student's own object again


def test_in_place_updates_come_back_with_identity(remote):
    mean = np.ones(3)
    stats = {"running_mean": mean}
    remote.update_stats(stats, np.zeros(3))
    assert stats["running_mean"] is mean  # updated in place, so the same array
    np.testing.assert_array_equal(mean, 0.5 * np.ones(3))
    assert stats["count"] == 1 and stats["new"].shape == (2,)
    remote.replace_array(stats)
    assert stats["running_mean"] is not mean  # replaced: a check can tell
    np.testing.assert_array_equal(mean, 0.5 * np.ones(3))


def test_exceptions_keep_builtin_types_only(remote):
    with pytest.raises(ValueError, match="bad value"):
        remote.fail("value")
    with pytest.raises(RemoteError, match="CustomError: custom"):
        remote.fail("custom")


def test_autograd_runs_through_the_student_process(remote):
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = remote.square_sum(x)
    assert out.requires_grad
    out.backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())  # gradient computed remotely


class Recorder(torch.nn.Module):
    """A grader-side model that records the grad mode of each forward pass."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.grad_modes = []

    def forward(self, x):
        self.grad_modes.append(torch.is_grad_enabled())
        return self.linear(x)


def test_grader_objects_lent_to_student_code_are_public_only(remote):
    model = Recorder().train()
    x = torch.ones(4, 2)
    out = remote.call_model(model, x)  # runs here, called from the student's side
    assert model.training is False  # the student's model.eval() changed our model
    assert model.grad_modes == [False]  # the student's torch.no_grad() reached us
    torch.testing.assert_close(out, model(x).detach())
    with pytest.raises(AttributeError, match="not available to your code"):
        remote.read_private(model)


def test_garbage_messages_are_refused():
    with pytest.raises(WireError, match="unknown tag"):
        Decoder([], None, None).decode({"t": "pickle", "v": "cos\nsystem\n"})
    with pytest.raises(WireError, match="refused an array"):
        Decoder([b"x" * 8], None, None).decode({"t": "nd", "dtype": "|O", "shape": [1], "buf": 0})
    a, b = socket.socketpair()
    a.sendall(b"\x00\x00\x00\x00\xff\xff\xff\xff")  # a header of 4 GiB
    with pytest.raises(WireError, match="too large"):
        recv_message(b)
    send_message(a, {"kind": "reply"}, [])
    a.close()
    assert recv_message(b)[0] == {"kind": "reply"}
    with pytest.raises(WireError, match="gone"):
        recv_message(b)


def test_a_student_that_hangs_up_breaks_the_endpoint():
    ours, theirs = socket.socketpair()
    theirs.close()
    client = Endpoint(ours)
    with pytest.raises(PeerGone):
        client.request("name", "anything")
    assert client.broken
    with pytest.raises(PeerGone, match="earlier failure"):
        client.request("name", "anything")


def test_encoder_owns_what_is_not_plain():
    owned = []
    enc = Encoder(lambda obj: owned.append(obj) or len(owned), lambda obj: None)
    tree = enc.encode([object(), lambda: 1])
    assert [t["t"] for t in tree] == ["handle", "handle"] and len(owned) == 2


# --- real sandboxes ------------------------------------------------------------------------


def test_adversarial_corpus(tmp_path):
    """Every hostile submission gets exactly its score and message; none harms the others."""
    from autograder.grade import grade_all

    expected = json.loads((CORPUS / "expected.json").read_text())
    assert len(expected) >= 20
    readme = (REPO / "README.md").read_bytes()
    grade_all([CORPUS], tmp_path, jobs=2, progress=False)
    with open(tmp_path / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    wrong = []
    for name, want in expected.items():
        row = rows.get(name)
        feedback = (tmp_path / name / "01_preprocessing.md").read_text()
        if row is None or float(row["score"]) != want["score"] or want["message"] not in feedback:
            wrong.append(f"{name}: want {want}, got {row and row['score']}\n{feedback[:1500]}")
        if want["score"] == want["max_score"]:
            assert "failed" not in feedback.split("## Checks")[-1], name
    assert not wrong, "\n\n".join(wrong)
    assert (REPO / "README.md").read_bytes() == readme
    assert not (REPO / "PWNED.txt").exists()
    assert not Path("/tmp/adversarial-pwned.txt").exists()


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
        assert json.loads(path.read_text())["score"] == 37  # whole, never half-written
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
        assert [float(r["score"]) for r in csv.DictReader(f)] == [37.0] * 3
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


@pytest.mark.parametrize("landlock", [True, False])
def test_student_cannot_touch_files_outside_its_folder(tmp_path, landlock):
    """With Landlock, and with the audit hook alone (a kernel without Landlock): the
    student's process can neither read the reference nor change a file outside its folder."""
    from autograder.execute import AnswerSource
    from autograder.labs import find_lab
    from autograder.sandbox import Limits, Sandbox

    decoy = tmp_path / "decoy.txt"
    decoy.write_text("keep me")
    code = f'''
import os

def attempts():
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
    source = AnswerSource(find_lab("01_preprocessing"), [], [("probe", code)])
    sandbox = Sandbox(source, Limits(landlock=landlock))
    try:
        results = sandbox.start().attempts()
        enforced = " ".join(sandbox.enforced)
    finally:
        sandbox.close()
    assert results == {"read reference": "PermissionError", "delete decoy": "PermissionError",
                       "overwrite decoy": "PermissionError", "rename decoy": "PermissionError",
                       "write own folder": "done"}, results
    assert decoy.read_text() == "keep me"
    assert ("Landlock" in enforced) is landlock
