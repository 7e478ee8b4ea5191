"""Confining a worker process: a seccomp filter and a Landlock ruleset.

A worker runs wasmtime, and native code that a guest might subvert (a wasmtime
bug) would run with everything the application's user has. So once a worker has
its settings, and before the plugin's code first runs (instantiation runs guest
code), it takes away, for itself and every thread it starts later:

* with a seccomp filter (:mod:`wasmplug._sandbox.seccomp`): new processes and
  programs, leaving its process group, reaching other processes (``ptrace``,
  their memory, signals to any pid but its own), new sockets, namespaces, mounts
  and the kernel's administrative calls;
* its capabilities, where it has any (an application run as root): all but the two
  that let it read and write its granted directories as the application can;
* with Landlock (:mod:`wasmplug._sandbox.landlock`): every file but what it
  needs, read-only (the standard library and the packages it has imported, its
  compiled component in the compile cache, ``/proc/self/status``,
  ``/dev/urandom``; ``/dev/null`` read-write) and the directories the plugin's
  grants preopen, each with the access its grant gives; TCP (ABI 4+); signals to,
  and abstract Unix sockets of, processes outside the worker (ABI 6+).

Landlock covers only the threads started after it, so it is applied while the
worker has one thread: before :class:`~.worker.Server` starts the epoch ticker.

``PluginHost(worker_confinement=...)`` chooses: ``"auto"`` applies what the
kernel supports and reports the rest (:class:`Confinement`, with a warning in
the application's log), ``"require"`` refuses to start a worker without both,
``"off"`` applies neither (a debugging escape hatch).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

from wasmplug._runtime.cache import wasmtime_version
from wasmplug._sandbox import landlock, seccomp
from wasmplug._sandbox.confinement import Confinement, ConfinementMode
from wasmplug._sandbox.grants import EffectiveSandbox

__all__ = ["ConfinementError", "confine"]


class ConfinementError(Exception):
    """``"require"``: the worker cannot be confined on this system."""


def confine(mode: ConfinementMode, cache_entry: str, sandbox: EffectiveSandbox) -> Confinement:
    """Confine this process (call it with one thread) as ``mode`` says; see the module.

    Args:
        mode: ``"auto"``, ``"require"`` or ``"off"``.
        cache_entry: The compile-cache file the worker loads its component from.
        sandbox: The plugin's effective sandbox (its preopens are granted).

    Returns:
        What was applied.

    Raises:
        ConfinementError: ``"require"``, and either mechanism is unavailable or failed.
    """
    if mode == "off":
        return Confinement(False, 0, ("turned off (worker_confinement='off')",))
    missing: list[str] = []
    wasmtime_version()  # importlib.metadata lists sys.path directories that no rule grants
    linux = sys.platform == "linux"
    if linux and _threads() != 1:
        # A bug of ours: Landlock and capabilities are per thread; these would keep theirs.
        raise ConfinementError("a worker must be confined while it has one thread")
    abi, why = landlock.abi_version() if linux else (0, "not Linux")
    if abi:
        try:
            _restrict_files(abi, cache_entry, sandbox)
        except OSError as e:
            abi, why = 0, f"the kernel refused the ruleset ({e})"
    if not abi:
        missing.append(f"landlock: {why}")
    if linux:
        try:
            _drop_capabilities()
        except OSError as e:
            missing.append(f"capabilities: {e}")
    arch = seccomp.host_arch() if linux else None
    applied = False
    if arch is None:
        missing.append(f"seccomp: no system-call table for {_machine()}")
    else:
        try:
            seccomp.install_filter(arch, seccomp.build_filter(arch, os.getpid()))
            applied = True
        except OSError as e:
            missing.append(f"seccomp: {e}")
    if mode == "require" and missing:
        raise ConfinementError("cannot confine the worker: " + "; ".join(missing))
    return Confinement(applied, abi, tuple(missing))


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CAPABILITY_VERSION_3 = 0x20080522
_KEPT_CAPABILITIES = (1 << 1) | (1 << 2)
"""CAP_DAC_OVERRIDE | CAP_DAC_READ_SEARCH: what lets a worker of an application run as
root read and write its granted directories as the application can (Landlock bounds
where); every other capability is dropped."""


def _drop_capabilities() -> None:
    """Drop every capability but :data:`_KEPT_CAPABILITIES` (a no-op without any).

    An application run as root (in a container, say) starts its workers with every
    capability: raising its own memory limit (``CAP_SYS_RESOURCE``), a real-time
    priority (``CAP_SYS_NICE``), changing user (``CAP_SETUID``), and what the seccomp
    filter does not list of ``CAP_SYS_ADMIN``. None can come back: the worker cannot
    ``execve``, and ``no_new_privs`` is set.

    Raises:
        OSError: ``capget``/``capset`` failed.
    """
    libc = seccomp.libc()
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # version 3: two 32-bit words of each set
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    if not any(d.effective | d.permitted | d.inheritable for d in data):
        return  # the usual case: an unprivileged user
    data[0].effective &= _KEPT_CAPABILITIES
    data[0].permitted &= _KEPT_CAPABILITIES
    data[0].inheritable = 0
    data[1].effective = data[1].permitted = data[1].inheritable = 0
    if libc.capset(ctypes.byref(header), data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")


def _threads() -> int:
    """Threads of this process (Python's own count where ``/proc`` is not mounted)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _machine() -> str:
    import platform
    import struct

    return f"{platform.machine()} ({8 * struct.calcsize('P')}-bit Python)"


def _restrict_files(abi: int, cache_entry: str, sandbox: EffectiveSandbox) -> None:
    """Apply the worker's Landlock ruleset (see the module docstring)."""
    paths = [
        (cache_entry, landlock.FILE_READ),
        ("/proc/self/status", landlock.FILE_READ),  # read by worker._limit_memory
        ("/dev/urandom", landlock.FILE_READ),
        ("/dev/null", landlock.FILE_WRITE),
        *((p, landlock.DIR_READ) for p in _python_paths()),
    ]
    opened: list[landlock.Rule] = []
    try:
        for path, access in paths:
            try:
                opened.append((os.open(path, os.O_PATH | os.O_CLOEXEC), access))
            except OSError:
                continue  # nothing there to grant (a stale sys.path entry, no /proc)
        # The granted directories, by the descriptors bound at load (not by path).
        preopens = [
            (p.directory.fileno(), landlock.DIR_WRITE if p.writable else landlock.DIR_READ)
            for p in sandbox.preopens
        ]
        landlock.restrict([*opened, *preopens], abi)
    finally:
        for fd, _ in opened:
            os.close(fd)


def _python_paths() -> list[str]:
    """What CPython reads after start-up: the standard library, and the packages (and
    single-file modules) imported so far, wherever they came from. Not whole
    ``sys.path`` entries: the application's own directory may be one of them."""
    stdlib = os.path.dirname(os.__file__)
    found = {stdlib}
    for name, module in list(sys.modules.items()):
        if "." in name or module is None:
            continue  # a submodule lies beneath its top-level package
        paths = getattr(module, "__path__", None)
        if paths is None:
            file = getattr(module, "__file__", None)
            paths = [file] if file is not None else []
        found.update(p for p in list(paths) if isinstance(p, str) and os.path.isabs(p))
    # A zipped standard library (python311.zip) on the path.
    found.update(e for e in sys.path if e.endswith(".zip") and os.path.isfile(e))
    return sorted(p for p in found if p == stdlib or not p.startswith(stdlib + os.sep))
