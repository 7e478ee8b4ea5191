"""Starting, killing and reaping worker processes.

A worker is ``python -I -S -c BOOTSTRAP`` (isolated mode: no ``PYTHON*``
variables, no script directory on ``sys.path``; no ``site``: the bootstrap sets
``sys.path`` to the application's own, so the worker imports the same wasmtime and
skips ``.pth`` start-up hooks) started with ``subprocess`` and:

* an empty environment, and a private working directory (``mkdtemp``, 0o700)
  that is removed when the worker is reaped;
* no inherited file descriptors but stdin/stdout/stderr on ``/dev/null`` and
  its ends of the channel's two pipes (``close_fds=True``, ``pass_fds``);
* its own session, so a terminal's Ctrl-C reaches only the application, and a
  process group of its own: killing it kills the group, so a process a
  compromised worker forked (and left in the group) dies with it;
* ``PR_SET_PDEATHSIG`` = ``SIGKILL`` (set by the worker itself), so it dies with
  the application. Linux sends that signal when the *thread* that forked the
  worker exits, so every worker is forked by one long-lived daemon thread
  (:class:`_Spawner`), never by a caller's thread that may end first.

The bootstrap registers ``wasmplug`` as a bare namespace for the package
directory instead of running ``wasmplug/__init__``, so a worker imports only the
runtime it needs (wasmtime and the bridge), not the CLI, HTTP or signing stacks:
that halves its start-up.

Measured choice: ``multiprocessing``'s spawn context also starts a fresh
interpreter, but it pickles the process object to the child and re-imports the
application's ``__main__``; a plain ``subprocess`` start with our own msgpack framing
does neither. Start-up to ``import wasmtime`` done, median of 10 on the loaded 2-core
VM: 568 ms with ``subprocess`` (``-I -S``), 595 ms with the spawn context.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .budget import LogRate
from .wire import STALL_S, Channel, channel_fds

__all__ = ["WorkerProcess", "parent_channel", "spawn_worker"]

_BOOTSTRAP = (
    "import sys, types\n"
    "sys.path[:] = sys.argv[5:]\n"
    "pkg = types.ModuleType('wasmplug')\n"
    "pkg.__path__ = [sys.argv[4]]\n"
    "sys.modules['wasmplug'] = pkg\n"
    "from wasmplug._runtime.process.worker import main\n"
    "main(sys.argv)\n"
)
_PACKAGE_DIR = str(Path(__file__).resolve().parents[2])
_REAP_TIMEOUT_S = 5.0


class WorkerProcess:
    """One worker process and the application's end of its channel.

    Attributes:
        pid: The worker's process id.
        chan: The channel (used by one call at a time).
        objects: Host-defined resource objects this worker holds ids of, by id
            (``handles.Lent``: each with its type and whether it was sent as own).
        instance: Its current plugin instance, as guest resource handles see it
            (see :mod:`.handles`); ``None`` until it is ready.
        fresh: False after a fault discarded the worker's instance (the next
            call makes a new one: a restart, for the restart policy).
        calls: Calls that returned a value or an ``err`` result.
        alive: False once :meth:`close` was called (a plain attribute: read per call).
        call_frame: The call frame (``hostcalls.Frame``) that ``fastpath`` reuses for
            this worker's calls, one at a time; ``None`` until its first.
        logs: The rate of its ``LOG`` frames (see :mod:`.budget`).
    """

    def __init__(self, proc: subprocess.Popen[bytes], chan: Channel, cwd: str) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.chan = chan
        self.cwd = cwd
        self.objects: dict[int, Any] = {}
        self.next_oid = 1
        # The handles.WorkerInstance of its current instance, set by handles.retire():
        # typed there (handles.instance_of), so this layer does not import handles.
        self.instance: Any = None
        self.fresh = True
        self.traced = False  # its SPAN reports go into the application's trace (backend.py)
        self.calls = 0
        self.overdue = False  # killed by the watchdog: its call was past its deadline
        self.logs = LogRate()
        self.lock = threading.Lock()  # held by the call using this worker (see InstancePool)
        self._reap_lock = threading.Lock()
        self.alive = True
        self.call_frame: Any = None
        self._reaped = False

    @property
    def running(self) -> bool:
        """Whether the process has not exited (or been reaped) yet."""
        return not self._reaped and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its process group (a call waiting on it sees EOF at
        once); not reaped yet."""
        if not self._reaped and self.proc.returncode is None:
            self._kill_group()

    def _kill_group(self) -> None:
        """SIGKILL the worker and its process group. Only while the worker is not
        reaped: its pid, which names the group, cannot be reused before that."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """SIGKILL the worker and reap it (idempotent)."""
        self.alive = False
        self.kill()
        self.reap()

    def reap(self) -> int | None:
        """Wait for the worker to exit; free its channel and directory.

        Returns:
            Its return code (negative: the signal that ended it), or ``None``
            if it did not exit within a few seconds (it is then SIGKILLed).
        """
        with self._reap_lock:
            if not self._reaped:
                if self.proc.returncode is None:
                    # What it forked into its group since it was killed (or before it
                    # exited on its own): its zombie still holds the pid.
                    self._kill_group()
                try:
                    self.proc.wait(_REAP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._kill_group()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(_REAP_TIMEOUT_S)
                self._reaped = True
                self.chan.close()
                self.objects.clear()
                shutil.rmtree(self.cwd, ignore_errors=True)
        return self.proc.returncode

    def describe_exit(self) -> tuple[str, int | None, int | None]:
        """``(text, signal, exit_code)`` for a reaped worker."""
        code = self.reap()
        if code is None:
            return f"worker process {self.pid} did not exit", None, None
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"worker process {self.pid} was killed by {name}", -code, None
        return f"worker process {self.pid} exited with status {code}", None, code


class _Spawner:
    """Forks every worker from one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._owner = -1

    def spawn(self) -> WorkerProcess:
        with self._lock:
            if self._owner != os.getpid():  # first use, or we are a fork's child
                self._queue = queue.SimpleQueue()
                thread = threading.Thread(target=self._run, name="wasmplug-spawner", daemon=True)
                thread.start()
                self._owner = os.getpid()
        fut: concurrent.futures.Future[WorkerProcess] = concurrent.futures.Future()
        self._queue.put(fut)
        return fut.result()

    def _run(self) -> None:
        q = self._queue
        while True:
            fut = q.get()
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(_start())
                except BaseException as e:
                    fut.set_exception(e)


class _Starting:
    """The worker's ends of the channels of workers being started (the application
    holds them until ``subprocess`` has passed them on).

    A process the application forks in that window without ``exec`` (``os.fork``,
    ``multiprocessing``'s fork start method, a pre-forking server) would keep a copy
    of the worker's write end for as long as it lives, and then the worker's death
    would never reach the application as end of file: a call waiting on it would
    wait for ever. So the child of every ``os.fork`` closes those copies
    (``os.register_at_fork``), and the fds are opened and closed under a lock that a
    fork takes first, so that no fork sees them half-recorded.
    """

    def __init__(self) -> None:
        self.fds: set[int] = set()
        self.lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=self.lock.acquire,
                after_in_parent=self.lock.release,
                after_in_child=self._forked,
            )

    def open(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """A new channel's fds (see :func:`~.wire.channel_fds`), the worker's recorded."""
        with self.lock:
            ours, theirs = channel_fds()
            self.fds.update(theirs)
        return ours, theirs

    def close(self, theirs: tuple[int, int]) -> None:
        with self.lock:
            self.fds.difference_update(theirs)
            for fd in theirs:
                os.close(fd)

    def _forked(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.lock.release()  # taken by the forking thread, whose copy this child runs


_STARTING = _Starting()


def _start() -> WorkerProcess:
    cwd = tempfile.mkdtemp(prefix="wasmplug-worker-")
    try:
        ours, theirs = _STARTING.open()
    except BaseException:
        shutil.rmtree(cwd, ignore_errors=True)
        raise
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _BOOTSTRAP,
                *map(str, theirs),
                str(os.getpid()),
                _PACKAGE_DIR,
                *_import_path(),
            ],
            env={},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if not os.environ.get("WASMPLUG_WORKER_STDERR") else None,
            close_fds=True,
            pass_fds=theirs,
            start_new_session=True,
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        shutil.rmtree(cwd, ignore_errors=True)
        raise
    finally:
        _STARTING.close(theirs)
    return WorkerProcess(proc, parent_channel(*ours), cwd)


def parent_channel(rfd: int, wfd: int) -> Channel:
    """The application's end of a worker's channel (``rfd``, ``wfd``: see
    :func:`~.wire.channel_fds`): with the stall bound (:data:`STALL_S`)."""
    return Channel(rfd, wfd, stall_s=STALL_S)


def _import_path() -> list[str]:
    """The application's import path (absolute directories and zip files only), so a
    worker imports the same wasmtime and msgpack without running ``site``."""
    return [p for p in sys.path if p and os.path.isabs(p) and os.path.exists(p)]


_SPAWNER = _Spawner()


def spawn_worker() -> WorkerProcess:
    """Start one worker process (not yet initialised: send it ``INIT``)."""
    return _SPAWNER.spawn()
