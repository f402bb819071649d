"""The student's process: runs a submission's code and answers the grader's requests.

Started by ``autograder.sandbox.host`` (inside bubblewrap, or in the
fallback) as ``python -m autograder.sandbox.child FD LAYER MODULE...`` with a
connected socket on FD. It imports the modules the lab's setup cells import
(numpy, torch, labkit) while the grader does something else, then serves:

1. ``load``: the lab's setup cells and the limits; it runs the setup cells,
   then locks itself in (``autograder.sandbox.confine``) and discards its
   output; answers what is enforced;
2. ``run_cell``: one answer cell at a time (the grader times each from
   outside and kills the process when one runs too long);
3. ``name``, ``build_module`` and the operations on objects
   (``autograder.sandbox.protocol.Server``), until the grader hangs up.

It never holds the reference solution or the hidden checks: they are not in
its filesystem, and the grader never sends them.
"""

from __future__ import annotations

import importlib
import io
import os
import socket
import sys

from autograder.execute import AnswerSource, build_namespace
from autograder.sandbox.limits import Limits
from autograder.sandbox.protocol import Server


class DiscardedOutput(io.TextIOBase):
    """sys.stdout / sys.stderr of the student: nobody reads them, so a student printing
    a gigabyte costs the time to make the string, and no memory or disk."""

    def writable(self):
        return True

    def write(self, text):
        return len(text)


class StudentProcess:
    def __init__(self, layer: str):
        self.layer = layer
        self.namespace: dict = {}
        self.source: AnswerSource | None = None
        self.loaded = False

    def load(self, limits_json: str, source_json: str, fallback_config=None, slot: int = 0):
        """Run the lab's setup cells, then confine this process. Returns what is enforced."""
        from autograder.sandbox.confine import confine, discard_output

        if self.loaded:
            raise RuntimeError("this process was already loaded")
        self.loaded = True
        self.source = AnswerSource.from_json(source_json)
        setup_only = AnswerSource(self.source.lab, self.source.setup, [], [])
        self.namespace, _ = build_namespace(setup_only)
        # torch maps gigabytes of libraries (address space, not memory): imported before the
        # address-space limit is set, so that a student's own `import torch` fits under it
        # and the limit still counts every byte the student's code maps.
        try:
            importlib.import_module("torch")
        except ImportError:
            pass
        self._warm_up()
        enforced = confine(Limits.from_json(limits_json), self.layer, fallback_config, slot)
        discard_output()
        sys.stdout = sys.stderr = DiscardedOutput()
        return enforced

    def run_cell(self, index: int) -> list[str]:
        """Run answer cell ``index``; return the problems it had."""
        if self.source is None:
            raise RuntimeError("load first")
        one = AnswerSource(self.source.lab, [], [self.source.answers[index]], [])
        self.namespace, problems = build_namespace(one, self.namespace)
        return problems

    @staticmethod
    def _warm_up():
        # Import now what the checks' calls would import lazily later, under the limits.
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)  # one core per student process: jobs=N uses N cores
            torch.zeros(2, 2, requires_grad=True).sum().backward()
            import autograder.sandbox.modules  # noqa: F401 - lent modules, later

    def name(self, name: str):
        if type(name) is not str or name.startswith("_") or name not in self.namespace:
            return False, None
        return True, self.namespace[name]

    @staticmethod
    def build_module(spec, state_dict=None, train=None):
        from autograder.sandbox.modules import build_lent_module

        return build_lent_module(spec, state_dict, train)

    @staticmethod
    def describe_module(module):
        from autograder.sandbox.modules import describe_module

        return describe_module(module)

    @staticmethod
    def load_state(module, chunk):
        from autograder.sandbox.modules import load_state_chunk

        return load_state_chunk(module, chunk)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    layer = argv[1]
    for module in argv[2:]:  # what the setup cells import, while the grader starts up
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the setup cell will report it properly
            pass
    process = StudentProcess(layer)
    Server(sock, ops={
        "load": process.load, "run_cell": process.run_cell, "name": process.name,
        "build_module": process.build_module, "describe_module": process.describe_module,
        "load_state": process.load_state, "ping": lambda: "pong",
    }).serve_forever()
    return 0


if __name__ == "__main__":
    os._exit(main() or 0)
