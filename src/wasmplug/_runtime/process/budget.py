"""Bounds on the work a worker can make the application do while it serves a call.

A compromised worker controls every byte on its channel, and the calling thread
decodes and serves what it sends. Three bounds keep that work proportional to what a
legal worker could cause (the frame size cap, the stall bound and the deadlines are
in :mod:`.wire` and :mod:`.backend`):

**Objects per frame.** Decoding a frame costs far more memory than its size: an
empty msgpack array is one byte and a Python list of 56, a two-character string
three bytes and 56 (measured: a 1 MiB frame of empty arrays decodes into 65 MiB).
The application's :class:`~.wire.Channel` therefore decodes a frame longer than
:func:`frame_objects` bytes with a count of the objects it builds, and refuses it
(:class:`~.codec.ProtocolError`, the worker is killed) as soon as the count passes
that bound; no single array may be longer either. A frame at most that long
cannot hold more objects than it has bytes, so it is decoded as is.

The bound is what the plugin's WIT types can legally produce. A worker lifts each
call's result, and each host call's arguments, under ``Limits.max_result_bytes``
(``M``): every element of a list is charged :data:`~wasmplug._bridge.lift.VALUE_BYTES`
per value it holds (a record or tuple counts itself and its fields) before it is
lifted, a string or ``list<u8>`` its contents. On the wire (see :mod:`.codec`) a
value is a few msgpack objects (a variant is an array, its case index and its
payload), so a value of type ``T`` is at most ``fixed(T)`` objects outside its
lists plus, for all the list elements it can hold within ``M`` together, at most
``M / VALUE_BYTES`` times the largest objects-per-charged-value ratio of any list
element type in ``T``. With ``max_result_bytes=None`` a type with lists has no such
bound (nor in-process); a type without lists always has one. Every frame besides a
value needs at most :data:`ENVELOPE` objects (its opcode, a fault's message and
notes, a ``DROP`` of at most :data:`DROP_CHUNK` ids).

**Guest output.** A worker forwards guest output lines after its own rate limit
(``GuestOutput``: 100 lines per second per stream, plus a "suppressed" notice), and
the application applies that limit again. Decoding the lines it then drops still
costs the calling thread, so more than :data:`LOG_FRAMES_PER_S` ``LOG`` frames in
a second is a protocol violation (:class:`LogRate`).

**Frames that make no progress.** ``DROP`` and ``SPAN`` frames precede a message
that moves the call on (a host call, the reply): a worker sends at most a few
between two, ``DROP`` chunks of a mass release aside. More than
:data:`IDLE_FRAMES` in a row is a protocol violation, with or without a call
deadline. (A host call is progress: it runs the application's own function, as a
guest's host call does in-process, within the call's deadline.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from wasmplug._bridge.lift import VALUE_BYTES
from wasmplug._bridge.wit import (
    FuncSig,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
)

from .codec import ProtocolError

__all__ = [
    "DROP_CHUNK",
    "ENVELOPE",
    "IDLE_FRAMES",
    "LOG_FRAMES_PER_S",
    "LogRate",
    "frame_objects",
    "value_objects",
]

DROP_CHUNK = 1024
"""Most object ids one ``DROP`` message carries (a worker sends more as several)."""

ENVELOPE = DROP_CHUNK + 256
"""Objects any message may hold besides one WIT value: the opcode, the ids of a
``DROP``, a fault's kind, message and notes."""

LOG_FRAMES_PER_S = 500
"""Most ``LOG`` frames a worker may send in one second: a legal worker sends at most
2 streams x 2 of its rate-limit windows x (100 lines + 1 notice) = 404."""

IDLE_FRAMES = 1024
"""Most ``DROP`` / ``SPAN`` frames in a row, between two frames that move a call on
(a legal worker: one ``DROP`` per :data:`DROP_CHUNK` ids released, a ``SPAN`` per
instance made)."""


def _walk(t: WitType | None, ratios: list[float]) -> int:
    """Objects of one ``t`` on the wire, a list counting as its array alone; appends
    each nested list element type's objects per charged value to ``ratios``."""
    if t is None:
        return 0
    if isinstance(t, ListT):
        if t.element != Prim("u8"):  # list<u8> is one bin, charged per byte
            ratios.append(_walk(t.element, ratios) / _charged(t.element))
        return 1
    if isinstance(t, RecordT):
        return 1 + sum(_walk(ft, ratios) for _, ft in t.fields)
    if isinstance(t, TupleT):
        return 1 + sum(_walk(et, ratios) for et in t.elements)
    if isinstance(t, VariantT):  # [index] or [index, payload]
        return 2 + max(_walk(ct, ratios) for _, ct in t.cases)
    if isinstance(t, OptionT):  # nil or [payload]
        return 1 + _walk(t.payload, ratios)
    if isinstance(t, ResultT):  # [tag] or [tag, payload]
        return 2 + max(_walk(t.ok, ratios), _walk(t.err, ratios))
    return 1  # a scalar, string, enum, flags or handle


def _charged(t: WitType) -> int:
    """Values one list element of type ``t`` is charged for (see ``_bridge.lift``)."""
    if isinstance(t, RecordT):
        return 1 + sum(_charged(ft) for _, ft in t.fields)
    if isinstance(t, TupleT):
        return 1 + sum(_charged(et) for et in t.elements)
    return 1


def value_objects(t: WitType, max_result_bytes: int | None) -> int | None:
    """Most msgpack objects a legal wire value of ``t`` holds when it was lifted within
    ``max_result_bytes`` (``None``: unbounded, for a type with lists and no limit)."""
    ratios: list[float] = []
    fixed = _walk(t, ratios)
    if not ratios:
        return fixed
    if max_result_bytes is None:
        return None
    return fixed + math.ceil(max_result_bytes / VALUE_BYTES * max(ratios))


def frame_objects(
    exports: Iterable[FuncSig], imports: Iterable[FuncSig], max_result_bytes: int | None
) -> int | None:
    """Most objects one frame from a worker may decode into (``None``: no bound but the
    frame's size).

    Args:
        exports: The plugin's exports (a result, or a fault's ``err`` payload, is a
            value of the result type).
        imports: Its host functions (a host call's arguments are a tuple of the
            parameter types).
        max_result_bytes: ``Limits.max_result_bytes`` (``None``: no limit).
    """
    values: list[WitType] = [sig.result for sig in exports if sig.result is not None]
    values += [TupleT(tuple(t for _, t in sig.params)) for sig in imports]
    most = 0
    for t in values:
        n = value_objects(t, max_result_bytes)
        if n is None:
            return None
        most = max(most, n)
    return ENVELOPE + most


class LogRate:
    """Counts one worker's ``LOG`` frames: at most :data:`LOG_FRAMES_PER_S` a second
    (checked with the clock once per that many frames)."""

    __slots__ = ("_count", "_since")

    def __init__(self) -> None:
        self._count = 0
        self._since = 0.0

    def tick(self) -> None:
        """One more ``LOG`` frame.

        Raises:
            ProtocolError: the worker sent more than the rate allows.
        """
        self._count += 1
        if self._count > LOG_FRAMES_PER_S:
            now = time.monotonic()
            if now - self._since < 1.0:
                raise ProtocolError(f"more than {LOG_FRAMES_PER_S} LOG frames in a second")
            self._count, self._since = 1, now
