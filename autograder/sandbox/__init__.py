"""The sandbox: a submission's code in its own walled-in process, and the one-way
conversation with it. A security boundary, kept in this package:

- ``limits``: every number enforced (``Limits``), built once by the CLI;
- ``host``: the grader's side (``Sandbox``, ``SandboxStudent``);
- ``bwrap``: the bubblewrap command that walls the process in;
- ``child``: the student's process; ``confine`` and ``seccomp``: the limits it
  takes on itself before any answer cell; ``fallback``: Landlock and an audit
  hook, only where bubblewrap cannot run (every report says so);
- ``protocol`` (the grader asks, the student's process answers) and ``wire``
  (plain data, no pickle);
- ``modules``: torch modules a check lends, built in the student's process.

The student's process imports only ``child`` and what it needs
(``protocol``, ``wire``, ``confine``, ``seccomp``, ``limits``, ``modules``):
``host`` is imported lazily below so that it stays out of that process.
"""

from autograder.sandbox.limits import Limits

__all__ = ["Limits", "Sandbox", "SandboxStudent", "SandboxError", "BUBBLEWRAP", "FALLBACK"]


def __getattr__(name):
    if name in ("Sandbox", "SandboxStudent", "SandboxError", "BUBBLEWRAP", "FALLBACK"):
        from autograder.sandbox import host

        return getattr(host, name)
    raise AttributeError(name)
