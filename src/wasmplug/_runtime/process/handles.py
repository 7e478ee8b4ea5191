"""The application's side of resource handles that cross to a worker process.

Two kinds of resource cross the channel, each as an integer the other side
cannot forge into anything it was not given:

* **Host-defined** resources (the plugin imports them; the application
  implements them in Python). The objects stay here, in the worker's
  ``objects`` table, and the worker holds their ids (see ``worker.RemoteObject``).
  An object stays in the table while the worker may use it: until the worker
  reports it dropped (``DROP``), or ownership comes back to the application (an
  ``own`` handle from the worker), or the call it was lent to as a ``borrow``
  returns (a borrow cannot outlive its call).
* **Guest-defined** resources (the plugin exports them). The guest object and
  wasmtime's handle to it stay in the worker, in a table keyed by a token it
  never reuses; the application gets the plugin's :class:`~wasmplug.Resource`
  class (``plugin.exports.api.Counter``) holding that token, bound to the
  :class:`WorkerInstance` that returned it. Calls that pass the handle are
  routed to that worker. Once the worker discards its instance (a fault,
  ``reset()``) or dies, the :class:`WorkerInstance` is retired and the handle is
  stale, exactly as a handle of a discarded in-process instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from wasmplug._bridge.resources import (
    Resource,
    give_back,
    guest_argument,
    host_argument,
    new_handle,
    take_handle,
    too_many_host_objects,
)
from wasmplug._bridge.wit import HandleT, ResourceRef

from .codec import ProtocolError

if TYPE_CHECKING:
    from wasmplug._runtime.plugin import Plugin, PluginPort

    from .spawn import WorkerProcess

__all__ = ["CallHandles", "Lent", "WorkerInstance", "retire"]


class WorkerInstance:
    """One instance of a plugin in one worker, as the handles it returned see it.

    It is the ``_inst`` of every guest resource handle the application holds
    (:class:`~wasmplug.Resource`), standing in for the in-process ``Instance``.

    Attributes:
        plugin: The plugin.
        port: The plugin, as the process tier sees it.
        worker: The worker process holding the instance.
        pending_drops: Tokens of ``own`` handles garbage-collected here; the next
            call on the worker sends them, and the worker runs their guest
            destructors before that call (as in-process).
    """

    __slots__ = ("__weakref__", "current", "pending_drops", "plugin", "port", "worker")

    def __init__(self, port: PluginPort, worker: WorkerProcess) -> None:
        self.plugin: Plugin = port.plugin
        self.port = port
        self.worker = worker
        self.current = True
        self.pending_drops: list[int] = []

    @property
    def alive(self) -> bool:
        """Whether the worker still holds this instance (it neither discarded it nor died)."""
        return self.current and self.worker.alive

    @staticmethod
    def release_handle(token: Any) -> None:
        """Forget a handle without running its destructor: nothing to free here (the
        worker frees its side when it discards the instance)."""

    def drop_handle(self, token: int) -> None:
        """``Resource.drop()``: the guest destructor runs in the worker now."""
        self.port.drop_resource(self, token)

    def resource_class(self, ref: ResourceRef) -> type[Resource]:
        """The plugin's class for handles of the guest resource type ``ref``."""
        return self.port.resource_class(ref)

    def take_drops(self) -> list[int]:
        """The tokens garbage-collected since the last call (removed from the queue)."""
        drops = self.pending_drops
        taken = drops[:]  # finalizers may append meanwhile, on any thread
        del drops[: len(taken)]
        return taken


class Lent(NamedTuple):
    """A host-defined object the worker holds an id of (``WorkerProcess.objects``)."""

    obj: Any
    type_key: tuple[str, str]
    """The resource type it was sent as (see :func:`_type_key`)."""
    owned: bool
    """Sent as ``own`` (the worker may give it back as its own), not lent as ``borrow``."""


def _type_key(ref: ResourceRef) -> tuple[str, str]:
    """A host-defined resource type, as both the plugin's exports and its imports name
    it: the interface that defines it and its name (the application defines one
    resource of each name per interface)."""
    return (ref.interface, ref.name)


def instance_of(worker: WorkerProcess) -> WorkerInstance | None:
    """The worker's current instance as its handles see it (``None`` before the first)."""
    inst: WorkerInstance | None = worker.instance
    return inst


def retire(worker: WorkerProcess, port: PluginPort) -> None:
    """The worker discarded its instance (or is starting): handles of the old one are stale."""
    old = instance_of(worker)
    if old is not None:
        old.current = False
        old.pending_drops.clear()  # the worker frees those guest objects itself
    # The host objects it held ids of went with its instance (a worker that kept
    # ids and never reported them dropped cannot keep them alive here).
    worker.objects.clear()
    worker.instance = WorkerInstance(port, worker)


class CallHandles:
    """How one call's values move handles across the channel, in the application.

    The ``Handles`` of :mod:`.codec`: ``object_id`` when encoding what goes to
    the worker, ``object_for`` when decoding what came back. ``end_call`` must
    run when the call is over.
    """

    __slots__ = ("borrowed", "moved", "worker")

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.borrowed: list[int] = []
        self.moved: list[tuple[Resource, Any]] = []

    def object_id(self, ty: HandleT, obj: Any) -> int:
        if not ty.resource.imported:
            return self._guest_token(ty, obj)
        host_argument(ty, obj)
        worker = self.worker
        # Limits.host_objects, as in-process (_bridge.resources.lower_handle).
        limit = worker.instance.plugin.limits.host_objects
        if limit is not None and len(worker.objects) >= limit:
            raise too_many_host_objects(limit)
        oid = worker.next_oid
        worker.next_oid += 1
        worker.objects[oid] = Lent(obj, _type_key(ty.resource), ty.owned)
        if not ty.owned:
            self.borrowed.append(oid)
        return oid

    def _guest_token(self, ty: HandleT, obj: Any) -> int:
        guest_argument(ty, obj)
        # Moved, stale or elsewhere: raises. An own handle is emptied (end_call gives it back).
        token: int = take_handle(obj, instance_of(self.worker), owned=ty.owned)
        if ty.owned:
            self.moved.append((obj, token))
        return token

    def object_for(self, ty: HandleT, oid: int) -> Any:
        ref = ty.resource
        if not ref.imported:
            inst = instance_of(self.worker)
            assert inst is not None
            cls = inst.resource_class(ref)
            return new_handle(cls, inst, oid, ref.name, ty.owned)
        objects = self.worker.objects
        lent = objects.get(oid)
        # What wasmtime's handle table checks in-process: the id names an object of
        # this resource type, and only an own handle can be given back as own.
        if lent is None or lent.type_key != _type_key(ref):
            raise ProtocolError(f"no {ref.name} object with id {oid}")
        if ty.owned:
            if not lent.owned:
                raise ProtocolError(f"{ref.name} object {oid} was only lent to the call")
            del objects[oid]
        return lent.obj

    def end_call(self, *, undo: bool) -> None:
        """The call is over: forget host objects only borrowed for it; with ``undo``
        (the worker never used the arguments) ``own`` handles stay with Python."""
        objects = self.worker.objects
        for oid in self.borrowed:
            objects.pop(oid, None)
        self.borrowed.clear()
        if undo:
            for obj, token in self.moved:
                give_back(obj, token)
        self.moved.clear()
