"""The student's process: runs a submission's code and answers the grader's requests.

Started by ``autograder.sandbox`` as ``python -m autograder.sandbox_child FD``
with a connected socket on FD, in a fresh temporary directory and a minimal
environment. Its first request, ``load``, carries the lab's setup cells, the
submission's answer cells and the limits. It then:

1. runs the lab's own setup cells (its imports: numpy, torch, labkit);
2. locks itself in (``confine``): resource limits, no network, an
   unprivileged user when started as root, a filesystem view limited to the
   libraries and its own directory (Landlock), and an audit hook;
3. runs the answer cells, and serves requests until the grader hangs up.

It never imports ``solutions`` or the hidden checks: they are not on this side.
"""

from __future__ import annotations

import ctypes
import importlib
import io
import os
import resource
import signal
import socket
import sys

from autograder.execute import AnswerSource, build_namespace
from autograder.rpc import Endpoint


class CellTimeout(BaseException):
    """An answer cell ran past its time limit (a BaseException: ``except Exception``
    in the student's code cannot swallow it)."""


# --- output --------------------------------------------------------------------------------


class DiscardedOutput(io.TextIOBase):
    """sys.stdout / sys.stderr of the student: nobody reads them, so a student printing
    a gigabyte costs the time to make the string, and no memory or disk."""

    def writable(self):
        return True

    def write(self, text):
        return len(text)


# --- confinement ---------------------------------------------------------------------------

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: this process gets SIGKILL when the process that started it ends."""
    _c().prctl(1, signal.SIGKILL, 0, 0, 0)


LANDLOCK_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
LANDLOCK_WRITE = ((1 << 1) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
                  | (1 << 12))  # write, remove, make dir/file/socket/fifo/symlink
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446


def _landlock(read_paths, write_paths) -> str:
    """Restrict the filesystem to ``read_paths`` (read) and ``write_paths`` (read, write).

    Returns what was enforced, for the report (Linux >= 5.13 with Landlock).
    """
    libc = _c()
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


def _drop_capabilities():
    """Empty this process's capability sets: uid 0 without root's powers."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    for cap in range(64):  # the bounding set too, so that nothing can be regained
        _c().prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    data = (Data * 2)()
    if _c().syscall(126, ctypes.byref(Header(0x20080522, 0)), data) != 0:  # capset, v3
        raise OSError(ctypes.get_errno(), "capset failed")


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
    """Lock this process in; return the list of what is enforced."""
    enforced = []
    tmp = config["tmp"]
    # Memory: the heap and private mappings the libraries already use, plus the student's
    # share. RLIMIT_DATA, not RLIMIT_AS: torch reserves ~3 GiB of address space it never
    # uses, which would make an address-space limit meaningless or break its import.
    with open("/proc/self/status") as f:
        data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    limit = data + int(config["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    gib = config["memory_bytes"] / 2**30
    enforced.append(f"memory: {gib:g} GiB of data beyond what the lab's imports use "
                    f"(RLIMIT_DATA)")
    fsize = int(config["file_bytes"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    cpu = int(config["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    enforced.append(f"files written up to {fsize // 2**20} MiB, 256 open files, "
                    f"{cpu} s of CPU (RLIMIT_FSIZE, NOFILE, CPU)")
    if os.geteuid() == 0:
        if _c().unshare(0x40000000) == 0:  # CLONE_NEWNET: an empty network namespace
            enforced.append("no network (empty network namespace)")
        if config.get("drop_user"):
            import pwd

            nobody = pwd.getpwnam(config["drop_user"])
            os.chown(tmp, nobody.pw_uid, nobody.pw_gid)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            nproc = int(config["processes"])
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            enforced.append(f"runs as {nobody.pw_name} (uid {nobody.pw_uid}), at most {nproc} "
                            f"processes and threads (RLIMIT_NPROC)")
        else:
            _drop_capabilities()
            enforced.append("runs as root with every capability dropped (the Python "
                            "installation is not readable by nobody)")
    die_with_parent()  # the grader
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


# --- the process ---------------------------------------------------------------------------


class StudentProcess:
    def __init__(self):
        self.namespace: dict = {}

    def load(self, config: dict, source_json: str):
        """Run the setup cells, confine this process, run the answer cells.

        Returns (problems, what is enforced)."""
        source = AnswerSource.from_json(source_json)
        namespace, _ = build_namespace(AnswerSource(source.lab, source.setup, [], []))
        self._warm_up()
        enforced = confine(config)
        sys.stdout = sys.stderr = DiscardedOutput()
        problems = list(source.problems)
        seconds = float(config["cell_seconds"])

        def on_alarm(signum, frame):
            raise CellTimeout(f"it took longer than {seconds:g} s to run (an infinite loop "
                              f"or a long computation at the top level of the cell?)")

        signal.signal(signal.SIGALRM, on_alarm)
        for cell in source.answers:  # one at a time: a cell that loops costs that cell
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                one = AnswerSource(source.lab, [], [cell], [])
                namespace, cell_problems = build_namespace(one, namespace)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            problems += cell_problems
        self.namespace = namespace
        return problems, enforced

    @staticmethod
    def _warm_up():
        # Import now what the checks' calls would import lazily later, under the limits.
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)  # one core per student process: jobs=N uses N cores
            torch.zeros(2, 2, requires_grad=True).sum().backward()

    def name(self, name: str):
        if not isinstance(name, str) or name.startswith("_") or name not in self.namespace:
            return False, None
        return True, self.namespace[name]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(argv[0]))
    for module in argv[1:]:  # what the setup cells import, while the grader starts up
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the setup cell will report it properly
            pass
    process = StudentProcess()
    endpoint = Endpoint(sock, public_only=False, ops={
        "load": process.load, "name": process.name,
    })
    endpoint.serve_forever()
    return 0


if __name__ == "__main__":
    os._exit(main() or 0)
