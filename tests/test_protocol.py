"""The one-way protocol and the wire format, both ends in this process (fast).

A thread runs the student's side (``Server``) on one end of a socket pair;
the tests hold the grader's ``Client``. Forged answers are written on the
socket by hand, as a hostile student's process would.
"""

from __future__ import annotations

import json
import socket
import struct
import threading

import numpy as np
import pytest
import torch

from autograder.sandbox.limits import Limits
from autograder.sandbox.protocol import Client, PeerGone, RemoteError, RemoteObject, Server
from autograder.sandbox.wire import (
    Decoder,
    Encoder,
    GraderObjectRefused,
    WireError,
    recv_message,
    send_message,
)

LIMITS = Limits()


class Counter:
    """A student-side object that is not plain data."""

    def __init__(self, start):
        self.value = start

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

    def replace_array(stats):
        stats["running_mean"] = stats["running_mean"] * 2  # a new array, not in place

    def fail(kind):
        if kind == "value":
            raise ValueError("bad value")
        raise CustomError("custom")

    def normalize_in_place(x, stats):
        x.sub_(x.mean())  # in place, as a student's helper that "preprocesses" its input
        stats["running_var"].mul_(0.9).add_(0.1)  # batch norm's buffers, as tensors

    return {"Counter": Counter, "update_stats": update_stats, "replace_array": replace_array,
            "fail": fail, "square_sum": lambda t: (t**2).sum(), "echo": lambda v: v,
            "normalize_in_place": normalize_in_place}


class Student:
    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        found, value = self._client.request("name", name)
        assert found, name
        return value


@pytest.fixture
def remote():
    ours, theirs = socket.socketpair()
    names = student_side_namespace()
    server = Server(theirs, ops={"name": lambda n: (n in names, names.get(n))})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Student(Client(ours, LIMITS))
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
    assert type(c) is RemoteObject
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


def test_in_place_writes_to_tensors_come_back(remote):
    x, var = torch.tensor([1.0, 2.0, 6.0]), torch.ones(2)
    stats = {"running_var": var}
    remote.normalize_in_place(x, stats)
    assert torch.equal(x, torch.tensor([-2.0, -1.0, 3.0]))  # what a check_unchanged sees
    assert stats["running_var"] is var and torch.equal(var, torch.ones(2))
    remote.normalize_in_place(x, {"running_var": var * 2})
    assert torch.equal(var, torch.ones(2))  # a new tensor was written to, not this one


def test_only_the_tensors_a_call_wrote_to_are_sent_back():
    enc = Encoder()
    request = enc.encode([torch.arange(3.0), torch.zeros(2), torch.ones(2, requires_grad=True)])
    dec = Decoder(enc.buffers)
    args = dec.decode(request)
    assert Server._updates(dec, Encoder(own=id)) == []  # nothing written, nothing sent
    args[1][0] = 5.0
    with torch.no_grad():
        args[2][0] = 5.0  # requires grad: comes back through backward, not as an update
    assert [i for i, _ in Server._updates(dec, Encoder(own=id))] == [2]  # the list is 0


def test_an_update_that_reshapes_a_tensor_ends_the_conversation():
    client = forged(lambda h: frame({"kind": "reply", "id": h["id"], "value": None, "updates": [
        [1, {"t": "tensor", "dtype": "float32", "shape": [3], "buf": 0}]]}, [b"\0" * 12]))
    with pytest.raises(PeerGone):
        client.request("call", torch.zeros(2))
    assert client.broken


def test_exceptions_keep_builtin_types_only(remote):
    with pytest.raises(ValueError, match="bad value"):
        remote.fail("value")
    with pytest.raises(RemoteError, match="CustomError: custom"):
        remote.fail("custom")


def test_autograd_is_a_request_of_the_grader(remote):
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = remote.square_sum(x)
    assert out.requires_grad
    out.backward()
    torch.testing.assert_close(x.grad, torch.tensor([2.0, -4.0, 6.0]))


def test_the_grader_never_sends_its_own_objects(remote):
    model = torch.nn.Linear(2, 1)
    for value in (model, lambda: 1, [np.zeros(2), object()], np.zeros(2, dtype=object)):
        with pytest.raises(GraderObjectRefused, match="plain data"):
            remote.echo(value)


# --- forged answers --------------------------------------------------------------------------


def forged(answer):
    """A Client whose peer reads one request and answers with ``answer(request) -> bytes``."""
    ours, theirs = socket.socketpair()

    def serve():
        try:
            header, _ = recv_message(theirs)
            theirs.sendall(answer(header))
            theirs.recv(1)  # keep the socket open until the grader hangs up
        except (OSError, WireError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    return Client(ours, LIMITS)


def frame(header: dict, buffers=()) -> bytes:
    data = json.dumps(header).encode()
    out = struct.pack("<II", len(buffers), len(data)) + data
    for b in buffers:
        out += struct.pack("<Q", len(b)) + b
    return out


@pytest.mark.parametrize("make", [
    # a request from the student's side: the grader serves nothing
    lambda h: frame({"kind": "request", "id": 1, "op": "call", "args": []}),
    # an answer to another request
    lambda h: frame({"kind": "reply", "id": h["id"] + 1, "value": 1}),
    # the grader's own objects, named by id
    lambda h: frame({"kind": "reply", "id": h["id"], "value": {"t": "peer", "id": 1}}),
    # an object array, a structured dtype, a size that does not match its data
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": {"t": "nd", "dtype": "|O", "shape": [1], "buf": 0}}, [b"\0" * 8]),
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": {"t": "nd", "dtype": "[('a', '<f8')]", "shape": [1], "buf": 0}},
                    [b"\0" * 8]),
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": {"t": "nd", "dtype": "<f8", "shape": [10**6], "buf": 0}},
                    [b"\0" * 8]),
    # an array-interface pointer: not a tag the grader knows
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": {"t": "array_interface", "data": [140000000000, False]}}),
    # one buffer used twice (amplification), a buffer that is not there
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": [{"t": "bytes", "buf": 0}, {"t": "bytes", "buf": 0}]}, [b"x"]),
    lambda h: frame({"kind": "reply", "id": h["id"], "value": {"t": "bytes", "buf": 5}}),
    # nesting deeper than the limit
    lambda h: frame({"kind": "reply", "id": h["id"],
                     "value": json.loads("[" * 500 + "]" * 500)}),
    # an update that changes an argument's shape
    lambda h: frame({"kind": "reply", "id": h["id"], "value": None, "updates": [
        [1, {"t": "nd", "dtype": "<f8", "shape": [3], "buf": 0}]]}, [b"\0" * 24]),
    # more than the reply limit (64 MiB): refused from its length, never allocated
    lambda h: struct.pack("<II", 1, 10) + b'{"kind":1}' + struct.pack("<Q", 96 * 2**20),
    lambda h: struct.pack("<II", 0, 2**31),
    # not JSON, not an object
    lambda h: struct.pack("<II", 0, 5) + b"\xff\xfe{[(",
    lambda h: frame([1, 2]),  # type: ignore[arg-type]
])
def test_a_forged_answer_ends_the_conversation(make):
    client = forged(make)
    with pytest.raises(PeerGone):
        client.request("call", np.zeros(2))
    assert client.broken
    with pytest.raises(PeerGone, match="earlier failure"):
        client.request("name", "anything")


def test_a_student_that_hangs_up_breaks_the_client():
    ours, theirs = socket.socketpair()
    theirs.close()
    client = Client(ours, LIMITS)
    with pytest.raises(PeerGone):
        client.request("name", "anything")
    assert client.broken


def test_decoder_builds_fresh_arrays_it_owns():
    raw = np.arange(4, dtype=np.float32).tobytes()
    dec = Decoder([raw], make_handle=None)
    out = dec.decode({"t": "nd", "dtype": "<f4", "shape": [2, 2], "buf": 0})
    assert out.flags.writeable and out.flags.owndata is False and out.base is not None
    out[0, 0] = 7  # its own bytes: the message's buffer is untouched
    assert raw == np.arange(4, dtype=np.float32).tobytes()
    with pytest.raises(WireError, match="refused"):
        Decoder([]).decode({"t": "handle", "id": 1, "type": "x"})  # the student's side


def test_long_strings_are_cut_on_the_grader_side():
    out = Decoder([], max_chars=10).decode("x" * 1000)
    assert out.startswith("x" * 10) and "990 characters cut" in out and len(out) < 50


def test_encoder_of_the_student_side_keeps_objects_as_handles():
    owned = []
    enc = Encoder(own=lambda obj: owned.append(obj) or len(owned))
    tree = enc.encode([object(), lambda: 1])
    assert [t["t"] for t in tree] == ["handle", "handle"] and len(owned) == 2


def test_framing_round_trip_and_end_of_stream():
    a, b = socket.socketpair()
    send_message(a, {"kind": "reply"}, [b"abc"])
    a.close()
    assert recv_message(b) == ({"kind": "reply"}, [b"abc"])
    with pytest.raises(WireError, match="gone"):
        recv_message(b)


def test_a_students_frames_name_the_method_with_its_class():
    """Feedback says `Preprocessor.__init__`, not a bare `__init__` that every class has."""
    from autograder.sandbox.protocol import student_frames

    source = ("class Preprocessor:\n"
              "    def __init__(self):\n"
              "        raise NotImplementedError()\n")
    namespace: dict = {}
    exec(compile(source, "<answer cell Preprocessor>", "exec"), namespace)
    with pytest.raises(NotImplementedError) as info:
        namespace["Preprocessor"]()
    frames = student_frames(info.tb)
    assert len(frames) == 1 and frames[0].startswith(
        "  in Preprocessor.__init__ (answer cell 'Preprocessor', line 3)"), frames
