"""Typed snapshots of a host's plugin figures, for applications that don't use OpenTelemetry.

:meth:`PluginHost.stats` returns the same figures the OpenTelemetry instruments
report (docs/observability.md): calls, faults by class, restarts, quarantines and
live instances, per plugin, and linear memory where it can be read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

from .telemetry import linear_memory_bytes

if TYPE_CHECKING:
    from .plugin import Plugin

__all__ = ["HostStats", "PluginStats", "host_stats", "linear_memory_bytes", "plugin_stats"]


@attrs.frozen
class PluginStats:
    """One plugin's figures at one moment.

    Attributes:
        name: The plugin's name (``wasmplug.plugin.name``).
        version: Its manifest version (``wasmplug.plugin.version``).
        isolation: ``"inprocess"`` or ``"process"``.
        calls: Calls that returned (a value or an ``err`` result).
        faults: Fault count by class (``"trap"``, ``"timeout"``...; see
            :class:`FaultRecord`), read-only.
        restarts: Instances created to replace a faulted one.
        quarantines: Times the plugin was quarantined.
        quarantined: Whether calls fail fast right now.
        instances: Live instances (worker processes with ``isolation="process"``).
        linear_memory_bytes: Linear memory of the live instances, in bytes (their
            ``memory.size``, all memories together), with ``isolation="process"``,
            and in-process on a host created with ``memory_accounting=True``;
            ``None`` otherwise (docs/observability.md, "Linear memory").
    """

    name: str
    version: str
    isolation: str
    calls: int
    faults: Mapping[str, int]
    restarts: int
    quarantines: int
    quarantined: bool
    instances: int
    linear_memory_bytes: int | None = None

    @property
    def total_faults(self) -> int:
        """Faults of every class together."""
        return sum(self.faults.values())


@attrs.frozen
class HostStats:
    """The figures of every open plugin of a host, taken together.

    Iterating yields the :class:`PluginStats`, sorted by plugin name.

    Attributes:
        plugins: One entry per open plugin, sorted by name (a plugin loaded twice
            appears twice).
        at: ``time.time()`` when the snapshot was taken, in seconds since the epoch.
    """

    plugins: tuple[PluginStats, ...]
    at: float

    def __iter__(self) -> Iterator[PluginStats]:
        return iter(self.plugins)

    def __len__(self) -> int:
        return len(self.plugins)

    def get(self, name: str) -> PluginStats | None:
        """The first plugin named ``name``, or ``None``."""
        return next((p for p in self.plugins if p.name == name), None)


def plugin_stats(plugin: Plugin) -> PluginStats:
    """A snapshot of ``plugin``'s figures."""
    m = plugin.metrics()
    sup = plugin._supervisor
    return PluginStats(
        name=plugin.name,
        version=str(plugin.manifest.version),
        isolation="process" if plugin._backend is not None else "inprocess",
        calls=m.calls,
        faults=MappingProxyType(dict(m.faults)),
        restarts=m.restarts,
        quarantines=sup.quarantines,
        quarantined=m.quarantined,
        instances=m.instances,
        linear_memory_bytes=linear_memory_bytes(plugin),
    )


def host_stats(plugins: Iterable[Plugin]) -> HostStats:
    """A :class:`HostStats` of ``plugins``."""
    snapshots = sorted((plugin_stats(p) for p in plugins), key=lambda s: s.name)
    return HostStats(tuple(snapshots), time.time())
