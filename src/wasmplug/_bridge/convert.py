"""The WIT ↔ canonical-ABI conversion shared by :mod:`._lower` and :mod:`._lift`.

A *lowerer* (``_lower``) writes a Python value into a ``wasmtime_component_val_t``
in place; a *lifter* (``_lift``) reads one out. Both are plain closures built
once per type at load time, so a call does no type reflection at all (stock
wasmtime-py re-reads the function type on every call, which is most of its
~36 µs).

Exception safety: a lowerer either fully initialises its value or raises,
leaving nothing allocated behind it; containers mark their unfilled slots as
``bool`` before deleting themselves, so a half-converted argument never leaks
or frees garbage.

Lifters never free anything: the caller deletes the top-level value once (see
:func:`needs_free`), and resource pointers are cloned before that happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from wasmplug._errors import WitTypeError, WitValueError

from . import ffi as f
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
    contains_handles,
)

__all__ = [
    "INT_RANGES",
    "HandleBridge",
    "Lift",
    "Lower",
    "needs_free",
    "prefixed",
    "python_shape",
    "shared_converter",
    "type_error",
]

Lower = Callable[[Any, Any, Any], None]
"""``lower(value, val_struct, bridge)``: write ``value`` into ``val_struct``."""
Lift = Callable[[Any, Any], Any]
"""``lift(val_struct, bridge)``: read a Python value out of ``val_struct``."""

_C = TypeVar("_C")


def shared_converter(cache: dict[WitType, _C], t: WitType, build: Callable[[WitType], _C]) -> _C:
    """The converter for ``t`` from ``cache``, built with ``build`` once per type and shared.

    Converters hold no per-plugin state, so every plugin (and every load of the same
    component) shares them: less memory per live plugin, faster loads. Types that mention a
    resource handle are built afresh and never cached: their converters depend on where the
    resource lives, which type equality does not capture.
    """
    conv = cache.get(t)
    if conv is None:
        conv = build(t)
        if not contains_handles([t]):
            cache[t] = conv
    return conv


INT_RANGES: dict[str, tuple[int, int, int]] = {
    # name: (kind, min, max)
    "s8": (f.S8, -(2**7), 2**7 - 1),
    "u8": (f.U8, 0, 2**8 - 1),
    "s16": (f.S16, -(2**15), 2**15 - 1),
    "u16": (f.U16, 0, 2**16 - 1),
    "s32": (f.S32, -(2**31), 2**31 - 1),
    "u32": (f.U32, 0, 2**32 - 1),
    "s64": (f.S64, -(2**63), 2**63 - 1),
    "u64": (f.U64, 0, 2**64 - 1),
}


class HandleBridge(Protocol):
    """What converters need from an instance: moving resource handles across, and
    the budget of the current lift (see :mod:`._lift`)."""

    lift_left: int
    """Bytes the value being lifted may still take (``Limits.max_result_bytes``)."""
    max_lift: int
    """The budget each lift starts with, for messages."""

    def lower_handle(self, ty: HandleT, value: Any, val: Any) -> None: ...

    def lift_handle(self, ty: HandleT, val: Any) -> Any: ...

    def lift_deadline_s(self) -> float:
        """The ``time.monotonic()`` time by which the current lift must end."""
        ...


def python_shape(t: WitType) -> str:
    """The Python type a WIT type maps to, for error messages and docs."""
    if isinstance(t, Prim):
        if t.name in INT_RANGES:
            return "int"
        return {"bool": "bool", "f32": "float", "f64": "float", "char": "str of length 1"}.get(
            t.name, "str"
        )
    if isinstance(t, ListT):
        if t.element == Prim("u8"):
            return "bytes"
        return f"list[{python_shape(t.element)}]"
    if isinstance(t, RecordT):
        return "record object or mapping"
    if isinstance(t, TupleT):
        return "tuple"
    if isinstance(t, VariantT):
        return "wasmplug.Variant"
    if isinstance(t, EnumT | FlagsT):
        return "str" if isinstance(t, EnumT) else "set[str]"
    if isinstance(t, OptionT):
        return f"{python_shape(t.payload)} | None"
    if isinstance(t, ResultT):
        return "wasmplug.Ok | wasmplug.Err"
    return "wasmplug.Resource" if not t.resource.imported else "host resource object"


def type_error(t: WitType, value: Any) -> WitTypeError:
    return WitTypeError(f"expects {t} ({python_shape(t)}), got {type(value).__name__}")


def prefixed(prefix: str, exc: BaseException) -> BaseException:
    """Prefix a conversion error with where it happened; other exceptions pass unchanged."""
    if isinstance(exc, WitTypeError | WitValueError):
        return type(exc)(f"{prefix}: {exc}").with_traceback(None)
    return exc


def needs_free(t: WitType | None) -> bool:
    """True if a value of type ``t`` owns heap memory that must be deleted after use."""
    return not (t is None or (isinstance(t, Prim) and t.name != "string"))
