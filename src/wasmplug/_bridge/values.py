"""Python values for the WIT types that have no builtin Python equivalent.

The full WIT ↔ Python mapping is in ``docs/types.md``. The short form:

* ``result<T, E>`` returned by an export: the ``ok`` payload is returned and an
  ``err`` raises :class:`~wasmplug.ErrorResult`. Everywhere else (nested in a
  list, record, option, or as a parameter) a result is an explicit :class:`Ok`
  or :class:`Err`, so it is never ambiguous. wasmtime-py's own conversion
  loses the tag when both payloads share a Python class; wasmplug reads the tag
  from the canonical-ABI value itself.
* A host function whose WIT result type is ``result<T, E>`` returns ``T`` (or
  an explicit ``Ok``/``Err``) and may ``raise Err(e)`` to return ``err(e)``, the
  convention componentize-py uses for guests.
* ``variant`` is :class:`Variant` (case name + payload). ``option<T>`` is
  ``None`` or the payload, except ``option<option<T>>`` whose outer ``some``
  is :class:`Some` so that ``some(none)`` and ``none`` stay distinct.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

__all__ = ["Err", "Ok", "Some", "Variant"]

T = TypeVar("T")


@attrs.frozen
class Ok(Generic[T]):
    """The ``ok`` case of a WIT ``result``. ``value`` is ``None`` for ``result<_, E>``."""

    value: T = None  # type: ignore[assignment]


class Err(Exception, Generic[T]):
    """The ``err`` case of a WIT ``result``.

    It is an exception so that a host function can ``raise Err(value)`` to
    return ``err(value)`` to the guest (the componentize-py convention), and a
    plain value so it can be nested in lists and records.

    Attributes:
        value: The error payload (``None`` for ``result<T>`` without an error type).
    """

    __match_args__ = ("value",)

    def __init__(self, value: T = None) -> None:  # type: ignore[assignment]
        super().__init__(value)
        self.value = value

    def __eq__(self, other: object) -> bool:
        return type(other) is Err and bool(other.value == self.value)

    def __hash__(self) -> int:
        return hash((Err, self.value))

    def __repr__(self) -> str:
        return f"Err({self.value!r})"


@attrs.frozen
class Some(Generic[T]):
    """The ``some`` case of ``option<option<T>>`` (only used for nested options)."""

    value: T


@attrs.frozen
class Variant:
    """A value of a WIT ``variant``: the case name (kebab-case, as in WIT) and its payload.

    Attributes:
        case: The case name, e.g. ``"not-found"``.
        value: The payload, ``None`` for a case without one.
    """

    case: str
    value: Any = None
