"""Landlock: confining a process's filesystem access to a few paths (Linux 5.13+).

A Landlock ruleset names the access rights it *handles*; once the process is
restricted to it (``landlock_restrict_self``), every handled right is denied
except beneath the paths a rule grants it on. A process can only add rulesets,
never lift one, and its children and the threads it starts later inherit them.
(Threads that already run are not covered: restrict before starting any.)

Best effort, per the kernel's documentation: ask the kernel for its ABI version
and handle every right that version knows, so an older kernel enforces what it
can and a newer one no less than we ask. What each ABI adds here:

====  ================================================================
 1    filesystem rights: execute, read/write files, read directories, make and remove
 2    ``REFER``: link or rename into another directory
 3    ``TRUNCATE``
 4    TCP ``bind``/``connect`` (handled and granted on no port: no TCP at all)
 5    ``IOCTL_DEV``: ioctl on device files
 6    scopes: no signals to, and no abstract Unix sockets of, processes outside
====  ================================================================

Only ``stat``-like calls, and the paths to an already open descriptor, escape a
filesystem ruleset: it governs opening, creating, removing and renaming.
Special filesystems a process cannot name a path in (pipes, sockets, ``memfd``)
are not subject to it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Iterable

from .seccomp import libc as _libc
from .seccomp import no_new_privs

__all__ = [
    "DIR_READ",
    "DIR_WRITE",
    "FILE_READ",
    "FILE_WRITE",
    "LandlockError",
    "Rule",
    "abi_version",
    "restrict",
]

# Syscall numbers: the same on every architecture (asm-generic numbering, 5.13+).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# LANDLOCK_ACCESS_FS_*
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights a rule on a file (not a directory) may grant."""
# LANDLOCK_ACCESS_NET_* (ABI 4) and LANDLOCK_SCOPE_* (ABI 6)
_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL

FILE_READ = READ_FILE
FILE_WRITE = READ_FILE | WRITE_FILE | TRUNCATE
DIR_READ = READ_FILE | READ_DIR
"""Read a directory and every file beneath it."""
DIR_WRITE = (
    DIR_READ | WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM
    | REFER
)  # fmt: skip
"""What a read-write WASI preopen allows: read, write, create and remove files,
directories and symlinks, and rename or link them within it. Not devices, FIFOs,
sockets, or executing anything."""

_RULESET_ATTR = struct.Struct("=QQQ")  # handled_access_fs, handled_access_net, scoped
_PATH_BENEATH = struct.Struct("=Qi")  # allowed_access, parent_fd (packed)


class LandlockError(OSError):
    """The kernel refused a Landlock call."""


Rule = tuple[int, int]
"""``(open descriptor of a file or directory, access rights beneath it)``."""


def _check(rc: int, what: str) -> int:
    if rc < 0:
        code = ctypes.get_errno()
        raise LandlockError(code, f"{what}: {os.strerror(code)}")
    return rc


def abi_version() -> tuple[int, str]:
    """``(ABI version, why 0)``: the kernel's Landlock ABI, 0 where there is none.

    The reason names what the kernel said: ``ENOSYS`` (not built in: Linux before
    5.13, or no ``CONFIG_SECURITY_LANDLOCK``), ``EOPNOTSUPP`` (built in, but not
    enabled at boot: ``lsm=`` lacks ``landlock``).
    """
    rc = _libc().syscall(ctypes.c_long(_CREATE_RULESET), None, ctypes.c_long(0),
                         ctypes.c_long(_CREATE_RULESET_VERSION))  # fmt: skip
    if rc >= 0:
        return int(rc), ""
    code = ctypes.get_errno()
    if code == errno.ENOSYS:
        return 0, "the kernel has no Landlock (Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)"
    if code == errno.EOPNOTSUPP:
        return 0, "Landlock is not enabled at boot (add landlock to the lsm= kernel parameter)"
    return 0, f"landlock_create_ruleset: {os.strerror(code)}"


def _handled(abi: int) -> tuple[int, int, int]:
    """``(fs, net, scoped)`` rights an ABI version knows."""
    fs = _FS_BY_ABI[max(v for v in _FS_BY_ABI if v <= abi)]
    return fs, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0


def restrict(rules: Iterable[Rule], abi: int) -> None:
    """Restrict this thread, and every process and thread it starts later, to ``rules``.

    Every right ``abi`` knows is handled: denied except beneath a rule that grants
    it (rights the ABI does not know are dropped from the rules; a rule on a file
    keeps only file rights). TCP is denied on every port (ABI 4+), and signals and
    abstract Unix sockets reach no process outside the sandbox (ABI 6+). Sets
    ``no_new_privs`` first.

    Args:
        rules: Descriptors and their rights (the caller closes the descriptors).
        abi: The ABI to use, from :func:`abi_version` (1 or more).

    Raises:
        LandlockError: the kernel refused the ruleset, a rule, or the restriction.
    """
    fs, net, scoped = _handled(abi)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct grew with ABI 4 and 6
    attr = ctypes.create_string_buffer(_RULESET_ATTR.pack(fs, net, scoped), _RULESET_ATTR.size)
    libc = _libc()
    ruleset = _check(
        libc.syscall(ctypes.c_long(_CREATE_RULESET), attr, ctypes.c_long(size), ctypes.c_long(0)),
        "landlock_create_ruleset",
    )
    try:
        for fd, access in rules:
            allowed = access & fs
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                allowed &= _FILE_ONLY
            if not allowed:
                continue
            rule = ctypes.create_string_buffer(_PATH_BENEATH.pack(allowed, fd), _PATH_BENEATH.size)
            _check(
                libc.syscall(ctypes.c_long(_ADD_RULE), ctypes.c_long(ruleset),
                             ctypes.c_long(_RULE_PATH_BENEATH), rule, ctypes.c_long(0)),
                "landlock_add_rule",
            )  # fmt: skip
        no_new_privs()
        _check(
            libc.syscall(ctypes.c_long(_RESTRICT_SELF), ctypes.c_long(ruleset), ctypes.c_long(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)
