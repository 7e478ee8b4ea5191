"""The channel between the application and a worker: msgpack frames over two pipes.

A frame is a 4-byte big-endian length and that many bytes of msgpack; every
message is an array whose first item is an opcode. msgpack is a data-only
format: decoding it never imports or calls anything (unlike pickle), so a
compromised worker can send only values, and :mod:`.codec` checks each of them
against its WIT type. Frames are capped (:data:`MAX_FRAME_BYTES`, or less: see
``ProcessBackend``), and the cap is checked before a byte of the frame is read;
so are the objects a frame decodes into and how deep its arrays nest
(``Channel.max_objects`` and ``max_depth``, see :mod:`.budget`). On the
application's end a frame that has begun must be whole, and a send must be taken,
within :data:`STALL_S` (plus :data:`MIN_RATE` for its size), whatever the call's
own deadline. Anything malformed is a
:class:`~.codec.ProtocolError`, and the host kills the worker that sent it.

Messages (``[opcode, ...]``)::

    application -> worker                 worker -> application
    INIT    {settings}                    READY    pid, confinement
    CALL    export, [args], [drops]       RESULT   value
    DESTROY token                         FAULT    kind, details...
    RETURN  ok, value | message           HOSTCALL function, [args]
    RESET                                 LOG      level, text
    CRASH   (test hook: segfault)         DROP     [object ids]
                                          DONE
                                          SPAN     kind, start ns, end ns

``drops`` and ``DESTROY`` name guest resource handles the application dropped
(garbage-collected ones, run before the call; ``Resource.drop()``, run now).

``SPAN`` reports a stage the worker timed (``kind`` indexes :data:`WORKER_SPANS`;
the times are ``time.time_ns()``, a clock both processes share); a worker sends
it only when the INIT settings ask for it (``"telemetry"``).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import struct
import threading
import time
from typing import Any

import msgpack

from .budget import check_frame
from .codec import ProtocolError

__all__ = ["MAX_FRAME_BYTES", "MIN_RATE", "STALL_S", "WORKER_SPANS", "Channel", "Op", "channel_fds"]

MAX_FRAME_BYTES = 1 << 30
"""Largest frame accepted (1 GiB); a bigger length prefix is a protocol violation."""

STALL_S = 10.0
"""On a channel with a stall bound (the application's end): the longest a frame that
has begun may take to arrive whole, and a send to be taken, besides :data:`MIN_RATE`
(seconds). A worker sends each frame in one piece and reads whenever the application
writes to it, so only a worker that trickles a frame or stops reading gets near it."""
MIN_RATE = 16 << 20
"""The slowest rate a frame is allowed to move at, on top of :data:`STALL_S` (bytes/s)."""

_LEN = struct.Struct(">I")
_CHUNK = 1 << 16  # frames below this go out with their length prefix in one send
_BUFFER = 1 << 16  # the receive buffer's size; it grows for a bigger frame, then shrinks back
_BIG_PIPE = 1 << 18  # a pipe's capacity once a frame did not fit (64 KiB before)
_unpackb = msgpack.unpackb


class Op:
    """Opcodes (the first item of every message)."""

    INIT = 0
    CALL = 1
    RETURN = 2
    RESET = 3
    DESTROY = 4
    CRASH = 9
    READY = 10
    RESULT = 11
    FAULT = 12
    HOSTCALL = 13
    LOG = 14
    DROP = 15
    DONE = 16
    SPAN = 17


WORKER_SPANS = ("wasmplug.load.link", "wasmplug.instantiate")
"""The span names a worker's ``SPAN`` message may name, by index (the application
never uses a name the worker chose)."""


def channel_fds() -> tuple[tuple[int, int], tuple[int, int]]:
    """A new channel's two pipes, as ``(ours, theirs)``: each end a ``(read fd, write
    fd)`` pair, non-inheritable (``O_CLOEXEC``, as every fd Python opens)."""
    down_r, down_w = os.pipe()  # application -> worker
    try:
        up_r, up_w = os.pipe()  # worker -> application
    except BaseException:
        os.close(down_r)
        os.close(down_w)
        raise
    return (up_r, down_w), (down_r, up_w)


class Channel:
    """One end of a worker's channel: frames read from one pipe and written to another.

    Two pipes, not a socketpair: when a process reads from a socket, the kernel
    wakes every thread sleeping on the *sender's* socket (``sock_wfree`` ->
    ``unix_write_space``, whether or not it waits for room), and with one socketpair
    the sender is asleep on that very socket, in ``recv``, waiting for the reply:
    every message cost its sender a spurious wake-up. A pipe wakes writers only when
    it was full. Measured (``benchmarks/bench_calls.py --group process --quick``, old
    and new alternated on the 2-core VM under load 3.7-5): the application's CPU per
    ``add`` call 16-28 µs against 28-48 µs, per 1 KiB echo 19-29 µs against 26-43 µs.

    Reads block, with no ``poll(2)`` and no timeout: a message is one ``read`` into a
    reused buffer, which most often brings exactly one whole frame (decoded from
    there), and a send is one ``write``. So nothing here bounds the wait for the
    *next* message. On the application's end that is the job of :mod:`.watchdog`:
    every wait for a worker runs while the worker is armed with its kill time, and
    killing the worker closes its end of the pipe, which ends the read with EOF. (EOF
    needs every copy of that end closed: the worker's process group dies with it, a
    worker confined by the jail cannot fork, and a process the application forks
    while a worker starts closes its copies: ``spawn._Starting``.) A signal whose
    Python handler returns restarts the read (PEP 475); the kill ends it all the same,
    and the default ``SIGINT`` handler raises at once. A poll before each read would
    cost the application 4-6 µs of CPU per call (measured as above).

    The write end is non-blocking: a frame that does not fit the pipe waits for room
    in ``poll(2)``, by the deadline of :meth:`send`. A pipe holds 64 KiB, and 256 KiB
    once a frame did not fit (``F_SETPIPE_SZ``, where the user's pipe quota allows it):
    a 1 MiB echo took 27-30 ms against 19-24 ms over the socketpair with 64 KiB pipes
    (four times as many wake-ups), 14-18 ms with bigger ones. Only channels that carry
    big frames grow, since every pipe's capacity counts against the user's quota
    (``/proc/sys/fs/pipe-user-pages-soft``: past it, the user's new pipes get 8 KiB).
    With ``stall_s`` (the
    application's end of a worker's channel), what a worker could stretch without
    end is bounded here too, on these slow paths only: a frame that has begun must be
    whole within ``stall_s`` plus its size at :data:`MIN_RATE`, and a send must be
    taken as fast, or :class:`~.codec.ProtocolError`: a worker cannot hold a call for
    ever by trickling a frame a byte at a time or by not reading, even a call with no
    time limit.

    ``recv`` is not thread-safe: one call at a time uses a worker (its lock), and
    the worker reads on one thread. ``send`` is: the worker forwards guest output
    lines from whichever thread drained them (its stdio pump, a call thread).

    Attributes:
        max_frame: Largest frame :meth:`recv` accepts, in bytes.
        max_objects: Most msgpack objects one frame may decode into (see
            :mod:`.budget`); a longer frame is checked (``budget.check_frame``)
            before it is decoded. The default, ``max_frame``, checks nothing (an
            object takes at least one byte).
        max_depth: How deep the arrays of a frame that is checked may nest.
        stall_s: See above (``None``: no stall bound).
        wfd: The write end, for the application's per-export call functions
            (``fastpath``), which write a whole frame with one ``os.write`` and leave
            the rest, if any, to :meth:`send_rest`.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_grown",
        "_packb",
        "_readable",
        "_reader",
        "_readinto",
        "_send_lock",
        "_start",
        "_view",
        "_writable",
        "max_depth",
        "max_frame",
        "max_objects",
        "stall_s",
        "wfd",
    )

    def __init__(
        self, rfd: int, wfd: int, max_frame: int = MAX_FRAME_BYTES, stall_s: float | None = None
    ) -> None:
        """Take ownership of ``rfd`` (read from, blocking) and ``wfd`` (written to, made
        non-blocking): :meth:`close` closes both."""
        self.max_frame = max_frame
        self.max_objects = max_frame
        self.max_depth = max_frame
        self.stall_s = stall_s
        os.set_blocking(rfd, True)
        os.set_blocking(wfd, False)
        self._reader = io.FileIO(rfd, "r")
        self._readinto = self._reader.readinto
        self.wfd = wfd
        self._grown = False
        self._readable = select.poll()
        self._readable.register(rfd, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(wfd, select.POLLOUT)
        # Received bytes not yet consumed are _buf[_start:_end].
        self._buf = bytearray(_BUFFER)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        """The read end's fd (:attr:`wfd` is the write end's)."""
        return self._reader.fileno()

    def send(self, message: Any, deadline: float | None = None) -> None:
        """Send one message.

        Args:
            deadline: ``time.monotonic()`` value to give up at, or ``None`` to wait
                (it is reached only if the other end stops reading).

        Raises:
            OSError: the other end is gone (``BrokenPipeError``).
            TimeoutError: the deadline passed before the frame was sent.
            ProtocolError: the other end stopped reading (the stall bound).
        """
        with self._send_lock:
            data = self._packb(message)
            if len(data) >= _CHUNK:  # no copy of a big payload just to prefix it
                self._write(_LEN.pack(len(data)), deadline)
                self._write(data, deadline)
            else:
                self._write(_LEN.pack(len(data)) + data, deadline)

    def send_rest(self, data: bytes, sent: int, deadline: float | None) -> None:
        """Send what is left of a frame whose first ``sent`` bytes went out in one
        ``os.write`` to :attr:`wfd`; each wait ends by ``deadline``.

        Raises:
            OSError: the other end is gone (``BrokenPipeError``).
            TimeoutError: the deadline passed before the frame was sent.
            ProtocolError: the other end stopped reading (the stall bound).
        """
        with self._send_lock:
            self._send_from(data, sent, deadline)

    def _write(self, data: bytes, deadline: float | None) -> None:
        try:
            sent = os.write(self.wfd, data)
        except BlockingIOError:  # the pipe is full
            sent = 0
        if sent != len(data):
            self._send_from(data, sent, deadline)

    def _send_from(self, data: bytes, sent: int, deadline: float | None) -> None:
        if not self._grown:  # a frame that did not fit: give the pipe room for the next
            self._grown = True
            with contextlib.suppress(OSError):  # EPERM: past the user's quota
                fcntl.fcntl(self.wfd, fcntl.F_SETPIPE_SZ, _BIG_PIPE)
        until, stalls = deadline, False
        if self.stall_s is not None:
            by = time.monotonic() + self.stall_s + (len(data) - sent) / MIN_RATE
            if deadline is None or by < deadline:
                until, stalls = by, True
        with memoryview(data) as view:
            while sent < len(view):
                if not _ready(self._writable, until):
                    if stalls:
                        raise ProtocolError(
                            f"the peer took {sent} of {len(view)} bytes in {self.stall_s:g} s"
                            " and stopped reading"
                        )
                    raise TimeoutError
                try:
                    sent += os.write(self.wfd, view[sent:])
                except BlockingIOError:
                    continue

    def recv(self) -> list[Any]:
        """Receive one message: a non-empty array whose first item is an int opcode.

        Waits for as long as the next frame takes to begin (on the application's end,
        the watchdog bounds that wait: see the class); a frame that has begun is
        bounded by ``stall_s``.

        Raises:
            EOFError: the other end closed the channel (the worker died).
            ProtocolError: the frame is too big, stalled, or is not such a message.
        """
        if self._end == 0:
            # The usual case, inline: nothing buffered, and one read, which most
            # often brings exactly one whole frame.
            got = self._readinto(self._buf)
            if not got:
                raise EOFError("channel closed")
            if got > _LEN.size:
                (size,) = _LEN.unpack_from(self._buf)
                if (
                    got == _LEN.size + size
                    and size <= self.max_frame
                    and size <= self.max_objects  # else checked first (check_frame)
                ):
                    try:  # _decode, inline
                        message = _unpackb(
                            self._view[_LEN.size : got], raw=False, strict_map_key=True
                        )
                    except Exception as e:  # RecursionError included
                        raise _undecodable(e) from None
                    if message.__class__ is list and message and message[0].__class__ is int:
                        return message
                    raise ProtocolError(_NOT_A_MESSAGE)
            self._end = got
        if self._end - self._start < _LEN.size:
            self._fill(_LEN.size)
        start = self._start
        (size,) = _LEN.unpack_from(self._buf, start)
        if size > self.max_frame:  # before a byte of the frame is read
            raise ProtocolError(f"frame of {size} bytes exceeds {self.max_frame}")
        end = start + _LEN.size + size
        if self._end < end:
            self._fill(_LEN.size + size)
            start = self._start
            end = start + _LEN.size + size
        try:
            data = self._view[start + _LEN.size : end]
            if size > self.max_objects:  # else it cannot hold more objects than it has bytes
                check_frame(data, self.max_objects, self.max_depth)
            return _decode(data)
        finally:
            if end == self._end and end <= _BUFFER:  # all consumed (the usual case)
                self._start = self._end = 0
            else:
                self._consumed(end)

    def _consumed(self, end: int) -> None:
        """Forget the buffer up to ``end``; give back a buffer grown for a big frame."""
        if end < self._end:
            self._start = end
            return
        self._start = self._end = 0
        if len(self._buf) > _BUFFER:
            self._view.release()
            self._buf = bytearray(_BUFFER)
            self._view = memoryview(self._buf)

    def _fill(self, n: int) -> None:
        """Read until the buffer holds at least ``n`` unconsumed bytes (the caller
        checked ``n`` against the frame cap)."""
        if len(self._buf) - self._start < n:
            self._make_room(n)
        until: float | None = None
        while self._end - self._start < n:
            if self.stall_s is not None and self._end > self._start:
                # Part of a frame is here: the rest must follow (a trickle is a stall).
                if until is None:
                    until = time.monotonic() + self.stall_s + n / MIN_RATE
                if not _ready(self._readable, until):
                    raise ProtocolError(
                        f"{self._end - self._start} bytes of a {n}-byte frame arrived"
                        f" in {self.stall_s:g} s, and no more"
                    )
            got = self._readinto(self._view[self._end :] if self._end else self._buf)
            if not got:
                raise EOFError("channel closed")
            self._end += got

    def _make_room(self, n: int) -> None:
        """Move the unconsumed bytes to the front of a buffer of at least ``n`` bytes."""
        pending = bytes(self._view[self._start : self._end])
        if len(self._buf) >= n:
            self._view[: len(pending)] = pending
        else:
            self._view.release()
            self._buf = bytearray(n)
            self._view = memoryview(self._buf)
            self._view[: len(pending)] = pending
        self._start, self._end = 0, self._end - self._start

    def close(self) -> None:
        """Close both ends (idempotent); a later :meth:`recv` sees EOF, a send ``EBADF``."""
        self._readinto = _closed
        self._reader.close()
        wfd, self.wfd = self.wfd, -1
        if wfd >= 0:
            with contextlib.suppress(OSError):
                os.close(wfd)


def _ready(poller: select.poll, until: float | None) -> bool:
    """Wait in ``poll(2)`` until ``poller``'s one fd is ready (or its peer is gone,
    which the next read or write reports), by ``until`` (``time.monotonic()``; ``None``:
    for ever); False if that passed first."""
    while True:
        if until is None:
            timeout = None
        else:
            timeout = (until - time.monotonic()) * 1000  # ms, rounded up by poll
            if timeout <= 0:
                return False
        if poller.poll(timeout):
            return True


def _closed(buf: Any) -> int:
    """A closed channel's reads: EOF."""
    return 0


def _decode(data: memoryview) -> list[Any]:
    """One message from a frame's bytes: a non-empty array whose first item is an int
    opcode, or :class:`ProtocolError`."""
    try:
        message = _unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # every malformed-input failure, RecursionError included
        raise _undecodable(e) from None
    if message.__class__ is not list or not message or message[0].__class__ is not int:
        raise ProtocolError(_NOT_A_MESSAGE)
    return message


_NOT_A_MESSAGE = "a message must be an array starting with an int opcode"


def _undecodable(e: Exception) -> ProtocolError:
    return ProtocolError(f"undecodable frame: {type(e).__name__}: {e}")
