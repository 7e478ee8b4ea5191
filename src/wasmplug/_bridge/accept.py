"""Which Python values each WIT type accepts: the checks every argument converter shares.

Two converters take a Python value for a WIT type (an export's argument, or what
a host function returns): the lowerers of :mod:`.lower` (into a canonical-ABI
value, in process) and the wire encoders of ``wasmplug._runtime.process.codec``
(into msgpack, for a worker process). Both call these functions, so a value is
accepted, normalised or refused with the same :class:`~wasmplug.WitTypeError` /
:class:`~wasmplug.WitValueError` message in either isolation tier
(``tests/bridge/test_tier_parity.py`` checks it, message for message). A
scalar's ``convert`` (:func:`scalar_converter`) returns what its canonical-ABI
slot stores, so what crosses to a worker is exactly what the lowerer would write.

The rules (``docs/types.md`` has the user's view)::

    bool            a bool (not 0 or 1)
    s8..u64         an int, int subclasses included, not a bool; out of range: WitValueError
    f32, f64        a float, or an int (not a bool); an int past the largest double:
                    WitValueError; f32 rounds to the nearest float32 (past its range: ±inf)
    char            a str of length 1; a surrogate: WitValueError
    string          a str; a lone surrogate (not UTF-8): WitValueError; NUL is fine
    list<u8>        bytes, bytearray, a memoryview (its bytes), or a list or tuple of
                    ints in [0, 255]
    list<number>    a list or tuple, or an array.array of the element's own typecode
    list<T>         a list or tuple; a bad item is named ("item 3: ...")
    record          a mapping (kebab-case key, else snake_case) or an object (snake_case
                    attribute); not a str, bytes, number, list, tuple or None;
                    extra keys are ignored; "field 'x': is missing"
    tuple<...>      a tuple or list of exactly its length ("element 1: ...")
    variant         a wasmplug.Variant of one of its cases; a case without a payload
                    type carries None ("case 'x': ...")
    enum            a case name, or an enum.Enum member whose value is one
    flags           a set, frozenset, list or tuple of flag names (or such members)
    option<T>       None, Some(x) or x itself; option<option<T>>: the outer some is Some
    result<T, E>    Ok(x) or Err(x); a side without a payload type carries None
    own/borrow      host-defined: the application's object (not None, not a Resource);
                    guest-defined: a live Resource of the instance the call runs on
                    (resources.host_argument / guest_argument, then take_handle)
"""

from __future__ import annotations

import enum
import math
import struct
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from wasmplug._errors import WitTypeError, WitValueError

from .convert import INT_RANGES, type_error
from .lift import scalar_code
from .values import Err, Ok, Some, Variant
from .wit import EnumT, FlagsT, ListT, OptionT, Prim, RecordT, ResultT, TupleT, VariantT

__all__ = [
    "Convert",
    "byte_string",
    "enum_case",
    "enum_name",
    "field_value",
    "flag_names",
    "is_number_list",
    "number_array",
    "option_payload",
    "record_source",
    "result_case",
    "round_f32",
    "scalar_converter",
    "sequence",
    "tuple_items",
    "utf8",
    "variant_case",
]


Convert = Callable[[Any], Any]
"""``convert(value) -> raw``: check a fixed-size scalar argument and return what its
canonical-ABI slot stores (an ``int``, ``float`` or ``bool``; a code point for ``char``)."""

_F32 = struct.Struct("<f")


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as C's ``(float)x`` (and a ``c_float`` slot)
    does: beyond the float32 range it is infinity (``struct`` alone would raise)."""
    try:
        return _F32.unpack(_F32.pack(x))[0]  # type: ignore[no-any-return]
    except OverflowError:
        return math.copysign(math.inf, x)


def _int_converter(t: Prim) -> Convert:
    _, lo, hi = INT_RANGES[t.name]

    def convert(v: Any) -> int:
        if v.__class__ is not int and (not isinstance(v, int) or isinstance(v, bool)):
            raise type_error(t, v)
        if not lo <= v <= hi:
            raise WitValueError(f"expects {t}: {v} is outside [{lo}, {hi}]")
        return int(v)

    return convert


def _float_converter(t: Prim) -> Convert:
    f32 = t.name == "f32"

    def convert(v: Any) -> float:
        if v.__class__ is not float and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise type_error(t, v)
        try:
            x = float(v)
        except OverflowError:  # an int beyond the largest double
            raise WitValueError(f"expects {t}: the int is too large for a float") from None
        return round_f32(x) if f32 else x

    return convert


def _convert_bool(v: Any) -> bool:
    if v.__class__ is not bool:
        raise type_error(Prim("bool"), v)
    return bool(v)


def _convert_char(v: Any) -> int:
    if not isinstance(v, str) or len(v) != 1:
        raise type_error(Prim("char"), v)
    code = ord(v)
    if 0xD800 <= code <= 0xDFFF:
        raise WitValueError(f"expects char: U+{code:04X} is a surrogate, not a scalar value")
    return code


def scalar_converter(t: Prim) -> Convert | None:
    """The ``convert`` function of a fixed-size primitive (``bool``, the integers,
    ``f32``, ``f64``, ``char``), ``None`` for ``string``. Shared by the lowerers'
    argument slots (``lower.scalar``) and the process tier's wire encoder."""
    name = t.name
    if name in INT_RANGES:
        return _int_converter(t)
    if name in ("f32", "f64"):
        return _float_converter(t)
    if name == "bool":
        return _convert_bool
    if name == "char":
        return _convert_char
    return None


def utf8(t: Prim, v: Any) -> bytes:
    """A ``string`` argument, encoded as UTF-8 (a lone surrogate cannot be)."""
    if not isinstance(v, str):
        raise type_error(t, v)
    try:
        return v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise WitValueError(f"expects string: not encodable as UTF-8 ({e.reason})") from None


def byte_string(t: ListT, v: Any) -> bytes | bytearray | memoryview:
    """A ``list<u8>`` argument: a bytes-like object, or a list or tuple of ints in [0, 255].
    A ``memoryview`` stands for its bytes, whatever its format and shape."""
    if isinstance(v, bytes | bytearray):
        return v
    if isinstance(v, memoryview):
        return v if v.ndim == 1 and v.format == "B" else v.tobytes()
    if not isinstance(v, list | tuple):
        raise type_error(t, v)
    try:
        data = bytes(v)
    except (TypeError, ValueError):
        data = None
    if data is None or bool in set(map(type, v)):  # bytes() takes True for 1; u8 does not
        raise WitValueError(f"expects {t}: items must be ints in [0, 255]")
    return data


def number_array(t: ListT) -> Callable[[Any], array[Any] | None]:
    """For a list of integers or floats, ``fast(v)``: ``v`` as an ``array`` when it is
    one of the element's typecode, or a list or tuple of plain ints (and floats, for
    a float element) that ``array`` converts and range-checks in C; ``None`` for
    anything else, which the per-item converter then accepts or refuses by item."""
    code = scalar_code(t.element)[0]  # type: ignore[index]
    assert isinstance(t.element, Prim)
    allowed = {int} if t.element.name in INT_RANGES else {int, float}

    def fast(v: Any) -> array[Any] | None:
        cls = v.__class__
        if cls is array:
            return v if v.typecode == code else None
        if (cls is list or cls is tuple) and set(map(type, v)) <= allowed:
            try:
                return array(code, v)
            except (OverflowError, TypeError):
                return None
        return None

    return fast


def is_number_list(t: ListT) -> bool:
    """Whether :func:`number_array` applies: a list of integers or floats."""
    info = scalar_code(t.element)
    return info is not None and info[0] not in "?" and t.element != Prim("char")


def record_source(t: RecordT, v: Any) -> bool:
    """Check a record argument; ``True`` if its fields are items (a mapping),
    ``False`` if they are attributes (an object)."""
    if isinstance(v, str | bytes | int | float | list | tuple) or v is None:
        raise type_error(t, v)
    return v.__class__ is dict or isinstance(v, Mapping)


def field_value(v: Any, name: str, attr: str, mapping: bool) -> Any:
    """A record field: item ``name`` (kebab-case) or ``attr`` (snake_case) of a mapping,
    attribute ``attr`` of an object."""
    if mapping:
        if name in v:
            return v[name]
        if attr in v:
            return v[attr]
        raise WitTypeError("is missing")
    try:
        return getattr(v, attr)
    except AttributeError:
        raise WitTypeError("is missing") from None


def sequence(t: ListT, v: Any) -> list[Any] | tuple[Any, ...]:
    """A ``list<T>`` argument (``T`` other than ``u8``, see :func:`byte_string`): a list or
    tuple, whose items the caller converts, naming the first bad one (``item i``)."""
    if not isinstance(v, list | tuple):
        raise type_error(t, v)
    return v


def tuple_items(t: TupleT, v: Any) -> list[Any] | tuple[Any, ...]:
    """A ``tuple<...>`` argument: a tuple or list of exactly as many elements."""
    n = len(t.elements)
    if not isinstance(v, tuple | list) or len(v) != n:
        raise WitTypeError(f"expects {t} (tuple of {n}), got {type(v).__name__}")
    return v


def variant_case(t: VariantT, cases: Mapping[str, tuple[Any, Any]], v: Any) -> tuple[Any, Any]:
    """The entry of ``cases`` for a :class:`Variant` argument's case.

    ``cases`` maps each case name to ``(key, payload converter or None)``, the
    converter being ``None`` for a case without payload, which must then carry none.
    """
    if not isinstance(v, Variant):
        raise type_error(t, v)
    try:
        case = cases.get(v.case)
    except TypeError:  # an unhashable case "name"
        case = None
    if case is None:
        raise WitValueError(f"expects {t}: no case named {v.case!r}")
    if case[1] is None and v.value is not None:
        raise WitValueError(f"expects {t}: case {v.case!r} has no payload")
    return case


def enum_name(v: Any) -> Any:
    """A Python ``enum.Enum`` member stands for the case named by its value."""
    return v.value if isinstance(v, enum.Enum) else v


def enum_case(t: EnumT, v: Any) -> str:
    """An ``enum`` argument: a case name (or a Python enum member whose value is one)."""
    name = enum_name(v)
    if not isinstance(name, str):
        raise type_error(t, v)
    if name not in t.names:
        raise WitValueError(f"expects {t}: {name!r} is not one of its cases")
    return name


def flag_names(t: FlagsT, v: Any) -> list[str]:
    """A ``flags`` argument (a set, frozenset, list or tuple of names) as sorted names."""
    if isinstance(v, str) or not isinstance(v, set | frozenset | list | tuple):
        raise type_error(t, v)
    try:
        chosen = sorted({enum_name(x) for x in v}, key=str)
    except TypeError:  # an unhashable item
        raise WitTypeError(f"expects {t}: its items must be flag names (str)") from None
    names = t.names
    for name in chosen:
        if name not in names:
            raise WitValueError(f"expects {t}: {name!r} is not one of its flags")
    return chosen


def option_payload(t: OptionT, v: Any) -> Any:
    """The payload of a ``some`` argument (``v`` is not ``None``). ``Some(x)`` is ``x``;
    for ``option<option<T>>`` the outer ``some`` must be written ``Some``."""
    if isinstance(v, Some):
        return v.value
    if isinstance(t.payload, OptionT):
        raise WitTypeError(f"expects {t}: wrap the outer some in wasmplug.Some")
    return v


def result_case(t: ResultT, v: Any) -> tuple[bool, Any]:
    """``(is_ok, payload)`` of an :class:`Ok` or :class:`Err` argument; a case whose
    payload type is absent (``result<_, E>``'s ok, ``result<T>``'s err) carries none."""
    if isinstance(v, Ok):
        is_ok, payload = True, v.value
    elif isinstance(v, Err):
        is_ok, payload = False, v.value
    else:
        raise type_error(t, v)
    if payload is not None and (t.ok if is_ok else t.err) is None:
        raise WitValueError(f"expects {t}: this case carries no payload")
    return is_ok, payload
