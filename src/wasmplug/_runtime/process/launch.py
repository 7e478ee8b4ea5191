"""What :meth:`~wasmplug.PluginHost.load` builds for a process-isolated plugin.

An in-process plugin is linked in the application (``linking.Providers.link``).
A process-isolated one is not: each worker links stand-ins for the host imports
and the real host functions run here, served by the backend while a call waits.
:func:`process_tier` turns what the host resolved at load (the import plan, the
compiled component and its cache key, the engine's settings) into the empty
linker the :class:`~wasmplug.Plugin` keeps and the factory it calls once to make
its :class:`~.backend.ProcessBackend`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmtime.component import Component, Linker

from wasmplug._bridge.hostfuncs import Linked
from wasmplug._sandbox.confinement import ConfinementMode

from .backend import ProcessBackend

if TYPE_CHECKING:
    from wasmplug._runtime.cache import CompileCache
    from wasmplug._runtime.callpath import Backend
    from wasmplug._runtime.linking import ImportPlan
    from wasmplug._runtime.services import HostServices

__all__ = ["BackendFactory", "process_tier"]

BackendFactory = Callable[..., "Backend"]
"""``factory(plugin, pool_size=n)``: the backend serving ``plugin``'s calls."""


def process_tier(
    services: HostServices,
    *,
    plan: ImportPlan,
    component: Component,
    cache: CompileCache | None,
    cache_key: str,
    spares: int,
    confinement: ConfinementMode = "auto",
) -> tuple[Linker, Linked, BackendFactory]:
    """The linker, links and backend factory of a plugin loaded with ``isolation="process"``.

    Args:
        services: The host's engine, ticker and settings (workers build the same).
        plan: The plugin's resolved host imports; they run in the application.
        component: Its compiled component, which workers load from ``cache``.
        cache: The host's compile cache, or ``None`` (the backend then uses a
            private temporary one).
        cache_key: The component's key in the compile cache (``cache.code_digest``).
        spares: Ready workers to keep besides the ones serving calls.
        confinement: How workers are confined (see :mod:`.jail`).

    Returns:
        An empty linker and no links (nothing is instantiated in the application),
        and ``factory(plugin, pool_size=n)``, which starts the first worker.
    """
    factory = functools.partial(
        ProcessBackend,
        plan=plan,
        component=component,
        cache=cache,
        cache_key=cache_key,
        engine_settings=services.engine_settings,
        consume_fuel=services.consume_fuel,
        memory_accounting=services.memory_accounting is not None,
        pooling=services.instance_slots is not None,
        tick_ms=services.ticker.tick_ms,
        spares=spares,
        confinement=confinement,
    )
    return Linker(services.engine), Linked(), factory
