"""What every instance of one plugin is made from, worked out once at load.

:class:`StoreSettings` are the numbers a store is set up with (limits, fuel, the
start-up and call deadline slices), shared by every plugin with the same limits;
:class:`InstanceSpec` adds the raw pointers of the engine, linker, component and
export indices, shared by every live plugin of the same host, linker, component
and limits. :mod:`.instance` makes instances from a spec; nothing here is
recomputed per instance (``reset()`` and restarts are on that path).
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .engine import deadline_ticks

if TYPE_CHECKING:
    from wasmtime.component import Component, ExportIndex, Linker

    from wasmplug._sandbox.limits import Limits

    from .services import HostServices

__all__ = ["InstanceSpec", "StoreSettings", "instance_spec", "startup_budget_ms", "store_settings"]


def startup_budget_ms(limits: Limits) -> float:
    """The time an instance's start-up may take, in ms: ten times the per-call budget,
    at least 10 s (componentize-py runs its interpreter's init)."""
    timeout = limits.timeout_ms
    return max(10_000.0, 10 * timeout) if timeout else 10_000.0


class StoreSettings:
    """The numbers every store of a plugin is set up with; one object for every
    plugin with the same limits (see :func:`store_settings`), never mutated.

    Attributes:
        limiter: The arguments of ``wasmtime_store_limiter`` (memory size, table
            elements, instances, tables, memories; -1: unbounded), or ``None`` when
            every one is unbounded (no limiter is set).
        fuel: Fuel given to a new store, or ``None`` without fuel metering.
        startup_ms: The start-up budget (:func:`startup_budget_ms`).
        startup_ticks: ``startup_ms`` in epoch ticks.
        startup_slice_ticks: The first deadline slice of start-up, in ticks.
        call_slice_ticks: A call's deadline slice (``plugin._slice_ticks``), in ticks.
        max_lift: ``Limits.max_result_bytes`` (``2**62``: no limit).
        max_host_objects: ``Limits.host_objects`` (``2**62``: no limit).
    """

    __slots__ = (
        "call_slice_ticks",
        "fuel",
        "limiter",
        "max_host_objects",
        "max_lift",
        "startup_ms",
        "startup_slice_ticks",
        "startup_ticks",
    )

    def __init__(
        self, limits: Limits, *, tick_ms: float, consume_fuel: bool, slice_ticks: int
    ) -> None:
        # memory_bytes is the total: each allowed memory gets an equal share.
        bounds = (
            limits.per_memory_bytes,
            limits.table_elements,
            limits.instances,
            limits.tables,
            limits.memories,
        )
        self.limiter = (
            None
            if all(b is None for b in bounds)
            else tuple(-1 if b is None else int(b) for b in bounds)
        )
        self.fuel = (
            (limits.fuel if limits.fuel is not None else 2**63 - 1) if consume_fuel else None
        )
        self.startup_ms = startup_budget_ms(limits)
        self.startup_ticks = deadline_ticks(self.startup_ms, tick_ms)
        self.startup_slice_ticks = min(self.startup_ticks, slice_ticks)
        self.call_slice_ticks = slice_ticks
        limit = limits.max_result_bytes
        self.max_lift = 2**62 if limit is None else int(limit)
        objects = limits.host_objects
        self.max_host_objects = 2**62 if objects is None else int(objects)


@functools.lru_cache(maxsize=256)
def store_settings(
    limits: Limits, tick_ms: float, consume_fuel: bool, slice_ticks: int
) -> StoreSettings:
    """The :class:`StoreSettings` for these limits, shared by every plugin that has them."""
    return StoreSettings(
        limits, tick_ms=tick_ms, consume_fuel=consume_fuel, slice_ticks=slice_ticks
    )


class InstanceSpec:
    """What every instance of one plugin is made from, worked out once at load.

    Creating an instance is on the path of ``reset()`` + the next call and of every
    restart after a fault, so nothing here is recomputed per instance: the raw
    pointers of the engine, the linker and the component (each ``ptr()`` is a Python
    call), the store's limits and the start-up deadline (:class:`StoreSettings`).

    Attributes:
        engine: The host's engine.
        engine_ptr: ``engine.ptr()``.
        ticker: The host's epoch ticker.
        linker: The plugin's linker (kept alive for ``linker_ptr``).
        linker_ptr: ``linker.ptr()``.
        component: The compiled component (kept alive for ``component_ptr``).
        component_ptr: ``component.ptr()``.
        export_indices: The component's export index of each export, indexed like
            ``plugin._exports_list``.
        export_index_ptrs: ``ptr()`` of each of them (both lists are the
            component's, shared by every plugin of it: see ``exporttable``).
        uses_wasi: Whether a store gets a WASI context.
        settings: The store's limits, fuel and deadlines.
    """

    __slots__ = (
        "__weakref__",
        "component",
        "component_ptr",
        "engine",
        "engine_ptr",
        "export_index_ptrs",
        "export_indices",
        "linker",
        "linker_ptr",
        "settings",
        "ticker",
        "uses_wasi",
    )

    def __init__(
        self,
        *,
        services: HostServices,
        linker: Linker,
        component: Component,
        export_indices: list[ExportIndex],
        export_index_ptrs: list[Any],
        settings: StoreSettings,
        uses_wasi: bool,
    ) -> None:
        self.engine = services.engine
        self.engine_ptr = services.engine.ptr()
        self.ticker = services.ticker
        self.linker = linker
        self.linker_ptr = linker.ptr()
        self.component = component
        self.component_ptr = component.ptr()
        self.export_indices = export_indices
        self.export_index_ptrs = export_index_ptrs
        self.uses_wasi = uses_wasi
        self.settings = settings


_SPECS: weakref.WeakValueDictionary[tuple[int, ...], InstanceSpec] = weakref.WeakValueDictionary()
_SPECS_LOCK = threading.Lock()


def instance_spec(
    *,
    services: HostServices,
    linker: Linker,
    component: Component,
    export_indices: list[ExportIndex],
    export_index_ptrs: list[Any],
    limits: Limits,
    slice_ticks: int,
    uses_wasi: bool,
) -> InstanceSpec:
    """The :class:`InstanceSpec` for a plugin, shared with every live plugin of the
    same host, linker, component and limits (plugins that link nothing but WASI
    share a linker: see ``Providers.link``). A spec is never mutated.

    The key is made of object ids: the spec holds each of those objects, so while a
    spec is in the table none of its ids can be reused by another object.
    """
    settings = store_settings(limits, services.ticker.tick_ms, services.consume_fuel, slice_ticks)
    key = (id(services), id(linker), id(component), id(export_index_ptrs), id(settings), uses_wasi)
    with _SPECS_LOCK:
        spec = _SPECS.get(key)
        if spec is None:
            spec = _SPECS[key] = InstanceSpec(
                services=services,
                linker=linker,
                component=component,
                export_indices=export_indices,
                export_index_ptrs=export_index_ptrs,
                settings=settings,
                uses_wasi=uses_wasi,
            )
        return spec
