"""Host imports: Python implementations linked into a component's imports.

Which implementation each import reaches is decided in :mod:`.surface`
(from the application's WIT, never from names the plugin chose); this module
defines the planned functions and resource types in a wasmtime linker.

Each host function goes through one ctypes trampoline that catches
*everything*, including ``BaseException``: an exception escaping a ctypes
callback into wasmtime crashes the process (a ``KeyboardInterrupt`` in a
component host function segfaults wasmtime-py 50). The exception is parked
on the calling instance and re-raised by the caller once Wasm has unwound.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from wasmtime.component import Linker, LinkerInstance, ResourceType

from wasmplug import _telemetry
from wasmplug._errors import HostFunctionError, PluginFault, PluginTimeout, ResourceLimitExceeded

from . import callctx as _callctx
from . import ffi as f
from . import sigguard as _sigguard
from .convert import Lift, Lower
from .lift import lifter
from .lower import lowerer
from .values import Err, Ok
from .wit import FuncSig, InterfaceShape, ResultT

__all__ = ["Invoke", "Linked", "ResolvedImports", "answer", "host_fault", "link_resolved"]

Invoke = Callable[[list[Any]], Any]
"""``invoke(args)``: run one host function with its lifted arguments."""


def host_fault(qualname: str, host_exc: Exception) -> PluginFault:
    """The fault a call ends with when its host function ``qualname`` raised
    ``host_exc``: the one rule of both tiers.

    An async host function's :class:`~wasmplug.PluginTimeout`, and the
    :class:`~wasmplug.ResourceLimitExceeded` of a result past ``Limits.host_objects``,
    are the plugin's fault and end the call as themselves; anything else is the host
    function's, a :class:`~wasmplug.HostFunctionError` with ``host_exc`` as its
    ``__cause__``.
    """
    if isinstance(host_exc, PluginTimeout | ResourceLimitExceeded):
        return host_exc
    exc = HostFunctionError(
        f"host function {qualname} raised {type(host_exc).__name__}: {host_exc}"
    )
    exc.__cause__ = host_exc
    return exc


def answer(qualname: str, out: Any, *, has_result: bool, returns_result: bool) -> Any:
    """What a host function's return value (or the :class:`Err` it raised) gives the
    guest: the one rule of both tiers.

    For a WIT ``result``, a plain return value is its ``ok`` case (wrapped in
    :class:`Ok`) and an :class:`Err` its ``err`` case; a function without a WIT
    result must return ``None``.

    Args:
        qualname: ``interface#function``, for the error message.
        out: What the function returned, or the :class:`Err` it raised (callers
            catch ``Err`` only when ``returns_result``).
        has_result: The WIT signature has a result.
        returns_result: That result is a WIT ``result``.

    Returns:
        The value to lower, or ``None`` when there is no result.

    Raises:
        TypeError: no WIT result, but the function returned something.
    """
    if has_result:
        if returns_result and not isinstance(out, Ok | Err):
            return Ok(out)
        return out
    if out is not None:
        raise TypeError(f"{qualname} has no WIT result but returned {type(out).__name__}")
    return None


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


_COROUTINE = types.CoroutineType
_HOST_FUNCS: dict[int, HostFunc] = {}
_deferred = _sigguard.deferred
_host_call_runner = _callctx.host_call_runner
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
            invoke = _invoke if _telemetry.TRACER is None else _traced_invoke
            runner = _host_call_runner()
            if runner is None:
                out = invoke(hf, pyargs, inst)
            else:  # a call thread: the host function runs on the caller's thread
                out = runner(lambda a: invoke(hf, a, inst), pyargs)
        except Err as e:
            if not hf.returns_result:
                raise
            out = e
        lower_result = hf.lower_result
        out = answer(
            hf.qualname, out, has_result=lower_result is not None, returns_result=hf.returns_result
        )
        if lower_result is not None:
            lower_result(out, results[0], inst)
        if _deferred:
            _sigguard.run_deferred(inst)
        return 0
    except BaseException as e:
        name = hf.qualname if hf is not None else "?"
        if getattr(inst, "host_exc", None) is None:
            inst.host_exc = e
            inst.host_func = name
        return f.new_error(f"host function {name} raised {type(e).__name__}: {e}")


@_sigguard.application_code
def _invoke(hf: HostFunc, pyargs: list[Any], inst: Any) -> Any:
    out = hf.invoke(pyargs)
    if out.__class__ is _COROUTINE:  # an async host function
        out = _run_coroutine(out, inst, hf.qualname)
    return out


def _traced_invoke(hf: HostFunc, pyargs: list[Any], inst: Any) -> Any:
    """:func:`_invoke` in a ``wasmplug.host_call`` span; an ``err`` the host function
    returns (by raising :class:`Err`) is an answer, not a span error."""
    with _telemetry.span("wasmplug.host_call", {"wasmplug.host.function": hf.qualname}) as s:
        try:
            return _invoke(hf, pyargs, inst)
        except Err as e:
            err = e
            if s is not None and s.is_recording():
                s.set_attribute("wasmplug.outcome", "error-result")
    raise err


def _run_coroutine(coro: Any, inst: Any, qualname: str) -> Any:
    runner = _callctx.run_coroutine
    if runner is None or isinstance(inst, _Orphan):
        coro.close()
        raise RuntimeError(f"async host function {qualname} called outside a plugin call")
    return runner(coro, inst, qualname)


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
# Linking
# ---------------------------------------------------------------------------


@attrs.define
class Linked:
    """The result of linking one plugin's imports.

    Attributes:
        resource_types: ``(interface, resource)`` → host type id, for own/borrow lowering.
    """

    resource_types: dict[tuple[str, str], int] = attrs.field(factory=dict)


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


def _add_resource(li: LinkerInstance, interface: str, name: str, linked: Linked) -> None:
    """Define host resource ``name`` in ``li`` (an interface's instance, or the root)."""
    type_id = next(_ids) & 0xFFFFFFFF
    linked.resource_types[(interface, name)] = type_id
    raw = name.encode()
    # Keep the ResourceType alive across the call: a temporary would be freed
    # as soon as .ptr() returns, and wasmtime would read a dangling pointer.
    rtype = ResourceType.host(type_id)
    err = f.linker_instance_add_resource(
        li.ptr(), raw, len(raw), rtype.ptr(), _DROP_HOST_RESOURCE, None, _NOOP_FINALIZER
    )
    if err:
        raise RuntimeError(f"linking resource {name}: {f.error_message(err)}")


def _link_interface(
    li: LinkerInstance,
    shape: InterfaceShape,
    invokes: Mapping[str, Invoke],
    linked: Linked,
) -> None:
    for res in shape.resources:
        _add_resource(li, shape.name, res.name, linked)
    for sig in shape.functions:
        _add_func(li, f"{shape.name}#{sig.name}", sig, invokes[sig.name])


@attrs.frozen
class ResolvedImports:
    """The Python callable behind every imported function of one plugin.

    Attributes:
        interfaces: Import name → (its shape, function name → ``invoke``).
        functions: World-level function imports: name → (signature, ``invoke``),
            the functions of world-level resources included.
        root_resources: Resources the world imports directly (``resource r`` in
            the world, not in an interface).
    """

    interfaces: Mapping[str, tuple[InterfaceShape, Mapping[str, Invoke]]]
    functions: Mapping[str, tuple[FuncSig, Invoke]]
    root_resources: tuple[str, ...] = ()


def link_resolved(linker: Linker, resolved: ResolvedImports) -> Linked:
    """Define every function of ``resolved`` (and each interface's resources) in ``linker``."""
    linked = Linked()
    with linker.root() as root:
        for name, (shape, invokes) in resolved.interfaces.items():
            with root.add_instance(name) as li:
                _link_interface(li, shape, invokes, linked)
        for name in resolved.root_resources:
            _add_resource(root, "", name, linked)
        for name, (sig, invoke) in resolved.functions.items():
            _add_func(root, name, sig, invoke)
    return linked
