"""The channel between the application and a worker: msgpack frames over a socketpair.

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

import socket
import struct
import threading
import time
from typing import Any

import msgpack

from .budget import check_frame
from .codec import ProtocolError

__all__ = ["MAX_FRAME_BYTES", "MIN_RATE", "STALL_S", "WORKER_SPANS", "Channel", "Op"]

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
_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds
_CHUNK = 1 << 16  # frames below this go out with their length prefix in one send
_BUFFER = 1 << 16  # the receive buffer's size; it grows for a bigger frame, then shrinks back
_SLACK_S = 0.002  # an armed socket timeout may end this much before the deadline
_monotonic = time.monotonic
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


class Channel:
    """One end of a worker's socketpair, framed.

    The socket stays in blocking mode and every wait is bounded in the kernel:
    ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` are set to what is left of the deadline,
    and only when that differs from what is armed by more than :data:`_SLACK_S`
    (calls of one plugin share one budget, so that is once per plugin, not once
    per message). A wait that ends early (the armed time was shorter) is re-armed
    and resumed; one that reaches the deadline is :class:`TimeoutError`. A message
    is then one ``send`` (its length prefix included) and, when the reply is
    already whole, one ``recv_into`` a reused buffer: no ``poll(2)`` and no
    ``fcntl``/``ioctl`` per message, which is what Python's socket timeouts cost.
    One difference from those: a signal whose Python handler returns normally makes
    CPython restart the system call (PEP 475) with the whole armed time again, so
    such signals arriving faster than that time (an application's own interval
    timer, say) would postpone a timeout: a call's waits are also watched by
    :mod:`.watchdog`, which kills the worker. The default ``SIGINT`` handler raises
    and ends the wait at once.

    ``recv`` is not thread-safe: one call at a time uses a worker (its lock), and
    the worker reads on one thread. ``send`` is: the worker forwards guest output
    lines from whichever thread drained them (its stdio pump, a call thread).

    Measured (a ping-pong of CALL-sized frames between two processes, and a timing
    loop of ``add`` calls, on the loaded 2-core VM): spinning on ``recv`` before
    sleeping made calls slower (1.8-2.7 ms vs 1.0-1.4 ms: the spinning reader takes
    the core its worker needs), so the reader sleeps in ``recv`` at once.

    With ``stall_s`` (the application's end of a worker's channel), a frame that has
    begun must be whole within ``stall_s`` plus its size at :data:`MIN_RATE`, and a
    send must be taken as fast, or :class:`~.codec.ProtocolError`: a worker cannot
    hold a call for ever by trickling a frame a byte at a time or by not reading,
    even a call with no time limit. Each kernel wait is then at most ``stall_s`` long
    (a wait for a silent peer wakes that often and goes on waiting).

    Attributes:
        max_frame: Largest frame :meth:`recv` accepts, in bytes.
        max_objects: Most msgpack objects one frame may decode into (see
            :mod:`.budget`); a longer frame is checked (``budget.check_frame``)
            before it is decoded. The default, ``max_frame``, checks nothing (an
            object takes at least one byte).
        max_depth: How deep the arrays of a frame that is checked may nest.
        stall_s: See above (``None``: no stall bound).
        sock: The socket, for the application's per-export call functions
            (``fastpath``), which send a whole frame with one non-blocking
            ``send`` and leave the rest, if any, to :meth:`send_rest`.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_packb",
        "_rcv_armed",
        "_send_lock",
        "_snd_armed",
        "_sock",
        "_start",
        "_view",
        "max_depth",
        "max_frame",
        "max_objects",
        "sock",
        "stall_s",
    )

    def __init__(
        self, sock: socket.socket, max_frame: int = MAX_FRAME_BYTES, stall_s: float | None = None
    ) -> None:
        self.max_frame = max_frame
        self.max_objects = max_frame
        self.max_depth = max_frame
        self.stall_s = stall_s
        self._sock = self.sock = sock
        sock.settimeout(None)  # blocking: the kernel bounds each wait (_arm)
        # The armed SO_RCVTIMEO / SO_SNDTIMEO, in seconds (None: no timeout).
        self._rcv_armed: float | None = None
        self._snd_armed: float | None = None
        # Received bytes not yet consumed are _buf[_start:_end].
        self._buf = bytearray(_BUFFER)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        self._packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Any, deadline: float | None = None) -> None:
        """Send one message.

        Args:
            deadline: ``time.monotonic()`` value to give up at, or ``None`` to wait
                (it is reached only if the other end stops reading).

        Raises:
            OSError: the other end is gone (``BrokenPipeError``...).
            TimeoutError: the deadline passed before the frame was sent.
        """
        with self._send_lock:
            data = self._packb(message)
            if len(data) >= _CHUNK:  # no copy of a big payload just to prefix it
                self._sendall(_LEN.pack(len(data)), deadline)
                self._sendall(data, deadline)
                return
            data = _LEN.pack(len(data)) + data
            if deadline is None and self._snd_armed == self.stall_s:  # armed already: one send
                try:
                    sent = self._sock.send(data)
                except BlockingIOError:  # the stall bound's SO_SNDTIMEO ended the wait
                    sent = 0
                if sent != len(data):  # a signal or that bound cut it short
                    self._send_from(data, sent, None)
            else:
                self._sendall(data, deadline)

    def send_rest(self, data: bytes, sent: int, deadline: float | None) -> None:
        """Send what is left of a frame whose first ``sent`` bytes went out in one
        non-blocking ``send`` (see :attr:`sock`); each wait ends by ``deadline``.

        Raises:
            OSError: the other end is gone (``BrokenPipeError``...).
            TimeoutError: the deadline passed before the frame was sent.
        """
        with self._send_lock:
            self._send_from(data, sent, deadline)

    def _sendall(self, data: bytes, deadline: float | None) -> None:
        """``sendall`` whose every wait ends by ``deadline`` (re-armed for what is left
        after a partial send; a stalled send is :class:`TimeoutError`)."""
        armed = self._snd_armed
        if deadline is not None or armed != self.stall_s:
            self._snd_armed = self._arm(socket.SO_SNDTIMEO, armed, deadline)
        try:
            sent = self._sock.send(data)
        except BlockingIOError:  # SO_SNDTIMEO ended the wait
            sent = 0
        if sent != len(data):  # the rule: a frame fits the socket buffer
            self._send_from(data, sent, deadline)

    def _send_from(self, data: bytes, sent: int, deadline: float | None) -> None:
        wait, stalls = self._stall_bound(deadline, len(data) - sent)
        with memoryview(data) as view:
            while sent < len(view):
                try:
                    self._snd_armed = self._arm(socket.SO_SNDTIMEO, self._snd_armed, wait)
                except TimeoutError:
                    if stalls:
                        raise ProtocolError(
                            f"the peer took {sent} of {len(view)} bytes in {self.stall_s:g} s"
                            " and stopped reading"
                        ) from None
                    raise
                try:
                    sent += self._sock.send(view[sent:])
                except BlockingIOError:
                    continue

    def _stall_bound(self, deadline: float | None, size: int) -> tuple[float | None, bool]:
        """``(when to give up, whether that is the stall bound)`` for moving ``size``
        more bytes of a frame, from now."""
        if self.stall_s is None:
            return deadline, False
        by = time.monotonic() + self.stall_s + size / MIN_RATE
        if deadline is not None and deadline <= by:
            return deadline, False
        return by, True

    def recv(self, deadline: float | None = None) -> list[Any]:
        """Receive one message: a non-empty array whose first item is an int opcode.

        Args:
            deadline: ``time.monotonic()`` value to give up at, or ``None`` to wait.

        Raises:
            TimeoutError: the deadline passed first.
            EOFError: the other end closed the channel (the worker died).
            ProtocolError: the frame is too big or is not such a message.
        """
        if self._end == 0:
            armed = self._rcv_armed
            if (
                armed == self.stall_s
                if deadline is None
                else armed is not None
                and (
                    armed <= (remaining := deadline - _monotonic()) <= armed + _SLACK_S
                    or armed == self.stall_s < remaining  # type: ignore[operator]  # armed: a float
                )
            ):
                # The usual case, inline: nothing buffered, and the armed timeout ends
                # the wait by the deadline, or wakes it within the stall bound (see
                # _arm): one recv_into, which most often brings exactly one whole frame.
                try:
                    got = self._sock.recv_into(self._buf)
                except BlockingIOError:  # SO_RCVTIMEO ended the wait short of the deadline
                    got = -1
                except ConnectionResetError:
                    got = 0
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
                if got > 0:
                    self._end = got
        if self._end - self._start < _LEN.size:
            self._fill(_LEN.size, deadline)
        start = self._start
        (size,) = _LEN.unpack_from(self._buf, start)
        if size > self.max_frame:  # before a byte of the frame is read
            raise ProtocolError(f"frame of {size} bytes exceeds {self.max_frame}")
        end = start + _LEN.size + size
        if self._end < end:
            self._fill(_LEN.size + size, deadline)
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

    def _arm(self, option: int, armed: float | None, deadline: float | None) -> float | None:
        """Make the socket's blocking ``option`` wait (receive or send) end by ``deadline``.

        Args:
            armed: What ``option`` is set to now (seconds; ``None``: no timeout).

        Returns:
            What it is set to after (the caller keeps it).

        Raises:
            TimeoutError: the deadline has passed.
        """
        cap = self.stall_s  # the longest one wait may be (None: as long as the deadline)
        if deadline is None:
            if armed != cap:
                self._set_timeout(option, 0.0 if cap is None else cap)
            return cap
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if cap is not None and remaining > cap:
            return self._arm(option, armed, None)  # wait at most cap, then look again
        if armed is not None and remaining - _SLACK_S <= armed <= remaining:
            return armed
        # Armed a little short of the deadline, the next call's wait (a few µs later,
        # on the same budget) still fits, and needs no system call. The kernel rounds
        # the time up to its clock tick (1-4 ms), well inside KILL_GRACE_MS.
        timeout = remaining - _SLACK_S / 2 if remaining > _SLACK_S else remaining
        self._set_timeout(option, timeout)
        return timeout

    def _set_timeout(self, option: int, timeout: float) -> None:
        """Set ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` (``timeout`` seconds; 0: none)."""
        seconds = int(timeout)
        micros = max(int((timeout - seconds) * 1e6), 1) if timeout else 0
        self._sock.setsockopt(socket.SOL_SOCKET, option, _TIMEVAL.pack(seconds, micros))

    def _fill(self, n: int, deadline: float | None) -> None:
        """Read until the buffer holds at least ``n`` unconsumed bytes (the caller
        checked ``n`` against the frame cap)."""
        if len(self._buf) - self._start < n:
            self._make_room(n)
        sock = self._sock
        wait, stalls = deadline, False
        while self._end - self._start < n:
            if self._end > self._start and not stalls and self.stall_s is not None:
                # Part of a frame is here: the rest must follow (a trickle is a stall).
                wait, stalls = self._stall_bound(deadline, n)
            armed = self._rcv_armed
            if wait is not None or armed != self.stall_s:
                try:
                    self._rcv_armed = self._arm(socket.SO_RCVTIMEO, armed, wait)
                except TimeoutError:
                    if stalls:
                        raise ProtocolError(
                            f"{self._end - self._start} bytes of a {n}-byte frame arrived"
                            f" in {self.stall_s:g} s, and no more"
                        ) from None
                    raise
            try:
                got = sock.recv_into(self._view[self._end :] if self._end else self._buf)
            except BlockingIOError:  # SO_RCVTIMEO ended the wait: the deadline, or short of it
                continue
            except ConnectionResetError:
                got = 0
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
        try:
            self._sock.close()
        except OSError:
            pass


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
