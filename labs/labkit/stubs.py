"""What a student reads when a check meets a function they have not written yet.

An untouched stub raises a bare ``NotImplementedError()``, and Jupyter then shows
``NotImplementedError:`` with nothing after it, under a traceback that looks like a
broken set-up. In a notebook, importing labkit installs a handler that says instead
which function to write and where:

    NotImplementedError: `mean_image` is not written yet: replace `raise
    NotImplementedError()` in its answer cell with your code, run that cell, then this one.

Only a bare NotImplementedError raised by a function defined in a notebook cell is
explained; any other exception (torch's own NotImplementedError included) is shown as
usual. Outside IPython (scripts, the grader) nothing is installed.
"""

from __future__ import annotations

import sys

__all__ = ["install", "unwritten_message"]


def _from_a_cell(filename: str) -> bool:
    # ipykernel compiles each cell to /tmp/ipykernel_<pid>/<hash>.py; plain IPython
    # to <ipython-input-N-...>.
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def unwritten_message(exc: BaseException) -> str | None:
    """The message for ``exc`` when it is an unwritten stub's bare NotImplementedError
    raised in a notebook cell, else None."""
    if type(exc) is not NotImplementedError or exc.args:
        return None
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:  # the frame that raised it
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if not _from_a_cell(code.co_filename):
        return None
    name = getattr(code, "co_qualname", code.co_name)
    return (f"`{name}` is not written yet: replace `raise NotImplementedError()` in its "
            f"answer cell with your code, run that cell, then this one.")


def _handler(shell, etype, value, tb, tb_offset=None):
    # IPython shows nothing by itself for an exception it hands to a custom handler.
    message = unwritten_message(value)
    if message is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
        return []
    # The kernel reports str(value) as the error's text (what nbclient, nbgrader and
    # labkit.visible read): give it the message too.
    value.args = (message,)
    stb = [f"NotImplementedError: {message}"]
    shell._showtraceback(etype, value, stb)
    return stb


def install() -> bool:
    """Install the handler in the running IPython shell; True when there is one."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has it already
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    shell.set_custom_exc((NotImplementedError,), _handler)
    return True
