"""Resource handles (``own<R>`` / ``borrow<R>``) crossing the bridge.

* Guest-defined resources (exported by the plugin) reach the application as
  :class:`Resource` handles, bound to the instance that created them; each
  exported resource type has its own subclass with the WIT methods (built by
  ``wasmplug._runtime.resource_types``). Passing one to a call routes that
  call to its instance. After the instance is discarded (a fault,
  ``reset()``, ``close()``) the handle is stale and using it raises
  :class:`~wasmplug.StaleResourceError`.
* Dropping an ``own`` handle runs the guest's destructor: at once for
  :meth:`Resource.drop`, or, when the handle is garbage-collected, at the next
  safe point: the start of the next call on its instance. A finalizer can run
  on any thread, even inside a call into that same instance, so it never
  enters Wasm itself; it only queues the handle on the instance
  (``Instance.pending_drops``).
* ``_inst`` is the in-process ``Instance``, or, for a plugin loaded with
  ``isolation="process"``, the worker's instance (``_runtime.process.handles``),
  and ``_ptr`` is then a token naming the guest object in that worker. Either
  provides ``alive``, ``plugin``, ``pending_drops``, ``release_handle(ptr)`` (forget
  it), ``drop_handle(ptr)`` (run the guest destructor, or queue it) and
  ``resource_class(ref)`` (the plugin's class for an exported resource type); the
  in-process one also ``resource_type_id(ref)`` (a host resource's type in its linker).
* Host-defined resources (imported by the plugin) are plain Python objects of
  the class the application provided; the guest sees an opaque handle.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Self

from wasmplug._errors import (
    ResourceLimitExceeded,
    StaleResourceError,
    WitTypeError,
    WitValueError,
)

from . import ffi as f
from .hostfuncs import forget_host_objects, host_object, register_host_object
from .wit import HandleT

__all__ = [
    "Resource",
    "end_borrows",
    "end_moves",
    "give_back",
    "handle_instance",
    "lift_handle",
    "lower_handle",
    "moved_into_guest",
    "new_handle",
    "take_handle",
    "too_many_host_objects",
    "track_moves",
]

_moves = threading.local()


class Resource:
    """A handle to a resource that lives inside a plugin instance.

    Handles are created by the bridge, never by the application. A plugin's
    exported resource type is a subclass with its methods
    (``plugin.exports.api.Counter``): ``Counter(7)`` constructs one,
    ``c.get()`` calls a method, ``Counter.take(c)`` a static function. Handles
    also work as arguments to the plugin's exports by WIT name
    (``plugin.call("api#[method]counter.get", c)``).

    ``drop()`` (or leaving a ``with`` block) drops an owned handle, running the
    guest's destructor at once. A handle that is garbage-collected instead is
    dropped at the start of the next call on its instance.

    Attributes:
        type_name: The resource's WIT name, e.g. ``"counter"``.
        owned: ``True`` for ``own<R>``.
    """

    __slots__ = ("__weakref__", "_inst", "_ptr", "owned", "type_name")
    _inst: Any
    _ptr: Any
    owned: bool
    type_name: str

    def __init__(self) -> None:
        raise TypeError("Resource handles are created by wasmplug, not by applications")

    @classmethod
    def _new(cls, inst: Any, ptr: Any, type_name: str, owned: bool) -> Resource:
        self = object.__new__(cls)  # subclasses' __new__ calls the WIT constructor
        self._inst = inst
        self._ptr = ptr
        self.type_name = type_name
        self.owned = owned
        return self

    @property
    def plugin(self) -> Any:
        """The :class:`~wasmplug.Plugin` whose instance holds the resource."""
        return self._inst.plugin

    @property
    def alive(self) -> bool:
        """Whether the handle can still be used (its instance is alive and it was not moved)."""
        return self._ptr is not None and self._inst.alive

    def _checked_ptr(self, inst: Any) -> Any:
        if self._ptr is None:
            raise StaleResourceError(
                f"{self.type_name} handle was already moved into the plugin or closed"
            )
        if not self._inst.alive:
            raise StaleResourceError(
                f"{self.type_name} handle belongs to an instance that was discarded"
            )
        if inst is not self._inst:
            raise WitValueError(f"{self.type_name} handle belongs to another plugin instance")
        return self._ptr

    def drop(self) -> None:
        """Drop the handle; for ``own``, the guest's destructor runs now. Idempotent.

        Called from a host function running on the handle's own instance, the
        destructor runs before that instance's next call instead (a call never
        re-enters its own instance).

        Raises:
            PluginFault: the guest destructor faulted (the instance is discarded;
                a note on the exception says it was a destructor).
        """
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        if self.owned and self._inst.alive:
            self._inst.drop_handle(ptr)
        else:
            self._inst.release_handle(ptr)

    def close(self) -> None:
        """The same as :meth:`drop`."""
        self.drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is None:
            return
        self._ptr = None
        inst = self._inst
        # Never enter Wasm here: queue the drop for the instance's next call
        # (list.append is atomic). A dead instance took the guest object with it.
        if self.owned and inst.alive:
            inst.pending_drops.append(ptr)
        else:
            inst.release_handle(ptr)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stale"
        kind = "own" if self.owned else "borrow"
        return f"<wasmplug.{type(self).__qualname__} {kind}<{self.type_name}> {state}>"


def handle_instance(value: Resource) -> Any:
    """The instance holding ``value``'s guest object (in-process, or a worker's)."""
    return value._inst


def new_handle(cls: type[Resource], inst: Any, ptr: Any, type_name: str, owned: bool) -> Any:
    """A new handle of ``cls`` to the guest object ``ptr`` of ``inst`` (the process
    tier's way to make one for a token; in-process, :func:`lift_handle` makes them)."""
    return cls._new(inst, ptr, type_name, owned)


def take_handle(value: Resource, inst: Any, *, owned: bool) -> Any:
    """``value``'s pointer (or worker token) for a call on ``inst``; for ``owned``,
    ownership moves into the guest: the handle is emptied (:func:`give_back` undoes it).

    Raises:
        StaleResourceError: it was moved or dropped already, or its instance is gone.
        WitValueError: it belongs to another instance.
    """
    ptr = value._checked_ptr(inst)
    if owned:
        value._ptr = None
    return ptr


def give_back(value: Resource, ptr: Any) -> None:
    """Undo :func:`take_handle` of an ``own`` handle: the call never used it."""
    value._ptr = ptr


def moved_into_guest(value: Resource) -> bool:
    """Whether ``value`` gave its ``own`` handle to the guest (or was dropped)."""
    return value._ptr is None


def host_argument(ty: HandleT, value: Any) -> Any:
    """An ``own``/``borrow`` argument of a host-defined resource type: the application's
    object itself (anything but ``None`` or a guest resource handle). Checked alike in
    both isolation tiers (here and in the process tier's handle table)."""
    if isinstance(value, Resource) or value is None:
        raise WitTypeError(f"expects {ty} (an instance of the provided {ty.resource.name} class)")
    return value


def too_many_host_objects(limit: int) -> ResourceLimitExceeded:
    """The error for an instance that would hold more than ``limit`` host objects
    (``Limits.host_objects``), in both isolation tiers."""
    return ResourceLimitExceeded(
        f"the instance would hold more than Limits.host_objects={limit} objects of "
        "host-defined resource types at once"
    )


def guest_argument(ty: HandleT, value: Any) -> Resource:
    """An ``own``/``borrow`` argument of a guest-defined resource type: a
    :class:`Resource` handle (whether it is usable, :func:`take_handle` checks)."""
    if not isinstance(value, Resource):
        raise WitTypeError(f"expects {ty} (a wasmplug.Resource), got {type(value).__name__}")
    return value


def lower_handle(inst: Any, ty: HandleT, value: Any, val: Any) -> None:
    """Write ``value`` as an ``own``/``borrow`` handle of ``ty`` into ``val``."""
    ref = ty.resource
    if ref.imported:
        type_id = inst.resource_type_id(ref)
        obj = host_argument(ty, value)
        reps = inst.host_reps
        if len(reps) >= inst.max_host_objects:
            raise too_many_host_objects(inst.max_host_objects)
        rep = register_host_object(obj)
        reps.add(rep)
        if not ty.owned:
            borrows = getattr(_moves, "borrows", None)
            if borrows is not None:  # released when the call returns (see end_borrows)
                borrows.append(rep)
        host = f.resource_host_new(ty.owned, rep, type_id)
        out = f.ResourceAnyPtr()
        err = f.resource_host_to_any(inst.context, host, ctypes.byref(out))
        f.resource_host_delete(host)
        if err:
            raise WitValueError(f"cannot pass {ref.name}: {f.error_message(err)}")
        val.of.resource = out
        val.kind = f.RESOURCE
        return
    ptr = guest_argument(ty, value)._checked_ptr(inst)
    if ty.owned:
        value._ptr = None  # ownership moves into the guest
        moved = getattr(_moves, "pending", None)
        if moved is None:
            val.of.resource = ptr
        else:  # lowering a call's arguments: keep the original in case a later one fails
            moved.append((value, ptr))
            val.of.resource = f.resource_any_clone(ptr)
    else:
        val.of.resource = f.resource_any_clone(ptr)
    val.kind = f.RESOURCE


def track_moves() -> list[tuple[Resource, Any]]:
    """Record the own handles that lowering a call's arguments moves (this thread),
    and the host objects it lends as ``borrow`` (see :func:`end_borrows`)."""
    moved: list[tuple[Resource, Any]] = []
    _moves.pending = moved
    _moves.borrows = []
    return moved


def end_borrows(inst: Any) -> None:
    """The call returned: host objects lent to it as ``borrow`` are no longer reachable.

    A ``borrow`` handle cannot outlive the call it was passed to (Component
    Model rule), so their reps are released instead of piling up until the
    instance is discarded.
    """
    borrows = getattr(_moves, "borrows", None)
    _moves.borrows = None
    if borrows:
        forget_host_objects(set(borrows))
        inst.host_reps.difference_update(borrows)


def end_moves(moved: list[tuple[Resource, Any]], *, undo: bool) -> None:
    """Stop recording; ``undo`` gives the handles back (the lowered values were deleted)."""
    _moves.pending = None
    for value, ptr in moved:
        if undo:
            value._ptr = ptr
        else:
            f.resource_any_delete(ptr)


def lift_handle(inst: Any, ty: HandleT, val: Any) -> Any:
    """Read an ``own``/``borrow`` handle out of ``val`` (cloning; the caller frees ``val``)."""
    ref = ty.resource
    ptr = val.of.resource
    if ref.imported:
        host = f.ResourceHostPtr()
        err = f.resource_any_to_host(inst.context, ptr, ctypes.byref(host))
        if err:
            raise WitValueError(f"bad {ref.name} handle from guest: {f.error_message(err)}")
        rep = f.resource_host_rep(host)
        f.resource_host_delete(host)
        obj = host_object(rep)
        if ty.owned:  # the guest gave its handle away: nothing refers to this rep any more
            forget_host_objects({rep})
            inst.host_reps.discard(rep)
        return obj
    cls = inst.resource_class(ref)
    return cls._new(inst, f.resource_any_clone(ptr), ref.name, ty.owned)
