"""Torch modules that a check hands to student code, built where the code runs.

A check never lends the grader's own objects to a student's function: it
describes the module by a *spec* (plain data), builds its own copy with
``build_module(spec)`` to compute the expected answer, and asks the
student's process to build another from the same spec and state:

    spec = module_spec("torch.nn.Sequential", module_spec("torch.nn.Linear", 6, 5))
    ours = build_module(spec)                      # the check's copy
    theirs = lend(student, spec, ours.state_dict(), train=True)
    student.ensemble_predict([theirs], x, "vote")  # a handle of the student's copy

A spec names a class or builder in an allowed namespace (``torch.nn.*`` and
``torchvision.models.*``, and ``CallRecorder`` below) with plain-data
arguments, which may themselves be specs. Whatever the student's code does
to its copy stays in its process.
"""

from __future__ import annotations

import importlib

_ALLOWED_PREFIXES = ("torch.nn.", "torchvision.models.")
SPEC_TAG = "__module__"


def module_spec(name: str, *args, **kwargs) -> dict:
    """A plain-data description of ``name(*args, **kwargs)``; arguments may be specs."""
    return {SPEC_TAG: name, "args": list(args), "kwargs": dict(kwargs)}


def _resolve(name: str):
    if name == "CallRecorder":
        return CallRecorder
    if type(name) is not str or not name.startswith(_ALLOWED_PREFIXES) or "._" in name:
        raise ValueError(f"{name!r} is not a module that can be built for a check "
                         f"(only torch.nn.* and torchvision.models.*).")
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


def lend(student, spec: dict, state_dict=None, train: bool | None = None):
    """A module built from ``spec`` (and ``state_dict``) on the student's side: a handle
    of it under the sandbox, a fresh module of its own in-process."""
    if state_dict is not None:  # an OrderedDict is not plain data: send a dict of tensors
        state_dict = {str(k): v for k, v in state_dict.items()}
    return student._build_module(spec, state_dict, train)


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
