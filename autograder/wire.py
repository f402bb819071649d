"""Plain data across a process boundary, without pickle.

The grader never unpickles what a student's process sends: unpickling runs
code. A message is a JSON tree plus raw buffers, framed on a socket:

    [4 bytes: header length][header JSON][for each buffer: 8 bytes length, bytes]

What crosses as a value: None, bools, ints, floats, complex, strings, bytes,
numpy arrays and scalars of numeric or bool dtype, torch tensors (dense, any
device, sent as CPU data with their ``requires_grad`` and ``grad``), dtypes,
``torch.Size``, slices, ``...``, and tuples, lists, dicts and sets of them.
Anything else is *owned* by the side that has it: it crosses as a handle (an
id), and the other side reaches it through ``autograder.rpc``.

JSON objects in the header always carry a tag ``"t"``; plain lists are JSON
arrays, and every other container is tagged, so a student's dict can never
pass for a tag.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

import numpy as np

MAX_MESSAGE = 2**28  # bytes in one message (256 MiB): a larger answer is refused, not a crash
_NUMPY_KINDS = "biufc?"
_NUMPY_TYPES = {t for t in set(np.sctypeDict.values()) if np.dtype(t).kind in "biufc?"}


def _torch():
    # torch is imported by the labs that use it; a numpy-only lab never pays for it.
    return sys.modules.get("torch")


class WireError(Exception):
    """A message could not be sent or read (the other side died, or sent garbage)."""


class Encoder:
    """Turn a value into (JSON tree, buffers).

    ``own(obj) -> id`` registers an object that must stay on this side and
    returns its handle id; ``peer_id(obj)`` returns the id of a handle that
    the *other* side owns (a proxy on this side), or None.
    ``tensors`` collects the tensors that require grad, in encoding order,
    so that autograd can link a result to them (see ``autograder.rpc``).
    """

    def __init__(self, own, peer_id, graph_of=None, refs=None, buffers=None):
        self.own, self.peer_id, self.graph_of = own, peer_id, graph_of
        self.refs = refs or {}  # id(obj) -> index: "the k-th mutable argument of the call"
        self.buffers: list[bytes] = [] if buffers is None else buffers  # shared: one message
        self.tensors: list = []
        self.mutables: list = []  # arrays, lists and dicts, in encoding order

    def _buf(self, data: bytes) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value, depth: int = 0):
        if depth > 100:
            raise WireError("a value nested more than 100 levels deep cannot be sent.")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and type(value) in (int, bool):
            return value if -(2**63) <= value < 2**63 else {"t": "bigint", "v": str(value)}
        if type(value) is float:
            return {"t": "float", "v": repr(value)} if value != value or value in (
                float("inf"), float("-inf")) else value
        if type(value) is complex:
            return {"t": "complex", "re": value.real, "im": value.imag}
        if type(value) is bytes:
            return {"t": "bytes", "buf": self._buf(value)}
        if id(value) in self.refs:
            return {"t": "arg", "i": self.refs[id(value)]}
        peer = self.peer_id(value)
        if peer is not None:
            return {"t": "peer", "id": peer}
        torch = _torch()
        if isinstance(value, np.ndarray) and value.dtype.kind in _NUMPY_KINDS:
            if type(value) is np.ndarray:
                self.mutables.append(value)
                data = np.ascontiguousarray(value)
                return {"t": "nd", "dtype": data.dtype.str, "shape": list(data.shape),
                        "buf": self._buf(data.tobytes())}
        if isinstance(value, np.generic) and value.dtype.kind in _NUMPY_KINDS:
            return {"t": "npscalar", "dtype": value.dtype.str, "buf": self._buf(value.tobytes())}
        if isinstance(value, np.dtype):
            return {"t": "npdtype", "v": value.str}
        if isinstance(value, type) and value in _NUMPY_TYPES:
            return {"t": "nptype", "v": np.dtype(value).str}
        if torch is not None:
            if type(value) in (torch.Tensor, torch.nn.Parameter) and value.layout == torch.strided:
                return self._tensor(value, depth)
            if isinstance(value, torch.dtype):
                return {"t": "tdtype", "v": str(value).removeprefix("torch.")}
            if isinstance(value, torch.Size):
                return {"t": "tsize", "v": list(value)}
            if isinstance(value, torch.device):
                return {"t": "tdevice", "v": str(value)}
        if type(value) is list:
            self.mutables.append(value)
            return [self.encode(v, depth + 1) for v in value]
        if type(value) is tuple:
            return {"t": "tuple", "v": [self.encode(v, depth + 1) for v in value]}
        if type(value) is dict:
            self.mutables.append(value)
            return {"t": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                                       for k, v in value.items()]}
        if type(value) in (set, frozenset):
            return {"t": type(value).__name__, "v": [self.encode(v, depth + 1) for v in value]}
        if type(value) is slice:
            return {"t": "slice", "v": [self.encode(v, depth + 1)
                                        for v in (value.start, value.stop, value.step)]}
        if value is Ellipsis:
            return {"t": "ellipsis"}
        return {"t": "handle", "id": self.own(value), "type": type(value).__name__}

    def _tensor(self, value, depth):
        torch = _torch()
        data = value.detach().to("cpu").contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
        tree = {"t": "tensor", "dtype": str(data.dtype).removeprefix("torch."),
                "shape": list(data.shape), "buf": self._buf(raw),
                "requires_grad": bool(value.requires_grad),
                "param": isinstance(value, torch.nn.Parameter)}
        if value.is_leaf and value.grad is not None and depth < 99:
            tree["grad"] = self._tensor(value.grad, depth + 1)
        if value.requires_grad:
            graph = self.graph_of(value) if self.graph_of and value.grad_fn is not None else None
            if graph is not None:
                tree["graph"] = graph
            else:
                tree["index"] = len(self.tensors)
                self.tensors.append(value)
        return tree


class Decoder:
    """Turn (JSON tree, buffers) back into a value.

    ``resolve_own(id)`` returns this side's object for a handle it gave out;
    ``make_proxy(id, type_name)`` makes a proxy for an object the other side
    owns; ``link(tensor, graph, tree)`` attaches autograd to a result tensor.
    """

    def __init__(self, buffers, resolve_own, make_proxy, link=None, originals=()):
        self.buffers, self.resolve_own, self.make_proxy, self.link = (
            buffers, resolve_own, make_proxy, link)
        self.originals = originals  # what {"t": "arg", "i": k} stands for
        self.tensors: list = []  # tensors that require grad, in decoding order
        self.mutables: list = []  # (array, its bytes as received), lists, dicts, in order

    def decode(self, tree):
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if isinstance(tree, list):
            out = []
            self.mutables.append((out, None))
            out.extend(self.decode(v) for v in tree)
            return out
        tag = tree["t"]
        if tag == "tuple":
            return tuple(self.decode(v) for v in tree["v"])
        if tag == "dict":
            out = {}
            self.mutables.append((out, None))
            for k, v in tree["v"]:
                key = self.decode(k)
                out[key] = self.decode(v)
            return out
        if tag == "arg":
            return self.originals[tree["i"]]
        if tag in ("set", "frozenset"):
            return (set if tag == "set" else frozenset)(self.decode(v) for v in tree["v"])
        if tag == "nd":
            dtype = np.dtype(tree["dtype"])
            if dtype.kind not in _NUMPY_KINDS:
                raise WireError(f"refused an array of dtype {dtype}.")
            raw = self.buffers[tree["buf"]]
            out = np.frombuffer(bytearray(raw), dtype=dtype).reshape(tree["shape"])
            self.mutables.append((out, raw))
            return out
        if tag == "npscalar":
            dtype = np.dtype(tree["dtype"])
            if dtype.kind not in _NUMPY_KINDS:
                raise WireError(f"refused a scalar of dtype {dtype}.")
            return np.frombuffer(self.buffers[tree["buf"]], dtype=dtype)[0]
        if tag == "npdtype":
            return np.dtype(tree["v"])
        if tag == "nptype":
            return np.dtype(tree["v"]).type
        if tag == "tensor":
            return self._tensor(tree)
        if tag == "tdtype":
            dtype = getattr(_torch(), tree["v"], None)
            if not isinstance(dtype, _torch().dtype):
                raise WireError(f"unknown torch dtype {tree['v']!r}.")
            return dtype
        if tag == "tsize":
            return _torch().Size(tree["v"])
        if tag == "tdevice":
            return _torch().device(tree["v"])
        if tag == "float":
            return float(tree["v"])
        if tag == "bigint":
            return int(tree["v"])
        if tag == "complex":
            return complex(tree["re"], tree["im"])
        if tag == "bytes":
            return bytes(self.buffers[tree["buf"]])
        if tag == "slice":
            return slice(*(self.decode(v) for v in tree["v"]))
        if tag == "ellipsis":
            return Ellipsis
        if tag == "peer":  # one of this side's own objects, coming back
            return self.resolve_own(tree["id"])
        if tag == "handle":
            return self.make_proxy(tree["id"], str(tree.get("type", "object")))
        raise WireError(f"unknown tag {tag!r}.")

    def _tensor(self, tree):
        torch = _torch()
        if torch is None:
            import torch  # noqa: F811 - a numpy lab received a tensor: import on demand
        dtype = getattr(torch, tree["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise WireError(f"unknown torch dtype {tree['dtype']!r}.")
        raw = self.buffers[tree["buf"]]
        shape = tree["shape"]
        if raw:
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        else:
            t = torch.empty(shape, dtype=dtype)
        if tree.get("param"):
            t = torch.nn.Parameter(t, requires_grad=bool(tree["requires_grad"]))
        elif tree["requires_grad"]:
            if "graph" in tree and self.link is not None:
                return self.link(t, tree["graph"])
            t.requires_grad_(True)
        if "grad" in tree:
            t.grad = self._tensor(tree["grad"])
        if tree["requires_grad"] and "graph" not in tree:
            self.tensors.append(t)
        return t


# --- framing -------------------------------------------------------------------------------


def send_message(sock: socket.socket, header: dict, buffers=()) -> None:
    data = json.dumps(header, allow_nan=False).encode()
    parts = [struct.pack("<I", len(data)), data]
    for b in buffers:
        parts += [struct.pack("<Q", len(b)), b]
    try:
        sock.sendall(struct.pack("<I", len(buffers)) + b"".join(parts))
    except OSError as e:
        raise WireError(f"the other process is gone ({e}).") from None


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError
        try:
            chunk = sock.recv(min(n - got, 1 << 24))
        except OSError as e:
            raise WireError(f"the other process is gone ({e}).") from None
        if not chunk:
            raise WireError("the other process is gone (end of stream).")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket, deadline: float | None = None) -> tuple[dict, list[bytes]]:
    """Read one message; TimeoutError past ``deadline`` (time.monotonic())."""
    (count,) = struct.unpack("<I", _recv_exact(sock, 4, deadline))
    (size,) = struct.unpack("<I", _recv_exact(sock, 4, deadline))
    if size > MAX_MESSAGE or count > 1_000_000:
        raise WireError("message too large.")
    try:
        header = json.loads(_recv_exact(sock, size, deadline))
    except ValueError as e:
        raise WireError(f"unreadable message ({e}).") from None
    buffers, total = [], 0
    for _ in range(count):
        (n,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
        total += n
        if total > MAX_MESSAGE:
            raise WireError("message too large.")
        buffers.append(_recv_exact(sock, n, deadline))
    if not isinstance(header, dict):
        raise WireError("unreadable message (not an object).")
    return header, buffers
