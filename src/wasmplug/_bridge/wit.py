"""A frozen, printable model of a component's WIT types, read from wasmtime.

wasmtime-py describes types with ctypes-backed objects that re-query the C API
on every property access. wasmplug reads them once, at load time, into this
immutable tree: the bridge compiles converters from it, the static capability
check reads import names from it, and ``wasmplug inspect`` prints it. Names
and syntax follow the WIT specification (component-model ``WIT.md``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Union

import attrs
from wasmtime import Engine
from wasmtime.component import (
    BorrowType,
    Component,
    ComponentInstanceType,
    EnumType,
    FlagsType,
    FuncType,
    ListType,
    OptionType,
    OwnType,
    RecordType,
    ResourceType,
    ResultType,
    TupleType,
    ValType,
    VariantType,
)

from .ffi import component_types as wt

__all__ = [
    "ComponentShape",
    "FuncSig",
    "InterfaceShape",
    "TypeReader",
    "WitType",
]

PRIMITIVES: dict[type[Any], str] = {
    wt.Bool: "bool",
    wt.S8: "s8",
    wt.U8: "u8",
    wt.S16: "s16",
    wt.U16: "u16",
    wt.S32: "s32",
    wt.U32: "u32",
    wt.S64: "s64",
    wt.U64: "u64",
    wt.F32: "f32",
    wt.F64: "f64",
    wt.Char: "char",
    wt.String: "string",
}


@attrs.frozen
class Prim:
    """A primitive type: ``bool``, ``s8``..``u64``, ``f32``, ``f64``, ``char``, ``string``."""

    name: str

    def __str__(self) -> str:
        return self.name


@attrs.frozen
class ListT:
    element: WitType

    def __str__(self) -> str:
        return f"list<{self.element}>"


@attrs.frozen
class RecordT:
    fields: tuple[tuple[str, WitType], ...]

    def __str__(self) -> str:
        return "record { " + ", ".join(f"{n}: {t}" for n, t in self.fields) + " }"


@attrs.frozen
class TupleT:
    elements: tuple[WitType, ...]

    def __str__(self) -> str:
        return "tuple<" + ", ".join(map(str, self.elements)) + ">"


@attrs.frozen
class VariantT:
    cases: tuple[tuple[str, WitType | None], ...]

    def __str__(self) -> str:
        parts = [n if t is None else f"{n}({t})" for n, t in self.cases]
        return "variant { " + ", ".join(parts) + " }"


@attrs.frozen
class EnumT:
    names: tuple[str, ...]

    def __str__(self) -> str:
        return "enum { " + ", ".join(self.names) + " }"


@attrs.frozen
class FlagsT:
    names: tuple[str, ...]

    def __str__(self) -> str:
        return "flags { " + ", ".join(self.names) + " }"


@attrs.frozen
class OptionT:
    payload: WitType

    def __str__(self) -> str:
        return f"option<{self.payload}>"


@attrs.frozen
class ResultT:
    ok: WitType | None
    err: WitType | None

    def __str__(self) -> str:
        if self.ok is None and self.err is None:
            return "result"
        ok = "_" if self.ok is None else str(self.ok)
        return f"result<{ok}>" if self.err is None else f"result<{ok}, {self.err}>"


@attrs.frozen(eq=False)
class ResourceRef:
    """A resource type, named where the component names it.

    Attributes:
        name: The resource's WIT name (e.g. ``counter``), or ``"resource"`` if unknown.
        interface: The interface the resource belongs to, or ``""`` for the root.
        handle: wasmtime's ``ResourceType``, compared with ``==`` to identify it.
        imported: True when the host defines it (an imported resource).
    """

    name: str
    interface: str
    handle: ResourceType = attrs.field(repr=False)
    imported: bool = False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceRef) and bool(self.handle == other.handle)

    def __hash__(self) -> int:
        return hash(self.name)


@attrs.frozen
class HandleT:
    """``own<R>`` or ``borrow<R>``."""

    resource: ResourceRef
    owned: bool

    def __str__(self) -> str:
        return f"{'own' if self.owned else 'borrow'}<{self.resource.name}>"


WitType = Union[Prim, ListT, RecordT, TupleT, VariantT, EnumT, FlagsT, OptionT, ResultT, HandleT]


@attrs.frozen
class FuncSig:
    """A function's WIT signature.

    Attributes:
        name: The function's WIT name (``greet``, ``[method]counter.get``...).
        params: ``(name, type)`` pairs in order.
        result: The result type, or ``None`` for a function without one.
    """

    name: str
    params: tuple[tuple[str, WitType], ...]
    result: WitType | None

    def __str__(self) -> str:
        params = ", ".join(f"{n}: {t}" for n, t in self.params)
        tail = "" if self.result is None else f" -> {self.result}"
        return f"func({params}){tail}"


@attrs.frozen
class InterfaceShape:
    """An imported or exported interface: its functions and resource types."""

    name: str
    functions: tuple[FuncSig, ...]
    resources: tuple[ResourceRef, ...]


@attrs.frozen
class ComponentShape:
    """Everything the host needs to know about a component's imports and exports.

    Attributes:
        imports: Imported interfaces by name (``wasi:cli/environment@0.2.0``...).
        import_functions: Functions imported directly by the world (no interface).
        exports: Exported interfaces by name.
        export_functions: Functions exported directly by the world.
        import_resources: Resources the world imports directly (``resource r``
            declared in the world, not in an interface); the host defines them.
        export_resources: Resources the component exports directly.
    """

    imports: dict[str, InterfaceShape]
    import_functions: tuple[FuncSig, ...]
    exports: dict[str, InterfaceShape]
    export_functions: tuple[FuncSig, ...]
    import_resources: tuple[ResourceRef, ...] = ()
    export_resources: tuple[ResourceRef, ...] = ()

    def iter_exports(self) -> Iterator[tuple[str, FuncSig]]:
        """Yield ``(qualified_name, sig)``: ``greet`` or ``demo:plugin/api@0.1.0#run``."""
        for sig in self.export_functions:
            yield sig.name, sig
        for iface in self.exports.values():
            for sig in iface.functions:
                yield f"{iface.name}#{sig.name}", sig


class TypeReader:
    """Reads wasmtime type objects into the frozen model, naming resources."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.resources: list[ResourceRef] = []

    def resource(self, handle: ResourceType) -> ResourceRef:
        for ref in self.resources:
            if ref.handle == handle:
                return ref
        ref = ResourceRef("resource", "", handle)
        self.resources.append(ref)
        return ref

    def valtype(self, ty: ValType) -> WitType:
        prim = PRIMITIVES.get(type(ty))
        if prim is not None:
            return Prim(prim)
        if isinstance(ty, ListType):
            return ListT(self.valtype(ty.element))
        if isinstance(ty, RecordType):
            return RecordT(tuple((n, self.valtype(t)) for n, t in ty.fields))
        if isinstance(ty, TupleType):
            return TupleT(tuple(self.valtype(t) for t in ty.elements))
        if isinstance(ty, VariantType):
            return VariantT(tuple((n, None if t is None else self.valtype(t)) for n, t in ty.cases))
        if isinstance(ty, EnumType):
            return EnumT(tuple(ty.names))
        if isinstance(ty, FlagsType):
            return FlagsT(tuple(ty.names))
        if isinstance(ty, OptionType):
            return OptionT(self.valtype(ty.payload))
        if isinstance(ty, ResultType):
            ok, err = ty.ok, ty.err
            return ResultT(
                None if ok is None else self.valtype(ok),
                None if err is None else self.valtype(err),
            )
        if isinstance(ty, OwnType):
            return HandleT(self.resource(ty.ty), owned=True)
        if isinstance(ty, BorrowType):
            return HandleT(self.resource(ty.ty), owned=False)
        raise NotImplementedError(f"WIT type {type(ty).__name__} is not supported yet")

    def func(self, name: str, fty: FuncType) -> FuncSig:
        params = tuple((n, self.valtype(t)) for n, t in fty.params)
        result = fty.result
        return FuncSig(name, params, None if result is None else self.valtype(result))

    def interface(self, name: str, ity: ComponentInstanceType, imported: bool) -> InterfaceShape:
        items = ity.exports(self.engine)
        resources = []
        # Resources first, so functions that mention them get their names.
        for item_name, ext in items.items():
            ty = ext.ty
            if isinstance(ty, ResourceType):
                ref = ResourceRef(item_name, name, ty, imported)
                self.resources.append(ref)
                resources.append(ref)
        funcs = [
            self.func(item_name, ext.ty)
            for item_name, ext in items.items()
            if isinstance(ext.ty, FuncType)
        ]
        return InterfaceShape(name, tuple(funcs), tuple(resources))

    def section(
        self, items: dict[str, Any], imported: bool
    ) -> tuple[dict[str, InterfaceShape], tuple[FuncSig, ...], tuple[ResourceRef, ...]]:
        interfaces: dict[str, InterfaceShape] = {}
        funcs: list[FuncSig] = []
        resources: list[ResourceRef] = []
        for name, ext in items.items():
            ty = ext.ty
            if isinstance(ty, ComponentInstanceType):
                interfaces[name] = self.interface(name, ty, imported)
            elif isinstance(ty, ResourceType):
                ref = ResourceRef(name, "", ty, imported)
                self.resources.append(ref)
                resources.append(ref)
        for name, ext in items.items():
            ty = ext.ty
            if isinstance(ty, FuncType):
                funcs.append(self.func(name, ty))
        return interfaces, tuple(funcs), tuple(resources)


_SHAPES: weakref.WeakKeyDictionary[Component, ComponentShape] = weakref.WeakKeyDictionary()
_SHAPES_LOCK = threading.Lock()


def read_shape(engine: Engine, component: Component) -> ComponentShape:
    """Read a compiled component's imports and exports into a :class:`ComponentShape`.

    The shape is read once per ``Component`` object (``engine`` must be the one it
    was compiled for) and shared by every plugin loaded from it, for as long as the
    component lives: a shape is never mutated.
    """
    with _SHAPES_LOCK:
        shape = _SHAPES.get(component)
    if shape is not None:
        return shape
    reader = TypeReader(engine)
    ctype = component.type
    imports, import_funcs, import_res = reader.section(ctype.imports(engine), imported=True)
    exports, export_funcs, export_res = reader.section(ctype.exports(engine), imported=False)
    shape = ComponentShape(imports, import_funcs, exports, export_funcs, import_res, export_res)
    with _SHAPES_LOCK:
        return _SHAPES.setdefault(component, shape)


def resource_of(func_name: str) -> str | None:
    """The resource a function belongs to: ``[method]r.get`` → ``r``; ``None`` for a plain one."""
    for prefix in ("[constructor]", "[method]", "[static]"):
        if func_name.startswith(prefix):
            return func_name[len(prefix) :].partition(".")[0]
    return None


def snake(name: str) -> str:
    """WIT kebab-case to a Python identifier: ``get-config`` → ``get_config``."""
    return name.replace("-", "_")


def pascal(name: str) -> str:
    """WIT kebab-case to a Python class name: ``http-client`` → ``HttpClient``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def contains_handles(types: Iterable[WitType | None]) -> bool:
    """True if any of ``types`` mentions ``own``/``borrow`` anywhere inside."""

    def walk(t: WitType | None) -> bool:
        if t is None or isinstance(t, Prim | EnumT | FlagsT):
            return False
        if isinstance(t, HandleT):
            return True
        if isinstance(t, ListT):
            return walk(t.element)
        if isinstance(t, OptionT):
            return walk(t.payload)
        if isinstance(t, ResultT):
            return walk(t.ok) or walk(t.err)
        if isinstance(t, RecordT):
            return any(walk(ft) for _, ft in t.fields)
        if isinstance(t, TupleT):
            return any(walk(et) for et in t.elements)
        return any(walk(ct) for _, ct in t.cases)

    return any(walk(t) for t in types)
