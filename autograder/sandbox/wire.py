"""Plain data across the sandbox boundary, without pickle.

Nothing here ever unpickles, evaluates or calls anything it reads: a message
is a JSON tree plus raw byte buffers, framed on a socket:

    [4: buffer count][4: header length][header JSON][per buffer: 8: length, bytes]

What crosses as a value: None, bools, ints, floats, complex, strings, bytes,
numpy arrays and scalars of numeric or bool dtype, torch tensors (dense; sent
as CPU data with ``requires_grad`` and ``grad``), dtypes, ``torch.Size``,
``torch.device``, slices, ``...``, and tuples, lists, dicts and sets of them.

The two directions are not symmetric:

- the grader's ``Encoder`` (``own=None``) refuses anything else: a check can
  send plain data and handles of the student's own objects (``{"t": "peer"}``),
  never one of the grader's objects;
- the student's ``Encoder`` sends any other object as a handle id
  (``{"t": "handle"}``) and keeps the object;
- the grader's ``Decoder`` builds only fresh, inert values from bytes it owns
  (arrays of an allowed dtype whose size matches their buffer exactly, each
  buffer used once), bounded in nesting depth and string length, and turns a
  handle into an object that can only make requests; it refuses ``peer``.

JSON objects in the header always carry a tag ``"t"``; every container but a
list is tagged, so a student's dict can never pass for a tag.
"""

from __future__ import annotations

import json
import re
import select
import socket
import struct
import sys
import time

import numpy as np

_NUMPY_KINDS = "biufc?"
# Every numeric dtype in both byte orders, as ``np.dtype.str`` spells it: a dtype string
# from the other side is looked up here, never parsed (no structured or object dtypes).
_NUMPY_DTYPES = {}
for _t in set(np.sctypeDict.values()):
    _d = np.dtype(_t)
    if _d.kind in _NUMPY_KINDS:
        for _o in (_d, _d.newbyteorder()):
            _NUMPY_DTYPES[_o.str] = _o
_NUMPY_TYPES = {np.dtype(t).str: np.dtype(t).type for t in set(np.sctypeDict.values())
                if np.dtype(t).kind in _NUMPY_KINDS}
_TORCH_DTYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
MAX_DIMS = 32


def _torch():
    # torch is imported by the labs that use it; a numpy-only lab never pays for it.
    return sys.modules.get("torch")


class WireError(Exception):
    """A message could not be sent or read (the other side died, or sent garbage)."""


class PeerEnded(WireError):
    """The other process closed the connection or is gone (as opposed to sending garbage)."""


class GraderObjectRefused(TypeError):
    """A check tried to send one of the grader's own objects to the student's code: a bug
    of the check (a grader error), never the student's fault."""


class Encoder:
    """Turn a value into (JSON tree, buffers).

    Inputs:
    - own: ``own(obj) -> id`` keeps an object that is not plain data on this side
      and returns its handle id (the student's side); None refuses such objects
      with a TypeError (the grader's side).
    - peer_id: ``peer_id(obj) -> id or None``: the id of a handle of the other
      side's object (the grader sending back one of the student's objects).
    - graph_of: ``graph_of(tensor) -> id`` keeps a result tensor's autograd graph.
    - refs: ``{id(obj): k}``: objects to send as "the k-th mutable argument".
    """

    def __init__(self, own=None, peer_id=None, graph_of=None, refs=None, buffers=None):
        self.own, self.peer_id, self.graph_of = own, peer_id, graph_of
        self.refs = refs or {}
        self.buffers: list[bytes] = [] if buffers is None else buffers  # shared: one message
        self.tensors: list = []  # tensors that require grad, in encoding order
        self.mutables: list = []  # arrays, lists and dicts, in encoding order

    def _buf(self, data: bytes) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value, depth: int = 0):
        if depth > 100:
            raise WireError("a value nested more than 100 levels deep cannot be sent.")
        if value is None or type(value) in (bool, str):
            return value
        if type(value) is int:
            return value if -(2**63) <= value < 2**63 else {"t": "bigint", "v": str(value)}
        if type(value) is float:
            return {"t": "float", "v": repr(value)} if value != value or value in (
                float("inf"), float("-inf")) else value
        if type(value) is complex:
            return {"t": "complex", "re": self.encode(value.real), "im": self.encode(value.imag)}
        if type(value) is bytes:
            return {"t": "bytes", "buf": self._buf(value)}
        if id(value) in self.refs:
            return {"t": "arg", "i": self.refs[id(value)]}
        peer = self.peer_id(value) if self.peer_id is not None else None
        if peer is not None:
            return {"t": "peer", "id": peer}
        if type(value) is np.ndarray and value.dtype.kind in _NUMPY_KINDS:
            self.mutables.append(value)
            data = np.ascontiguousarray(value)
            return {"t": "nd", "dtype": data.dtype.str, "shape": list(data.shape),
                    "buf": self._buf(data.tobytes())}
        if isinstance(value, np.generic) and value.dtype.kind in _NUMPY_KINDS:
            return {"t": "npscalar", "dtype": value.dtype.str, "buf": self._buf(value.tobytes())}
        if isinstance(value, np.dtype) and value.kind in _NUMPY_KINDS:
            return {"t": "npdtype", "v": value.str}
        if isinstance(value, type) and issubclass(value, np.generic) and \
                np.dtype(value).str in _NUMPY_TYPES:
            return {"t": "nptype", "v": np.dtype(value).str}
        torch = _torch()
        if torch is not None:
            if type(value) in (torch.Tensor, torch.nn.Parameter) and value.layout == torch.strided:
                if _is_plain_tensor(type(value) is torch.nn.Parameter, value.requires_grad):
                    self.mutables.append(value)  # in-place writes to it come back
                return self._tensor(value, depth)
            if type(value) is torch.dtype:
                return {"t": "tdtype", "v": str(value).removeprefix("torch.")}
            if type(value) is torch.Size:
                return {"t": "tsize", "v": [int(v) for v in value]}
            if type(value) is torch.device:
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
        if self.own is None:
            raise GraderObjectRefused(
                f"a check may send the student's code only plain data (arrays, tensors, "
                f"numbers, strings, containers of them) or the student's own objects, not a "
                f"{type(value).__module__}.{type(value).__qualname__}: build such an object "
                f"inside the student's process (autograder.sandbox.modules.lend)."
            )
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


def _is_plain_tensor(param: bool, requires_grad: bool) -> bool:
    """A tensor that is sent back when a call writes to it in place, as arrays are: neither
    a parameter nor one that requires grad (those come back through ``backward``).
    The encoder and the decoder decide alike, so their lists of mutables match."""
    return not param and not requires_grad


def tensor_state(tensor):
    """A plain tensor's shape, dtype and bytes, to tell afterwards whether a call wrote to
    it in place (None when they cannot be read: then it counts as written)."""
    torch = _torch()
    try:
        data = tensor.detach().contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b""
    except (RuntimeError, TypeError, ValueError):
        return None
    return tuple(data.shape), data.dtype, raw


class Decoder:
    """Turn (JSON tree, buffers) back into a value.

    Inputs:
    - buffers: the message's byte buffers.
    - make_handle: ``make_handle(id, type_name)`` for an object the other side
      keeps (the grader's side); None refuses handles (the student's side).
    - resolve_own: ``resolve_own(id)`` for one of this side's own objects coming
      back (the student's side); None refuses it (the grader's side).
    - link: ``link(tensor, graph_id)`` attaches autograd to a result tensor.
    - originals: what ``{"t": "arg", "i": k}`` stands for (the request's arguments).
    - max_depth, max_chars, max_nodes: bounds on nesting, on every string, and on the
      number of values (the decoder's memory).
    """

    def __init__(self, buffers, make_handle=None, resolve_own=None, link=None, originals=(),
                 max_depth: int = 1000, max_chars: int | None = None,
                 max_nodes: int | None = None):
        self.buffers, self.make_handle, self.resolve_own, self.link = (
            buffers, make_handle, resolve_own, link)
        self.originals = originals
        self.max_depth, self.max_chars, self.max_nodes = max_depth, max_chars, max_nodes
        self.nodes = 0
        self.used: set[int] = set()
        self.tensors: list = []  # tensors that require grad, in decoding order
        self.mutables: list = []  # (array, its bytes as received), lists, dicts, in order

    def _buffer(self, index) -> bytes:
        """A buffer of the message, each usable once (no amplification)."""
        if type(index) is not int or not 0 <= index < len(self.buffers) or index in self.used:
            raise WireError(f"bad buffer reference {index!r}.")
        self.used.add(index)
        return self.buffers[index]

    def _shape(self, shape) -> list[int]:
        if (type(shape) is not list or len(shape) > MAX_DIMS
                or any(type(n) is not int or n < 0 for n in shape)):
            raise WireError("bad array shape.")
        return shape

    def _str(self, value: str) -> str:
        if self.max_chars is not None and len(value) > self.max_chars:
            return value[: self.max_chars] + f" [... {len(value) - self.max_chars} characters cut]"
        return value

    def decode(self, tree, depth: int = 0):
        if depth > self.max_depth:
            raise WireError(f"a value nested more than {self.max_depth} levels deep.")
        self.nodes += 1
        if self.max_nodes is not None and self.nodes > self.max_nodes:
            raise WireError(f"an answer of more than {self.max_nodes} values.")
        if tree is None or type(tree) in (bool, int, float):
            return tree
        if type(tree) is str:
            return self._str(tree)
        if type(tree) is list:
            out = []
            self.mutables.append((out, None))
            out.extend(self.decode(v, depth + 1) for v in tree)
            return out
        if type(tree) is not dict or type(tree.get("t")) is not str:
            raise WireError("malformed value.")
        tag = tree["t"]
        containers = ("tuple", "set", "frozenset", "dict", "slice")
        if tag in containers and type(tree.get("v")) is not list:
            raise WireError(f"malformed {tag}.")
        if tag == "tuple":
            return tuple(self.decode(v, depth + 1) for v in tree["v"])
        if tag == "dict":
            out = {}
            self.mutables.append((out, None))
            for pair in tree["v"]:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("malformed dict.")
                key = self.decode(pair[0], depth + 1)
                try:
                    out[key] = self.decode(pair[1], depth + 1)
                except TypeError:
                    raise WireError("unhashable dict key.") from None
            return out
        if tag in ("set", "frozenset"):
            try:
                return (set if tag == "set" else frozenset)(
                    self.decode(v, depth + 1) for v in tree["v"])
            except TypeError:
                raise WireError("unhashable set element.") from None
        if tag == "arg":
            index = tree.get("i")
            if type(index) is not int or not 0 <= index < len(self.originals):
                raise WireError("bad argument reference.")
            return self.originals[index]
        if tag == "nd":
            dtype = _NUMPY_DTYPES.get(tree.get("dtype"))
            if dtype is None:
                raise WireError(f"refused an array of dtype {str(tree.get('dtype'))[:40]!r}.")
            shape = self._shape(tree.get("shape"))
            raw = self._buffer(tree.get("buf"))
            if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise WireError("an array's size does not match its data.")
            out = np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
            self.mutables.append((out, raw))
            return out
        if tag == "npscalar":
            dtype = _NUMPY_DTYPES.get(tree.get("dtype"))
            raw = self._buffer(tree.get("buf"))
            if dtype is None or len(raw) != dtype.itemsize:
                raise WireError("refused a numpy scalar.")
            return np.frombuffer(bytearray(raw), dtype=dtype)[0]
        if tag == "npdtype":
            if tree.get("v") not in _NUMPY_DTYPES:
                raise WireError("refused a numpy dtype.")
            return _NUMPY_DTYPES[tree["v"]]
        if tag == "nptype":
            if tree.get("v") not in _NUMPY_TYPES:
                raise WireError("refused a numpy type.")
            return _NUMPY_TYPES[tree["v"]]
        if tag == "tensor":
            out = self._tensor(tree, depth)
            if _is_plain_tensor(tree.get("param") is True, tree.get("requires_grad") is True):
                self.mutables.append((out, tensor_state(out)))
            return out
        if tag == "tdtype":
            return self._torch_dtype(tree.get("v"))
        if tag == "tsize":
            return self._import_torch().Size(self._shape(tree.get("v")))
        if tag == "tdevice":
            name = tree.get("v")
            if type(name) is not str or not re.fullmatch(r"[a-z]{2,10}(:\d{1,3})?", name):
                raise WireError("refused a torch device.")
            return self._import_torch().device(name)
        if tag == "float":
            if tree.get("v") not in ("nan", "inf", "-inf"):
                raise WireError("malformed float.")
            return float(tree["v"])
        if tag == "bigint":
            text = tree.get("v")
            if type(text) is not str or not re.fullmatch(r"-?\d{1,4000}", text):
                raise WireError("malformed integer.")
            return int(text)
        if tag == "complex":
            re_, im = self.decode(tree.get("re"), depth + 1), self.decode(tree.get("im"), depth + 1)
            if type(re_) not in (int, float) or type(im) not in (int, float):
                raise WireError("malformed complex.")
            return complex(re_, im)
        if tag == "bytes":
            return bytes(self._buffer(tree.get("buf")))
        if tag == "slice":
            if len(tree["v"]) != 3:
                raise WireError("malformed slice.")
            return slice(*(self.decode(v, depth + 1) for v in tree["v"]))
        if tag == "ellipsis":
            return Ellipsis
        if tag == "peer" and self.resolve_own is not None:
            return self.resolve_own(tree.get("id"))
        if tag == "handle" and self.make_handle is not None:
            handle_id, type_name = tree.get("id"), tree.get("type", "object")
            if type(handle_id) is not int or type(type_name) is not str:
                raise WireError("malformed handle.")
            return self.make_handle(handle_id, type_name[:100])
        raise WireError(f"refused a value tagged {tag[:40]!r}.")

    @staticmethod
    def _import_torch():
        torch = _torch()
        if torch is None:
            import torch  # a numpy lab received a tensor: import on demand
        return torch

    def _torch_dtype(self, name):
        torch = self._import_torch()
        if type(name) is not str or not _TORCH_DTYPE_NAME.match(name):
            raise WireError("refused a torch dtype.")
        dtype = getattr(torch, name, None)
        if type(dtype) is not torch.dtype:
            raise WireError(f"unknown torch dtype {name!r}.")
        return dtype

    def _tensor(self, tree, depth):
        torch = self._import_torch()
        dtype = self._torch_dtype(tree.get("dtype"))
        if dtype.is_complex and dtype.itemsize < 8 or dtype in (torch.qint8, torch.quint8,
                                                                torch.qint32):
            raise WireError(f"refused a tensor of dtype {dtype}.")
        shape = self._shape(tree.get("shape"))
        raw = self._buffer(tree.get("buf"))
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise WireError("a tensor's size does not match its data.")
        if raw:
            t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
        else:
            t = torch.empty(shape, dtype=dtype)
        requires_grad = tree.get("requires_grad") is True
        if requires_grad and not (dtype.is_floating_point or dtype.is_complex):
            raise WireError("an integer tensor cannot require grad.")
        if tree.get("param") is True:
            t = torch.nn.Parameter(t, requires_grad=requires_grad)
        elif requires_grad:
            if "graph" in tree and self.link is not None:
                return self.link(t, tree["graph"])
            t.requires_grad_(True)
        if "grad" in tree:
            grad = self._tensor(tree["grad"], depth + 1)
            if grad.shape != t.shape or grad.dtype != t.dtype:
                raise WireError("a tensor's .grad does not match the tensor.")
            t.grad = grad
        if requires_grad and "graph" not in tree:
            self.tensors.append(t)
        return t


# --- framing -------------------------------------------------------------------------------


def send_message(sock: socket.socket, header: dict, buffers=()) -> None:
    data = json.dumps(header, allow_nan=False).encode()
    parts = [struct.pack("<II", len(buffers), len(data)), data]
    for b in buffers:
        parts += [struct.pack("<Q", len(b)), b]
    try:
        sock.sendall(b"".join(parts))
    except OSError as e:
        raise PeerEnded(f"the other process is gone ({e}).") from None


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError
        try:
            k = sock.recv_into(view[got:], min(n - got, 1 << 24))
        except OSError as e:
            raise PeerEnded(f"the other process is gone ({e}).") from None
        if not k:
            raise PeerEnded("the other process is gone (end of stream).")
        got += k
    return bytes(buf)


def recv_message(sock: socket.socket, deadline: float | None = None, max_bytes: int = 2**28,
                 max_header: int = 2**26) -> tuple[dict, list[bytes]]:
    """Read one message of at most ``max_bytes`` (its JSON part at most ``max_header``);
    TimeoutError past ``deadline`` (time.monotonic()), WireError if it is too large or
    unreadable: nothing larger is ever allocated."""
    count, size = struct.unpack("<II", _recv_exact(sock, 8, deadline))
    if size > max_header or size > max_bytes or count > 100_000:
        raise WireError(f"a message larger than the limit ({max_bytes // 2**20} MiB).")
    try:
        header = json.loads(_recv_exact(sock, size, deadline))
    except (ValueError, RecursionError) as e:
        raise WireError(f"unreadable message ({type(e).__name__}).") from None
    if type(header) is not dict:
        raise WireError("unreadable message (not an object).")
    buffers, total = [], size
    for _ in range(count):
        (n,) = struct.unpack("<Q", _recv_exact(sock, 8, deadline))
        total += n
        if total > max_bytes:
            raise WireError(f"a message larger than the limit ({max_bytes // 2**20} MiB).")
        buffers.append(_recv_exact(sock, n, deadline))
    return header, buffers
