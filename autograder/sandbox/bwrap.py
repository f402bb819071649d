"""The bubblewrap command line that walls in a student's process.

bubblewrap (``bwrap``, Debian's ``bubblewrap``, the sandbox Flatpak uses)
makes the walls; this module only configures it:

- new pid, network, IPC, UTS and (where possible) cgroup namespaces: the
  process sees only itself, has no network at all (not even loopback up),
  and nothing it starts survives bubblewrap's pid 1 (``--die-with-parent``,
  and a new session so that it cannot reach the grader's terminal);
- a fresh mount namespace whose root is empty but for read-only binds of what
  the lab needs: ``/usr`` (the system's libraries), the Python installation and
  its virtual environment, the lab's ``labkit`` and notebooks, the data, and
  the few grader modules the student's process runs (``autograder.sandbox``,
  ``autograder.execute``, ``autograder.labs``); never the hidden checks, the
  reference solution, the grades or ``/etc``;
- ``/tmp``, a tmpfs of ``Limits.disk_bytes``, as its only writable folder;
- started by root: every capability dropped but setuid, setgid and setpcap,
  which the process uses once to leave uid 0 for an unprivileged uid and
  empty its bounding set (``confine``);
  started by a user: a user namespace, with further ones disabled.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.labs import REPO

SANDBOX_TMP = "/tmp"
# Grader files the student's process needs (it runs autograder.sandbox.child): nothing else
# of the repository's autograder/ is visible inside.
GRADER_FILES = ("autograder/__init__.py", "autograder/labs.py", "autograder/execute.py",
                "autograder/sandbox")


def executable() -> str | None:
    return shutil.which("bwrap")


def _python_paths() -> list[str]:
    """The Python installation and the virtual environment (read-only inside)."""
    paths = set()
    for entry in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix):
        if entry and os.path.isdir(entry):
            paths.add(os.path.realpath(entry))
            paths.add(os.path.abspath(entry))
    for entry in sys.path:  # a site-packages outside the prefixes (a user site)
        real = os.path.realpath(entry) if entry else ""
        if os.path.basename(real) in ("site-packages", "dist-packages") and os.path.isdir(real):
            paths.add(real)
    venv = REPO / ".venv"
    if venv.is_dir():
        paths.add(str(venv))
    return sorted(paths)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def command(argv: list[str], env: dict, limits, data_dir: str | None) -> list[str]:
    """The bwrap command that runs ``argv`` walled in, with environment ``env``."""
    args = [executable() or "bwrap",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox",
            "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        # Kept only for confine.drop_root: leave uid 0, then empty the bounding set.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP"]
    else:
        from autograder.sandbox.confine import SANDBOX_GID, SANDBOX_UID

        # Run by a user, bubblewrap's own pid 1 inside would have the student's uid (and
        # its memory open to /proc/1/mem): the student's process is pid 1 instead. (As
        # root, bubblewrap's pid 1 is root's, out of the student's reach.)
        args += ["--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID),
                 "--gid", str(SANDBOX_GID), "--as-pid-1"]
    args += _system_binds()
    # The sized tmpfs first: binds below /tmp (a repository cloned there) are then mounted
    # inside it, instead of being hidden by it.
    args += ["--perms", "1777", "--size", str(int(limits.disk_bytes)), "--tmpfs", SANDBOX_TMP]
    wanted = [*_python_paths(), *(str(REPO / rel) for rel in GRADER_FILES), str(REPO / "labs")]
    if data_dir:
        wanted.append(str(Path(data_dir).resolve()))
    bound: list[str] = []
    for path in wanted:
        if os.path.exists(path) and not any(path == b or path.startswith(b + os.sep)
                                            for b in bound):
            bound.append(path)
    # The folders above the binds, made searchable: bubblewrap would make them 0700, which
    # the unprivileged uid cannot cross once the process has left root.
    above = sorted({str(parent) for path in bound for parent in Path(path).parents
                    if str(parent) != "/" and not str(parent).startswith("/usr")} - set(bound))
    for folder in above:
        args += ["--perms", "0755", "--dir", folder]
    for path in bound:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev",
             # The root and /dev are tmpfs of bubblewrap's that the sandbox's uid owns when
             # run by a user: read-only, so the sized /tmp is the only place to write.
             "--remount-ro", "/dev", "--remount-ro", "/",
             "--chdir", SANDBOX_TMP, "--clearenv"]
    for key, value in sorted(env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", *argv]


@functools.cache
def usable() -> tuple[bool, str]:
    """Can bubblewrap run here (installed, namespaces allowed)? (yes or no, why not)."""
    exe = executable()
    if exe is None:
        return False, "bubblewrap is not installed (Debian/Ubuntu: apt install bubblewrap)"
    from autograder.sandbox.limits import Limits

    probe = command(["/bin/true"] if os.path.exists("/bin/true") else ["/usr/bin/true"], {},
                    Limits(), None)
    try:
        result = subprocess.run(probe, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bubblewrap could not start ({e})"
    if result.returncode != 0:
        why = result.stderr.decode("utf-8", "replace").strip()[-300:]
        return False, f"bubblewrap cannot create its namespaces here ({why})"
    return True, ""
