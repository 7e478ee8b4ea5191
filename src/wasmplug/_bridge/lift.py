"""Lifting: canonical-ABI values → Python values (see :mod:`._convert`)."""

from __future__ import annotations

import ctypes
from typing import Any

import attrs

from . import ffi as f
from .convert import Lift
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

__all__ = ["lifter", "record_class"]


def _string(vec: Any) -> str:
    size = vec.size
    return ctypes.string_at(vec.data, size).decode("utf-8") if size else ""


def _lift_prim(t: Prim) -> Lift:
    name = t.name
    if name == "string":
        return lambda val, _b: _string(val.of.string)
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


def _lift_list(t: ListT) -> Lift:
    if t.element == Prim("u8"):
        size, offset = f.VAL_SIZE, f.VAL_PAYLOAD_OFFSET

        def lift_bytes(val: Any, _b: Any) -> bytes:
            lst = val.of.list
            n = lst.size
            if not n:
                return b""
            return ctypes.string_at(lst.data, n * size)[offset::size]

        return lift_bytes
    elem = lifter(t.element)

    def lift(val: Any, b: Any) -> list[Any]:
        lst = val.of.list
        data = lst.data
        return [elem(data[i], b) for i in range(lst.size)]

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


def _lift_record(t: RecordT) -> Lift:
    lifts = [lifter(ft) for _, ft in t.fields]
    cls = record_class(tuple(n for n, _ in t.fields))
    n = len(lifts)

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


def lifter(t: WitType) -> Lift:
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
