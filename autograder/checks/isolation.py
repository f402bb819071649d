"""Each side gets its own inputs: the student and the reference never share an argument.

When a check hands the same array to the student's function and then to the reference,
a student function that modifies its input makes the reference run on the modified
input: the feedback then shows a wrong "expected" value and blames the right answer.
The two helpers here give every call its own deep copy of every argument, and check after
each student call that the call left its arguments as they were, with a message in the
student's words ("your `Preprocessor.transform` changed its argument `x` in place").

Through the sandbox, in-place writes to the arrays, tensors, lists and dicts given to a
student call come back into the grader's copies (see ``autograder.sandbox.protocol``), so
the comparison sees them on both transports.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from labkit.checks import CheckFailure

_SKIP = object()  # an argument that is not plain data: not compared


def _equal(now, before) -> bool:
    """Exact equality of two values built of arrays, tensors, numbers, lists, tuples, dicts."""
    if isinstance(before, np.ndarray):
        return (isinstance(now, np.ndarray) and now.shape == before.shape
                and now.dtype == before.dtype
                and np.array_equal(now, before, equal_nan=before.dtype.kind in "fc"))
    if isinstance(before, torch.Tensor):
        return (isinstance(now, torch.Tensor) and now.shape == before.shape
                and now.dtype == before.dtype
                and torch.equal(torch.nan_to_num(now.detach()),
                                torch.nan_to_num(before.detach())))
    if isinstance(before, dict):
        return (isinstance(now, dict) and now.keys() == before.keys()
                and all(_equal(now[k], before[k]) for k in before))
    if isinstance(before, (list, tuple)):
        return (type(now) is type(before) and len(now) == len(before)
                and all(_equal(a, b) for a, b in zip(now, before, strict=True)))
    return now == before or (now != now and before != before)  # NaN equals NaN here


def is_plain_data(value) -> bool:
    """Whether ``value`` is plain data that a deep copy and ``_equal`` handle: arrays, tensors,
    numbers, strings, None, and lists, tuples and dicts of them. Anything else (a handle of
    an object in the student's process, a generator) is left out of the comparison."""
    if value is None or isinstance(value, (np.ndarray, torch.Tensor, bool, int, float, complex,
                                           str, bytes, np.generic)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain_data(v) for k, v in value.items())
    return False


def call_unchanged(label: str, fn, *args, names: tuple[str, ...] = (),
                   may_change: tuple[str, ...] = (), **kwargs):
    """``fn(*args, **kwargs)``; fail when the call changed one of its arguments in place.

    Inputs:
    - label: the student's function as the feedback names it (``"mean_image"``,
      ``"Preprocessor.transform"``).
    - fn: the student's callable (a sandbox handle or, in process, the function).
    - names: the names of the positional parameters, for the message; the others are
      called "argument 1", "argument 2", ...
    - may_change: names of parameters the docstring lets the call change (a ``bn_param``
      whose running statistics it updates, a ``cache`` that is the student's own).

    Returns what ``fn`` returned.
    """
    def kept(name, value) -> bool:
        return name not in may_change and is_plain_data(value)

    labels = [names[i] if i < len(names) else f"argument {i + 1}" for i in range(len(args))]
    before = ([copy.deepcopy(a) if kept(n, a) else _SKIP
               for n, a in zip(labels, args, strict=True)],
              {k: copy.deepcopy(v) for k, v in kwargs.items() if kept(k, v)})
    out = fn(*args, **kwargs)
    for i, (now, was) in enumerate(zip(args, before[0], strict=True)):
        if was is not _SKIP and not _equal(now, was):
            raise CheckFailure(f"your `{label}` changed its argument `{labels[i]}` in place; it "
                               f"must leave its inputs as they were (work on a copy, or write "
                               f"`y = x - m` rather than `x -= m`).")
    for key, was in before[1].items():
        if not _equal(kwargs[key], was):
            raise CheckFailure(f"your `{label}` changed its argument `{key}` in place; it must "
                               f"leave its inputs as they were.")
    return out


def call_both(label: str, student_fn, reference_fn, *args, names: tuple[str, ...] = (),
              **kwargs):
    """The student's and the reference's results, each computed on its own deep copy of
    the arguments; the student's call must leave its copy unchanged (``call_unchanged``).

    Returns ``(student_result, reference_result)``. The caller's arguments are never
    handed to either side, so they stay as the check made them.
    """
    theirs = call_unchanged(label, student_fn, *copy.deepcopy(args), names=names,
                            **copy.deepcopy(kwargs))
    ours = reference_fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    return theirs, ours
