"""The one-way conversation between the grader and a student's process.

The grader holds a ``Client``: it sends a request and reads exactly one
answer, the reply to that request; it serves nothing. The student's process
runs a ``Server``: it reads requests and answers each one; it never asks.
A message from the student's side that is not the answer to the pending
request (another kind, another id, a malformed or oversized value) ends the
conversation: the caller throws the process away and the check fails.

What the student's process answers is decoded (``autograder.sandbox.wire``)
into inert data that the grader owns (fresh arrays and tensors built from
bytes, numbers, strings, containers), or into a ``RemoteObject``: a handle
whose attribute reads, calls, iteration, indexing and ``len`` are further
requests. No object of the grader's ever crosses: the grader's encoder
refuses anything but plain data and the student's own handles.

Three things keep a call faithful to what in-process code would see:

- **random state, one way**: when the grader's torch or numpy global state
  changed since the last call (a check's ``torch.manual_seed``), the request
  carries it and the student's process uses it; the student's state never
  comes back. After each call the grader's own state moves on to a fresh one
  derived from the call count, so a check that seeds again, even to the same
  seed, is seen, and the student cannot steer what the grader draws;
- **in-place updates**: after a call, the student's process sends back the
  arrays, plain tensors (not parameters, not requiring grad), lists and dicts it
  was given that it changed, and the grader writes them into its own objects
  after checking type, shape and dtype;
- **autograd**: a result tensor with a graph keeps its graph in the student's
  process; the grader's copy is linked to it so that ``out.backward()`` sends
  a ``backward`` request that brings back the gradients of the tensors the
  grader sent (checked against their shapes and dtypes).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import itertools
import linecache
import sys
import weakref

from autograder.sandbox.wire import (
    Decoder,
    Encoder,
    PeerEnded,
    WireError,
    recv_message,
    send_message,
    tensor_state,
)

MAX_HANDLES_PER_ANSWER = 10_000


class RemoteError(Exception):
    """An exception raised in the student's process whose type is not a builtin one."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


class PeerGone(BaseException):
    """The student's process ended, broke the protocol, or sent something unreadable.

    A BaseException, like a time-out: a check's ``assert_raises`` must not take
    it for the student's exception. ``ended`` tells a process that is gone from one
    that broke the protocol."""

    def __init__(self, message: str, ended: bool = False):
        super().__init__(message)
        self.ended = ended


def _torch():
    return sys.modules.get("torch")


def rng_message() -> dict:
    """The grader's global random states (torch's CPU one and numpy's legacy one), as plain
    data for a request; two of them compare equal when the states are the same."""
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"numpy": [keys.tobytes(), int(pos), int(has_gauss), float(cached)]}
    torch = _torch()
    if torch is not None:
        state["torch"] = torch.get_rng_state().numpy().tobytes()
    return state


def set_rng_from_message(state) -> None:
    """In the student's process: take the grader's random states."""
    import numpy as np

    if "numpy" in state:
        keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", np.frombuffer(keys, dtype=np.uint32), pos, has_gauss,
                             cached))
    torch = _torch()
    if torch is not None and "torch" in state:
        torch.set_rng_state(torch.frombuffer(bytearray(state["torch"]), dtype=torch.uint8))


def student_frames(tb) -> list[str]:
    """The traceback lines that are in a student's answer cells (never the grader's code)."""
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<answer cell"):
            text = linecache.getline(code.co_filename, tb.tb_lineno).strip()[:300]
            cell = code.co_filename[len("<answer cell ") : -1]
            where = f"answer cell {cell!r}, line {tb.tb_lineno}"
            name = getattr(code, "co_qualname", code.co_name)  # Preprocessor.fit, not fit
            lines.append(f"  in {name[:100]} ({where}): {text}")
        tb = tb.tb_next
    return lines[-20:]


def _exception_from(header, max_chars: int) -> BaseException:
    """Rebuild the student's exception: a builtin Exception type as itself (with only its
    message), any other as RemoteError. Its text is data, bounded."""
    name, message = header.get("type"), header.get("message")
    name = name[:100] if type(name) is str else "Exception"
    message = message[:max_chars] if type(message) is str else ""
    cls = getattr(builtins, name, None)
    exc = None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - a builtin with a special constructor
            exc = None
    if exc is None:
        exc = RemoteError(name, message)
    frames = header.get("frames")
    frames = frames if type(frames) is list else []
    exc.student_frames = [f[:400] for f in frames[:20] if type(f) is str]
    exc.remote_type = name
    return exc


class RemoteObject:
    """An object that lives in the student's process: every use is a request."""

    __slots__ = ("_client", "_id", "_type", "__weakref__")

    def __init__(self, client, handle_id, type_name):
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_id", handle_id)
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name):
        # Names starting with "_" are answered here, never asked: a dunder that numpy or
        # Python looks up (``__array_interface__``, ``__index__``...) would otherwise let
        # the student's answer steer what the grader does with it.
        if name.startswith("_"):
            raise AttributeError(f"{name} (of an object in the student's process)")
        return self._client.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._client.request("setattr", self, name, value)

    def __call__(self, *args, **kwargs):
        return self._client.request("call", self, args, kwargs)

    def __iter__(self):
        return self._client.request("iter", self)

    def __next__(self):
        return self._client.request("next", self)

    def __len__(self):
        value = self._client.request("len", self)
        if type(value) is not int or value < 0:
            raise PeerGone("the student's process answered len() with something else.")
        return value

    def __getitem__(self, key):
        return self._client.request("getitem", self, key)

    def __setitem__(self, key, value):
        self._client.request("setitem", self, key, value)

    def __contains__(self, item):
        return self._client.request("contains", self, item) is True

    def __bool__(self):
        return self._client.request("bool", self) is True

    def __repr__(self):
        # Local: tracebacks and messages call repr() outside any time limit.
        return f"<{self._type} in the student's process>"

    def __str__(self):
        value = self._client.request("str", self)
        return value if type(value) is str else repr(self)

    def __enter__(self):
        return self._client.request("callattr", self, "__enter__", (), {})

    def __exit__(self, *exc):
        self._client.request("callattr", self, "__exit__", (None, None, None), {})
        return False  # the student's answer never swallows the check's own exception


_REMOTE_GRAPH = None


def _remote_graph_function():
    """The autograd Function (made once) whose backward pass is a ``backward`` request."""
    global _REMOTE_GRAPH
    if _REMOTE_GRAPH is not None:
        return _REMOTE_GRAPH
    torch = _torch()

    class _RemoteGraph(torch.autograd.Function):
        @staticmethod
        def forward(ctx, client, graph_id, data, anchor, *tensors):
            ctx.client, ctx.graph_id, ctx.shapes = client, graph_id, [
                (t.shape, t.dtype) for t in tensors]
            return data.clone()

        @staticmethod
        def backward(ctx, grad):
            grads = ctx.client.request("backward", ctx.graph_id, grad)
            if type(grads) is not list or len(grads) != len(ctx.shapes):
                raise PeerGone("the student's process answered a backward pass with something "
                               "else than one gradient per input.")
            for g, (shape, dtype) in zip(grads, ctx.shapes, strict=True):
                if g is not None and (not isinstance(g, torch.Tensor) or g.shape != shape
                                      or g.dtype != dtype):
                    raise PeerGone("the student's process sent a gradient whose shape or dtype "
                                   "is not its input's.")
            return (None, None, None, None, *grads)

    _REMOTE_GRAPH = _RemoteGraph
    return _RemoteGraph


def _graph_linker(client, inputs):
    """A function making a result tensor's copy part of the grader's autograd graph; its
    backward pass is a ``backward`` request for the gradients of ``inputs``."""
    torch = _torch()
    function = _remote_graph_function()

    def link(data, graph_id):
        if type(graph_id) is not int:
            raise WireError("malformed graph id.")
        # The anchor makes the copy require grad even when no input does (a module's
        # own parameters): its backward still runs remotely and fills their .grad there.
        anchor = torch.zeros((), requires_grad=True)
        return function.apply(client, graph_id, data, anchor, *inputs)

    return link


class Client:
    """The grader's side: one request at a time, one answer each.

    Inputs:
    - sock: a connected stream socket to the student's process.
    - limits: the ``Limits`` (reply size, header size, nesting, text length).
    """

    def __init__(self, sock, limits):
        self.sock, self.limits = sock, limits
        self._ids = itertools.count(1)
        # Weak: a handle the check dropped is forgotten here too (a student sending many
        # handles cannot make the grader keep them).
        self._handles: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._handles_this_answer = 0
        self._synced_rng: dict | None = None  # the grader's state after the last call
        self.deadline: float | None = None  # time.monotonic() past which a request fails
        self.broken = False

    def handle(self, handle_id, type_name) -> RemoteObject:
        self._handles_this_answer += 1
        if self._handles_this_answer > MAX_HANDLES_PER_ANSWER:
            raise WireError(f"an answer with more than {MAX_HANDLES_PER_ANSWER} objects.")
        obj = self._handles.get(handle_id)
        if obj is None:
            obj = RemoteObject(self, handle_id, type_name)
            self._handles[handle_id] = obj
        return obj

    def handle_id(self, obj):
        if type(obj) is RemoteObject and object.__getattribute__(obj, "_client") is self:
            return object.__getattribute__(obj, "_id")
        return None

    def request(self, op: str, *args):
        """Ask the student's process to do ``op``; return its decoded answer or raise the
        exception it reports (rebuilt as data). PeerGone if it breaks the protocol."""
        if self.broken:
            raise PeerGone("the student's process was stopped by an earlier failure.",
                           ended=True)
        torch = _torch()
        enc = Encoder(own=None, peer_id=self.handle_id)
        tree = enc.encode(list(args))  # TypeError: the check sent one of its own objects
        request_id = next(self._ids)
        header = {"kind": "request", "id": request_id, "op": op, "args": tree,
                  "grad": torch.is_grad_enabled() if torch is not None else None}
        state = rng_message()
        if state != self._synced_rng:
            header["rng"] = enc.encode(state)
        try:
            send_message(self.sock, header, enc.buffers)
            reply, buffers = recv_message(self.sock, self.deadline, self.limits.reply_bytes,
                                          self.limits.reply_header_bytes)
            if reply.get("id") != request_id or reply.get("kind") not in ("reply", "error"):
                raise WireError("the student's process sent a message that is not the answer "
                                "to the grader's request")
            self._handles_this_answer = 0
            try:
                value, error = self._finish(reply, buffers, enc)
            except (ValueError, TypeError, OverflowError, RuntimeError, MemoryError,
                    RecursionError) as e:  # torch or numpy refusing what the bytes say
                raise WireError(f"an unreadable answer ({type(e).__name__}).") from None
        except WireError as e:
            self.broken = True
            raise PeerGone(str(e), ended=isinstance(e, PeerEnded)) from None
        except BaseException:  # TimeoutError and the check's alarm included
            # Interrupted in the middle of a conversation: the stream is out of step,
            # so this process can never be used again.
            self.broken = True
            raise
        finally:
            self._move_rng_on(request_id)
        if error is not None:
            raise error
        return value

    def _move_rng_on(self, request_id: int) -> None:
        """Give the grader's global generators a fresh state of their own after a call."""
        import numpy as np

        seed = int.from_bytes(hashlib.sha256(request_id.to_bytes(8, "little")).digest()[:4],
                              "little")
        np.random.seed(seed)
        torch = _torch()
        if torch is not None:  # the CPU generator only: torch.manual_seed costs 300x more
            torch.default_generator.manual_seed(seed)
        self._synced_rng = rng_message()

    def _finish(self, reply, buffers, enc):
        """Read an answer: (its value, None) or (None, the exception it reports)."""
        limits = self.limits
        if reply["kind"] == "error":
            self._apply_updates(reply.get("updates", []), buffers, enc)
            return None, _exception_from(reply, limits.text_chars)

        def link(data, graph_id):  # built only when a result carries a graph
            return _graph_linker(self, enc.tensors)(data, graph_id)

        dec = Decoder(buffers, make_handle=self.handle, link=link, originals=enc.mutables,
                      max_depth=limits.reply_depth, max_nodes=limits.reply_nodes)
        value = dec.decode(reply.get("value"))
        self._apply_updates(reply.get("updates", []), buffers, enc, dec.used)
        return value, None

    def _apply_updates(self, updates, buffers, enc, used=None):
        """Write the changes the student's code made to the grader's arguments into them,
        after checking that each keeps its type, shape and dtype."""
        import numpy as np

        originals = enc.mutables
        if type(updates) is not list or len(updates) > len(originals):
            raise WireError("malformed updates.")
        decoded = []
        for item in updates:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not int or \
                    not 0 <= item[0] < len(originals):
                raise WireError("malformed update.")
            dec = Decoder(buffers, make_handle=self.handle, originals=originals,
                          max_depth=self.limits.reply_depth, max_nodes=self.limits.reply_nodes)
            if used:
                dec.used = used  # a buffer of the value cannot be reused by an update
            decoded.append((originals[item[0]], dec.decode(item[1])))
            used = dec.used
        for orig, new in decoded:
            if type(orig) is not type(new):
                raise WireError("an update changes the type of an argument.")
            if type(orig) is np.ndarray and (new.shape != orig.shape or new.dtype != orig.dtype):
                raise WireError("an update changes the shape or dtype of an array.")
            if type(orig) is not np.ndarray and hasattr(orig, "copy_") and (
                    new.shape != orig.shape or new.dtype != orig.dtype):
                raise WireError("an update changes the shape or dtype of a tensor.")
        for orig, new in decoded:  # arrays and tensors first: containers refer to them
            if type(orig) is np.ndarray and orig.flags.writeable:
                orig[...] = new
            elif type(orig) is not np.ndarray and hasattr(orig, "copy_"):
                _copy_into_tensor(orig, new)
        for orig, new in decoded:
            if type(orig) is dict:
                orig.clear()
                orig.update(new)
            elif type(orig) is list:
                orig[:] = new


def _copy_into_tensor(orig, new) -> None:
    """Write an update into the grader's own tensor, as the student's in-place write would
    have done in-process; a tensor that cannot be written to (an expanded view, an
    inference tensor) keeps its values, as an array that is not writeable does."""
    torch = _torch()
    try:
        with torch.no_grad():
            orig.copy_(new)
    except RuntimeError:
        pass


class Server:
    """The student's side: answers the grader's requests, one at a time, and never asks.

    Inputs:
    - sock: the connected socket.
    - ops: the operations beyond those on objects, name -> function(*args).
    """

    def __init__(self, sock, ops=None):
        self.sock = sock
        self.ops = dict(ops or {})
        self.objects: dict[int, object] = {}
        self._ids_of: dict[int, int] = {}
        self._counter = itertools.count(1)
        self.graphs: dict[int, tuple] = {}

    def own(self, obj) -> int:
        key = id(obj)
        if key not in self._ids_of:
            handle_id = next(self._counter)
            self._ids_of[key] = handle_id
            self.objects[handle_id] = obj
        return self._ids_of[key]

    def resolve_own(self, handle_id):
        try:
            return self.objects[handle_id]
        except (KeyError, TypeError):
            raise WireError(f"unknown handle {handle_id!r}.") from None

    def serve_forever(self):
        """Answer requests until the grader closes the connection."""
        while True:
            try:
                header, buffers = recv_message(self.sock)
            except WireError:
                return
            self._serve(header, buffers)

    def _graph_of(self, tensor) -> int:
        graph_id = next(self._counter)
        self.graphs[graph_id] = (tensor, self._current_leaves)
        return graph_id

    def _serve(self, header, buffers):
        self._current_leaves = []
        reply, enc = {"kind": "reply", "id": header.get("id")}, None
        dec = Decoder(buffers, resolve_own=self.resolve_own)
        try:
            args = dec.decode(header.get("args", []))
            if header.get("rng") is not None:
                set_rng_from_message(Decoder(buffers).decode(header["rng"]))
            torch = _torch()
            grad = header.get("grad")
            mode = torch.set_grad_enabled(bool(grad)) if torch is not None and grad is not None \
                else contextlib.nullcontext()
            with mode:
                value = self._dispatch(str(header.get("op")), args)
            self._current_leaves = dec.tensors
            enc = Encoder(self.own, None, self._graph_of, self._refs(dec))
            reply["value"] = enc.encode(value)
        except BaseException as e:  # noqa: BLE001 - SystemExit from a student included
            if isinstance(e, KeyboardInterrupt):
                raise
            enc = Encoder(self.own, None, None, self._refs(dec))
            reply = {"kind": "error", "id": header.get("id"), "type": type(e).__name__,
                     "message": _safe_str(e), "frames": student_frames(e.__traceback__)}
        reply["updates"] = self._updates(dec, enc)
        send_message(self.sock, reply, enc.buffers)

    @staticmethod
    def _refs(dec):
        return {id(obj): i for i, (obj, _) in enumerate(dec.mutables)}

    @staticmethod
    def _updates(dec, enc):
        """The arguments this call changed, encoded (arrays and plain tensors only when their
        bytes changed)."""
        import numpy as np

        updates = []
        for i, (obj, raw) in enumerate(dec.mutables):
            if i == 0:
                continue  # the request's own list of arguments, not one of them
            if isinstance(obj, np.ndarray) and obj.tobytes() == raw:
                continue
            if type(raw) is tuple and tensor_state(obj) == raw:
                continue  # a tensor the call did not write to
            # Other arguments inside this one travel as references to the grader's own
            # objects; this one itself is sent whole. The buffers go into the reply's.
            refs = {id(o): j for j, (o, _) in enumerate(dec.mutables) if j != i}
            sub = Encoder(enc.own, None, None, refs, buffers=enc.buffers)
            try:
                updates.append([i, sub.encode(obj)])
            except WireError:
                continue
        return updates

    def _dispatch(self, op, args):
        if op in self.ops:
            return self.ops[op](*args)
        target = args[0] if args else None
        if op == "getattr":
            return getattr(target, _name(args[1]))
        if op == "setattr":
            setattr(target, _name(args[1]), args[2])
            return None
        if op == "callattr":
            return getattr(target, _name(args[1]))(*args[2], **args[3])
        if op == "call":
            return target(*args[1], **args[2])
        if op == "iter":
            return iter(target)
        if op == "next":
            return next(target)
        if op == "len":
            return len(target)
        if op == "getitem":
            return target[args[1]]
        if op == "setitem":
            target[args[1]] = args[2]
            return None
        if op == "contains":
            return args[1] in target
        if op == "bool":
            return bool(target)
        if op == "repr":
            return repr(target)
        if op == "str":
            return str(target)
        if op == "backward":
            return self._backward(args[0], args[1])
        raise WireError(f"unknown operation {op!r}.")

    def _backward(self, graph_id, grad):
        torch = _torch()
        tensor, leaves = self.graphs[graph_id]
        for leaf in leaves:
            leaf.grad = None
        torch.autograd.backward(tensor, grad)
        return [leaf.grad for leaf in leaves]


def _name(name):
    if type(name) is not str:
        raise AttributeError(f"{name!r} is not an attribute name.")
    return name


def _safe_str(exc) -> str:
    try:
        return str(exc)[:4000]
    except Exception:  # noqa: BLE001 - a student's exception with a broken __str__
        return "(no message)"
