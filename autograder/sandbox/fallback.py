"""The weaker layer, used only where bubblewrap cannot run: Landlock and an audit hook.

Every report of a submission graded this way says so (``Sandbox.layer``).
Landlock (Linux >= 5.13) limits the filesystem to reading the libraries, the
lab's ``labkit`` and data, and writing the student's own temporary folder;
with ABI 4 and 6 also no TCP and no signals outside. The audit hook refuses,
in Python, subprocesses, forks, signals, sockets, reading the grader's files
and changing files outside the student's folder: best effort, since native
code, ctypes included (torch needs it), goes around it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile

from autograder.labs import REPO
from autograder.sandbox.confine import libc as confine_libc


def read_paths(data_dir: str | None) -> list[str]:
    """What a student's process may read: the interpreter, the libraries, labkit, the data."""
    repo, tmp = str(REPO), tempfile.gettempdir()

    def fenced(entry: str) -> bool:  # what must stay out of reach, and its ancestors
        entry = os.path.realpath(entry)
        return any(entry == p or entry.startswith(p + os.sep) or p.startswith(entry + os.sep)
                   for p in (repo, tmp)) or entry == os.sep

    paths = {"/usr", "/lib", "/lib64", "/bin", "/etc", str(REPO / "labs")}
    if data_dir:
        paths.add(data_dir)
    for entry in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path):
        if entry and os.path.isdir(entry) and not fenced(entry):
            paths.add(entry)
        elif entry.startswith(str(REPO / ".venv")):  # a virtual environment in the repository
            paths.add(entry)
    return sorted(p for p in paths if os.path.exists(p))


LANDLOCK_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
LANDLOCK_WRITE = ((1 << 1) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
                  | (1 << 12))  # write, remove, make dir/file/socket/fifo/symlink
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


def _landlock(read_paths, write_paths) -> str:
    """Restrict the filesystem to ``read_paths`` (read) and ``write_paths`` (read, write).

    Returns what was enforced, for the report (Linux >= 5.13 with Landlock).
    """
    libc = confine_libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return "no Landlock: filesystem limited by the audit hook only (best effort)"
    handled = LANDLOCK_READ | LANDLOCK_WRITE | (1 << 6) | (1 << 11)
    if abi >= 2:
        handled |= 1 << 13  # refer
    if abi >= 3:
        handled |= 1 << 14  # truncate
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets, signals outside the sandbox

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                      ctypes.c_uint32(0))
    if fd < 0:
        return f"Landlock refused ({os.strerror(ctypes.get_errno())}): audit hook only"
    file_rights = (1 << 0) | (1 << 1) | (1 << 2) | ((1 << 14) if abi >= 3 else 0)
    for paths, rights in ((read_paths, LANDLOCK_READ), (write_paths, handled)):
        for path in paths:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights if os.path.isdir(path) else rights & file_rights
            rule = PathBeneath(allowed, pfd)
            libc.syscall(SYS_LANDLOCK_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(1),
                         ctypes.byref(rule), ctypes.c_uint32(0))
            os.close(pfd)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required to restrict an unprivileged process
    if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
        os.close(fd)
        return f"Landlock failed ({os.strerror(ctypes.get_errno())}): audit hook only"
    os.close(fd)
    extra = ", TCP bind/connect" if net else ""
    extra += ", signals to other processes" if scoped else ""
    return f"Landlock ABI {abi}: filesystem{extra}"


_BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "sys._current_frames",
    "os.chmod", "os.chown", "os.setuid",
}


_WRITE_EVENTS = {  # events whose first argument (and a rename's second) is a path changed
    "os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.symlink", "os.link", "os.truncate",
    "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit_hook(protected: list[str], writable: list[str]):
    """Refuse, in Python, what the student's code has no business doing: the events above,
    reading the ``protected`` folders, changing files outside ``writable``. Best effort:
    native code is not seen by it, and ctypes stays allowed because torch loads its
    libraries with it; the OS limits above are the real fence."""

    def inside(path, roots) -> bool:
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def real(arg):
        if isinstance(arg, int):
            return None  # a file descriptor: already open
        try:
            return os.path.realpath(os.fsdecode(arg))
        except (TypeError, ValueError):
            return None

    def hook(event, args):
        if event in _BLOCKED_EVENTS:
            raise PermissionError(f"the grader does not allow {event} in your code.")
        if event == "open" and args:
            path = real(args[0])
            if path is None:
                return
            if inside(path, protected):
                raise PermissionError(f"your code may not read {path}.")
            mode, flags = args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else 0
            wants_write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if wants_write and not inside(path, writable):
                raise PermissionError(f"your code may not write {path}: only its own folder.")
        elif event in _WRITE_EVENTS:
            for arg in args[:2] if event in ("os.rename", "shutil.move") else args[:1]:
                path = real(arg)
                if path is not None and not inside(path, writable):
                    raise PermissionError(f"your code may not change {path}: only its own "
                                          f"folder.")

    return hook


def confine(config: dict) -> list[str]:
    """Landlock and the audit hook, from the paths in ``config``; returns what is enforced."""
    enforced = []
    tmp = config["tmp"]
    proc_self = os.path.realpath("/proc/self")
    reads = [p for p in config["read_paths"] if os.path.exists(p)]
    reads += [proc_self, "/proc/cpuinfo", "/proc/meminfo", "/dev/urandom", "/dev/random",
              "/dev/zero", "/sys/devices/system/cpu"]
    if config.get("landlock", True):
        enforced.append(_landlock(reads, [tmp, "/dev/null"]))
    protected = [os.path.realpath(p) for p in config["protected_paths"]]
    sys.addaudithook(_audit_hook(protected, [os.path.realpath(tmp), "/dev/null"]))
    enforced.append("audit hook: no subprocess, fork, signals, sockets, reading the grader's "
                    "files or changing files outside its folder (best effort: native code, "
                    "ctypes included, bypasses it)")
    return enforced
