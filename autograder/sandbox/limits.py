"""Every number the sandbox enforces, in one table.

The CLI builds one ``Limits`` from its options and passes it down (runner,
pytest plugin, fork server, sandbox); nothing below re-reads a default.
It crosses process boundaries as JSON (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

MiB, GiB = 2**20, 2**30


@dataclass(frozen=True)
class Limits:
    """What a submission may use. Times are wall-clock seconds, enforced by the grader
    from outside the student's process (it kills the process); sizes are bytes."""

    submission_seconds: float = 300.0  # all the checks of one submission
    check_seconds: float = 10.0  # one check (a check's @pytest.mark.timeout overrides it)
    cell_seconds: float = 10.0  # one answer cell at load time
    load_seconds: float = 60.0  # the lab's setup cells and every answer cell together
    start_seconds: float = 60.0  # a new sandbox: start-up and the lab's imports
    memory_bytes: int = 2 * GiB  # address space beyond what the lab's imports use (RLIMIT_AS)
    disk_bytes: int = 256 * MiB  # the sandbox's only writable folder (a tmpfs of this size)
    file_bytes: int = 64 * MiB  # one file written (RLIMIT_FSIZE)
    open_files: int = 128  # RLIMIT_NOFILE
    tasks: int = 64  # threads of the student's process (RLIMIT_NPROC; no fork at all)
    cpu_seconds: int = 600  # CPU time of the student's process (RLIMIT_CPU)
    reply_bytes: int = 64 * MiB  # one answer from the student's process, buffers included
    reply_header_bytes: int = 4 * MiB  # its JSON part (the decoder's memory is a small multiple)
    reply_depth: int = 64  # nesting of containers in one answer
    reply_nodes: int = 250_000  # values in one answer (bounds the decoder's memory)
    text_chars: int = 4000  # one string that the grader keeps from an exception or a repr

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Limits:
        data = json.loads(text)
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(unknown)}")
        return cls(**data)
