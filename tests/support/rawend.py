"""The worker's end of a process-tier channel, raw: for tests that play a worker byte by
byte (a frame trickled, a length prefix and silence, a channel closed mid-frame).

A channel is two pipes (``wire.channel_fds``). :class:`RawEnd` holds the worker's
ends. Closing an end replaces the file behind its fd number with a dead pipe
(``dup2``) rather than freeing the number, so a :class:`~wasmplug._runtime.process.wire.Channel`
on the same fds, or a thread still using them, never touches a number the process
has reused since: :meth:`die` is what a killed worker process's exit does to its
channel, from any thread.
"""

from __future__ import annotations

import os
import select
import threading

from wasmplug._runtime.process.wire import Channel

__all__ = ["RawEnd"]


class RawEnd:
    """The worker's ends of a channel: ``rfd`` (it reads what the application sends)
    and ``wfd`` (it writes what the application receives); ``chan``, if given, is a
    :class:`Channel` on the same fds, which owns them (:meth:`release` closes it)."""

    def __init__(self, rfd: int, wfd: int, chan: Channel | None = None) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.chan = chan
        self._lock = threading.Lock()
        self._released = False

    def sendall(self, data: bytes) -> None:
        """Write all of ``data`` (waiting for room: the fd may be non-blocking)."""
        with memoryview(data) as view:
            sent = 0
            while sent < len(view):
                try:
                    sent += os.write(self.wfd, view[sent:])
                except BlockingIOError:
                    select.select([], [self.wfd], [])

    def recv(self, n: int) -> bytes:
        """Up to ``n`` bytes the application sent (``b""``: it closed its end)."""
        return os.read(self.rfd, n)

    def close_write(self) -> None:
        """Close the write end: the application reads EOF after what was sent."""
        with self._lock:
            if not self._released:
                _kill(self.wfd, write=True)

    def die(self) -> None:
        """What a worker's death does to its channel: both ends closed (the
        application reads EOF, its sends fail with ``EPIPE``; this end's reads see EOF
        and its writes fail too)."""
        with self._lock:
            if not self._released:
                _kill(self.wfd, write=True)
                _kill(self.rfd, write=False)

    def release(self) -> None:
        """Free both fd numbers (after every user of them is done); idempotent."""
        with self._lock:
            if not self._released:
                self._released = True
                if self.chan is not None:
                    self.chan.close()
                else:
                    os.close(self.rfd)
                    os.close(self.wfd)


def _kill(fd: int, *, write: bool) -> None:
    """Make ``fd`` a pipe end whose other end is closed (the file it named is let go)."""
    r, w = os.pipe()
    os.close(r if write else w)
    dead = w if write else r
    os.dup2(dead, fd, inheritable=False)
    os.close(dead)
