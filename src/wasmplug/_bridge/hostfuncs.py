"""Host imports: Python implementations linked into a component's imports.

The application provides an interface as an object with snake_case methods or
as a mapping of WIT names to callables; resources are classes (attribute
``PascalCase`` or mapping key ``kebab-case``). Everything is resolved and
checked when a plugin is loaded, so a missing or mis-shaped function is a
:class:`~wasmplug.LinkError` that lists every problem, never a trap later.

Each host function goes through one ctypes trampoline that catches
*everything*, including ``BaseException``: an exception escaping a ctypes
callback into wasmtime crashes the process (a ``KeyboardInterrupt`` in a
component host function segfaults wasmtime-py 50). The exception is parked
on the calling instance and re-raised by the caller once Wasm has unwound.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from wasmtime.component import Linker, LinkerInstance, ResourceType

from wasmplug._semver import interface_version_key, semver_compatible

from . import callctx as _callctx
from . import ffi as f
from . import sigguard as _sigguard
from .convert import Lift, Lower
from .lift import lifter
from .lower import lowerer
from .values import Err, Ok
from .wit import FuncSig, InterfaceShape, ResultT, pascal, snake

__all__ = [
    "HostInterface",
    "Invoke",
    "Linked",
    "ResolvedImports",
    "find_provider",
    "link_imports",
    "link_resolved",
    "resolve_imports",
]


@attrs.frozen
class HostInterface:
    """An interface implementation the application provides with ``PluginHost.provide``."""

    name: str
    impl: Any
    sensitive: bool = False


def find_provider(name: str, providers: Mapping[str, HostInterface]) -> HostInterface | None:
    """The provider for import ``name``: exact name first, then the newest compatible version."""
    exact = providers.get(name)
    if exact is not None:
        return exact
    candidates = [p for key, p in providers.items() if semver_compatible(name, key)]
    return max(candidates, key=lambda p: interface_version_key(p.name), default=None)


# ---------------------------------------------------------------------------
# The trampoline
# ---------------------------------------------------------------------------


@attrs.define(eq=False)
class HostFunc:
    qualname: str
    invoke: Callable[[list[Any]], Any]
    lifts: list[Lift]
    lower_result: Lower | None
    returns_result: bool


_HOST_FUNCS: dict[int, HostFunc] = {}
_deferred = _sigguard.deferred
_HOST_OBJECTS: dict[int, Any] = {}
_ids = itertools.count(1)


class _Orphan:
    """Stands in for an instance when a host function runs outside any known call."""

    host_exc: BaseException | None = None
    host_func: str = ""
    signal_exc: BaseException | None = None
    lift_left = max_lift = 2**62
    lift_deadline = 0.0

    def lift_deadline_s(self) -> float:
        return float("inf")


_ORPHAN = _Orphan()


@_sigguard.entry_point
def _trampoline(
    env: int | None, ctx: Any, _fty: Any, args: Any, nargs: int, results: Any, nresults: int
) -> int:
    # Everything after the entry is inside the try: a signal handler that raises
    # there must not escape into ctypes (see _sigguard).
    inst: Any = _ORPHAN
    hf: HostFunc | None = None
    try:
        inst = _callctx.current() or _Orphan()
        if _deferred:
            _sigguard.run_deferred(inst)
        hf = _HOST_FUNCS.get(env or 0)
        if hf is None:
            raise RuntimeError("host function was unlinked")
        inst.lift_left = inst.max_lift  # a fresh budget for these arguments
        inst.lift_deadline = 0.0
        pyargs = [lift(args[i], inst) for i, lift in enumerate(hf.lifts)]
        try:
            out = hf.invoke(pyargs)
        except Err as e:
            if not hf.returns_result:
                raise
            out = e
        if hf.lower_result is not None:
            if hf.returns_result and not isinstance(out, Ok | Err):
                out = Ok(out)
            hf.lower_result(out, results[0], inst)
        elif out is not None:
            raise TypeError(f"{hf.qualname} has no WIT result but returned {type(out).__name__}")
        if _deferred:
            _sigguard.run_deferred(inst)
        return 0
    except BaseException as e:
        name = hf.qualname if hf is not None else "?"
        if getattr(inst, "host_exc", None) is None:
            inst.host_exc = e
            inst.host_func = name
        return f.new_error(f"host function {name} raised {type(e).__name__}: {e}")


_TRAMPOLINE = f.HostCallback(_trampoline)


@_sigguard.entry_point
def _finalize_func(env: int | None) -> None:
    _HOST_FUNCS.pop(env or 0, None)


_FINALIZE_FUNC = f.Finalizer(_finalize_func)


@_sigguard.entry_point
def _drop_host_resource(_env: int | None, _ctx: Any, rep: int) -> int:
    try:
        _HOST_OBJECTS.pop(rep, None)
    except BaseException:  # nothing may escape into ctypes
        pass
    return 0


_DROP_HOST_RESOURCE = f.ResourceDestructor(_drop_host_resource)
_NOOP_FINALIZER = f.Finalizer(lambda _env: None)


def register_host_object(obj: Any) -> int:
    """Store a host resource object and return its rep (a process-unique int)."""
    rep = next(_ids) & 0xFFFFFFFF
    _HOST_OBJECTS[rep] = obj
    return rep


def host_object(rep: int) -> Any:
    """The host object behind ``rep``, or raise ``LookupError`` if it was dropped."""
    try:
        return _HOST_OBJECTS[rep]
    except KeyError:
        raise LookupError(f"host resource {rep} was already dropped") from None


def forget_host_objects(reps: set[int]) -> None:
    """Release host objects of a discarded instance."""
    for rep in reps:
        _HOST_OBJECTS.pop(rep, None)


# ---------------------------------------------------------------------------
# Resolving implementations
# ---------------------------------------------------------------------------


def _lookup(impl: Any, wit_name: str, py_name: str) -> Any:
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


@attrs.define
class Linked:
    """The result of linking one plugin's imports.

    Attributes:
        resource_types: ``(interface, resource)`` → host type id, for own/borrow lowering.
    """

    resource_types: dict[tuple[str, str], int] = attrs.field(factory=dict)


def _resolve_func(
    iface: str, sig: FuncSig, impl: Any, problems: list[str]
) -> Callable[[list[Any]], Any] | None:
    """Return ``invoke(args)`` for one imported function, or record why not."""
    name = sig.name
    param_names = ", ".join(n for n, _ in sig.params)
    where = f"{iface}#{name}" if iface else name
    if name.startswith("[constructor]"):
        cls = _lookup(impl, name[13:], pascal(name[13:]))
        if cls is None:
            problems.append(f"{where}: no class {pascal(name[13:])!r} for resource {name[13:]!r}")
            return None
        problem = _arity_problem(cls, len(sig.params), where, param_names)
        if problem:
            problems.append(problem)
            return None
        return lambda args: cls(*args)
    if name.startswith("[method]"):
        resource, _, method = name[8:].partition(".")
        cls = _lookup(impl, resource, pascal(resource))
        attr = snake(method)
        if cls is None or not callable(getattr(cls, attr, None)):
            problems.append(f"{where}: resource class {pascal(resource)!r} has no method {attr!r}")
            return None
        return lambda args: getattr(args[0], attr)(*args[1:])
    if name.startswith("[static]"):
        resource, _, method = name[8:].partition(".")
        cls = _lookup(impl, resource, pascal(resource))
        static = getattr(cls, snake(method), None) if cls is not None else None
        if static is None:
            problems.append(
                f"{where}: resource class {pascal(resource)!r} has no static {method!r}"
            )
            return None
        return lambda args: static(*args)
    fn = impl if callable(impl) and not iface else _lookup(impl, name, snake(name))
    if fn is None or not callable(fn):
        problems.append(f"{where}: not provided (expected a callable named {snake(name)!r})")
        return None
    problem = _arity_problem(fn, len(sig.params), where, param_names)
    if problem:
        problems.append(problem)
        return None
    return lambda args: fn(*args)


def _add_func(li: LinkerInstance, qualname: str, sig: FuncSig, invoke: Any) -> None:
    result = sig.result
    hf = HostFunc(
        qualname=qualname,
        invoke=invoke,
        lifts=[lifter(t) for _, t in sig.params],
        lower_result=None if result is None else lowerer(result),
        returns_result=isinstance(result, ResultT),
    )
    env = next(_ids)
    _HOST_FUNCS[env] = hf
    raw = sig.name.encode()
    err = f.linker_instance_add_func(li.ptr(), raw, len(raw), _TRAMPOLINE, env, _FINALIZE_FUNC)
    if err:
        _HOST_FUNCS.pop(env, None)
        raise RuntimeError(f"linking {qualname}: {f.error_message(err)}")


def _link_interface(
    li: LinkerInstance,
    shape: InterfaceShape,
    invokes: Mapping[str, Callable[[list[Any]], Any]],
    linked: Linked,
) -> None:
    for res in shape.resources:
        type_id = next(_ids) & 0xFFFFFFFF
        linked.resource_types[(shape.name, res.name)] = type_id
        raw = res.name.encode()
        # Keep the ResourceType alive across the call: a temporary would be freed
        # as soon as .ptr() returns, and wasmtime would read a dangling pointer.
        rtype = ResourceType.host(type_id)
        err = f.linker_instance_add_resource(
            li.ptr(),
            raw,
            len(raw),
            rtype.ptr(),
            _DROP_HOST_RESOURCE,
            None,
            _NOOP_FINALIZER,
        )
        if err:
            raise RuntimeError(f"linking resource {res.name}: {f.error_message(err)}")
    for sig in shape.functions:
        _add_func(li, f"{shape.name}#{sig.name}", sig, invokes[sig.name])


Invoke = Callable[[list[Any]], Any]
"""``invoke(args)``: run one host function with its lifted arguments."""


@attrs.frozen
class ResolvedImports:
    """The Python callable behind every imported function of one plugin.

    Attributes:
        interfaces: Import name → (its shape, function name → ``invoke``).
        functions: World-level function imports: name → (signature, ``invoke``).
    """

    interfaces: Mapping[str, tuple[InterfaceShape, Mapping[str, Invoke]]]
    functions: Mapping[str, tuple[FuncSig, Invoke]]


def resolve_imports(
    interfaces: Mapping[str, tuple[InterfaceShape, HostInterface]],
    functions: Mapping[str, tuple[FuncSig, Any]],
) -> tuple[ResolvedImports, list[str]]:
    """Find the implementation of every imported function (nothing is linked).

    Args:
        interfaces: Import name → (its shape, the provider to implement it).
        functions: World-level function imports: name → (signature, callable).

    Returns:
        ``(resolved, problems)``; every problem is reported, not just the first.
    """
    problems: list[str] = []
    invokes: dict[str, tuple[InterfaceShape, dict[str, Invoke]]] = {}
    for name, (shape, provider) in interfaces.items():
        resolved: dict[str, Invoke] = {}
        invokes[name] = (shape, resolved)
        for sig in shape.functions:
            invoke = _resolve_func(shape.name, sig, provider.impl, problems)
            if invoke is not None:
                resolved[sig.name] = invoke
    root: dict[str, tuple[FuncSig, Invoke]] = {}
    for name, (sig, fn) in functions.items():
        invoke = _resolve_func("", sig, fn, problems)
        if invoke is not None:
            root[name] = (sig, invoke)
    return ResolvedImports(invokes, root), problems


def link_resolved(linker: Linker, resolved: ResolvedImports) -> Linked:
    """Define every function of ``resolved`` (and each interface's resources) in ``linker``."""
    linked = Linked()
    with linker.root() as root:
        for name, (shape, invokes) in resolved.interfaces.items():
            with root.add_instance(name) as li:
                _link_interface(li, shape, invokes, linked)
        for name, (sig, invoke) in resolved.functions.items():
            _add_func(root, name, sig, invoke)
    return linked


def link_imports(
    linker: Linker,
    interfaces: Mapping[str, tuple[InterfaceShape, HostInterface]],
    functions: Mapping[str, tuple[FuncSig, Any]],
) -> tuple[Linked, list[str]]:
    """Define every provided import in ``linker``.

    Args:
        interfaces: Import name → (its shape, the provider to implement it).
        functions: World-level function imports: name → (signature, callable).

    Returns:
        ``(linked, problems)``; when ``problems`` is non-empty nothing was linked.
    """
    resolved, problems = resolve_imports(interfaces, functions)
    if problems:
        return Linked(), problems
    return link_resolved(linker, resolved), problems
