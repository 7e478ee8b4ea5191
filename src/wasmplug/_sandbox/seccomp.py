"""The worker process's system-call filter: a seccomp-bpf program, built from a table.

A process-isolated plugin's worker runs wasmtime, and through it native code the
guest may one day subvert. This filter takes away the system calls a plugin worker
never makes and an attacker in it would want: starting programs and processes,
leaving its process group, reaching other processes, opening sockets, and the
kernel's administrative and attack-surface calls (:data:`POLICY`).

Why a deny-list over a default of allow: the worker is CPython plus wasmtime, whose
set of system calls is large and changes with each version of either (and of
glibc); an allow-list that missed one would kill a worker in the field on an
upgrade. What is denied is the set of calls that cross the process's boundary;
everything left acts on the process itself (memory, its own files and threads),
and the filesystem is confined separately (:mod:`.landlock`).

The program (classic BPF over ``struct seccomp_data``: ``nr`` at offset 0, ``arch``
at 4, ``args[i]`` at ``16 + 8*i``, low half first on these little-endian arches)::

    arch != this table's arch          -> KILL_PROCESS (a 32-bit syscall ABI, say)
    nr >= 0x40000000 (x86_64)          -> ERRNO(EPERM)  (the x32 ABI)
    for each rule, in table order:
      nr == rule's call  -> its action, checked on the call's arguments
    otherwise                          -> ALLOW

Actions (:class:`Action`):

* ``DENY``: ``EPERM``, so the caller gets a clean error (``PermissionError``);
* ``NOSYS``: ``ENOSYS`` (``clone3``: glibc's ``pthread_create`` then falls back
  to ``clone``, whose flags a filter can read; ``clone3`` passes them in memory);
* ``THREADS``: ``clone`` only for a thread (``CLONE_THREAD`` set, no namespace
  flag), else ``EPERM``: so ``fork`` and ``vfork`` through ``clone`` are denied too;
* ``SELF``: allowed only when argument 0 (the target pid or thread group) is the
  worker's own pid (``kill``, ``tgkill``...): a plugin may signal itself (``abort``),
  not the application or anything else of the same user;
* ``SELF_OR_0``: as ``SELF``, or 0 (``this process``: ``prlimit64``,
  ``sched_setaffinity``...);
* ``COMMANDS``: ``EPERM`` for the commands (argument 1, or 0 for ``prctl``) that
  :data:`DENIED_COMMANDS` lists for the call, else allowed (``fcntl``, ``ioctl``,
  ``prctl``).

Only the low 32 bits of an argument are compared: each one checked is a C ``int``
(``pid_t``, a command; clone's flags are an ``unsigned long`` whose high bits the kernel
rejects), which the kernel truncates the same way.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import functools
import platform
import struct
from collections.abc import Mapping

__all__ = [
    "ARCHES",
    "DENIED_COMMANDS",
    "POLICY",
    "Action",
    "Arch",
    "SeccompError",
    "build_filter",
    "host_arch",
    "install_filter",
    "libc",
    "no_new_privs",
]


class SeccompError(OSError):
    """The kernel refused the filter (no seccomp, or a thread could not be synchronised)."""


class Action(enum.Enum):
    """What the filter does with one system call (see the module docstring)."""

    DENY = "deny"
    NOSYS = "nosys"
    THREADS = "threads"
    SELF = "self"
    SELF_OR_0 = "self-or-0"
    COMMANDS = "commands"


_D, _N, _T, _S, _S0 = Action.DENY, Action.NOSYS, Action.THREADS, Action.SELF, Action.SELF_OR_0
_C = Action.COMMANDS

F_SETOWN, F_SETOWN_EX = 8, 15
FIOSETOWN, SIOCSPGRP, TIOCSTI = 0x8901, 0x8902, 0x5412
PR_SET_PDEATHSIG = 1
DENIED_COMMANDS: Mapping[str, tuple[int, tuple[int, ...]]] = {
    # Making another process the owner of a descriptor: the kernel then signals it
    # (SIGIO, or any signal F_SETSIG names) whenever I/O is ready, with the owner's
    # permission to signal checked against the worker's own user.
    "fcntl": (1, (F_SETOWN, F_SETOWN_EX)),
    # The same through ioctl, and typing into a terminal (TIOCSTI).
    "ioctl": (1, (FIOSETOWN, SIOCSPGRP, TIOCSTI)),
    # Clearing the death signal the worker set at start, to outlive the application.
    "prctl": (0, (PR_SET_PDEATHSIG,)),
}
"""For ``COMMANDS``: ``(argument index, the values of it that are denied)``."""

POLICY: Mapping[str, Action] = {
    # New programs and processes (fork and vfork through clone too: THREADS).
    "execve": _D, "execveat": _D, "fork": _D, "vfork": _D,
    "clone": _T, "clone3": _N,
    # Leaving the process group that close() kills.
    "setsid": _D, "setpgid": _D,
    # Reaching other processes of the same user.
    "ptrace": _D, "process_vm_readv": _D, "process_vm_writev": _D, "process_madvise": _D,
    "kcmp": _D, "pidfd_open": _D, "pidfd_getfd": _D, "pidfd_send_signal": _D,
    "get_robust_list": _D, "move_pages": _D, "migrate_pages": _D,
    "setpriority": _D, "ioprio_set": _D,
    "kill": _S, "tgkill": _S, "rt_sigqueueinfo": _S, "rt_tgsigqueueinfo": _S, "tkill": _D,
    "fcntl": _C, "ioctl": _C, "prctl": _C,
    # System V IPC: segments, queues and semaphores of other processes of the user.
    "shmget": _D, "shmat": _D, "shmctl": _D, "shmdt": _D, "msgget": _D, "msgsnd": _D,
    "msgrcv": _D, "msgctl": _D, "semget": _D, "semop": _D, "semtimedop": _D, "semctl": _D,
    # Permissions, owners and extended attributes of any file the user owns: Landlock
    # does not govern them, and WASI cannot ask for them.
    "chmod": _D, "fchmod": _D, "fchmodat": _D, "fchmodat2": _D, "chown": _D, "fchown": _D,
    "lchown": _D, "fchownat": _D, "setxattr": _D, "lsetxattr": _D, "fsetxattr": _D,
    "setxattrat": _D, "removexattr": _D, "lremovexattr": _D, "fremovexattr": _D,
    "removexattrat": _D,
    "prlimit64": _S0, "sched_setaffinity": _S0,
    # Scheduling policy and priority, of any process: a real-time policy for itself
    # (allowed for root) would starve the application's threads on a small machine.
    "sched_setparam": _D, "sched_setscheduler": _D, "sched_setattr": _D,
    # Sockets: the worker's one channel is inherited; WASI sockets are not linked with
    # any address allowed, and HTTP runs in the application (over the channel).
    "socket": _D,
    # Namespaces, mounts, and the kernel's administrative and attack-surface calls.
    "unshare": _D, "setns": _D, "mount": _D, "umount2": _D, "pivot_root": _D, "chroot": _D,
    "open_tree": _D, "move_mount": _D, "fsopen": _D, "fsconfig": _D, "fsmount": _D,
    "fspick": _D, "mount_setattr": _D, "open_by_handle_at": _D, "name_to_handle_at": _D,
    "bpf": _D, "perf_event_open": _D, "userfaultfd": _D, "keyctl": _D, "add_key": _D,
    "request_key": _D, "io_uring_setup": _D, "io_uring_enter": _D, "io_uring_register": _D,
    "fanotify_init": _D, "personality": _D, "syslog": _D, "quotactl": _D, "acct": _D,
    "kexec_load": _D, "kexec_file_load": _D, "init_module": _D, "finit_module": _D,
    "delete_module": _D, "reboot": _D, "swapon": _D, "swapoff": _D, "vhangup": _D,
    "sethostname": _D, "setdomainname": _D, "settimeofday": _D, "clock_settime": _D,
    "adjtimex": _D, "clock_adjtime": _D, "iopl": _D, "ioperm": _D, "uselib": _D,
}  # fmt: skip
"""System call name -> action. A name an arch does not have (``fork`` on aarch64) is
skipped for it."""


class Arch:
    """One architecture's syscall table.

    Attributes:
        name: ``platform.machine()`` of it.
        audit: Its ``AUDIT_ARCH_*`` value (``seccomp_data.arch``).
        numbers: System call name -> number, for every name in :data:`POLICY` it has,
            plus ``seccomp`` (used to install the filter).
        x32_bit: Numbers at or above this are another ABI sharing the arch value
            (x86_64's x32), denied outright; ``None`` if there is none.
    """

    def __init__(
        self, name: str, audit: int, numbers: Mapping[str, int], x32_bit: int | None = None
    ) -> None:
        self.name = name
        self.audit = audit
        self.numbers = dict(numbers)
        self.x32_bit = x32_bit


# From <asm/unistd_64.h> and <asm-generic/unistd.h>; tests compare them with the headers.
_X86_64 = Arch(
    "x86_64",
    0xC000003E,  # AUDIT_ARCH_X86_64: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    {
        "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "clone": 56, "clone3": 435,
        "setsid": 112, "setpgid": 109, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "process_madvise": 440, "kcmp": 312, "pidfd_open": 434,
        "pidfd_getfd": 438, "pidfd_send_signal": 424, "get_robust_list": 274,
        "move_pages": 279, "migrate_pages": 256, "setpriority": 141, "ioprio_set": 251,
        "kill": 62, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "tkill": 200, "fcntl": 72, "ioctl": 16, "prctl": 157, "shmget": 29, "shmat": 30,
        "shmctl": 31,
        "shmdt": 67, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semget": 64,
        "semop": 65, "semtimedop": 220, "semctl": 66, "chmod": 90, "fchmod": 91,
        "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94,
        "fchownat": 260, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
        "setxattrat": 463, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
        "removexattrat": 466, "prlimit64": 302, "sched_setaffinity": 203, "sched_setparam": 142,
        "sched_setscheduler": 144, "sched_setattr": 314, "socket": 41, "unshare": 272,
        "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "fanotify_init": 300,
        "personality": 135, "syslog": 103, "quotactl": 179, "acct": 163, "kexec_load": 246,
        "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
        "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "vhangup": 153,
        "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227,
        "adjtimex": 159, "clock_adjtime": 305, "iopl": 172, "ioperm": 173, "uselib": 134,
        "seccomp": 317,
    },
    x32_bit=0x40000000,
)  # fmt: skip
_AARCH64 = Arch(
    "aarch64",
    0xC00000B7,  # AUDIT_ARCH_AARCH64: EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    {
        "execve": 221, "execveat": 281, "clone": 220, "clone3": 435, "setsid": 157,
        "setpgid": 154, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "process_madvise": 440, "kcmp": 272, "pidfd_open": 434, "pidfd_getfd": 438,
        "pidfd_send_signal": 424, "get_robust_list": 100, "move_pages": 239,
        "migrate_pages": 238, "setpriority": 140, "ioprio_set": 30, "kill": 129,
        "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240, "tkill": 130,
        "fcntl": 25, "ioctl": 29, "prctl": 167, "shmget": 194, "shmat": 196, "shmctl": 195,
        "shmdt": 197,
        "msgget": 186, "msgsnd": 189, "msgrcv": 188, "msgctl": 187, "semget": 190,
        "semop": 193, "semtimedop": 192, "semctl": 191, "fchmod": 52, "fchmodat": 53,
        "fchmodat2": 452, "fchown": 55, "fchownat": 54, "setxattr": 5, "lsetxattr": 6,
        "fsetxattr": 7, "setxattrat": 463, "removexattr": 14, "lremovexattr": 15,
        "fremovexattr": 16, "removexattrat": 466,
        "prlimit64": 261, "sched_setaffinity": 122, "sched_setparam": 118,
        "sched_setscheduler": 119, "sched_setattr": 274, "socket": 198, "unshare": 97,
        "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "open_by_handle_at": 265,
        "name_to_handle_at": 264, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "keyctl": 219, "add_key": 217, "request_key": 218, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "fanotify_init": 262,
        "personality": 92, "syslog": 116, "quotactl": 60, "acct": 89, "kexec_load": 104,
        "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
        "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "vhangup": 58,
        "sethostname": 161, "setdomainname": 162, "settimeofday": 170, "clock_settime": 112,
        "adjtimex": 171, "clock_adjtime": 266, "seccomp": 277,
    },
)  # fmt: skip

ARCHES: Mapping[str, Arch] = {a.name: a for a in (_X86_64, _AARCH64)}
"""The architectures with a table, by ``platform.machine()``."""


def host_arch() -> Arch | None:
    """This machine's table, or ``None`` when there is none (the filter is not applied)."""
    if struct.calcsize("P") != 8:  # a 32-bit Python on a 64-bit kernel: other numbers
        return None
    return ARCHES.get(platform.machine())


# -- classic BPF ----------------------------------------------------------------------------

_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000

_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    return 16 + 8 * i  # the low 32 bits of args[i] (little-endian)


CLONE_THREAD = 0x00010000
CLONE_NEW_MASK = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: a thread
never asks for a namespace."""

_Insn = tuple[int, int, int, int]


def _ret(value: int) -> _Insn:
    return (_RET, 0, 0, value)


def _errno(code: int) -> _Insn:
    return _ret(RET_ERRNO | code)


def _body(action: Action, pid: int, commands: tuple[int, tuple[int, ...]] = (0, ())) -> list[_Insn]:
    """What runs once ``nr`` matched: ends in a return on every path."""
    deny = _errno(errno.EPERM)
    if action is Action.DENY:
        return [deny]
    if action is Action.NOSYS:
        return [_errno(errno.ENOSYS)]
    if action is Action.THREADS:
        return [
            (_LD_ABS, 0, 0, _arg(0)),
            (_JSET, 0, 2, CLONE_THREAD),  # no CLONE_THREAD: a process
            (_JSET, 1, 0, CLONE_NEW_MASK),  # a namespace
            _ret(RET_ALLOW),
            deny,
        ]
    if action is Action.COMMANDS:  # each jeq jumps to the deny at the end
        arg, values = commands
        n = len(values)
        return [
            (_LD_ABS, 0, 0, _arg(arg)),
            *((_JEQ, n - i, 0, value) for i, value in enumerate(values)),
            _ret(RET_ALLOW),
            deny,
        ]
    if action is Action.SELF:
        return [(_LD_ABS, 0, 0, _arg(0)), (_JEQ, 0, 1, pid), _ret(RET_ALLOW), deny]
    assert action is Action.SELF_OR_0
    return [
        (_LD_ABS, 0, 0, _arg(0)),
        (_JEQ, 1, 0, pid),
        (_JEQ, 0, 1, 0),
        _ret(RET_ALLOW),
        deny,
    ]


def build_filter(arch: Arch, pid: int, policy: Mapping[str, Action] = POLICY) -> bytes:
    """The filter program for ``arch``, for the process ``pid``, as ``struct sock_filter``s.

    Raises:
        ValueError: a jump or the program is longer than classic BPF allows.
    """
    prog: list[_Insn] = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, arch.audit),
        _ret(RET_KILL_PROCESS),
        (_LD_ABS, 0, 0, _NR),
    ]
    if arch.x32_bit is not None:
        prog += [(_JGE, 0, 1, arch.x32_bit), _errno(errno.EPERM)]
    for name, action in policy.items():
        nr = arch.numbers.get(name)
        if nr is None:
            continue
        body = _body(action, pid, DENIED_COMMANDS.get(name, (0, ())))
        # nr == call: fall into the body, which returns on every path; else jump over
        # it, to the next test with nr still loaded.
        prog += [(_JEQ, 0, len(body), nr), *body]
    prog.append(_ret(RET_ALLOW))
    if len(prog) > 4096:  # BPF_MAXINSNS
        raise ValueError(f"seccomp filter of {len(prog)} instructions is too long")
    return b"".join(_INSN.pack(*insn) for insn in prog)


# -- installing it --------------------------------------------------------------------------

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, with ``errno`` kept for :func:`ctypes.get_errno` and ``syscall``
    returning a ``long`` (for this module, :mod:`.landlock` and the worker's jail)."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


def no_new_privs() -> None:
    """``prctl(PR_SET_NO_NEW_PRIVS, 1)``: needed by seccomp and Landlock without privileges.

    Raises:
        SeccompError: the kernel refused it.
    """
    if libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise SeccompError(code, f"PR_SET_NO_NEW_PRIVS: {errno.errorcode.get(code, code)}")


def install_filter(arch: Arch, program: bytes) -> None:
    """Load ``program`` for every thread of this process (``SECCOMP_FILTER_FLAG_TSYNC``).

    Sets ``no_new_privs`` first. The filter cannot be removed; filters added later
    can only deny more.

    Raises:
        SeccompError: the kernel refused the filter (``EINVAL``: no seccomp filter
            support; a thread id: that thread could not be synchronised).
    """
    no_new_privs()
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _INSN.size, ctypes.cast(buf, ctypes.c_void_p))
    rc = libc().syscall(
        ctypes.c_long(arch.numbers["seccomp"]),
        ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(prog),
    )
    if rc != 0:
        code = ctypes.get_errno() if rc < 0 else 0
        why = errno.errorcode.get(code, str(code)) if rc < 0 else f"thread {rc} not synchronised"
        raise SeccompError(code, f"seccomp(SECCOMP_SET_MODE_FILTER): {why}")
