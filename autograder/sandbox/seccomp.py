"""A seccomp filter for the student's process: the system calls a lab never needs.

Installed by the student's process itself (``confine``), after the lab's
imports and before the first answer cell, so that the imports may start
threads and load libraries. With it, the process can run threads (torch needs
them) but never a second process (so the address-space limit bounds all its
memory), never a program, and never a new namespace, mount, tracer or kernel
object that could reach outside bubblewrap's walls.

The filter is classic BPF, built here from the kernel's constants; a call
that is refused fails with EPERM (clone3 with ENOSYS, so that the C library
falls back to clone, whose flags the filter can read). A system call of
another architecture's table (i386 or x32 calls on x86_64) kills the process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

# linux/filter.h, linux/seccomp.h, linux/audit.h
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
BPF_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SYSCALL_SECCOMP = {"x86_64": 317, "aarch64": 277}
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0_LOW = 0, 4, 16  # struct seccomp_data, little-endian
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000

# What is refused, per architecture: (audit arch, {name: number}). The numbers are the
# kernel's (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h);
# tests/test_sandbox.py compares them with this machine's headers.
_REFUSED = (
    # processes and programs: threads only (clone with CLONE_THREAD), checked below
    "fork", "vfork", "execve", "execveat",
    # namespaces, mounts, roots: bubblewrap's walls stay where they are
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # other processes' memory, the kernel's keyrings, BPF, perf, userfaultfd, io_uring
    "ptrace", "process_vm_readv", "process_vm_writev", "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    # memory that the address-space limit would not count: memfd, SysV shared memory,
    # semaphores and message queues, POSIX message queues (they outlive a detach)
    "memfd_create", "memfd_secret", "shmget", "shmat", "shmctl", "shmdt", "semget", "semop",
    "semctl", "semtimedop", "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open",
    # new sockets (the grader's connection is inherited, not made)
    "socket", "socketpair",
    # the machine itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct",
)
ARCHES = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "memfd_create": 319, "memfd_secret": 447, "socket": 41,
        "socketpair": 53, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167,
        "swapoff": 168, "acct": 163, "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67,
        "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69,
        "msgrcv": 70, "msgctl": 71, "mq_open": 240,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "execve": 221, "execveat": 281, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "keyctl": 219, "add_key": 217, "request_key": 218,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
        "memfd_create": 279, "memfd_secret": 447, "socket": 198, "socketpair": 199,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
        "msgget": 186, "msgctl": 187, "msgrcv": 188, "msgsnd": 189, "semget": 190,
        "semctl": 191, "semtimedop": 192, "semop": 193, "shmget": 194, "shmctl": 195,
        "shmat": 196, "shmdt": 197, "mq_open": 180,
    }),
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def build_filter(machine: str | None = None) -> bytes:
    """The BPF program (struct sock_filter[]) for ``machine`` (default: this one)."""
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise OSError(f"no seccomp table for {machine}")
    arch, numbers = ARCHES[machine]
    errno_eperm = SECCOMP_RET_ERRNO | 1
    errno_enosys = SECCOMP_RET_ERRNO | 38
    refused = [numbers[name] for name in _REFUSED if name in numbers]
    prog = [
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        _insn(BPF_JEQ_K, 1, 0, arch),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    if machine == "x86_64":  # x32 calls are the same numbers with a high bit
        prog += [_insn(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
                 _insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    prog += [_insn(BPF_JEQ_K, 0, 1, numbers["clone3"]), _insn(BPF_RET_K, 0, 0, errno_enosys)]
    for nr in refused:
        prog += [_insn(BPF_JEQ_K, 0, 1, nr), _insn(BPF_RET_K, 0, 0, errno_eperm)]
    # clone: allowed only for a thread (CLONE_THREAD in its flags, the first argument).
    prog += [
        _insn(BPF_JEQ_K, 0, 3, numbers["clone"]),
        _insn(BPF_LD_W_ABS, 0, 0, OFFSET_ARG0_LOW),
        _insn(BPF_JSET_K, 1, 0, CLONE_THREAD),
        _insn(BPF_RET_K, 0, 0, errno_eperm),
        _insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> str:
    """Install the filter on this process (and its future threads). Raises OSError."""
    program = build_filter()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    # seccomp(2) with TSYNC: the threads the lab's imports started (torch's) get it too.
    libc.syscall.restype = ctypes.c_long
    nr = SYSCALL_SECCOMP[platform.machine()]
    if libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                    ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(errno)}")
    return (f"seccomp: threads only (no fork, no programs), no namespaces, mounts, ptrace, "
            f"memfd, SysV IPC, message queues, new sockets, BPF or keyrings "
            f"({len(program) // 8} BPF instructions)")
