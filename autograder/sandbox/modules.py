"""Torch modules that a check hands to student code, built where the code runs.

A check never lends the grader's own objects to a student's function: it
describes the module by a *spec* (plain data), builds its own copy with
``build_module(spec)`` to compute the expected answer, and asks the
student's process to build another from the same spec and state:

    spec = module_spec("torch.nn.Sequential", module_spec("torch.nn.Linear", 6, 5))
    ours = build_module(spec)                      # the check's copy
    theirs = lend(student, spec, ours.state_dict(), train=True)
    student.ensemble_predict([theirs], x, "vote")  # a handle of the student's copy

A spec names a class or builder in an allowed namespace (``torch.nn.*``,
``torchvision.models.*``, the labs' own ``labkit.*`` models, and
``CallRecorder`` below) with plain-data
arguments, which may themselves be specs. Whatever the student's code does
to its copy stays in its process.
"""

from __future__ import annotations

import importlib

# labkit is ours and bound read-only into the sandbox: its models (the zoo) can be lent.
_ALLOWED_PREFIXES = ("torch.nn.", "torchvision.models.", "labkit.")
SPEC_TAG = "__module__"


def module_spec(name: str, *args, **kwargs) -> dict:
    """A plain-data description of ``name(*args, **kwargs)``; arguments may be specs."""
    return {SPEC_TAG: name, "args": list(args), "kwargs": dict(kwargs)}


def _resolve(name: str):
    if name == "CallRecorder":
        return CallRecorder
    if type(name) is not str or not name.startswith(_ALLOWED_PREFIXES) or "._" in name:
        raise ValueError(f"{name!r} is not a module that can be built for a check "
                         f"(only torch.nn.*, torchvision.models.* and labkit.*).")
    module_name, _, attr = name.rpartition(".")
    target = getattr(importlib.import_module(module_name), attr, None)
    if target is None or not callable(target):
        raise ValueError(f"{name!r} does not name a module class or builder.")
    return target


def _build(value):
    if type(value) is dict and SPEC_TAG in value:
        return build_module(value)
    if type(value) is list:
        return [_build(v) for v in value]
    return value


def build_module(spec: dict):
    """Build the module a spec describes (its arguments first, when they are specs)."""
    import torch

    target = _resolve(spec[SPEC_TAG])
    module = target(*_build(spec.get("args", [])),
                    **{k: _build(v) for k, v in spec.get("kwargs", {}).items()})
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"{spec[SPEC_TAG]!r} did not build a torch.nn.Module.")
    return module


def build_lent_module(spec: dict, state_dict=None, train: bool | None = None):
    """Build ``spec`` and load ``state_dict`` into it (strict); set its mode if given."""
    module = build_module(spec)
    if state_dict is not None:
        module.load_state_dict(state_dict, strict=True)
    if train is not None:
        module.train(bool(train))
    return module


# A state larger than this crosses in several requests (a VGG16 holds 553 MB of weights;
# one message is bounded by the sandbox's limits).
CHUNK_BYTES = 32 * 2**20


def lend(student, spec: dict, state_dict=None, train: bool | None = None):
    """A module built from ``spec`` (and ``state_dict``) on the student's side: a handle
    of it under the sandbox, a fresh module of its own in-process."""
    if state_dict is None or _nbytes(state_dict.values()) <= CHUNK_BYTES:
        return student._build_module(spec, _plain_state(state_dict), train)
    module = student._build_module(spec, None, train)
    missing, unexpected = load_state(student, module, state_dict)
    if missing or unexpected:
        raise ValueError(f"the state does not fit {spec[SPEC_TAG]}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}.")
    return module


def load_state(student, module, state_dict) -> tuple[list[str], list[str]]:
    """Load ``state_dict`` into the student's ``module`` (a handle), in requests of at most
    ``CHUNK_BYTES``, like ``load_state_dict(strict=True)`` but without raising: returns the
    (missing, unexpected) key names, both empty when every key matched. A key whose shape
    differs raises the student's RuntimeError, as torch does."""
    state = _plain_state(state_dict)
    unexpected: list[str] = []
    chunk: dict = {}
    for key, value in state.items():
        if chunk and _nbytes([*chunk.values(), value]) > CHUNK_BYTES:
            unexpected += student._load_state(module, chunk)
            chunk = {}
        chunk[key] = value
    if chunk or not state:
        unexpected += student._load_state(module, chunk)
    keys = set(describe(student, module)["state_keys"])
    return sorted(keys - set(state)), sorted(unexpected)


def describe(student, module) -> dict:
    """What the student's ``module`` (a handle) is made of, as plain data, without its
    weights: {"type": class name, "training": bool, "modules": [{"name", "type",
    "training"}] (every submodule, the root first with name ""), "parameters": [{"name",
    "shape", "dtype", "requires_grad"}], "buffers": [{"name", "shape", "dtype"}],
    "state_keys": the keys of its state_dict}. Parameters shared by two submodules are
    listed once, as ``named_parameters`` does."""
    return student._describe_module(module)


def _nbytes(tensors) -> int:
    return sum(int(t.numel()) * t.element_size() for t in tensors)


def _plain_state(state_dict):
    # An OrderedDict is not plain data: send a dict of tensors.
    return None if state_dict is None else {str(k): v for k, v in state_dict.items()}


# The two halves that run where the module lives (the student's process, or in-process).
# They call torch.nn.Module's own methods, so that a module's overrides cannot change
# what is reported.


def describe_module(module) -> dict:
    import torch

    nn = torch.nn.Module
    if not isinstance(module, nn):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}.")

    def shape(t):
        return [int(n) for n in t.shape]

    return {
        "type": type(module).__name__,
        "training": bool(module.training),
        "modules": [{"name": name, "type": type(m).__name__, "training": bool(m.training)}
                    for name, m in nn.named_modules(module)],
        "parameters": [{"name": name, "shape": shape(p), "dtype": str(p.dtype),
                        "requires_grad": bool(p.requires_grad)}
                       for name, p in nn.named_parameters(module)],
        "buffers": [{"name": name, "shape": shape(b), "dtype": str(b.dtype)}
                    for name, b in nn.named_buffers(module)],
        "state_keys": [str(k) for k in nn.state_dict(module, keep_vars=True)],
    }


def load_state_chunk(module, chunk: dict) -> list[str]:
    """Load part of a state (strict=False); returns the keys that the module lacks."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(module).__name__}.")
    result = torch.nn.Module.load_state_dict(module, chunk, strict=False)
    return [str(k) for k in result.unexpected_keys]


try:
    import torch as _torch_for_recorder
except ImportError:  # a numpy-only installation: no modules to lend
    _torch_for_recorder = None

if _torch_for_recorder is not None:

    class CallRecorder(_torch_for_recorder.nn.Module):
        """Wraps a module and records, per forward pass, the batch size and whether grad
        was enabled: ``calls`` is a list of (batch size, grad enabled)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.calls: list[tuple[int, bool]] = []

        def forward(self, x):
            self.calls.append((int(x.shape[0]), bool(_torch_for_recorder.is_grad_enabled())))
            return self.inner(x)
else:
    CallRecorder = None
