"""Guest stdout/stderr through a pipe, drained by one thread for the whole process.

Why not wasmtime's custom-output callback (``WasiConfig.stdout_custom``)? The WASI
stream the C API builds around it grants a guest at most 8,192 bytes per
``check-write``, so a longer ``write(2)`` in the guest is a short write. That is legal,
but CPython's unbuffered stdio (what componentize-py guests run: ``sys.stdout`` is a
``TextIOWrapper`` straight over ``FileIO``) ignores the count and drops the rest
(cpython#85393): ``print`` of 20,000 bytes logged 8,192. A file-backed stream
(``WasiConfig.stdout_file``) grants 65,536 bytes per ``check-write`` (measured, wasmtime
50) and writes synchronously, so a guest write of up to 64 KiB lands whole in a pipe
that this module drains. (A longer single write from a CPython guest is still cut
there: the guest never writes the rest.)

Each :class:`GuestPipe` holds the read end of one pipe; wasmtime opens the write end
by its ``/proc/self/fd`` path and we close ours, so the pipe reaches end-of-file when
the instance's store is freed. The :class:`_Pump` thread (one per process, started on
first use) reads every registered pipe as data arrives, so a guest writing more than
the pipe holds (64 KiB) never blocks for long; :meth:`GuestPipe.drain` reads what is
left synchronously, which the runtime does after every call so that a call's output
is logged before the call returns.

Linux only (it needs ``/proc/self/fd`` and epoll). Cost: two descriptors per stream
per instance (ours and wasmtime's), so pipes take at most half of the process's
``RLIMIT_NOFILE`` soft limit (:func:`pipe_budget`); past that, on other systems, and
when no descriptor is left, :func:`open_pipe` returns ``None`` and the caller falls
back to the callback.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import sys
import threading
from collections.abc import Callable

__all__ = ["CHUNK_BYTES", "GuestPipe", "open_pipe", "pipe_budget", "pipes_supported"]

CHUNK_BYTES = 65536
"""Largest read from a pipe at once, in bytes (one pipe buffer on Linux)."""


def pipes_supported() -> bool:
    """Whether guest output can go through a pipe here (Linux, ``/proc`` mounted)."""
    return sys.platform == "linux" and os.path.isdir("/proc/self/fd")


def pipe_budget() -> int:
    """How many guest pipes may be open at once: a quarter of the ``RLIMIT_NOFILE``
    soft limit (each pipe holds two descriptors), so the rest of the process
    (preopens, sockets, the application) keeps at least half."""
    import resource  # Unix only: asked only where pipes are used

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 2**30 if soft == resource.RLIM_INFINITY else max(0, soft // 4)


class GuestPipe:
    """The read end of one guest stream's pipe.

    ``sink`` is called with each chunk read (at most :data:`CHUNK_BYTES` bytes),
    under ``lock``, from whichever thread read it: the pump thread, or the thread
    that called :meth:`drain`. ``sink`` must not raise.
    """

    __slots__ = ("_fd", "busy", "lock", "path", "sink")

    def __init__(self, read_fd: int, path: str, sink: Callable[[bytes], object]) -> None:
        self._fd = read_fd
        self.path = path
        self.sink = sink
        self.lock = threading.RLock()
        # True while the pump holds data it has read but not yet handed to sink: a
        # drain must then wait for it (take lock) even if the pipe itself is empty.
        self.busy = False

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The read end (-1 once closed), to poll for pending output."""
        return self._fd

    def drain(self) -> None:
        """Hand everything the guest has written so far to ``sink``, without blocking."""
        with self.lock:
            self._read(limit=None)

    def _read(self, limit: int | None) -> bool:
        """Read up to ``limit`` chunks (all, if ``None``); False once at end-of-file.

        Called with ``lock`` held.
        """
        fd = self._fd
        n = 0
        while fd >= 0 and (limit is None or n < limit):
            try:
                data = os.read(fd, CHUNK_BYTES)
            except BlockingIOError:
                return True
            except OSError:  # pragma: no cover - a closed or broken descriptor
                return False
            if not data:
                return False
            self.sink(data)
            n += 1
        return fd >= 0

    def close(self) -> None:
        """Read what is left, stop reading and close the read end (idempotent).

        A guest still writing afterwards (an abandoned call thread) gets ``EPIPE``.
        """
        with self.lock:
            if self._fd >= 0:
                self._read(limit=None)
                self._release()

    def _release(self) -> None:
        """Unregister and close the read end. Called with ``lock`` held."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            _pump().unregister(fd)
            os.close(fd)
            _count(-1)


def open_pipe(sink: Callable[[bytes], object]) -> tuple[GuestPipe, int] | None:
    """A new pipe for one guest stream, registered with the pump.

    Returns:
        ``(pipe, write_fd)``: give ``pipe.path`` to ``WasiConfig.stdout_file`` (or
        ``stderr_file``), then close ``write_fd``; or ``None`` where pipes are not
        supported or no descriptor is left (then use the callback).
    """
    if not _SUPPORTED or not _count(+1):
        return None
    try:
        r, w = os.pipe()
    except OSError:  # EMFILE / ENFILE
        _count(-1)
        return None
    os.set_blocking(r, False)
    pipe = GuestPipe(r, f"/proc/self/fd/{w}", sink)
    try:
        _pump().register(r, pipe)
    except BaseException:
        with pipe.lock:
            pipe._release()
        os.close(w)
        raise
    return pipe, w


_SUPPORTED = pipes_supported()
_budget = pipe_budget  # asked at each open: the application may raise its limit
_open = [0]
_open_lock = threading.Lock()


def _count(delta: int) -> bool:
    """Count a pipe opened (+1: False if over budget, nothing counted) or closed (-1)."""
    with _open_lock:
        if delta > 0 and _open[0] >= _budget():
            return False
        _open[0] += delta
        return True


class _Pump:
    """One daemon thread reading every registered pipe as data arrives (epoll)."""

    def __init__(self) -> None:
        self._selector = selectors.EpollSelector()
        self._thread = threading.Thread(target=self._run, name="wasmplug-stdio", daemon=True)
        self._thread.start()

    def register(self, fd: int, pipe: GuestPipe) -> None:
        self._selector.register(fd, selectors.EVENT_READ, pipe)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)

    def _run(self) -> None:  # pragma: no cover - exercised by every test with output
        select = self._selector.select
        while True:
            try:
                events = select()
            except OSError:
                continue
            for key, _ in events:
                pipe: GuestPipe = key.data
                # A stale event for a pipe closed meanwhile (its fd maybe reused):
                # the non-blocking read just finds nothing.
                try:
                    with pipe.lock:
                        if pipe.closed:
                            continue
                        pipe.busy = True
                        try:
                            # One chunk per pipe per round: a flooding guest cannot starve others.
                            if not pipe._read(limit=1):  # end-of-file: the store was freed
                                pipe._release()
                        finally:
                            pipe.busy = False
                except Exception:
                    continue


_state: list[_Pump] = []
_state_lock = threading.Lock()


def _pump() -> _Pump:
    if not _state:
        with _state_lock:
            if not _state:
                _state.append(_Pump())
    return _state[0]


def _after_fork() -> None:
    # The pump thread does not exist in a forked child: start a fresh one on demand.
    # (Pipes inherited from the parent stay with the parent's instances.)
    global _state_lock, _open_lock
    _state.clear()
    _state_lock = threading.Lock()
    _open_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork)
