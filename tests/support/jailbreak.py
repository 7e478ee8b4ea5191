"""Hostile code inside a real worker process: what a compromised worker would try.

``install(monkeypatch)`` makes every worker started afterwards import this module
and call :func:`hook` before it runs ``worker.main``. The hook adds one test-only
request to the worker's serving loop, ``[ATTACK, name, args]``: the worker runs
``ATTACKS[name](*args)`` (after it confined itself, like any code a guest could
make it run) and answers ``[RESULT, outcome]``, ``["ok", detail]`` or
``["errno", name]`` (``"EPERM"``, ``"EACCES"``...). :func:`attack` sends one and
returns the outcome. Nothing here is in the package: the worker learns the
request only in tests.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasmplug._runtime.process import spawn as spawn_module
from wasmplug._runtime.process.watchdog import WATCHDOG
from wasmplug._runtime.process.wire import Op

if TYPE_CHECKING:  # not imported in the worker, which has only the runtime
    import pytest

    from wasmplug import Plugin

__all__ = ["ATTACK", "ATTACKS", "attack", "hook", "install"]

ATTACK = 90
_PTRACE_SEIZE = 0x4206
_CLONE_NEWUSER = 0x10000000


def _libc_call(name: str, *args: Any) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    rc = int(getattr(libc, name)(*args))
    if rc == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return rc


def _fork() -> str:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"forked {pid}"


def _fork_then_setsid() -> str:
    """The escape from close(): a child in a session (and process group) of its own."""
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os._exit(0)
    os.waitpid(pid, 0)
    return f"forked {pid}, which left the group"


def _exec() -> str:
    os.execv("/bin/true", ["/bin/true"])


def _thread() -> str:
    ran: list[str] = []
    thread = threading.Thread(target=lambda: ran.append("ran"))
    thread.start()
    thread.join(30)
    return "a thread " + (ran[0] if ran else "did not run")


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(200).decode(errors="replace")


def _write(path: str) -> str:
    with open(path, "w") as f:
        f.write("written by the worker")
    return "written"


def _listdir(path: str) -> str:
    return ", ".join(sorted(os.listdir(path))[:10])


def _socket(family: int) -> str:
    socket.socket(family, socket.SOCK_STREAM).close()
    return "a socket"


def _kill(pid: int) -> str:
    os.kill(pid, 0)
    return f"signalled {pid}"


def _ptrace(pid: int) -> str:
    _libc_call("ptrace", ctypes.c_long(_PTRACE_SEIZE), ctypes.c_long(pid), None, None)
    return f"tracing {pid}"


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


def _read_memory(pid: int) -> str:
    buf = ctypes.create_string_buffer(8)
    local = _IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
    remote = _IoVec(0x10000, 8)  # any address: the kernel asks for permission first
    _libc_call("process_vm_readv", pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return f"read the memory of {pid}"


def _own_descriptor(pid: int) -> str:
    """Make ``pid`` the owner of the channel: the kernel would signal it on I/O."""
    import fcntl
    import sys

    fcntl.fcntl(int(sys.argv[1]), fcntl.F_SETOWN, pid)
    return f"{pid} owns the channel"


def _chmod(path: str) -> str:
    os.chmod(path, 0o666)
    return f"{path} is world-writable"


def _shared_memory() -> str:
    shmid = _libc_call("shmget", 0, 4096, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    _libc_call("shmctl", shmid, 0, None)  # IPC_RMID
    return "a System V shared memory segment"


def _raise_memory_limit() -> str:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except ValueError as e:  # what CPython makes of EPERM here
        raise PermissionError(errno.EPERM, str(e)) from None
    return f"RLIMIT_DATA {soft}/{hard} lifted"


def _keep_living() -> str:
    """Clear the death signal: outlive an application that was killed."""
    _libc_call("prctl", 1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG, none
    return "no death signal"


def _unshare() -> str:
    _libc_call("unshare", _CLONE_NEWUSER)
    return "a user namespace"


ATTACKS: dict[str, Callable[..., str]] = {
    "fork": _fork,
    "fork-then-setsid": _fork_then_setsid,
    "exec": _exec,
    "thread": _thread,
    "read": _read,
    "write": _write,
    "listdir": _listdir,
    "socket": _socket,
    "kill": _kill,
    "ptrace": _ptrace,
    "read-memory": _read_memory,
    "unshare": _unshare,
    "own-descriptor": _own_descriptor,
    "chmod": _chmod,
    "shared-memory": _shared_memory,
    "raise-memory-limit": _raise_memory_limit,
    "keep-living": _keep_living,
}


def _run(name: Any, args: Any) -> list[Any]:
    try:
        return ["ok", ATTACKS[name](*args)]
    except OSError as e:
        return ["errno", errno.errorcode.get(e.errno or 0, str(e.errno))]


def hook() -> None:
    """In the worker: serve ``ATTACK`` requests besides the real ones."""
    from wasmplug._runtime.process import worker

    original = worker.Server._request

    def request(self: worker.Server, msg: list[Any]) -> None:
        if msg[0] == ATTACK:
            self._send([Op.RESULT, _run(msg[1], msg[2])])
        else:
            original(self, msg)

    worker.Server._request = request  # type: ignore[method-assign]


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every worker started from now on run :func:`hook` first."""
    main = "from wasmplug._runtime.process.worker import main\n"
    assert main in spawn_module._BOOTSTRAP
    bootstrap = spawn_module._BOOTSTRAP.replace(
        main, "import support.jailbreak\nsupport.jailbreak.hook()\n" + main
    )
    monkeypatch.setattr(spawn_module, "_BOOTSTRAP", bootstrap)


def attack(plugin: Plugin, name: str, *args: Any) -> list[Any]:
    """Run attack ``name`` in ``plugin``'s worker (a pool of one); its outcome.

    Raises:
        EOFError: the worker is gone (say, ``exec`` replaced it).
    """
    backend = plugin._backend
    assert backend is not None
    [worker] = backend.pool.live()
    with worker.lock:
        WATCHDOG.arm(worker, time.monotonic() + 60)  # kills it then: EOFError
        try:
            worker.chan.send([ATTACK, name, list(args)])
            reply = worker.chan.recv()
        finally:
            WATCHDOG.disarm(worker)
    assert reply[0] == Op.RESULT, reply
    return list(reply[1])
