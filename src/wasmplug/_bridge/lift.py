"""Lifting: canonical-ABI values → Python values (see :mod:`._convert`).

Lifting is bounded. Every lift of a call's result (or of one host function
call's arguments) starts with a byte budget on the bridge, ``b.lift_left``
(``Limits.max_result_bytes``): each list charges :data:`VALUE_BYTES` per element
value before it is built (so a list of millions of strings is refused before
any is decoded), and each string and ``list<u8>`` charges its contents.
Running out raises :class:`~wasmplug.ResultTooLarge`. Lists longer than
:data:`CHUNK` also check the call's deadline every :data:`CHUNK` elements
(``b.lift_deadline_s()``, a ``time.monotonic()`` value) and raise
:class:`~wasmplug.PluginTimeout` once it has passed.
"""

from __future__ import annotations

import ctypes
import struct
import time
from array import array
from collections.abc import Callable
from typing import Any, NoReturn

import attrs

from wasmplug._errors import PluginTimeout, ResultTooLarge

from . import ffi as f
from .convert import Lift, shared_converter
from .values import Err, Ok, Some, Variant
from .wit import (
    EnumT,
    FlagsT,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
    pascal,
    snake,
)

__all__ = [
    "CHUNK",
    "VALUE_BYTES",
    "decode_utf8",
    "lifter",
    "record_class",
    "string_result",
    "string_slot",
    "too_large",
]

VALUE_BYTES = 32
"""What one lifted value is charged against ``Limits.max_result_bytes``, in bytes
(the size of a ``wasmtime_component_val_t``)."""

CHUNK = 1 << 14
"""List elements lifted between two checks of the call's deadline."""


def too_large(b: Any) -> ResultTooLarge:
    """The fault of a result larger than ``b.max_lift`` (``Limits.max_result_bytes``)."""
    return ResultTooLarge(
        f"the lifted value is larger than Limits.max_result_bytes={b.max_lift} bytes "
        f"(strings and byte lists count their contents, other values {VALUE_BYTES} bytes each)"
    )


def _too_large(b: Any) -> NoReturn:
    raise too_large(b)


def _charge(b: Any, nbytes: int) -> None:
    """Take ``nbytes`` from the lift's budget, or raise :class:`ResultTooLarge`."""
    left = b.lift_left - nbytes
    b.lift_left = left
    if left < 0:
        _too_large(b)


def _past_deadline(b: Any) -> None:
    if time.monotonic() > b.lift_deadline_s():
        raise PluginTimeout("exceeded its time limit while its result was being lifted")


_decode_utf8: Callable[[Any, int, None], str] = ctypes.PYFUNCTYPE(
    ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_char_p
)(("PyUnicode_DecodeUTF8", ctypes.pythonapi))
decode_utf8 = _decode_utf8
"""``_decode_utf8(address, size, None) -> str``: CPython's ``PyUnicode_DecodeUTF8``,
a ``str`` straight from C memory, without the intermediate ``bytes`` copy of
``string_at(address, size).decode()`` (and at about 60% of its cost). Raises
``UnicodeDecodeError`` like ``bytes.decode``; wasmtime has already checked the
guest's string when it lifted it, so that never happens here."""


def _string(vec: Any) -> str:
    size = vec.size
    return _decode_utf8(vec.data, size, None) if size else ""


def _lift_string(val: Any, b: Any) -> str:
    vec = val.of.string
    size = vec.size
    if not size:
        return ""
    left = b.lift_left - size
    b.lift_left = left
    if left < 0:
        _too_large(b)
    return _decode_utf8(vec.data, size, None)


def _values(t: WitType) -> int:
    """Values a lifted ``t`` holds whatever its contents (a record counts its fields)."""
    if isinstance(t, RecordT):
        return 1 + sum(_values(ft) for _, ft in t.fields)
    if isinstance(t, TupleT):
        return 1 + sum(_values(et) for et in t.elements)
    return 1


def _lift_prim(t: Prim) -> Lift:
    name = t.name
    if name == "string":
        return _lift_string
    if name == "char":
        return lambda val, _b: chr(val.of.character)
    if name == "bool":
        return lambda val, _b: bool(val.of.boolean)
    if name == "f32":
        # Round-trip through float32 so the Python float equals the guest's value.
        return lambda val, _b: float(val.of.f32)
    attr = name

    def lift(val: Any, _b: Any) -> Any:
        return getattr(val.of, attr)

    return lift


# Fixed-size primitives: (struct/array code, width in bytes, post-processing).
SCALAR_CODES: dict[str, tuple[str, int, Any]] = {
    "bool": ("?", 1, None),
    "s8": ("b", 1, None),
    "u8": ("B", 1, None),
    "s16": ("h", 2, None),
    "u16": ("H", 2, None),
    "s32": ("i", 4, None),
    "u32": ("I", 4, None),
    "s64": ("q", 8, None),
    "u64": ("Q", 8, None),
    "f32": ("f", 4, None),
    "f64": ("d", 8, None),
    "char": ("I", 4, chr),
}


def scalar_code(t: WitType | None) -> tuple[str, int, Any] | None:
    """``(code, width, post)`` for a fixed-size primitive, else ``None``."""
    return SCALAR_CODES.get(t.name) if isinstance(t, Prim) else None


def payload_struct(
    offsets: list[int], codes: list[tuple[str, int, Any]], total: int
) -> struct.Struct:
    """A little-endian ``struct`` of ``total`` bytes reading (or writing) each scalar
    payload at its byte offset, skipping everything else (kind tags, names, padding)."""
    fmt, pos = "<", 0
    for offset, (code, width, _) in zip(offsets, codes, strict=True):
        if offset > pos:
            fmt += f"{offset - pos}x"
        fmt += "B" if code == "?" else code  # '?' would reject nothing, but keep bytes exact
        pos = offset + width
    if total > pos:
        fmt += f"{total - pos}x"
    return struct.Struct(fmt)


def _value_array(val: Any, b: Any) -> tuple[int, bytes]:
    """A list's length and its C-API value array as bytes (one copy, in C), charged
    :data:`VALUE_BYTES` per element before it is read."""
    lst = val.of.list
    n = lst.size
    if not n:
        return 0, b""
    _charge(b, n * VALUE_BYTES)
    return n, ctypes.string_at(lst.data, n * f.VAL_SIZE)


def _lift_scalar_list(t: ListT, code: str, width: int, post: Any) -> Lift:
    """A list of fixed-size primitives in bulk: every value's payload bytes are
    gathered with ``width`` strided slice copies (in C), then one ``array``."""
    size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET

    def lift(val: Any, b: Any) -> list[Any]:
        n, blob = _value_array(val, b)
        if not n:
            return []
        raw: bytes | bytearray
        if width == 1:
            raw = blob[offset::size]
        else:
            raw = bytearray(n * width)
            for k in range(width):
                raw[k::width] = blob[offset + k :: size]
        if code == "?":
            return [b != 0 for b in raw]
        values = array(code, raw).tolist()
        return values if post is None else list(map(post, values))

    return lift


def _lift_string_list(t: ListT) -> Lift:
    """``list<string>`` in bulk: every element's ``(size, data)`` is read with one
    ``struct.iter_unpack`` over the value array (no ctypes object per element), the
    contents are charged before any is copied, then each is copied and decoded."""
    size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET
    # wasm_name_t at the payload: size_t size, then the data pointer.
    vec = struct.Struct(f"<{offset}xQQ{size - offset - 16}x")
    string_at = ctypes.string_at

    def lift(val: Any, b: Any) -> list[str]:
        n, blob = _value_array(val, b)
        if not n:
            return []
        pairs = list(vec.iter_unpack(blob))
        _charge(b, sum([p[0] for p in pairs]))
        if n <= CHUNK:
            return [string_at(p, k).decode("utf-8") if k else "" for k, p in pairs]
        out: list[str] = []
        for start in range(0, n, CHUNK):
            _past_deadline(b)
            out += [
                string_at(p, k).decode("utf-8") if k else ""
                for k, p in pairs[start : start + CHUNK]
            ]
        return out

    return lift


def _lift_list(t: ListT) -> Lift:
    info = scalar_code(t.element)
    if info is not None and t.element != Prim("u8"):
        return _lift_scalar_list(t, *info)
    if t.element == Prim("string"):
        return _lift_string_list(t)
    if t.element == Prim("u8"):
        size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET

        def lift_bytes(val: Any, b: Any) -> bytes:
            lst = val.of.list
            n = lst.size
            if not n:
                return b""
            left = b.lift_left - n
            b.lift_left = left
            if left < 0:
                _too_large(b)
            return ctypes.string_at(lst.data, n * size)[offset::size]

        return lift_bytes
    elem = lifter(t.element)
    weight = VALUE_BYTES * _values(t.element)

    def lift(val: Any, b: Any) -> list[Any]:
        lst = val.of.list
        n = lst.size
        left = b.lift_left - n * weight
        b.lift_left = left
        if left < 0:
            _too_large(b)
        data = lst.data
        if n <= CHUNK:
            return [elem(data[i], b) for i in range(n)]
        out: list[Any] = []
        for start in range(0, n, CHUNK):
            _past_deadline(b)
            out += [elem(data[i], b) for i in range(start, min(n, start + CHUNK))]
        return out

    return lift


_RECORD_CLASSES: dict[tuple[str, ...], type] = {}


def record_class(names: tuple[str, ...]) -> type:
    """A frozen attrs class for a record with these WIT field names (cached by shape)."""
    cls = _RECORD_CLASSES.get(names)
    if cls is None:
        attrs_names = [snake(n) for n in names]
        title = "".join(pascal(n) for n in names[:3]) or "Empty"
        cls = attrs.make_class(
            f"Record{title}" if len(names) <= 3 else "Record",
            {a: attrs.field() for a in attrs_names},
            frozen=True,
            slots=True,
        )
        cls.__module__ = "wasmplug.records"
        _RECORD_CLASSES[names] = cls
    return cls


def _lift_flat_record(cls: type, codes: list[tuple[str, int, Any]]) -> Lift:
    """A record of fixed-size primitives: one ``struct`` unpack over the entries."""
    esize = ctypes.sizeof(f.ValRecordEntry)
    base = f.ValRecordEntry.val.offset + f.VAL_PAYLOAD_OFFSET
    total = len(codes) * esize
    unpack = payload_struct([i * esize + base for i in range(len(codes))], codes, total).unpack
    posts = [(i, post or bool) for i, (c, _, post) in enumerate(codes) if post or c == "?"]
    string_at = ctypes.string_at

    def lift(val: Any, _b: Any) -> Any:
        values = unpack(string_at(val.of.record.data, total))
        if not posts:
            return cls(*values)
        fixed = list(values)
        for i, post in posts:
            fixed[i] = post(fixed[i])
        return cls(*fixed)

    return lift


def _lift_record(t: RecordT) -> Lift:
    lifts = [lifter(ft) for _, ft in t.fields]
    cls = record_class(tuple(n for n, _ in t.fields))
    n = len(lifts)
    codes = [scalar_code(ft) for _, ft in t.fields]
    if n and all(c is not None for c in codes):
        return _lift_flat_record(cls, codes)  # type: ignore[arg-type]

    def lift(val: Any, b: Any) -> Any:
        data = val.of.record.data
        return cls(*[lifts[i](data[i].val, b) for i in range(n)])

    return lift


def _lift_tuple(t: TupleT) -> Lift:
    lifts = [lifter(et) for et in t.elements]
    n = len(lifts)

    def lift(val: Any, b: Any) -> tuple[Any, ...]:
        data = val.of.tuple.data
        return tuple([lifts[i](data[i], b) for i in range(n)])

    return lift


def _lift_variant(t: VariantT) -> Lift:
    # Keyed by the raw case-name bytes: no UTF-8 decode per value.
    cases = {name.encode(): (name, None if ct is None else lifter(ct)) for name, ct in t.cases}
    string_at = ctypes.string_at

    def lift(val: Any, b: Any) -> Variant:
        var = val.of.variant
        disc = var.discriminant
        name, low = cases[string_at(disc.data, disc.size)]
        if low is None:
            return Variant(name)
        return Variant(name, low(var.val.contents, b))

    return lift


def _lift_option(t: OptionT) -> Lift:
    inner = lifter(t.payload)
    nested = isinstance(t.payload, OptionT)

    def lift(val: Any, b: Any) -> Any:
        ptr = val.of.option
        if not ptr:
            return None
        value = inner(ptr.contents, b)
        return Some(value) if nested else value

    return lift


def _lift_result(t: ResultT) -> Lift:
    ok = None if t.ok is None else lifter(t.ok)
    err = None if t.err is None else lifter(t.err)

    def lift(val: Any, b: Any) -> Ok[Any] | Err[Any]:
        res = val.of.result
        if res.is_ok:
            return Ok(None if ok is None else ok(res.val.contents, b))
        return Err(None if err is None else err(res.val.contents, b))

    return lift


def _build_lifter(t: WitType) -> Lift:
    """Build the lifter for WIT type ``t``."""
    if isinstance(t, Prim):
        return _lift_prim(t)
    if isinstance(t, ListT):
        return _lift_list(t)
    if isinstance(t, RecordT):
        return _lift_record(t)
    if isinstance(t, TupleT):
        return _lift_tuple(t)
    if isinstance(t, VariantT):
        return _lift_variant(t)
    if isinstance(t, EnumT):
        return lambda val, _b: _string(val.of.enumeration)
    if isinstance(t, FlagsT):

        def lift_flags(val: Any, _b: Any) -> frozenset[str]:
            flags = val.of.flags
            return frozenset(_string(flags.data[i]) for i in range(flags.size))

        return lift_flags
    if isinstance(t, OptionT):
        return _lift_option(t)
    if isinstance(t, ResultT):
        return _lift_result(t)

    def lift_handle(val: Any, b: Any) -> Any:
        return b.lift_handle(t, val)

    return lift_handle


_LIFTERS: dict[WitType, Lift] = {}


def lifter(t: WitType) -> Lift:
    """The lifter for WIT type ``t``, built once per type and shared (:func:`shared_converter`)."""
    return shared_converter(_LIFTERS, t, _build_lifter)


_CHARS = ctypes.POINTER(ctypes.c_char)


def string_slot(val: Any) -> tuple[Any, Any]:
    """``(size, chars)``: a ``c_size_t`` alias of the length and a ``POINTER(c_char)``
    alias of the data pointer of the string in ``val`` (a ``wasmtime_component_val_t``
    that outlives them), to read a string result without ``val.of.string`` per call.

    ``chars[:n]`` is the string's ``n`` bytes as ``bytes`` (ctypes slices a
    ``c_char`` pointer with one ``PyBytes_FromStringAndSize``), and ``.decode()``
    checks them as strictly as ``PyUnicode_DecodeUTF8``: together about 0.2 µs less
    than one call of a ctypes prototype of ``PyUnicode_DecodeUTF8`` for a 1 KiB
    string (libffi's call costs more than the second copy). Slice only when
    ``n > 0``: the pointer of an empty string need not be valid."""
    address = ctypes.addressof(val) + f.VAL_PAYLOAD_OFFSET
    size = ctypes.c_size_t.from_address(address)
    chars = _CHARS.from_address(address + ctypes.sizeof(ctypes.c_size_t))
    return size, chars


def string_result(val: Any) -> Lift:
    """A lifter for a ``string`` result that lives in ``val`` (a call buffer's
    result slot): its size and pointer are read through aliases made once
    (:func:`string_slot`). Same budget as :func:`lifter`'s."""
    size, chars = string_slot(val)

    def lift(_val: Any, b: Any) -> str:
        n = size.value
        if not n:
            return ""
        left = b.lift_left - n
        b.lift_left = left
        if left < 0:
            _too_large(b)
        data: bytes = chars[:n]
        return data.decode()

    return lift
