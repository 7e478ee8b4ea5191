"""WIT-typed conversion between Python values and their msgpack wire form.

Each side of the channel builds, once per WIT type, a pair of closures:

* ``encoder(t)`` turns a Python value into its wire form. Every check and
  message is the in-process lowerers' own (``_bridge.accept``, and
  ``_bridge.resources`` for handles): this module only shapes the wire form, so
  a bad argument fails identically in both isolation tiers.
* ``decoder(t)`` turns a wire form back into the Python value the lifters
  (``_bridge.lift``) produce. It trusts nothing: every shape, range, case index
  and handle is checked against the WIT type, and any mismatch is a
  :class:`ProtocolError`. The data cannot choose its own recursion depth: a
  decoder walks the type, and WIT types are not recursive.

Wire forms (everything is a msgpack primitive; maps are never used)::

    bool, s8..u64, f64        the msgpack scalar
    f32                       float, always a float32 value (the encoder rounds it)
    char, string              str (msgpack str; UTF-8 checked by the unpacker)
    list<u8>                  bin
    list<T>, tuple<...>       array
    record                    array of field values, in WIT field order
    variant                   [case index] or [case index, payload]
    enum                      case index
    flags                     int bit mask (bit i = i-th flag, in WIT order)
    option<T>                 nil, or [payload]
    result<T, E>              [0] / [0, ok] or [1] / [1, err]
    own<R>, borrow<R>         int: an object id (host-defined R) or a token (guest-defined R)

Resource handles cross as integers through a :class:`Handles` table on each
side: host objects stay in the application and the worker holds stand-ins;
guest objects stay in the worker and the application holds tokens (see
``handles`` and ``worker``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from wasmplug._bridge.accept import (
    byte_string,
    enum_case,
    field_value,
    flag_names,
    is_number_list,
    number_array,
    option_payload,
    record_source,
    result_case,
    round_f32,
    scalar_converter,
    sequence,
    tuple_items,
    utf8,
    variant_case,
)
from wasmplug._bridge.convert import INT_RANGES, prefixed, shared_converter
from wasmplug._bridge.lift import record_class, scalar_code
from wasmplug._bridge.values import Err, Ok, Some, Variant
from wasmplug._bridge.wit import (
    EnumT,
    FlagsT,
    FuncSig,
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
from wasmplug._errors import WitTypeError, WitValueError

__all__ = [
    "CHECK_NAMES",
    "Decode",
    "Encode",
    "ExportCodec",
    "Handles",
    "ProtocolError",
    "decoder",
    "encoder",
    "export_codec",
    "sent_as_is",
    "wire_check",
]


class ProtocolError(Exception):
    """The other side sent something that is not a valid message or value."""


class Handles(Protocol):
    """How resource handles cross: objects out as ids, ids back to objects."""

    def object_id(self, ty: HandleT, obj: Any) -> int: ...

    def object_for(self, ty: HandleT, oid: int) -> Any: ...


Encode = Callable[[Any, Handles], Any]
Decode = Callable[[Any, Handles], Any]


# ---------------------------------------------------------------------------
# Encoders: Python value -> wire (the lowerers' own checks, see _bridge.accept)
# ---------------------------------------------------------------------------


def _enc_prim(t: Prim) -> Encode:
    convert = scalar_converter(t)
    if convert is not None:
        if t.name == "char":
            return lambda v, _h: chr(convert(v))
        return lambda v, _h: convert(v)  # an int, a float or a bool, as the lowerer stores

    def enc_string(v: Any, _h: Any) -> str:
        if v.__class__ is str and v.isascii():  # a flag CPython keeps: valid UTF-8 as is
            return v
        data = utf8(t, v)  # refuses what cannot be encoded, as the lowerer does
        return v if v.__class__ is str else data.decode()

    return enc_string


def _enc_bytes(t: ListT) -> Encode:
    def enc(v: Any, _h: Any) -> bytes:
        b = byte_string(t, v)
        return b if b.__class__ is bytes else bytes(b)

    return enc


def _enc_items(encs: list[Encode], v: Any, h: Handles, what: str) -> list[Any]:
    out = []
    i = 0
    try:
        for i, enc in enumerate(encs):
            out.append(enc(v[i], h))
    except (WitTypeError, WitValueError) as e:
        raise prefixed(f"{what} {i}", e) from None
    return out


def _enc_list(t: ListT) -> Encode:
    if t.element == Prim("u8"):
        return _enc_bytes(t)
    elem = encoder(t.element)

    def enc(v: Any, h: Handles) -> list[Any]:
        return _enc_items([elem] * len(sequence(t, v)), v, h, "item")

    if not is_number_list(t):
        return enc
    fast = number_array(t)

    def enc_numbers(v: Any, h: Handles) -> list[Any]:
        # array checked (and, for floats, converted) every item in C; the slow
        # path names the item it refuses.
        raw = fast(v)
        return enc(v, h) if raw is None else raw.tolist()

    return enc_numbers


def _enc_record(t: RecordT) -> Encode:
    fields = [(n, snake(n), encoder(ft)) for n, ft in t.fields]

    def enc(v: Any, h: Handles) -> list[Any]:
        mapping = record_source(t, v)
        out = []
        for name, attr, fenc in fields:
            try:
                out.append(fenc(field_value(v, name, attr, mapping), h))
            except (WitTypeError, WitValueError) as e:
                raise prefixed(f"field {name!r}", e) from None
        return out

    return enc


def _enc_tuple(t: TupleT) -> Encode:
    encs = [encoder(et) for et in t.elements]
    return lambda v, h: _enc_items(encs, tuple_items(t, v), h, "element")


def _enc_variant(t: VariantT) -> Encode:
    cases = {name: (i, None if ct is None else encoder(ct)) for i, (name, ct) in enumerate(t.cases)}

    def enc(v: Any, h: Handles) -> list[Any]:
        index, penc = variant_case(t, cases, v)
        if penc is None:
            return [index]
        try:
            return [index, penc(v.value, h)]
        except (WitTypeError, WitValueError) as e:
            raise prefixed(f"case {v.case!r}", e) from None

    return enc


def _enc_enum(t: EnumT) -> Encode:
    index = {n: i for i, n in enumerate(t.names)}
    return lambda v, _h: index[enum_case(t, v)]


def _enc_flags(t: FlagsT) -> Encode:
    bits = {n: 1 << i for i, n in enumerate(t.names)}

    def enc(v: Any, _h: Any) -> int:
        mask = 0
        for name in flag_names(t, v):
            mask |= bits[name]
        return mask

    return enc


def _enc_option(t: OptionT) -> Encode:
    inner = encoder(t.payload)
    return lambda v, h: None if v is None else [inner(option_payload(t, v), h)]


def _enc_result(t: ResultT) -> Encode:
    ok = None if t.ok is None else encoder(t.ok)
    err = None if t.err is None else encoder(t.err)

    def enc(v: Any, h: Handles) -> list[Any]:
        is_ok, payload = result_case(t, v)
        penc = ok if is_ok else err
        tag = 0 if is_ok else 1
        if penc is None:
            return [tag]
        try:
            return [tag, penc(payload, h)]
        except (WitTypeError, WitValueError) as e:
            raise prefixed("ok" if is_ok else "err", e) from None

    return enc


def _enc_handle(t: HandleT) -> Encode:
    return lambda v, h: h.object_id(t, v)


_BUILD_ENCODER: dict[type, Callable[[Any], Encode]] = {
    Prim: _enc_prim,
    ListT: _enc_list,
    RecordT: _enc_record,
    TupleT: _enc_tuple,
    VariantT: _enc_variant,
    EnumT: _enc_enum,
    FlagsT: _enc_flags,
    OptionT: _enc_option,
    ResultT: _enc_result,
    HandleT: _enc_handle,
}
_ENCODERS: dict[WitType, Encode] = {}


def encoder(t: WitType) -> Encode:
    """The encoder (Python value → wire form) for WIT type ``t``, built once per type
    and shared (:func:`~wasmplug._bridge.convert.shared_converter`)."""
    return shared_converter(_ENCODERS, t, lambda t: _BUILD_ENCODER[type(t)](t))


# ---------------------------------------------------------------------------
# Decoders: wire -> Python value (untrusted input: check everything)
# ---------------------------------------------------------------------------


def _bad(t: WitType | str, w: Any) -> ProtocolError:
    return ProtocolError(f"expected {t}, got {type(w).__name__}")


_EXACT = {"bool": "bool", "f64": "float", "string": "str"}

CHECK_NAMES: dict[str, Any] = {"round_f32": round_f32}
"""The names :func:`wire_check`'s expressions use besides the value: code that runs
one must have them in its globals."""


def wire_check(t: WitType, var: str) -> str | None:
    """For a primitive (whose wire value is one plain Python value), the Python
    expression that is true when the value named ``var`` is *not* a wire value of
    ``t`` (see :data:`CHECK_NAMES`); ``None`` for other types.

    The decoders of primitives are compiled from it, and generated call code
    (``fastpath``) inlines it: one definition of what a worker may send. An ``f32``
    must be a float32 value (the worker lifted one; NaN != NaN); a ``char``, one
    Unicode scalar value (msgpack's UTF-8 decoding lets no surrogate through, but
    the type says it)."""
    name = t.name if isinstance(t, Prim) else ""
    if name in INT_RANGES:
        _, lo, hi = INT_RANGES[name]
        return f"{var}.__class__ is not int or not {lo} <= {var} <= {hi}"
    if name == "f32":
        return f"{var}.__class__ is not float or (round_f32({var}) != {var} and {var} == {var})"
    if name == "char":
        return f"{var}.__class__ is not str or len({var}) != 1 or 0xD800 <= ord({var}) <= 0xDFFF"
    cls = _EXACT.get(name)
    return None if cls is None else f"{var}.__class__ is not {cls}"


def sent_as_is(t: WitType, var: str) -> str | None:
    """Like :func:`wire_check`, for an argument: true when ``var`` is *not* already the
    wire value its encoder would make (it then needs its encoder, which accepts or
    refuses it); an ASCII ``str`` is its own wire form without a UTF-8 check, and an
    ``f32`` always takes its encoder (which rounds it to float32)."""
    if t == Prim("f32"):
        return None
    check = wire_check(t, var)
    if check is not None and t == Prim("string"):
        return f"{check} or not {var}.isascii()"
    return check


def _dec_inline(t: WitType, check: str) -> Decode:
    """The decoder that refuses what ``check`` (of ``w``; our own text) says is not ``t``."""
    g: dict[str, Any] = {"_bad": _bad, "t": t, **CHECK_NAMES}
    exec(f"def dec(w, _h):\n    if {check}:\n        raise _bad(t, w)\n    return w\n", g)
    dec: Decode = g["dec"]
    return dec


def _dec_prim(t: Prim) -> Decode:
    check = wire_check(t, "w")
    assert check is not None
    return _dec_inline(t, check)


def _array(w: Any, n: int | None, t: WitType) -> list[Any]:
    if w.__class__ is not list or (n is not None and len(w) != n):
        raise _bad(t, w)
    return w


def _dec_list(t: ListT) -> Decode:
    if t.element == Prim("u8"):
        return _dec_inline(t, "w.__class__ is not bytes")
    elem = decoder(t.element)
    if is_number_list(t) or t.element == Prim("bool"):
        return _dec_scalars(t, elem)
    return lambda w, h: [elem(x, h) for x in _array(w, None, t)]


def _dec_scalars(t: ListT, elem: Decode) -> Decode:
    """A list of numbers (or bools) checked in bulk: every item of the element's
    Python class, then ``array`` range-checks them all in C (an ``f32`` list must
    also survive the round trip through float32 bit for bit). Anything else goes
    item by item, which names no item but fails at the first bad one."""
    assert isinstance(t.element, Prim)
    name = t.element.name
    code = scalar_code(t.element)[0]  # type: ignore[index]
    cls = int if name in INT_RANGES else bool if name == "bool" else float

    def dec(w: Any, h: Handles) -> list[Any]:
        if w.__class__ is not list:
            raise _bad(t, w)
        if set(map(type, w)) <= {cls}:
            if cls is bool:
                return w
            try:
                arr = array(code, w)
            except OverflowError:
                raise _bad(t, w) from None
            if code != "f" or arr.tolist() == w:  # (a NaN goes item by item: NaN != NaN)
                return w
        return [elem(x, h) for x in w]

    return dec


def _dec_record(t: RecordT) -> Decode:
    decs = [decoder(ft) for _, ft in t.fields]
    cls = record_class(tuple(n for n, _ in t.fields))
    n = len(decs)

    def dec(w: Any, h: Handles) -> Any:
        items = _array(w, n, t)
        return cls(*[decs[i](items[i], h) for i in range(n)])

    return dec


def _dec_tuple(t: TupleT) -> Decode:
    decs = [decoder(et) for et in t.elements]
    n = len(decs)

    def dec(w: Any, h: Handles) -> tuple[Any, ...]:
        items = _array(w, n, t)
        return tuple([decs[i](items[i], h) for i in range(n)])

    return dec


def _case_index(w: Any, count: int, t: WitType) -> int:
    if w.__class__ is not int or not 0 <= w < count:
        raise _bad(t, w)
    return w


def _dec_variant(t: VariantT) -> Decode:
    cases = [(name, None if ct is None else decoder(ct)) for name, ct in t.cases]
    count = len(cases)

    def dec(w: Any, h: Handles) -> Variant:
        if w.__class__ is not list or not 1 <= len(w) <= 2:
            raise _bad(t, w)
        name, pdec = cases[_case_index(w[0], count, t)]
        if pdec is None:
            if len(w) != 1:
                raise _bad(t, w)
            return Variant(name)
        if len(w) != 2:
            raise _bad(t, w)
        return Variant(name, pdec(w[1], h))

    return dec


def _dec_enum(t: EnumT) -> Decode:
    names = t.names
    return lambda w, _h: names[_case_index(w, len(names), t)]


def _dec_flags(t: FlagsT) -> Decode:
    names = t.names
    limit = 1 << len(names)

    def dec(w: Any, _h: Any) -> frozenset[str]:
        if w.__class__ is not int or not 0 <= w < limit:
            raise _bad(t, w)
        return frozenset(n for i, n in enumerate(names) if w >> i & 1)

    return dec


def _dec_option(t: OptionT) -> Decode:
    inner = decoder(t.payload)
    nested = isinstance(t.payload, OptionT)

    def dec(w: Any, h: Handles) -> Any:
        if w is None:
            return None
        value = inner(_array(w, 1, t)[0], h)
        return Some(value) if nested else value

    return dec


def _dec_result(t: ResultT) -> Decode:
    ok = None if t.ok is None else decoder(t.ok)
    err = None if t.err is None else decoder(t.err)

    def dec(w: Any, h: Handles) -> Ok[Any] | Err[Any]:
        if w.__class__ is not list or not w or w[0].__class__ is not int or w[0] not in (0, 1):
            raise _bad(t, w)
        pdec = ok if w[0] == 0 else err
        if pdec is None:
            if len(w) != 1:
                raise _bad(t, w)
            value = None
        else:
            if len(w) != 2:
                raise _bad(t, w)
            value = pdec(w[1], h)
        return Ok(value) if w[0] == 0 else Err(value)

    return dec


def _dec_handle(t: HandleT) -> Decode:
    def dec(w: Any, h: Handles) -> Any:
        if w.__class__ is not int or w < 0:
            raise _bad(t, w)
        return h.object_for(t, w)

    return dec


_BUILD_DECODER: dict[type, Callable[[Any], Decode]] = {
    Prim: _dec_prim,
    ListT: _dec_list,
    RecordT: _dec_record,
    TupleT: _dec_tuple,
    VariantT: _dec_variant,
    EnumT: _dec_enum,
    FlagsT: _dec_flags,
    OptionT: _dec_option,
    ResultT: _dec_result,
    HandleT: _dec_handle,
}
_DECODERS: dict[WitType, Decode] = {}


def decoder(t: WitType) -> Decode:
    """The decoder (wire form → Python value, checked) for WIT type ``t``, built once
    per type and shared (:func:`~wasmplug._bridge.convert.shared_converter`)."""
    return shared_converter(_DECODERS, t, lambda t: _BUILD_DECODER[type(t)](t))


@attrs.frozen
class ExportCodec:
    """One export's wire conversion: an encoder per parameter, and the decoders of its
    result (``ok``; ``err`` too when the result is a WIT ``result``)."""

    encs: list[Encode]
    ok: Decode | None
    err: Decode | None


def export_codec(sig: FuncSig) -> ExportCodec:
    """The :class:`ExportCodec` of an export with signature ``sig``."""
    result = sig.result
    encs = [encoder(t) for _, t in sig.params]
    if isinstance(result, ResultT):
        return ExportCodec(
            encs,
            None if result.ok is None else decoder(result.ok),
            None if result.err is None else decoder(result.err),
        )
    return ExportCodec(encs, None if result is None else decoder(result), None)
