"""Calls across a socket between the grader and a student's process.

Both sides run the same ``Endpoint``. A value that is plain data crosses as a
copy (``autograder.wire``); any other object stays where it is and the other
side gets a ``Proxy`` whose attribute reads, calls, iteration, indexing and
``len`` go back over the socket. So the grader holds proxies for the
student's objects (``student.BatchNorm2d(4)``), and the student's code holds
proxies for the few objects a check hands it (the torch models given to
``ensemble_predict``), which only expose their public attributes.

Three things keep the copies faithful to what in-process code would see:

- **grad mode**: every request carries ``torch.is_grad_enabled()``, and the
  other side runs it under the same mode;
- **in-place updates**: after a call, the student's side sends back the
  arrays, lists and dicts it was given that it changed, and the grader writes
  them into its own objects, keeping their identity (``bn_param["running_mean"]``
  updated in place stays the same array);
- **autograd**: a result tensor with a graph keeps its graph on the side that
  made it; the copy is linked by ``_RemoteGraph`` so that ``out.backward()``
  on the grader's side runs the backward pass remotely and brings back the
  gradients of the tensors the grader sent.

A request that does not complete (time-out, the other side died) leaves the
endpoint ``broken``: the caller must throw the process away.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import linecache
import sys

from autograder.wire import Decoder, Encoder, WireError, recv_message, send_message


class RemoteError(Exception):
    """An exception raised on the other side whose type is not a builtin one."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


class PeerGone(BaseException):
    """The other process ended (or sent something unreadable) during a request.

    A BaseException, like a time-out: a check's ``assert_raises`` must not take
    it for the student's exception."""


def _torch():
    return sys.modules.get("torch")


def _grad_mode(enabled):
    torch = _torch()
    if torch is None or enabled is None:
        return contextlib.nullcontext()
    return torch.set_grad_enabled(bool(enabled))


def rng_state() -> dict:
    """The global random states a call may use (torch's and numpy's legacy one), as plain
    data: they travel with every request and reply, so that ``torch.manual_seed(0)`` on
    one side seeds what the other side draws, as if both were one process."""
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"numpy": [kind, keys.tobytes(), int(pos), int(has_gauss), float(cached)]}
    torch = _torch()
    if torch is not None:
        state["torch"] = torch.get_rng_state().numpy().tobytes()
    return state


def set_rng_state(state) -> None:
    import numpy as np

    if not isinstance(state, dict):
        return
    if "numpy" in state:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.frombuffer(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch = _torch()
    if torch is not None and "torch" in state:
        torch.set_rng_state(torch.frombuffer(bytearray(state["torch"]), dtype=torch.uint8))


def student_frames(tb) -> list[str]:
    """The traceback lines that are in a student's answer cells (never the grader's code)."""
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith("<answer cell"):
            text = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            cell = code.co_filename[len("<answer cell ") : -1]
            where = f"answer cell {cell!r}, line {tb.tb_lineno}"
            lines.append(f"  in {code.co_name} ({where}): {text}")
        tb = tb.tb_next
    return lines


def _exception_from(header) -> BaseException:
    """Rebuild the other side's exception: a builtin type as itself, others as RemoteError."""
    name, message = str(header.get("type", "Exception")), str(header.get("message", ""))
    cls = getattr(builtins, name, None)
    exc = None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001 - a builtin with a special constructor
            exc = None
    if exc is None:
        exc = RemoteError(name, message)
    exc.student_frames = [str(f) for f in header.get("frames", [])][:50]
    exc.remote_type = name
    return exc


class Proxy:
    """An object that lives in the other process."""

    __slots__ = ("_endpoint", "_id", "_type", "__weakref__")

    def __init__(self, endpoint, handle_id, type_name):
        object.__setattr__(self, "_endpoint", endpoint)
        object.__setattr__(self, "_id", handle_id)
        object.__setattr__(self, "_type", type_name)

    def __getattr__(self, name):
        return self._endpoint.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._endpoint.request("setattr", self, name, value)

    def __call__(self, *args, **kwargs):
        return self._endpoint.request("call", self, args, kwargs)

    def __iter__(self):
        return self._endpoint.request("iter", self)

    def __next__(self):
        return self._endpoint.request("next", self)

    def __len__(self):
        return self._endpoint.request("len", self)

    def __getitem__(self, key):
        return self._endpoint.request("getitem", self, key)

    def __setitem__(self, key, value):
        self._endpoint.request("setitem", self, key, value)

    def __contains__(self, item):
        return self._endpoint.request("contains", self, item)

    def __bool__(self):
        return self._endpoint.request("bool", self)

    def __repr__(self):
        try:
            return self._endpoint.request("repr", self)
        except Exception:  # noqa: BLE001 - a repr must not fail a message
            return f"<{self._type} in the student's process>"

    def __str__(self):
        return self._endpoint.request("str", self)

    def __enter__(self):
        return self._endpoint.request("callattr", self, "__enter__", (), {})

    def __exit__(self, *exc):
        return self._endpoint.request("callattr", self, "__exit__", (None, None, None), {})


def _link_graph(endpoint, inputs):
    """Return a function making a result tensor's copy part of the caller's autograd graph."""
    torch = _torch()

    class _RemoteGraph(torch.autograd.Function):
        @staticmethod
        def forward(ctx, graph_id, data, anchor, *tensors):
            ctx.graph_id = graph_id
            return data.clone()

        @staticmethod
        def backward(ctx, grad):
            grads = endpoint.request("backward", ctx.graph_id, grad)
            return (None, None, None, *grads)

    def link(data, graph_id):
        # The anchor makes the copy require grad even when no input does (a module's
        # own parameters): its backward still runs remotely and fills their .grad there.
        anchor = torch.zeros((), requires_grad=True)
        return _RemoteGraph.apply(graph_id, data, anchor, *inputs)

    return link


class Endpoint:
    """One side of the connection.

    Inputs:
    - sock: a connected stream socket.
    - public_only: refuse the other side any attribute whose name starts with
      ``_`` (the grader serves the student's process with this on).
    - ops: extra operations this side answers, name -> function(*args).
    """

    def __init__(self, sock, public_only: bool = False, ops=None):
        self.sock = sock
        self.public_only = public_only
        self.ops = dict(ops or {})
        self.objects: dict[int, object] = {}
        self._ids: dict[int, int] = {}
        self._counter = itertools.count(1)
        self._proxies: dict[int, Proxy] = {}
        self.graphs: dict[int, tuple] = {}
        self.deadline: float | None = None  # time.monotonic() past which a request fails
        self.broken = False

    # --- handles -------------------------------------------------------------------------

    def own(self, obj) -> int:
        key = id(obj)
        if key not in self._ids:
            handle_id = next(self._counter)
            self._ids[key] = handle_id
            self.objects[handle_id] = obj
        return self._ids[key]

    def peer_id(self, obj):
        if type(obj) is Proxy and object.__getattribute__(obj, "_endpoint") is self:
            return object.__getattribute__(obj, "_id")
        return None

    def resolve_own(self, handle_id):
        try:
            return self.objects[handle_id]
        except (KeyError, TypeError):
            raise WireError(f"unknown handle {handle_id!r}.") from None

    def proxy(self, handle_id, type_name) -> Proxy:
        if handle_id not in self._proxies:
            self._proxies[handle_id] = Proxy(self, handle_id, type_name)
        return self._proxies[handle_id]

    def _graph_of(self, tensor) -> int:
        graph_id = next(self._counter)
        self.graphs[graph_id] = (tensor, self._current_leaves)
        return graph_id

    # --- making requests -----------------------------------------------------------------

    def request(self, op: str, *args):
        """Ask the other side to do ``op``; serve its own requests while waiting."""
        if self.broken:
            raise PeerGone("the student's process was stopped by an earlier failure.")
        torch = _torch()
        enc = Encoder(self.own, self.peer_id)
        tree = enc.encode(list(args))
        header = {"kind": "request", "op": op, "args": tree, "rng": enc.encode(rng_state()),
                  "grad": torch.is_grad_enabled() if torch is not None else None}
        try:
            send_message(self.sock, header, enc.buffers)
            while True:
                reply, buffers = recv_message(self.sock, self.deadline)
                if reply.get("kind") != "request":
                    break
                self._serve(reply, buffers)
        except WireError as e:
            self.broken = True
            raise PeerGone(str(e)) from None
        except BaseException:  # TimeoutError included
            # Interrupted in the middle of a conversation (the check's alarm): the
            # stream is out of step, so this endpoint can never be used again.
            self.broken = True
            raise
        try:
            value, error = self._finish(reply, buffers, enc)
        except (WireError, KeyError, TypeError, ValueError) as e:
            self.broken = True  # an unreadable answer: do not trust this process again
            raise PeerGone(f"unreadable answer ({type(e).__name__}: {e}).") from None
        if error is not None:
            raise error  # the other side's exception, rebuilt here
        return value

    def _finish(self, reply, buffers, enc):
        """Read a reply: (its value, None) or (None, the exception it reports)."""
        set_rng_state(Decoder(buffers, self.resolve_own, self.proxy).decode(reply.get("rng")))
        if reply.get("kind") == "error":
            self._apply_updates(reply.get("updates", []), buffers, enc)
            return None, _exception_from(reply)
        if reply.get("kind") != "reply":
            raise WireError(f"unexpected message {reply.get('kind')!r}.")

        def link(data, graph_id):  # built only when a result carries a graph
            return _link_graph(self, enc.tensors)(data, graph_id)

        dec = Decoder(buffers, self.resolve_own, self.proxy, link, enc.mutables)
        value = dec.decode(reply.get("value"))
        self._apply_updates(reply.get("updates", []), buffers, enc)
        return value, None

    def _apply_updates(self, updates, buffers, enc):
        """Write the changes the other side made to our arguments into our own objects."""
        import numpy as np

        originals = enc.mutables
        decoded = []
        for index, tree in updates:
            dec = Decoder(buffers, self.resolve_own, self.proxy, None, originals)
            decoded.append((originals[int(index)], dec.decode(tree)))
        for orig, new in decoded:  # arrays first: containers refer to them
            if isinstance(orig, np.ndarray) and isinstance(new, np.ndarray):
                if new.shape == orig.shape and orig.flags.writeable:
                    orig[...] = new
        for orig, new in decoded:
            if type(orig) is dict and type(new) is dict:
                orig.clear()
                orig.update(new)
            elif type(orig) is list and type(new) is list:
                orig[:] = new

    # --- serving requests ----------------------------------------------------------------

    def serve_forever(self):
        """Answer requests until the other side closes the connection."""
        while True:
            try:
                header, buffers = recv_message(self.sock)
            except WireError:
                return
            self._serve(header, buffers)

    def _serve(self, header, buffers):
        self._current_leaves = []
        reply, enc = {"kind": "reply"}, None
        dec = Decoder(buffers, self.resolve_own, self.proxy)
        try:
            args = dec.decode(header.get("args", []))
            set_rng_state(Decoder(buffers, self.resolve_own, self.proxy).decode(header.get("rng")))
            with _grad_mode(header.get("grad")):
                value = self._dispatch(str(header.get("op")), args)
            self._current_leaves = dec.tensors  # after dispatch: nested requests reset it
            enc = Encoder(self.own, self.peer_id, self._graph_of, self._refs(dec))
            reply["value"] = enc.encode(value)
        except BaseException as e:  # noqa: BLE001 - SystemExit from a student included
            if isinstance(e, KeyboardInterrupt):
                raise
            enc = Encoder(self.own, self.peer_id, None, self._refs(dec))
            reply = {"kind": "error", "type": type(e).__name__,
                     "message": _safe_str(e), "frames": student_frames(e.__traceback__)}
        reply["updates"] = self._updates(dec, enc)
        reply["rng"] = enc.encode(rng_state())
        send_message(self.sock, reply, enc.buffers)

    @staticmethod
    def _refs(dec):
        return {id(obj): i for i, (obj, _) in enumerate(dec.mutables)}

    @staticmethod
    def _updates(dec, enc):
        """The arguments this call changed, encoded (arrays only when their bytes changed)."""
        import numpy as np

        updates = []
        for i, (obj, raw) in enumerate(dec.mutables):
            if isinstance(obj, np.ndarray) and obj.tobytes() == raw:
                continue
            # Other arguments inside this one travel as references to the caller's own
            # objects; this one itself is sent whole. The buffers go into the reply's.
            refs = {id(o): j for j, (o, _) in enumerate(dec.mutables) if j != i}
            sub = Encoder(enc.own, enc.peer_id, None, refs, buffers=enc.buffers)
            updates.append([i, sub.encode(obj)])
        return updates

    def _dispatch(self, op, args):
        if op in self.ops:
            return self.ops[op](*args)
        target = args[0] if args else None
        if op == "getattr":
            self._check_name(args[1])
            return getattr(target, args[1])
        if op == "setattr":
            self._check_name(args[1])
            setattr(target, args[1], args[2])
            return None
        if op == "callattr":
            self._check_name(args[1])
            return getattr(target, args[1])(*args[2], **args[3])
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
        if op == "backward" and not self.public_only:
            return self._backward(args[0], args[1])
        raise WireError(f"unknown operation {op!r}.")

    def _check_name(self, name):
        if not isinstance(name, str) or (self.public_only and name.startswith("_")):
            raise AttributeError(f"{name!r} is not available to your code.")

    def _backward(self, graph_id, grad):
        torch = _torch()
        tensor, leaves = self.graphs[graph_id]
        for leaf in leaves:
            leaf.grad = None
        torch.autograd.backward(tensor, grad)
        return [leaf.grad for leaf in leaves]


def _safe_str(exc) -> str:
    try:
        return str(exc)[:2000]
    except Exception:  # noqa: BLE001 - a student's exception with a broken __str__
        return "(no message)"
