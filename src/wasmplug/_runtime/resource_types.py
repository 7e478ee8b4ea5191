"""Python classes for the resource types a plugin exports.

For ``resource counter { constructor(start: u32); get: func() -> u32;
take: static func(c: counter) -> u32; }`` in an exported interface ``api``,
``plugin.exports.api.Counter`` is a subclass of :class:`~wasmplug.Resource`:

* ``Counter(7)`` calls ``[constructor]counter`` and returns a ``Counter`` handle;
* ``c.get()`` calls ``[method]counter.get`` with ``c`` as ``self``;
* ``Counter.take(c)`` calls ``[static]counter.take``;
* handles returned by any export (``own<counter>``) are ``Counter`` instances too.

One class per plugin and resource type, built once at load time from the WIT
signatures (never from a name looked up on a Python object). Method and static
names are snake_case; a name that would shadow a :class:`Resource` attribute
(``drop``, ``close``, ``alive``...) or a Python keyword gets a trailing ``_``,
as PEP 8 suggests, so a plugin can never replace the handle's own behaviour.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable
from typing import Any

from wasmplug._bridge.resources import Resource
from wasmplug._bridge.wit import FuncSig, pascal, snake

__all__ = ["attr_name", "build_resource_classes", "resource_function"]

_RESERVED = frozenset(dir(Resource)) | {"drop"}

_KINDS = ("[constructor]", "[method]", "[static]")


def resource_function(name: str) -> tuple[str, str, str] | None:
    """Split ``[method]counter.get-a`` into ``("[method]", "counter", "get-a")``.

    Returns ``None`` for a plain function. A constructor's member is ``""``.
    """
    for kind in _KINDS:
        if name.startswith(kind):
            rest = name[len(kind) :]
            if kind == "[constructor]":
                return kind, rest, ""
            resource, dot, member = rest.partition(".")
            if dot and resource and member:
                return kind, resource, member
            return None
    return None


def attr_name(member: str) -> str:
    """The Python attribute for a WIT method or static name (see the module docstring)."""
    name = snake(member)
    if name in _RESERVED or keyword.iskeyword(name) or name.startswith("_"):
        name += "_"
    return name


def _method(export: Any, sig: FuncSig, qualname: str) -> Any:
    def method(self: Resource, *args: Any) -> Any:
        return export(self, *args)

    method.__name__ = qualname.rpartition(".")[2]
    method.__qualname__ = qualname
    method.__doc__ = f"WIT ``{sig.name}: {sig}``."
    return method


def _static(export: Any, sig: FuncSig, qualname: str) -> Any:
    def static(*args: Any) -> Any:
        return export(*args)

    static.__name__ = qualname.rpartition(".")[2]
    static.__qualname__ = qualname
    static.__doc__ = f"WIT ``{sig.name}: {sig}``."
    return staticmethod(static)


def _class(resource: str, interface: str, members: list[tuple[str, str, Any, FuncSig]]) -> type:
    cls_name = pascal(resource)
    constructor: Any = None
    ns: dict[str, Any] = {"__slots__": (), "__module__": "wasmplug", "__qualname__": cls_name}
    for kind, member, export, sig in members:
        if kind == "[constructor]":
            constructor = export
            continue
        attr = attr_name(member)
        qualname = f"{cls_name}.{attr}"
        ns[attr] = (_method if kind == "[method]" else _static)(export, sig, qualname)

    def __new__(cls: type, *args: Any) -> Any:  # noqa: N807 - the class's constructor
        if constructor is None:
            raise TypeError(f"resource {resource!r} has no constructor")
        return constructor(*args)

    def __init__(self: Resource, *args: Any) -> None:  # noqa: N807
        pass  # __new__ returned a handle lifted from the constructor's result

    ns["__new__"] = __new__
    ns["__init__"] = __init__
    where = f"interface ``{interface}``" if interface else "the world"
    ns["__doc__"] = f"The resource ``{resource}`` exported by {where}."
    return type(cls_name, (Resource,), ns)


def build_resource_classes(
    interface: str, resources: Iterable[str], functions: Iterable[tuple[FuncSig, Any]]
) -> tuple[dict[str, type], dict[str, Any]]:
    """Group an interface's resource functions into classes.

    Args:
        interface: The exported interface's name (``""`` for the world).
        resources: The WIT names of the resource types it exports (a class each,
            even without functions, so its handles have a type of their own).
        functions: ``(signature, callable export)`` pairs of the interface.

    Returns:
        ``(classes, plain)``: the classes by WIT resource name, and the
        functions that belong to no resource by their WIT names.
    """
    grouped: dict[str, list[tuple[str, str, Any, FuncSig]]] = {r: [] for r in resources}
    plain: dict[str, Any] = {}
    for sig, export in functions:
        parts = resource_function(sig.name)
        if parts is None:
            plain[sig.name] = export
            continue
        kind, resource, member = parts
        grouped.setdefault(resource, []).append((kind, member, export, sig))
    classes = {name: _class(name, interface, members) for name, members in grouped.items()}
    return classes, plain
