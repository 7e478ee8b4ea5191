"""The channel between the application and a worker: msgpack frames over a socketpair.

A frame is a 4-byte big-endian length and that many bytes of msgpack; every
message is an array whose first item is an opcode. msgpack is a data-only
format: decoding it never imports or calls anything (unlike pickle), so a
compromised worker can send only values, and :mod:`.codec` checks each of them
against its WIT type. Frames are capped (:data:`MAX_FRAME_BYTES`, or less: see
``ProcessBackend``), and the cap is checked before a byte of the frame is read;
anything malformed is a :class:`~.codec.ProtocolError`,
and the host kills the worker that sent it.

Messages (``[opcode, ...]``)::

    application -> worker                 worker -> application
    INIT    {settings}                    READY    pid
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

from .codec import ProtocolError

__all__ = ["MAX_FRAME_BYTES", "WORKER_SPANS", "Channel", "Op"]

MAX_FRAME_BYTES = 1 << 30
"""Largest frame accepted (1 GiB); a bigger length prefix is a protocol violation."""

_LEN = struct.Struct(">I")
_CHUNK = 1 << 16
_MAX_READ = 1 << 20  # bytes asked of one recv (it allocates that much first)


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

    Every wait is a socket timeout set to what is left of the deadline (CPython
    then waits in one ``poll(2)`` before each ``recv``/``send``); ``None`` blocks.
    A frame of up to :data:`_CHUNK` bytes is sent with its length prefix in one
    ``send``.

    ``recv`` is not thread-safe: one call at a time uses a worker (its lock), and
    the worker reads on one thread. ``send`` is: the worker forwards guest output
    lines from whichever thread drained them (its stdio pump, a call thread).

    Measured (a ping-pong of CALL-sized frames between two processes, and a timing
    loop of ``add`` calls, on the loaded 2-core VM): a non-blocking socket with
    our own ``poll`` was no faster than the socket timeout (36-52 µs vs 30-43 µs
    a round trip), and spinning on ``recv`` before sleeping made calls slower
    (1.8-2.7 ms vs 1.0-1.4 ms: the spinning reader takes the core its worker
    needs), so neither is used.

    Attributes:
        max_frame: Largest frame :meth:`recv` accepts, in bytes.
    """

    __slots__ = ("_buf", "_packb", "_send_lock", "_sock", "_timeout", "max_frame")

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME_BYTES) -> None:
        self.max_frame = max_frame
        self._sock = sock
        self._buf = bytearray()
        self._timeout: float | None = None
        sock.settimeout(None)
        self._packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Any, deadline: float | None = None) -> None:
        """Send one message.

        Args:
            deadline: ``time.monotonic()`` value to give up at, or ``None`` to wait;
                only a frame of :data:`_CHUNK` bytes or more can wait (for a
                worker that does not read), and only such a frame is timed.

        Raises:
            OSError: the other end is gone (``BrokenPipeError``...).
            TimeoutError: the deadline passed before the frame was sent.
        """
        with self._send_lock:
            data = self._packb(message)
            if len(data) < _CHUNK:
                # Fits the socket buffer of a peer that answers each message before
                # the next: it never waits, so no settimeout (a system call) first.
                self._sock.sendall(_LEN.pack(len(data)) + data)
            else:
                self._wait_until(deadline)
                self._sock.sendall(_LEN.pack(len(data)))
                self._wait_until(deadline)
                self._sock.sendall(data)

    def recv(self, deadline: float | None = None) -> list[Any]:
        """Receive one message: a non-empty array whose first item is an int opcode.

        Args:
            deadline: ``time.monotonic()`` value to give up at, or ``None`` to wait.

        Raises:
            TimeoutError: the deadline passed first.
            EOFError: the other end closed the channel (the worker died).
            ProtocolError: the frame is too big or is not such a message.
        """
        buf = self._buf
        if len(buf) < _LEN.size:
            self._fill(_LEN.size, deadline)
        (size,) = _LEN.unpack_from(buf)
        if size > self.max_frame:
            raise ProtocolError(f"frame of {size} bytes exceeds {self.max_frame}")
        end = _LEN.size + size
        if len(buf) < end:
            self._fill(end, deadline)
        try:
            with memoryview(buf) as view:
                message = msgpack.unpackb(view[_LEN.size : end], raw=False, strict_map_key=True)
        except Exception as e:  # every malformed-input failure, RecursionError included
            raise ProtocolError(f"undecodable frame: {type(e).__name__}: {e}") from None
        finally:
            del buf[:end]
        if message.__class__ is not list or not message or message[0].__class__ is not int:
            raise ProtocolError("a message must be an array starting with an int opcode")
        return message

    def _wait_until(self, deadline: float | None) -> None:
        """Make the socket's blocking calls give up at ``deadline``.

        Raises:
            TimeoutError: the deadline has passed.
        """
        if deadline is None:
            if self._timeout is not None:
                self._sock.settimeout(None)
                self._timeout = None
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self._sock.settimeout(remaining)
        self._timeout = remaining

    def _fill(self, n: int, deadline: float | None) -> None:
        """Read until the buffer holds at least ``n`` bytes."""
        buf = self._buf
        sock = self._sock
        while len(buf) < n:
            self._wait_until(deadline)
            try:
                chunk = sock.recv(min(max(_CHUNK, n - len(buf)), _MAX_READ))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError("channel closed")
            buf += chunk

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
