"""``wasmplug bindgen``: typed Python bindings generated from a component's own types.

The component is compiled with wasmtime (through the shared compile cache) and its
imports and exports read with :func:`wasmplug._bridge.wit.read_shape`; the names of
records, variants and enums come from the type exports of its interfaces. This module
renders the module's functions, classes and protocols; ``_typegen`` renders the types
and the conversions between the bridge's values and the generated classes.

The generated module has its own classes, separate from the bridge's values:

* a ``record`` is a frozen attrs class with snake_case fields;
* an ``enum`` is an :class:`enum.Enum` whose values are the WIT case names;
* a ``variant`` is one frozen attrs class per case (``value`` holds the payload),
  and a type alias, the ``Union`` of the cases, for the variant itself;
* ``flags`` are ``frozenset[str]``, ``option<T>`` is ``T | None`` (nested options
  use :class:`~wasmplug.Some`), a nested ``result`` is ``Ok[T] | Err[E]``;
* a ``resource`` an interface exports is a class of the same shape as the
  bridge's (``Counter(7)``, ``c.get_a()``, ``Counter.add(c, 1)``, ``with``,
  ``c.drop()``): it wraps the :class:`~wasmplug.Resource` handle (``.handle``),
  and ``PluginExports(plugin).api.Counter`` is bound to the plugin, so calling
  it constructs. Other handles (resources the host defines) are ``Any``.

The bridge takes and returns its own values (records as attrs classes made by
the bridge, variants as :class:`~wasmplug.Variant`, enums as ``str``), so every
generated method converts at the boundary: arguments are lowered to bridge
values, results lifted into the generated classes. ``PluginExports(plugin)``
wraps a loaded :class:`~wasmplug.Plugin`; an exported interface is an attribute.
A top-level ``result<T, E>`` returns ``T`` and raises :class:`~wasmplug.ErrorResult`
whose ``value`` is the bridge's value of ``E``. Each imported interface becomes a
``typing.Protocol`` for the application to implement, and a
``provide_<iface>(host, impl)`` function that adapts it for
:meth:`~wasmplug.PluginHost.provide`. The functions of resources the host
defines are not wrapped: provide them with ``host.provide``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import attrs
from wasmtime import Engine
from wasmtime.component import ComponentInstanceType, EnumType, RecordType, VariantType

from wasmplug._bridge.wit import (
    ComponentShape,
    FuncSig,
    InterfaceShape,
    ResultT,
    TypeReader,
    WitType,
    pascal,
    read_shape,
)
from wasmplug._fsutil import write_atomic
from wasmplug._runtime.compiler import Compiler
from wasmplug._runtime.resource_types import attr_name, resource_function
from wasmplug._sandbox.manifest import HTTP_INTERFACE

from ._typegen import TypeGen, ident

__all__ = ["Bindings", "bindgen", "render_bindings"]


_PRELUDE = """\
from __future__ import annotations

import enum
import os
from typing import Any, Protocol, Union, cast

import attrs

from wasmplug import Err, Ok, Plugin, PluginHost, Some, Variant
"""

_RESOURCE_BASE = '''\
from typing import ClassVar, Self

from wasmplug import Resource


class _GuestResource:
    """Base of the generated resource classes: wraps a :class:`wasmplug.Resource`."""

    __slots__ = ("handle",)
    _plugin: ClassVar[Plugin | None] = None
    handle: Resource

    @classmethod
    def _wrap(cls, handle: Resource) -> Self:
        obj = cls.__new__(cls)
        obj.handle = handle
        return obj

    @classmethod
    def _bind(cls, plugin: Plugin) -> type[Self]:
        return cast("type[Self]", type(cls.__name__, (cls,), {"__slots__": (), "_plugin": plugin}))

    @classmethod
    def _bound(cls) -> Plugin:
        if cls._plugin is None:
            raise TypeError(
                f"{cls.__name__} is not bound to a plugin: use "
                f"PluginExports(plugin).<interface>.{cls.__name__}"
            )
        return cls._plugin

    def drop(self) -> None:
        """Drop the handle: the guest's destructor runs now (idempotent)."""
        self.handle.drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.handle!r}>"
'''
"""Emitted after the prelude when the component exports resources."""


def _short(interface: str) -> str:
    """``demo:plugin/api@0.1.0`` -> ``api``."""
    return interface.split("/")[-1].split("@")[0]


def _named_types(engine: Engine, component: object) -> dict[WitType, str]:
    """WIT name of every record, variant and enum type the component's interfaces export."""
    reader = TypeReader(engine)
    names: dict[WitType, str] = {}
    ctype = component.type  # type: ignore[attr-defined]
    for section in (ctype.imports(engine), ctype.exports(engine)):
        items = list(section.items())
        for _, ext in list(items):
            if isinstance(ext.ty, ComponentInstanceType):
                items.extend(ext.ty.exports(engine).items())
        for name, ext in items:
            if isinstance(ext.ty, RecordType | VariantType | EnumType):
                names.setdefault(reader.valtype(ext.ty), name)
    return names


def _plain(sig: FuncSig) -> bool:
    """A plain function (not a resource constructor, method or static)."""
    return not sig.name.startswith("[")


def _method(
    gen: TypeGen,
    sig: FuncSig,
    qualname: str,
    *,
    name: str | None = None,
    first: str = "self",
    target: str = "self._plugin",
    skip: int = 0,
    bound: tuple[str, ...] = (),
) -> str:
    """A method that calls the export ``qualname``: ``target.call(qualname, *bound,
    <the parameters after the first skip>)``, converting at the boundary."""
    hint = pascal(sig.name)
    params = [(ident(n), t, hint + pascal(n)) for n, t in sig.params[skip:]]
    decl = ", ".join([first] + [f"{p}: {gen.ann(t, h)}" for p, t, h in params])
    args = "".join(f", {a}" for a in bound)
    args += "".join(f", {gen.lower(t, p, h)}" for p, t, h in params)
    call = f"{target}.call({qualname!r}{args})"
    result = sig.result
    doc = f"WIT ``{sig.name}: {sig}``."
    if isinstance(result, ResultT):
        result = result.ok
        doc += " An ``err`` raises :class:`~wasmplug.ErrorResult`."
    ret = gen.ann(result, hint + "Result")
    body = f"return {gen.lift(result, call, hint + 'Result')}" if result is not None else call
    fname = name or ident(sig.name)
    return f'    def {fname}({decl}) -> {ret}:\n        """{doc}"""\n        {body}\n'


def _resource_class(
    gen: TypeGen, cls: str, resource: str, interface: str, funcs: list[tuple[str, FuncSig]]
) -> str:
    """The class of an exported resource (see the module docstring)."""
    doc = f"The resource ``{resource}`` exported by ``{interface}``."
    lines = [f'class {cls}(_GuestResource):\n    """{doc}"""\n\n    __slots__ = ()\n']
    for qualname, sig in funcs:
        kind, _, member = resource_function(sig.name) or ("", "", "")
        if kind == "[constructor]":
            params = [(ident(n), t, pascal(sig.name) + pascal(n)) for n, t in sig.params]
            decl = ", ".join(["self"] + [f"{p}: {gen.ann(t, h)}" for p, t, h in params])
            args = "".join(f", {gen.lower(t, p, h)}" for p, t, h in params)
            lines.append(
                f"\n    def __init__({decl}) -> None:\n"
                f'        """WIT ``{sig.name}: {sig}``."""\n'
                f"        self.handle = self._bound().call({qualname!r}{args})\n"
            )
        elif kind == "[method]":
            method = _method(
                gen,
                sig,
                qualname,
                name=_member_attr(member),
                target="self.handle.plugin",
                skip=1,
                bound=("self.handle",),
            )
            lines.append("\n" + method)
        elif kind == "[static]":
            method = _method(
                gen, sig, qualname, name=_member_attr(member), first="cls", target="cls._bound()"
            )
            lines.append("\n    @classmethod\n" + method)
    return "".join(lines)


def _resource_of(sig: FuncSig) -> str | None:
    """The resource a constructor, method or static function belongs to."""
    parts = resource_function(sig.name)
    return None if parts is None else parts[1]


def _member_attr(member: str) -> str:
    """The Python name of a resource method: as the bridge names it, and never one
    of the generated base class's own attributes."""
    name = attr_name(member)
    return f"{name}_" if name in ("handle", "cls", "self") else name


def _exports_class(gen: TypeGen, name: str, doc: str, funcs: list[tuple[str, FuncSig]],
                   members: list[tuple[str, str]],
                   resources: list[tuple[str, str]] | None = None) -> str:  # fmt: skip
    init = "".join(f"        self.{attr} = {cls}(plugin)\n" for attr, cls in members)
    init += "".join(
        f"        self.{attr}: type[{cls}] = {cls}._bind(plugin)\n" for attr, cls in resources or ()
    )
    methods = "".join("\n" + _method(gen, sig, q) for q, sig in funcs if _plain(sig))
    return (
        f'class {name}:\n    """{doc}"""\n\n'
        f"    def __init__(self, plugin: Plugin) -> None:\n"
        f"        self._plugin = plugin\n{init}{methods}"
    )


def _protocol(gen: TypeGen, iface: InterfaceShape | None, funcs: tuple[FuncSig, ...],
              name: str, wit_name: str) -> str:  # fmt: skip
    plain = [s for s in funcs if _plain(s)]
    doc = f"What the application implements for ``{wit_name}``."
    doc += " Raise :class:`~wasmplug.Err` to return a WIT ``err``."
    lines = [f'class {name}(Protocol):\n    """{doc}"""\n']
    adapters, table = [], []
    for sig in plain:
        hint = pascal(sig.name)
        params = [(ident(n), t, hint + pascal(n)) for n, t in sig.params]
        decl = ", ".join(["self"] + [f"{p}: {gen.ann(t, h)}" for p, t, h in params])
        result, err_t = sig.result, None
        wrap_err = isinstance(result, ResultT)
        if isinstance(result, ResultT):
            err_t, result = result.err, result.ok
        ret = gen.ann(result, hint + "Result")
        lines.append(f"\n    def {ident(sig.name)}({decl}) -> {ret}:\n        ...\n")
        fn = f"_{ident(sig.name)}"
        adecl = ", ".join(f"a{i}: Any" for i in range(len(params)))
        args = ", ".join(gen.lift(t, f"a{i}", h) for i, (_, t, h) in enumerate(params))
        call = f"impl.{ident(sig.name)}({args})"
        stmts = [f"return {gen.lower(result, call, hint + 'Result')}"]
        if result is None:
            stmts = [call, "return None"]
        if wrap_err:
            err = gen.lower(err_t, "e.value", hint + "Error")
            stmts = ["try:", *("    " + x for x in stmts), "except Err as e:",
                     f"    raise Err({err}) from None"]  # fmt: skip
        body = "".join(f"        {x}\n" for x in stmts)
        adapters.append(f"    def {fn}({adecl}) -> Any:\n{body}")
        table.append(f"{sig.name!r}: {fn}")
    if len(plain) < len(funcs):
        lines.append("\n    # Resource functions are not bound: provide them with host.provide.\n")
    target = wit_name if iface is not None else None
    provide_name = f"provide_{ident(_short(wit_name)) if iface is not None else 'world'}"
    impl_param = f", impl: {name}" if plain or iface is None else ""
    if target is not None:
        head = (
            f"def {provide_name}(host: PluginHost{impl_param}, *, "
            "wit: str | os.PathLike[str] | None = None, sensitive: bool = False) -> None:\n"
            f'    """Provide ``{wit_name}`` to plugins loaded later, converting values.\n\n'
            "    ``wit`` is the interface's WIT (file, package directory or text): with it,\n"
            '    plugins reach exactly the functions it defines, with its types."""\n'
        )
        mapping = "{" + ", ".join(table) + "}"
        provide = f"    host.provide({target!r}, {mapping}, wit=wit, sensitive=sensitive)\n"
    else:
        head = (
            f"def {provide_name}(host: PluginHost{impl_param}, *, "
            "sensitive: bool = False) -> None:\n"
            f'    """Provide ``{wit_name}`` to plugins loaded later, converting values."""\n'
        )
        provide = "".join(
            f"    host.provide({s.name!r}, _{ident(s.name)}, sensitive=sensitive)\n" for s in plain
        )
    protocol = "".join(lines) if plain or iface is None else ""
    return protocol + ("\n\n" if protocol else "") + head + "".join(adapters) + provide


def render_bindings(shape: ComponentShape, named: dict[WitType, str], *, source: str = "") -> str:
    """Render the bindings module for ``shape`` (see the module docstring)."""
    gen = TypeGen(named)
    blocks: list[str] = []
    members: list[tuple[str, str]] = []
    exported = {
        iname: iface
        for iname, iface in shape.exports.items()
        if not (iname == "exports" and [f.name for f in iface.functions] == ["init"])
    }  # componentize-py's own build-time initialiser is not part of the world
    for iname, iface in exported.items():
        for ref in iface.resources:
            gen.resources[(iname, ref.name)] = gen.fresh(pascal(ref.name))
    for iname, iface in exported.items():
        cls = gen.fresh(pascal(_short(iname)) + "Exports")
        funcs = [(f"{iname}#{s.name}", s) for s in iface.functions]
        classes = []
        for ref in iface.resources:
            rcls = gen.resources[(iname, ref.name)]
            rfuncs = [(q, s) for q, s in funcs if _resource_of(s) == ref.name]
            blocks.append(_resource_class(gen, rcls, ref.name, iname, rfuncs))
            classes.append((pascal(ref.name), rcls))
        doc = f"The exported interface ``{iname}``."
        blocks.append(_exports_class(gen, cls, doc, funcs, [], classes))
        members.append((ident(_short(iname)), cls))
    funcs = [(s.name, s) for s in shape.export_functions]
    doc = "Typed exports of a loaded plugin: ``PluginExports(host.load(...))``."
    blocks.append(_exports_class(gen, "PluginExports", doc, funcs, members))
    for iname, iface in shape.imports.items():
        if iname.startswith("wasi:") or iname == HTTP_INTERFACE:
            continue
        proto = gen.fresh(pascal(_short(iname)) + "Imports")
        blocks.append(_protocol(gen, iface, iface.functions, proto, iname))
    if any(_plain(s) for s in shape.import_functions):
        blocks.append(_protocol(gen, None, shape.import_functions, "WorldImports", "the world"))
    header = (
        f'"""Typed bindings for {source or "a wasmplug plugin"}, generated by '
        "``wasmplug bindgen``. Do not edit.\n\n"
        "Records are frozen attrs classes, enums enum.Enum, variants one class per\n"
        "case; methods convert to and from the bridge's values at the boundary.\n"
        '"""\n\n# ruff: noqa\n'
    )
    body = "\n\n".join(gen.decls + gen.funcs + blocks)
    prelude = _PRELUDE + (_RESOURCE_BASE if gen.resources else "")
    return f"{header}{prelude}\n\n{body}"


@attrs.frozen
class Bindings:
    """Typed Python bindings generated by :func:`bindgen`.

    Attributes:
        code: The module's source text (it imports only ``wasmplug`` and ``attrs``).
        path: The file written, or ``None`` if no ``output`` was given.
        component_sha256: SHA-256 of the component they were generated from.
    """

    code: str
    path: Path | None
    component_sha256: str


def bindgen(
    component: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Bindings:
    """Generate typed Python bindings for a component, as ``wasmplug bindgen`` does.

    The component is compiled (or loaded from the compile cache) to read its types;
    see the module documentation for what the generated module contains.

    Args:
        component: The ``.wasm`` component.
        output: The module to write (atomically, only if changed); ``None`` returns
            the code without writing.
        cache_dir: Compile cache directory (default: the user cache dir).

    Returns:
        The generated code and where it was written.

    Raises:
        InvalidComponentError: the file is not a valid component.
        OSError: a file cannot be read or written.
    """
    path = Path(component)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    compiler = Compiler.standalone(cache_dir)
    compiled = compiler.compile(data, path.stem)
    shape = read_shape(compiler.engine, compiled)
    named = _named_types(compiler.engine, compiled)
    code = render_bindings(shape, named, source=f"``{path.name}`` (sha256 {sha[:16]})")
    out = None if output is None else Path(output)
    if out is not None and (not out.is_file() or out.read_text(encoding="utf-8") != code):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, code.encode("utf-8"))
    return Bindings(code, out, sha)
