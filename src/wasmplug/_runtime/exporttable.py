"""What every plugin of one compiled component shares about its exports.

Loading the same component again (thousands of small plugins, a plugin per tenant)
gives each :class:`~wasmplug.Plugin` its own :class:`~wasmplug._runtime.exports.ExportFunc`
objects, which are bound to it, but the rest is a property of the component and is
worked out once: each export's WIT name and signature, its export index in wasmtime
(``wasmtime_component_get_export_index``, a C allocation per index) and the raw
pointer of that index, and the name → position table :meth:`Plugin.call` looks
names up in. Nothing here is mutated after it is built.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from wasmtime.component import Component, ExportIndex

from wasmplug._bridge.wit import ComponentShape, FuncSig

__all__ = ["ExportTable", "export_table"]


class ExportTable:
    """One component's exports, in the order of ``Plugin._exports_list``.

    Attributes:
        names: Each export's WIT name: ``"greet"`` for a world-level function,
            ``"demo:plugin/api@0.1.0#run"`` for a function of an exported interface.
        sigs: Each export's signature.
        indices: Each export's wasmtime export index.
        index_ptrs: ``ptr()`` of each index (for ``instance_get_func``).
        positions: WIT name → position in the lists above.
        interfaces: ``(interface name, resource type names, positions of its
            functions)`` per exported interface, for the attribute view
            (``plugin.exports``); the world's own functions follow them, under ``""``.
    """

    __slots__ = ("index_ptrs", "indices", "interfaces", "names", "positions", "sigs")

    def __init__(self, component: Component, shape: ComponentShape) -> None:
        self.names: list[str] = []
        self.sigs: list[FuncSig] = []
        self.indices: list[ExportIndex] = []
        self.interfaces: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = []
        for iface_name, iface in shape.exports.items():
            parent = component.get_export_index(iface_name)
            assert parent is not None
            first = len(self.names)
            for sig in iface.functions:
                self._add(component, f"{iface_name}#{sig.name}", sig, parent)
            resources = tuple(r.name for r in iface.resources)
            self.interfaces.append((iface_name, resources, tuple(range(first, len(self.names)))))
        first = len(self.names)
        for sig in shape.export_functions:
            self._add(component, sig.name, sig, None)
        self.interfaces.append(("", (), tuple(range(first, len(self.names)))))
        self.index_ptrs: list[Any] = [index.ptr() for index in self.indices]
        self.positions = {name: i for i, name in enumerate(self.names)}

    def _add(
        self, component: Component, name: str, sig: FuncSig, parent: ExportIndex | None
    ) -> None:
        index = component.get_export_index(sig.name, parent)
        assert index is not None
        self.names.append(name)
        self.sigs.append(sig)
        self.indices.append(index)


_TABLES: weakref.WeakKeyDictionary[Component, ExportTable] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def export_table(component: Component, shape: ComponentShape) -> ExportTable:
    """The :class:`ExportTable` of ``component`` (whose shape is ``shape``), built on
    first use and kept as long as the component object lives.

    The host's compiler hands out one ``Component`` object per distinct code, so
    every load of the same component shares one table.
    """
    with _TABLES_LOCK:
        table = _TABLES.get(component)
        if table is None:
            table = _TABLES[component] = ExportTable(component, shape)
        return table
