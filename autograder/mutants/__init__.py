"""Seeded student bugs, one module per topic, that prove the hidden checks work.

A mutant is a plausible wrong answer. Write it as a function or class in
``autograder/mutants/<topic>.py`` under any name, decorated with what bug it
is and which reference name it replaces::

    @mutant("channel_std uses the sample standard deviation", replaces="channel_std")
    def channel_std_sample(x):
        return np.asarray(x, dtype=np.float64).std(axis=(0, 2, 3), ddof=1)

The selfcheck builds a notebook from the reference solution, appends the
mutant's source to the answer cell that defines ``replaces`` and rebinds the
name, then grades that notebook like any submission: it must lose points.
A class mutant may subclass the reference class (import it from the
solutions module at the top of the mutants module; in the notebook the name
is the reference's own).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str  # the mutant's own name in its module
    description: str  # the bug, in words
    replaces: str  # the reference name it stands in for
    source: str  # its code, without the decorator


def mutant(description: str, replaces: str):
    """Mark a function or class as a seeded bug that stands in for ``replaces``."""

    def register(obj):
        obj.__mutant__ = (description, replaces)
        return obj

    return register


def _source_without_decorators(obj) -> str:
    source = textwrap.dedent(inspect.getsource(obj))
    node = ast.parse(source).body[0]
    lines = source.splitlines()
    return "\n".join(lines[node.lineno - 1 :]) + "\n"  # node.lineno is the def/class line


def load_mutants(lab) -> list[Mutant]:
    """The mutants of a lab, in the order of their module (none if it has no module)."""
    try:
        module = importlib.import_module(lab.mutants_module)
    except ModuleNotFoundError as e:
        if e.name == lab.mutants_module:
            return []
        raise
    mutants = []
    for name, obj in vars(module).items():
        info = getattr(obj, "__mutant__", None)
        if info and getattr(obj, "__module__", None) == module.__name__:
            mutants.append(Mutant(name, info[0], info[1], _source_without_decorators(obj)))
    return mutants
