"""The host surface: which Python callables a plugin's imports may reach.

The application owns the interfaces it provides. A plugin never chooses what it
can call by naming it:

* **With WIT** (``provide(name, impl, wit=...)``): the interface's functions and
  resources are the ones the application's WIT defines. Each is resolved on
  ``impl`` once, when it is provided (a snake_case attribute or a kebab/snake key;
  resources are classes, ``PascalCase`` attribute or kebab key, with snake_case
  methods), and a missing one is a :class:`~wasmplug.HostInterfaceError`. At
  load, every function the plugin imports must be one of those, with the same
  type, and every resource one of its resources; anything else is a
  :class:`~wasmplug.LinkError` naming it.
* **A plain mapping without WIT** (quick scripts): only its explicit keys are
  linked, looked up by the WIT name or its snake_case form. Resource functions
  need their full WIT name as a key (``"[constructor]blob"``,
  ``"[method]blob.read"``): no class is searched for methods. Keys starting with
  ``_`` are never linked. Types are not checked beyond the parameter count.
* **A world-level function**: the callable itself, under the function's name.

Nothing here ever calls ``getattr`` with a name taken from a plugin.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from wasmtime import Engine

from wasmplug._errors import HostInterfaceError
from wasmplug._semver import interface_version_key, semver_compatible

from .hostfuncs import Invoke
from .wit import (
    ComponentShape,
    EnumT,
    FlagsT,
    FuncSig,
    HandleT,
    InterfaceShape,
    ListT,
    OptionT,
    Prim,
    RecordT,
    ResultT,
    TupleT,
    VariantT,
    WitType,
    pascal,
    resource_of,
    snake,
)
from .witsource import WitCache, WitSource, interface_shape, world_shape

__all__ = [
    "HostInterface",
    "Invoke",
    "Surface",
    "find_provider",
    "plan_function",
    "plan_interface",
    "type_mismatch",
    "world_items",
]


@attrs.frozen
class Surface:
    """An interface as the application's WIT defines it, resolved on the implementation.

    Attributes:
        shape: The interface's functions and resources, from the application's WIT.
        invokes: WIT function name -> the call into the implementation.
    """

    shape: InterfaceShape
    invokes: Mapping[str, Invoke]


class HostInterface:
    """An interface (or world-level function) the application provides.

    Args:
        name: The interface name (``demo:plugin/host@0.1.0``) or function name.
        impl: The implementation.
        sensitive: Linked only for plugins whose grants name it.
        source: The interface's WIT, or ``None`` for a plain mapping or callable.
        world: For a world-level function or resource with WIT: the world in
            ``source`` that declares it.
    """

    __slots__ = ("_lock", "_surface", "impl", "name", "sensitive", "source", "world")

    def __init__(
        self,
        name: str,
        impl: Any,
        sensitive: bool = False,
        source: WitSource | None = None,
        world: str | None = None,
    ) -> None:
        self.name = name
        self.impl = impl
        self.sensitive = sensitive
        self.source = source
        self.world = world
        self._lock = threading.Lock()
        self._surface: Surface | None = None

    def surface(self, engine: Engine, cache: WitCache | None) -> Surface | None:
        """The interface as its WIT defines it (``None`` without WIT), resolved once.

        Raises:
            HostInterfaceError: the WIT is invalid, lacks the interface, or ``impl``
                lacks one of its functions or resources.
        """
        if self.source is None:
            return None
        with self._lock:
            if self._surface is None:
                if self.world is None:
                    shape = interface_shape(engine, self.source, self.name, cache)
                    iface = shape.imports[self.name]
                    self._surface = Surface(iface, resolve_all(self.name, iface, self.impl))
                else:
                    shape = world_shape(engine, self.source, self.world, cache)
                    item = world_items(shape).get(self.name)
                    if item is None:
                        raise HostInterfaceError(
                            self.name, [f"world {self.world} imports no function or resource "
                                        f"named {self.name!r}"]
                        )  # fmt: skip
                    # The implementation is the callable or class itself.
                    self._surface = Surface(
                        item, resolve_all(self.name, item, {self.name: self.impl})
                    )
            return self._surface

    def __repr__(self) -> str:
        wit = "WIT" if self.source is not None else "no WIT"
        return f"<HostInterface {self.name} ({wit})>"


def world_items(shape: ComponentShape) -> dict[str, InterfaceShape]:
    """World-level imports of ``shape`` by the name a provider has, each as an unnamed
    interface: a function by its own name, a resource (with its constructor, methods and
    static functions) by the resource's name."""
    items = {}
    for res in shape.import_resources:
        funcs = tuple(s for s in shape.import_functions if resource_of(s.name) == res.name)
        items[res.name] = InterfaceShape("", funcs, (res,))
    for sig in shape.import_functions:
        if resource_of(sig.name) is None:
            items[sig.name] = InterfaceShape("", (sig,), ())
    return items


def find_provider(name: str, providers: Mapping[str, HostInterface]) -> HostInterface | None:
    """The provider for import ``name``: exact name first, then the newest compatible version."""
    exact = providers.get(name)
    if exact is not None:
        return exact
    candidates = [p for key, p in providers.items() if semver_compatible(name, key)]
    return max(candidates, key=lambda p: interface_version_key(p.name), default=None)


# ---------------------------------------------------------------------------
# Resolving the application's WIT on its implementation (at provide time)
# ---------------------------------------------------------------------------


def _member(impl: Any, wit_name: str, py_name: str) -> Any:
    """``impl``'s member for a name *from the application's WIT*."""
    if isinstance(impl, Mapping):
        for key in (wit_name, py_name):
            if key in impl:
                return impl[key]
        return None
    return getattr(impl, py_name, None)


def _arity_problem(fn: Callable[..., Any], count: int, what: str, params: str) -> str | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins without signatures: trust them
    try:
        sig.bind(*range(count))
    except TypeError:
        return f"{what} must accept {count} argument(s) ({params}); its signature is {sig}"
    return None


def _resolve(iface: str, sig: FuncSig, impl: Any, problems: list[str]) -> Invoke | None:
    """``invoke(args)`` for one function of the application's WIT, or record why not."""
    name = sig.name
    where = f"{iface}#{name}" if iface else name
    params = ", ".join(n for n, _ in sig.params)
    if name.startswith("[constructor]"):
        resource = name[13:]
        cls = _member(impl, resource, pascal(resource))
        if cls is None or not callable(cls):
            problems.append(f"{where}: no class {pascal(resource)!r} for resource {resource!r}")
            return None
        problem = _arity_problem(cls, len(sig.params), where, params)
        if problem:
            problems.append(problem)
            return None
        return lambda args: cls(*args)
    if name.startswith(("[method]", "[static]")):
        resource, _, method = name[8:].partition(".")
        cls = _member(impl, resource, pascal(resource))
        attr = snake(method)
        member = getattr(cls, attr, None) if cls is not None else None
        if member is None or not callable(member):
            kind = "method" if name.startswith("[method]") else "static method"
            problems.append(f"{where}: resource class {pascal(resource)!r} has no {kind} {attr!r}")
            return None
        problem = _arity_problem(member, len(sig.params), where, params)
        if problem:
            problems.append(problem)
            return None
        if name.startswith("[static]"):
            return _call(member)
        # ``attr`` comes from the application's WIT and exists on the class; the
        # receiver is the host object behind the borrowed handle.
        return lambda args: getattr(args[0], attr)(*args[1:])
    fn = _member(impl, name, snake(name))
    if fn is None or not callable(fn):
        problems.append(f"{where}: not implemented (expected a callable named {snake(name)!r})")
        return None
    problem = _arity_problem(fn, len(sig.params), where, params)
    if problem:
        problems.append(problem)
        return None
    return lambda args: fn(*args)


def resolve_all(name: str, shape: InterfaceShape, impl: Any) -> dict[str, Invoke]:
    """Resolve every function of the application's interface on ``impl``.

    Raises:
        HostInterfaceError: listing every function or resource ``impl`` lacks.
    """
    problems: list[str] = []
    invokes = {}
    for sig in shape.functions:
        invoke = _resolve(shape.name, sig, impl, problems)
        if invoke is not None:
            invokes[sig.name] = invoke
    if problems:
        raise HostInterfaceError(name, problems)
    return invokes


# ---------------------------------------------------------------------------
# Matching a plugin's imports against what the application provides (at load)
# ---------------------------------------------------------------------------

_VERSION = re.compile(r"@[^@/]*$")


def _unversioned(name: str) -> str:
    return _VERSION.sub("", name)


def type_mismatch(want: WitType | None, got: WitType | None) -> bool:
    """True unless ``got`` (the plugin's type) is exactly ``want`` (the application's).

    Structural, as the component model compares types: record field names, case
    names, enum and flag names and their order all count; type names do not.
    A resource is identified by its name and its interface (without version).
    """
    if want is None or got is None:
        return want is not got
    if type(want) is not type(got):
        return True
    if isinstance(want, Prim):
        return want != got
    if isinstance(want, ListT):
        assert isinstance(got, ListT)
        return type_mismatch(want.element, got.element)
    if isinstance(want, OptionT):
        assert isinstance(got, OptionT)
        return type_mismatch(want.payload, got.payload)
    if isinstance(want, ResultT):
        assert isinstance(got, ResultT)
        return type_mismatch(want.ok, got.ok) or type_mismatch(want.err, got.err)
    if isinstance(want, EnumT | FlagsT):
        return want != got
    if isinstance(want, TupleT):
        assert isinstance(got, TupleT)
        return len(want.elements) != len(got.elements) or any(
            type_mismatch(a, b) for a, b in zip(want.elements, got.elements, strict=True)
        )
    if isinstance(want, RecordT | VariantT):
        assert isinstance(got, RecordT | VariantT)
        wa = want.fields if isinstance(want, RecordT) else want.cases
        ga = got.fields if isinstance(got, RecordT) else got.cases
        return len(wa) != len(ga) or any(
            na != nb or type_mismatch(ta, tb) for (na, ta), (nb, tb) in zip(wa, ga, strict=True)
        )
    assert isinstance(want, HandleT)
    assert isinstance(got, HandleT)
    return (
        want.owned != got.owned
        or want.resource.name != got.resource.name
        or _unversioned(want.resource.interface) != _unversioned(got.resource.interface)
    )


def _sig_mismatch(want: FuncSig, got: FuncSig) -> bool:
    return (
        len(want.params) != len(got.params)
        or any(type_mismatch(a, b) for (_, a), (_, b) in zip(want.params, got.params, strict=True))
        or type_mismatch(want.result, got.result)
    )


def _explicit(impl: Mapping[str, Any], name: str) -> Any:
    """A mapping's value for ``name`` (the WIT name or its snake_case form), or ``None``.

    Only string keys the application wrote are consulted, and never one that
    starts with ``_``.
    """
    for key in (name, snake(name)):
        if key.startswith("_"):
            continue
        try:
            value = impl.get(key)
        except TypeError:
            value = None
        if value is not None:
            return value
    return None


def plan_interface(
    import_name: str,
    imported: InterfaceShape,
    provider: HostInterface,
    surface: Surface | None,
    problems: list[str],
) -> dict[str, Invoke]:
    """The invoke for every function the plugin imports from ``import_name``.

    Records one problem per import that the application does not provide as
    imported: a function or resource not in its WIT, a type that differs, or,
    without WIT, a name that is not an explicit key of the mapping.
    """
    invokes: dict[str, Invoke] = {}
    if surface is not None:
        app = surface.shape
        app_funcs = {sig.name: sig for sig in app.functions}
        app_resources = {res.name for res in app.resources}
        for res in imported.resources:
            if res.name not in app_resources:
                problems.append(
                    f"{import_name or res.name}: resource {res.name!r} is not part of what the "
                    f"application provides ({provider.name})"
                )
        for sig in imported.functions:
            want = app_funcs.get(sig.name)
            where = f"{import_name}#{sig.name}" if import_name else sig.name
            if want is None:
                problems.append(
                    f"{where}: not a function of what the application provides "
                    f"({provider.name}: {', '.join(app_funcs) or 'no functions'})"
                )
            elif _sig_mismatch(want, sig):
                problems.append(
                    f"{where}: the plugin imports it as {sig}, the application provides {want}"
                )
            else:
                invokes[sig.name] = surface.invokes[sig.name]
        return invokes
    impl = provider.impl
    if not isinstance(impl, Mapping):  # pragma: no cover - provide() refuses these
        problems.append(f"{import_name}: provided without WIT and not as a mapping")
        return invokes
    for sig in imported.functions:
        where = f"{import_name}#{sig.name}" if import_name else sig.name
        fn = _explicit(impl, sig.name)
        if fn is None or not callable(fn):
            hint = (
                f"a key {sig.name!r}"
                if sig.name.startswith("[")
                else f"a key {sig.name!r} or {snake(sig.name)!r}"
            )
            problems.append(f"{where}: not provided (the mapping has no callable under {hint})")
            continue
        problem = _arity_problem(fn, len(sig.params), where, ", ".join(n for n, _ in sig.params))
        if problem:
            problems.append(problem)
            continue
        invokes[sig.name] = _call(fn)
    return invokes


def plan_function(sig: FuncSig, provider: HostInterface, problems: list[str]) -> Invoke | None:
    """The invoke for a world-level function import, provided as a callable under its name."""
    fn = provider.impl
    if not callable(fn) or isinstance(fn, type):
        problems.append(f"{sig.name}: the application provides {type(fn).__name__}, not a function")
        return None
    problem = _arity_problem(fn, len(sig.params), sig.name, ", ".join(n for n, _ in sig.params))
    if problem:
        problems.append(problem)
        return None
    return _call(fn)


def _call(fn: Callable[..., Any]) -> Invoke:
    return lambda args: fn(*args)
