"""The ``student`` object: the only way hidden checks reach a student's code.

Checks write ``student.mean_image(x)`` or ``student.Preprocessor("standardize")``
and never touch the student's namespace directly, so that the transport can
change (in-process here; sandboxed in ``autograder.sandbox.host``) without changing
a single check.
"""

from __future__ import annotations


class MissingAnswer(AttributeError):
    """The student's code does not define a name that a check needs."""


class InProcessStudent:
    """A student whose code runs in this process (the reference, or trusted code).

    Inputs:
    - namespace: dict of the names the student's code defined.
    - label: who this is, for messages ("reference", "alice", ...).
    - problems: what went wrong while loading, to explain a missing name.
    """

    def __init__(self, namespace: dict, label: str = "student", problems=()):
        self._namespace = namespace
        self._label = label
        self._problems = list(problems)

    @classmethod
    def from_module(cls, module, label="reference"):
        return cls(vars(module), label=label)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._namespace[name]
        except KeyError:
            hint = " (see the problems at the top of your feedback)" if self._problems else ""
            raise MissingAnswer(
                f"your code does not define `{name}`: its answer cell is missing, "
                f"renamed, or stopped with an error before defining it{hint}."
            ) from None

    def _build_module(self, spec, state_dict=None, train=None):
        """A fresh module from ``spec`` (``autograder.sandbox.modules.lend``)."""
        from autograder.sandbox.modules import build_lent_module

        return build_lent_module(spec, state_dict, train)

    def _describe_module(self, module):
        """``autograder.sandbox.modules.describe``, in-process."""
        from autograder.sandbox.modules import describe_module

        return describe_module(module)

    def _load_state(self, module, chunk):
        """One request of ``autograder.sandbox.modules.load_state``, in-process."""
        from autograder.sandbox.modules import load_state_chunk

        return load_state_chunk(module, chunk)

    def __repr__(self):
        return f"<student {self._label}>"
