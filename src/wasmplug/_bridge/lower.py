"""Lowering: Python values → canonical-ABI values (see :mod:`._convert`)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmplug._errors import WitTypeError, WitValueError

from . import ffi as f
from .accept import (
    Convert,
    byte_string,
    enum_case,
    field_value,
    flag_names,
    is_number_list,
    number_array,
    option_payload,
    record_source,
    result_case,
    scalar_converter,
    sequence,
    tuple_items,
    utf8,
    variant_case,
)
from .convert import Lower, prefixed, shared_converter
from .lift import scalar_code
from .wit import (
    EnumT,
    FlagsT,
    HandleT,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
    snake,
)

__all__ = ["lowerer", "name_vec", "scalar"]

byref = ctypes.byref


_SCALAR_CTYPES: dict[str, tuple[int, Any]] = {
    "bool": (f.BOOL, ctypes.c_bool),
    "s8": (f.S8, ctypes.c_int8),
    "u8": (f.U8, ctypes.c_uint8),
    "s16": (f.S16, ctypes.c_int16),
    "u16": (f.U16, ctypes.c_uint16),
    "s32": (f.S32, ctypes.c_int32),
    "u32": (f.U32, ctypes.c_uint32),
    "s64": (f.S64, ctypes.c_int64),
    "u64": (f.U64, ctypes.c_uint64),
    "f32": (f.F32, ctypes.c_float),
    "f64": (f.F64, ctypes.c_double),
    "char": (f.CHAR, ctypes.c_uint32),
}


_SCALARS: dict[str, tuple[int, Any, Convert, Callable[[Any], Any] | None]] = {}


def scalar(t: WitType | None) -> tuple[int, Any, Convert, Callable[[Any], Any] | None] | None:
    """For a fixed-size primitive, ``(kind, ctype, convert, post_lift)``; else ``None``.
    Built once per primitive and shared (see :func:`lowerer`)."""
    if not isinstance(t, Prim) or t.name not in _SCALAR_CTYPES:
        return None
    info = _SCALARS.get(t.name)
    if info is None:
        info = _SCALARS[t.name] = _build_scalar(t)  # type: ignore[assignment]
    return info


def _build_scalar(t: Prim) -> tuple[int, Any, Convert, Callable[[Any], Any] | None] | None:
    """For a fixed-size primitive, ``(kind, ctype, convert, post_lift)``; else ``None``.

    The bridge keeps one ctypes object aliasing the payload of each scalar
    argument slot, so lowering a scalar is one ``slot.value = convert(v)``
    (the kind tag is written once, when the slot is created). ``post_lift``
    turns the slot's raw value into Python (``chr`` for ``char``), if needed.
    """
    if not isinstance(t, Prim) or t.name not in _SCALAR_CTYPES:
        return None
    kind, ctype = _SCALAR_CTYPES[t.name]
    convert = scalar_converter(t)
    assert convert is not None
    return kind, ctype, convert, chr if t.name == "char" else None


def _lower_prim(t: Prim) -> Lower:
    info = scalar(t)
    if info is not None:
        kind, _, convert, _ = info
        attr = "boolean" if t.name == "bool" else "character" if t.name == "char" else t.name

        def lower_scalar(v: Any, val: Any, _b: Any) -> None:
            raw = convert(v)
            val.kind = kind
            setattr(val.of, attr, raw)

        return lower_scalar

    def lower_string(v: Any, val: Any, _b: Any) -> None:
        f.bytes_to_vec(utf8(t, v), val.of.string)
        val.kind = f.STRING

    return lower_string


def _abandon(data: Any, start: int, stop: int) -> None:
    """Mark uninitialised slots as ``bool`` so deleting their container is safe."""
    for j in range(start, stop):
        data[j].kind = f.BOOL


def _lower_bytes(t: ListT) -> Lower:
    size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET
    u8 = bytes([f.U8])

    def lower(v: Any, val: Any, _b: Any) -> None:
        v = byte_string(t, v)
        n = len(v)
        # Build the whole array of u8 values in one buffer with strided slice
        # assignment, instead of one ctypes write per byte.
        buf = bytearray(n * size)
        buf[0::size] = u8 * n
        buf[offset::size] = v
        arr = (f.Val * n).from_buffer(buf) if n else None
        f.vallist_new(byref(val.of.list), n, arr)
        val.kind = f.LIST

    return lower


def _bulk_scalars(t: ListT, slow: Lower) -> Lower:
    """A list of numbers in bulk: ``array`` converts (and range-checks) every item
    in C (:func:`.accept.number_array`), then ``width`` strided slice copies write
    the payloads straight into the freshly allocated value list. Anything the fast
    path does not accept exactly (a bool among ints, an int subclass, an
    out-of-range value, a float among ints) goes to ``slow``, the per-item
    converter, which names the bad item."""
    _, width, _ = scalar_code(t.element)  # type: ignore[misc]
    assert isinstance(t.element, Prim)
    kind = _SCALAR_CTYPES[t.element.name][0]
    fast = number_array(t)
    size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET

    def lower(v: Any, val: Any, b: Any) -> None:
        raw = fast(v)
        if raw is None:
            return slow(v, val, b)
        n = len(raw)
        lst = val.of.list
        f.vallist_new_uninit(byref(lst), n)
        if n:
            address = ctypes.addressof(lst.data.contents)
            dest = memoryview((ctypes.c_char * (n * size)).from_address(address)).cast("B")
            dest[0::size] = bytes([kind]) * n
            src = memoryview(raw).cast("B")
            for k in range(width):
                dest[offset + k :: size] = src[k::width]
        val.kind = f.LIST
        return None

    return lower


def _lower_list(t: ListT) -> Lower:
    if t.element == Prim("u8"):
        return _lower_bytes(t)
    elem = lowerer(t.element)

    def lower(v: Any, val: Any, b: Any) -> None:
        n = len(sequence(t, v))
        lst = val.of.list
        f.vallist_new_uninit(byref(lst), n)
        _fill(val, f.LIST, lst.data, [elem] * n, v, b, "item")

    return _bulk_scalars(t, lower) if is_number_list(t) else lower


def _fill(val: Any, kind: int, data: Any, lowers: list[Lower], v: Any, b: Any, what: str) -> None:
    """Lower ``v[i]`` into ``data[i]`` (a freshly allocated list/tuple payload of ``val``).

    On failure the unfilled slots are marked ``bool``, the container is
    deleted, ``val`` is left as a plain ``bool``, and the error names the slot.
    """
    i = 0
    try:
        for i, lower in enumerate(lowers):
            lower(v[i], data[i], b)
    except BaseException as e:
        _abandon(data, i, len(lowers))
        val.kind = kind
        f.val_delete(byref(val))
        val.kind = f.BOOL
        raise prefixed(f"{what} {i}", e) from None
    val.kind = kind


def _lower_record(t: RecordT) -> Lower:
    fields = [(name_vec(n), n, snake(n), lowerer(ft)) for n, ft in t.fields]
    n = len(fields)
    copy_vec = f.byte_vec_copy

    def lower(v: Any, val: Any, b: Any) -> None:
        mapping = record_source(t, v)
        rec = val.of.record
        f.valrecord_new_uninit(byref(rec), n)
        data = rec.data
        i = 0
        try:
            for i in range(n):
                name_ref, name, attr, low = fields[i]
                entry = data[i]
                copy_vec(byref(entry.name), name_ref)
                try:
                    low(field_value(v, name, attr, mapping), entry.val, b)
                except BaseException:
                    entry.val.kind = f.BOOL
                    raise
        except BaseException as e:
            for j in range(i + 1, n):
                copy_vec(byref(data[j].name), _EMPTY_NAME)
                data[j].val.kind = f.BOOL
            val.kind = f.RECORD
            f.val_delete(byref(val))
            val.kind = f.BOOL
            raise prefixed(f"field {fields[i][1]!r}", e) from None
        val.kind = f.RECORD

    return lower


_NAME_VECS: dict[str, Any] = {}


def name_vec(name: str) -> Any:
    """A persistent ``wasm_byte_vec_t`` holding ``name`` (by reference), to copy from.

    Record field names, variant cases, enum and flag names are owned by the
    value that carries them and freed with it, so every value needs its own
    copy; copying from a prepared vector is one FFI call instead of two.
    These few vectors live as long as the process (one per distinct name).
    """
    ref = _NAME_VECS.get(name)
    if ref is None:
        vec = f.ByteVec()
        f.bytes_to_vec(name.encode(), vec)
        ref = _NAME_VECS[name] = byref(vec)
    return ref


_EMPTY_NAME = name_vec("")


def _lower_tuple(t: TupleT) -> Lower:
    elems = [lowerer(et) for et in t.elements]
    n = len(elems)

    def lower(v: Any, val: Any, b: Any) -> None:
        tuple_items(t, v)
        tup = val.of.tuple
        f.valtuple_new_uninit(byref(tup), n)
        _fill(val, f.TUPLE, tup.data, elems, v, b, "element")

    return lower


def _boxed(low: Lower, v: Any, b: Any) -> Any:
    """Lower ``v`` into a fresh heap-allocated value and return the pointer."""
    tmp = f.Val()
    low(v, tmp, b)
    return f.val_new(byref(tmp))


def _lower_variant(t: VariantT) -> Lower:
    cases = {name: (name.encode(), None if ct is None else lowerer(ct)) for name, ct in t.cases}

    def lower(v: Any, val: Any, b: Any) -> None:
        raw_name, low = variant_case(t, cases, v)
        payload = None
        if low is not None:
            try:
                payload = _boxed(low, v.value, b)
            except (WitTypeError, WitValueError) as e:
                raise prefixed(f"case {v.case!r}", e) from None
        var = val.of.variant
        f.bytes_to_vec(raw_name, var.discriminant)
        var.val = payload
        val.kind = f.VARIANT

    return lower


def _lower_enum(t: EnumT) -> Lower:
    names = {n: n.encode() for n in t.names}

    def lower(v: Any, val: Any, _b: Any) -> None:
        f.bytes_to_vec(names[enum_case(t, v)], val.of.enumeration)
        val.kind = f.ENUM

    return lower


def _lower_flags(t: FlagsT) -> Lower:
    names = {n: n.encode() for n in t.names}

    def lower(v: Any, val: Any, _b: Any) -> None:
        chosen = flag_names(t, v)
        flags = val.of.flags
        f.valflags_new_uninit(byref(flags), len(chosen))
        for i, name in enumerate(chosen):
            f.bytes_to_vec(names[name], flags.data[i])
        val.kind = f.FLAGS

    return lower


def _lower_option(t: OptionT) -> Lower:
    low = lowerer(t.payload)

    def lower(v: Any, val: Any, b: Any) -> None:
        if v is None:
            val.of.option = None
        else:
            val.of.option = _boxed(low, option_payload(t, v), b)
        val.kind = f.OPTION

    return lower


def _lower_result(t: ResultT) -> Lower:
    ok = None if t.ok is None else lowerer(t.ok)
    err = None if t.err is None else lowerer(t.err)

    def lower(v: Any, val: Any, b: Any) -> None:
        is_ok, payload = result_case(t, v)
        low = ok if is_ok else err
        if low is None:
            boxed = None
        else:
            try:
                boxed = _boxed(low, payload, b)
            except (WitTypeError, WitValueError) as e:
                raise prefixed("ok" if is_ok else "err", e) from None
        res = val.of.result
        res.is_ok = is_ok
        res.val = boxed
        val.kind = f.RESULT

    return lower


def _lower_handle(t: HandleT) -> Lower:
    def lower(v: Any, val: Any, b: Any) -> None:
        b.lower_handle(t, v, val)

    return lower


def _build_lowerer(t: WitType) -> Lower:
    """Build the lowerer for WIT type ``t``.

    Raises:
        NotImplementedError: for types wasmplug cannot convert (future, stream).
    """
    if isinstance(t, Prim):
        return _lower_prim(t)
    if isinstance(t, ListT):
        return _lower_list(t)
    if isinstance(t, RecordT):
        return _lower_record(t)
    if isinstance(t, TupleT):
        return _lower_tuple(t)
    if isinstance(t, VariantT):
        return _lower_variant(t)
    if isinstance(t, EnumT):
        return _lower_enum(t)
    if isinstance(t, FlagsT):
        return _lower_flags(t)
    if isinstance(t, OptionT):
        return _lower_option(t)
    if isinstance(t, ResultT):
        return _lower_result(t)
    return _lower_handle(t)


_LOWERERS: dict[WitType, Lower] = {}


def lowerer(t: WitType) -> Lower:
    """The lowerer for WIT type ``t``, built once per type and shared (:func:`shared_converter`)."""
    return shared_converter(_LOWERERS, t, _build_lowerer)
