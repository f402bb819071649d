"""The confinement steps the student's process takes on itself before any answer cell.

Run by ``autograder.sandbox.child`` after the lab's imports, in this order;
each step checks its system calls' results and raises ``ConfinementError``
when one fails (the grader then reports a grader error: never the student's
fault, never a silently weaker sandbox):

1. resource limits (``Limits``): address space beyond what the imports use
   (RLIMIT_AS: every mapping counts, shared ones included), one file's size,
   open files, CPU seconds, threads, no core dumps;
2. inside bubblewrap as root: leave uid 0 for an unprivileged uid of its own
   (so that RLIMIT_NPROC binds and no file is root's), every capability gone;
3. the seccomp filter (``autograder.sandbox.seccomp``): threads only, no
   programs, namespaces, mounts, ptrace, memfd or new sockets;
4. only in the fallback (no bubblewrap): Landlock and an audit hook.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

from autograder.sandbox import seccomp

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
CAP_LAST = 63
EINVAL = 22
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# The uids the student's processes take when bubblewrap started them as root: not users of
# this machine (no file belongs to them), so only "other" permissions apply; one per
# sandbox (SANDBOX_UID + a number the grader picks), so that RLIMIT_NPROC counts each
# sandbox's threads alone and no sandbox can signal another.
SANDBOX_UID = SANDBOX_GID = 2_000_000_000
SANDBOX_UIDS = 100_000_000

_libc = None


class ConfinementError(OSError):
    """A confinement step failed: the submission must not run."""


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise ConfinementError(errno, f"{what}: {os.strerror(errno)}")


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: this process gets SIGKILL when the process that started it ends."""
    _check(libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def set_rlimits(limits) -> list[str]:
    """Resource limits from ``limits``; returns what is enforced."""
    address_space = _vm_size() + int(limits.memory_bytes)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not the process
    for name, value in (("RLIMIT_AS", address_space), ("RLIMIT_FSIZE", limits.file_bytes),
                        ("RLIMIT_NOFILE", limits.open_files), ("RLIMIT_CORE", 0),
                        ("RLIMIT_NPROC", limits.tasks)):
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))
    cpu = int(limits.cpu_seconds)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    return [f"memory: {limits.memory_bytes / 2**30:g} GiB of address space beyond the lab's "
            f"imports and torch's (RLIMIT_AS, shared mappings included)",
            f"files written up to {limits.file_bytes // 2**20} MiB each, {limits.open_files} open "
            f"files, {limits.tasks} threads, {cpu} s of CPU (RLIMIT_FSIZE, NOFILE, NPROC, CPU)"]


def _capset_zero() -> None:
    """Empty the effective, permitted and inheritable capability sets (capset v3)."""
    import platform

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    _check(libc().syscall(SYS_CAPSET[platform.machine()],
                          ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")


def _drop_bounding_set() -> None:
    """Drop every capability from the bounding set (needs CAP_SETPCAP): none can come back."""
    for cap in range(CAP_LAST + 1):
        if libc().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != EINVAL:
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")  # EINVAL: no such capability


def _capabilities() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {k: int(v, 16) for k, v in (line.split(":", 1) for line in f)
                if k.startswith("Cap")}


def drop_root(slot: int) -> str:
    """As uid 0 (bubblewrap started by root): become SANDBOX_UID + slot, with no capability
    left in any set, the bounding set included."""
    uid = SANDBOX_UID + int(slot) % SANDBOX_UIDS
    _drop_bounding_set()
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _capset_zero()
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise ConfinementError(1, "still uid or gid 0 after setresuid")
    left = {k: hex(v) for k, v in _capabilities().items() if v}
    if left:
        raise ConfinementError(1, f"capabilities left after dropping root: {left}")
    return f"runs as uid {uid} (no user of this machine, its own), no capabilities"


def drop_capabilities() -> str:
    """Fallback as root outside bubblewrap: uid 0 with every capability dropped."""
    _drop_bounding_set()
    _capset_zero()
    return "runs as root with every capability dropped"


def discard_output() -> None:
    """The student's stdout and stderr go nowhere: nobody reads them (fds 1 and 2 too, so
    native code printing cannot fill a pipe or a disk)."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)


def confine(limits, layer: str, fallback_config: dict | None = None, slot: int = 0
            ) -> list[str]:
    """Lock this process in; return the list of what is enforced.

    Inputs:
    - limits: the ``Limits``.
    - layer: "bubblewrap" (the walls are already up: namespaces, mounts) or "fallback".
    - fallback_config: for the fallback, the paths Landlock and the audit hook allow.
    - slot: this sandbox's number, which picks its uid (``drop_root``).
    """
    enforced = set_rlimits(limits)
    if os.geteuid() == 0:
        enforced.append(drop_root(slot) if layer == "bubblewrap" else drop_capabilities())
    # Changing credentials clears the parent-death signal: set it again, so that this
    # process (pid 1 of its namespace: its end ends everything in it) dies with the
    # bubblewrap process the grader kills.
    die_with_parent()
    if layer == "fallback":
        from autograder.sandbox import fallback

        enforced += fallback.confine(fallback_config or {})
    try:
        enforced.append(seccomp.install())
    except OSError as e:
        if layer == "bubblewrap":
            raise ConfinementError(e.errno or 1, f"seccomp: {e}") from None
        enforced.append(f"no seccomp filter ({e})")
    sys.stdout.flush()
    sys.stderr.flush()
    return enforced
