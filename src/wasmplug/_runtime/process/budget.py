"""Bounds on the work a worker can make the application do while it serves a call.

A compromised worker controls every byte on its channel, and the calling thread
decodes and serves what it sends. Three bounds keep that work proportional to what a
legal worker could cause (the frame size cap, the stall bound and the deadlines are
in :mod:`.wire` and :mod:`.backend`):

**Objects per frame.** Decoding a frame costs far more memory than its size: an
empty msgpack array is one byte and a Python list of 56, a two-character string
three bytes and 56 (measured: a 1 MiB frame of empty arrays decodes into 65 MiB).
A frame longer than :func:`frame_objects` bytes is therefore checked by
:func:`check_frame` before a single object is built: a walk over its bytes that
counts every object at the header of the array holding it, and refuses the frame
(:class:`~.codec.ProtocolError`, the worker is killed) once the count passes that
bound, or once arrays nest deeper than :func:`frame_depth` (what the plugin's WIT
types can nest to), or at a map, an extension type or a reserved byte. (Counting
objects as msgpack completes each array, as ``list_hook`` does, is not enough: the
arrays still open hold what they have so far uncounted, so a frame nested hundreds
deep could build 20 bytes of short strings per frame byte before its first array
completed.) A frame at most that long cannot hold more objects than it has bytes,
so it is decoded as is, the fast path of every scalar result; what it holds is
checked against its WIT type by the codec, which no value nested deeper than its
type passes.

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

The depth bound is exact: a value of type ``T`` nests as deep as ``T`` does on the
wire (a list, record, tuple, variant, option or result is one array more; a scalar,
string, ``list<u8>``, enum, flags or handle none), inside its message's arrays (a
``RESULT`` or ``FAULT`` one, a ``HOSTCALL``'s arguments two; a ``DROP`` is two deep).

The walk costs a Python loop iteration per string and per array; the elements of an
array of numbers (or nil or bools) are matched by ``bytes`` and ``re`` in C: about
what msgpack takes to build them (measured, 1 M ``u32``: 1-3 ms if every value has
the same size, ~95 ms if not, against 30-95 ms for ``unpackb``).

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
import re
import struct
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
    "check_frame",
    "frame_depth",
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


def _depth(t: WitType | None) -> int:
    """How many arrays deep a wire value of ``t`` nests (a scalar: 0)."""
    if t is None:
        return 0
    if isinstance(t, ListT):
        return 0 if t.element == Prim("u8") else 1 + _depth(t.element)
    if isinstance(t, RecordT):
        return 1 + max((_depth(ft) for _, ft in t.fields), default=0)
    if isinstance(t, TupleT):
        return 1 + max((_depth(et) for et in t.elements), default=0)
    if isinstance(t, VariantT):
        return 1 + max(_depth(ct) for _, ct in t.cases)
    if isinstance(t, OptionT):
        return 1 + _depth(t.payload)
    if isinstance(t, ResultT):
        return 1 + max(_depth(t.ok), _depth(t.err))
    return 0


def frame_depth(exports: Iterable[FuncSig], imports: Iterable[FuncSig]) -> int:
    """How deep the arrays of a legal frame from a worker may nest: the message (1),
    a ``DROP``'s ids (2), a result or ``err`` payload (1 + its type's depth), a host
    call's arguments (2 + the deepest parameter type's)."""
    results = [_depth(sig.result) for sig in exports]
    params = [_depth(t) for sig in imports for _, t in sig.params]
    return max(2, 1 + max(results, default=0), 2 + max(params, default=0))


# The msgpack format, by an object's first byte (https://github.com/msgpack/msgpack/
# blob/master/spec.md): the size of a number, nil, bool or short string (fixstr) in
# bytes, all in that byte (0: some other kind, read by check_frame).
_SIZES = bytearray(256)
for _b in (*range(0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3):
    _SIZES[_b] = 1
for _b in range(0xA0, 0xC0):
    _SIZES[_b] = 1 + (_b & 0x1F)
for _b, _n in {0xCC: 2, 0xD0: 2, 0xCD: 3, 0xD1: 3, 0xCA: 5, 0xCE: 5, 0xD2: 5}.items():
    _SIZES[_b] = _n
for _b in (0xCB, 0xCF, 0xD3):
    _SIZES[_b] = 9
_FIXED = bytes(_SIZES)
_ONE_BYTE = bytes(b for b in range(256) if _FIXED[b] == 1)
# str8/bin8, str16/bin16, str32/bin32: the width of their length field.
_BLOBS = {0xC4: 1, 0xD9: 1, 0xC5: 2, 0xDA: 2, 0xC6: 4, 0xDB: 4}
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_NUMBER = (
    rb"(?:[\x00-\x7f\xc0\xc2\xc3\xe0-\xff]|[\xcc\xd0].|[\xcd\xd1].{2}"
    rb"|[\xca\xce\xd2].{4}|[\xcb\xcf\xd3].{8})"
)
# Runs of exactly n numbers (or nils or bools), longest first.
_RUNS = [(n, re.compile(_NUMBER + b"{%d}" % n, re.DOTALL).match) for n in (256, 16)]


def check_frame(data: bytes | memoryview, max_objects: int, max_depth: int) -> None:
    """Walk a frame's msgpack bytes, building nothing, and refuse what would decode
    into more than ``max_objects`` objects or nest arrays deeper than ``max_depth``.

    Every object but the outermost is an element of an array, so the objects are
    counted at the array headers, before any element is read.

    Raises:
        ProtocolError: too many objects, too deep, a map, an extension type, a
            reserved byte, or bytes that are not one whole msgpack object.
    """
    n = len(data)
    i = 0
    count = 1
    left = 1  # objects still to read in the innermost open array (the frame: one)
    outer: list[int] = []  # the same for each array around it
    fixed = _FIXED
    try:
        while True:
            if not left:
                if not outer:
                    break
                left = outer.pop()
                continue
            b = data[i]
            size = fixed[b]
            left -= 1
            if size:
                i += size
                continue
            if 0x90 <= b <= 0x9F:
                m = b & 0x0F
                i += 1
            elif b == 0xDC:
                m = _U16(data, i + 1)[0]
                i += 3
            elif b == 0xDD:
                m = _U32(data, i + 1)[0]
                i += 5
            else:
                width = _BLOBS.get(b)
                if width is None:
                    raise ProtocolError(
                        f"a frame holds a msgpack map, extension type or reserved byte ({b:#04x})"
                    )
                length = (
                    data[i + 1] if width == 1 else (_U16 if width == 2 else _U32)(data, i + 1)[0]
                )
                i += 1 + width + length
                continue
            if len(outer) >= max_depth:
                raise ProtocolError(f"a frame nests arrays more than {max_depth} deep")
            count += m
            if count > max_objects:
                raise ProtocolError(f"a frame decodes into more than {max_objects} objects")
            i, m = _skip_numbers(data, i, m)
            if m:
                outer.append(left)
                left = m
    except (IndexError, struct.error):
        raise ProtocolError("a truncated frame") from None
    if i != n:
        raise ProtocolError("a frame holds more than one message, or is truncated")


def _skip_numbers(data: bytes | memoryview, i: int, m: int) -> tuple[int, int]:
    """Skip the numbers (nils, bools) that start an array of ``m`` elements at ``i``,
    matched in C; ``(where the rest begins, elements left)``."""
    if m < 16:
        return i, m
    b = data[i]
    size = _FIXED[b]
    end = i + size * m
    if size and end <= len(data):
        if size == 1:  # numbers under 128, nils, bools, empty strings: one byte each
            if not bytes(data[i:end]).translate(None, _ONE_BYTE):
                return end, 0
        elif data[i:end:size] == bytes((b,)) * m:  # all of one kind and size
            return end, 0
    for run, match in _RUNS:
        while m >= run:
            found = match(data, i)
            if found is None:
                break
            i = found.end()
            m -= run
    return i, m


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
