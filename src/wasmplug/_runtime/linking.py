"""The host interfaces an application provides, and linking a plugin's imports to them.

:class:`Providers` holds what ``PluginHost.provide`` registered (and the built-in outbound
HTTP interface). At load, :meth:`Providers.plan` checks every import of a component
against its manifest, its grants and the providers, and reports every problem at once in
one :class:`~wasmplug.LinkError`; :meth:`Providers.link` then links the checked
:class:`ImportPlan` into a ``Linker``. The process tier sends the same plan to its workers,
which link stand-ins that call back into the application.

Which Python callable an import reaches is decided in ``_bridge.surface``, from the
application's WIT and never from a name the plugin chose.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from wasmtime import Engine
from wasmtime.component import Component, Linker

from wasmplug._bridge.hostfuncs import Invoke, Linked, ResolvedImports, link_resolved
from wasmplug._bridge.surface import (
    HostInterface,
    find_provider,
    plan_function,
    plan_interface,
    world_items,
)
from wasmplug._bridge.wit import ComponentShape, FuncSig, InterfaceShape
from wasmplug._bridge.witsource import WitCache, WitSource, read_wit_source
from wasmplug._errors import HostInterfaceError, LinkError
from wasmplug._sandbox.capabilities import Capability
from wasmplug._sandbox.grants import Grants
from wasmplug._sandbox.http import HTTP_INTERFACE, wit_file
from wasmplug._sandbox.manifest import Manifest, declares_import, undeclared_imports
from wasmplug._semver import semver_compatible

__all__ = ["ImportPlan", "Providers"]

_WASI_HTTP = "wasi:http/"


@attrs.frozen
class ImportPlan:
    """How one plugin's imports are satisfied (checked; nothing linked yet).

    Attributes:
        resolved: The Python callable behind every imported host function.
        uses_wasi: The component imports WASI (linked with ``add_wasip2``).
        needs_traps: It imports ``wasi:http``, linked as traps (see :meth:`Providers.link`).
    """

    resolved: ResolvedImports
    uses_wasi: bool
    needs_traps: bool


@functools.cache
def _http_wit() -> WitSource:
    """The shipped WIT of the built-in HTTP interface: the only functions a plugin can reach."""
    return read_wit_source(wit_file().read_text(encoding="utf-8"))


class Providers:
    """The host interfaces of one ``PluginHost``, by name.

    Args:
        engine: The host's engine (component types are made for it).
        cache: Where the WIT of provided interfaces is cached (the compile cache), or
            ``None``.
        http: The built-in outbound HTTP capability's implementation, provided as
            ``wasmplug:host/http`` with its shipped WIT (``add`` may replace it).
    """

    def __init__(self, engine: Engine, cache: WitCache | None, http: object) -> None:
        self._engine = engine
        self._cache = cache
        # Linkers with nothing but (or not even) WASI, by "uses WASI" (see link).
        self._plain_linkers: dict[bool, tuple[Linker, Linked]] = {}
        self._lock = threading.Lock()
        # The shipped WIT is read at the first load that links it, not here.
        self._by_name: dict[str, HostInterface] = {
            HTTP_INTERFACE: HostInterface(HTTP_INTERFACE, http, source=_http_wit())
        }

    def add(
        self,
        interface: str,
        impl: Any,
        *,
        wit: str | os.PathLike[str] | None,
        world: str | None,
        sensitive: bool,
    ) -> None:
        """Provide ``interface`` (see ``PluginHost.provide`` for the arguments).

        Raises:
            HostInterfaceError: every problem with the WIT or ``impl``, now rather than
                at the first load.
        """
        if interface == HTTP_INTERFACE:
            source: WitSource | None = _http_wit()
        else:
            source = None if wit is None else read_wit_source(wit)
        is_interface = "/" in interface
        problem = None
        if source is None and is_interface and not isinstance(impl, Mapping):
            problem = (
                f"a {type(impl).__name__} is linked only with the interface's WIT: pass "
                "wit= (a .wit file, a package directory or WIT text), or a mapping whose "
                "keys name the functions plugins may call"
            )
        elif is_interface and world is not None:
            problem = "world= is only for world-level imports, not for an interface"
        elif not is_interface and source is not None and world is None:
            problem = "a world-level import's WIT needs world= (the world that declares it)"
        elif not is_interface and source is None and world is not None:
            problem = "world= needs wit="
        elif not is_interface and not callable(impl) and not isinstance(impl, Mapping):
            kind = type(impl).__name__
            problem = f"a world-level import needs a callable, class or mapping, not {kind}"
        if problem is not None:
            raise HostInterfaceError(interface, [problem])
        provider = HostInterface(interface, impl, sensitive, source, world)
        provider.surface(self._engine, self._cache)  # every problem now, not at the first load
        self._by_name[interface] = provider

    def sensitive(self, names: Iterable[str]) -> frozenset[str]:
        """Those of ``names`` whose provider is sensitive (granted only by name)."""
        return frozenset(
            name
            for name in names
            if (p := find_provider(name, self._by_name)) is not None and p.sensitive
        )

    def plan(self, shape: ComponentShape, manifest: Manifest, grants: Grants) -> ImportPlan:
        """Check every import against the manifest, the grants and the providers.

        Raises:
            LinkError: listing every import that is not declared, provided or granted.
        """
        # The same declaration rule as install (Registry.install).
        problems = undeclared_imports(
            manifest, [*shape.imports, *(sig.name for sig in shape.import_functions)]
        )
        uses_wasi = needs_traps = False
        interfaces: dict[str, tuple[InterfaceShape, Mapping[str, Invoke]]] = {}
        for name, iface in shape.imports.items():
            if name.startswith("wasi:"):
                uses_wasi = True
                needs_traps |= name.startswith(_WASI_HTTP)
                continue
            declared = declares_import(manifest, name)
            # An interface of type definitions only has nothing to call, so it
            # needs no provider; it must still be declared, as install requires.
            if not iface.functions and not iface.resources:
                if declared:
                    interfaces[name] = (iface, {})
                continue
            provider = self._check_provider(name, grants, problems)
            if provider is None or not declared:
                continue
            try:
                surface = provider.surface(self._engine, self._cache)
            except HostInterfaceError as e:  # only the lazily read built-in WIT
                problems.extend(f"{name}: {p}" for p in e.problems)
                continue
            interfaces[name] = (iface, plan_interface(name, iface, provider, surface, problems))
        functions: dict[str, tuple[FuncSig, Invoke]] = {}
        for owner, item in world_items(shape).items():
            provider = self._check_provider(owner, grants, problems)
            if provider is None or not declares_import(manifest, owner):
                continue
            surface = provider.surface(self._engine, self._cache)
            if surface is None and not item.resources and not isinstance(provider.impl, Mapping):
                sig = item.functions[0]
                invoke = plan_function(sig, provider, problems)
                if invoke is not None:
                    functions[sig.name] = (sig, invoke)
                continue
            if surface is None and not isinstance(provider.impl, Mapping):
                problems.append(
                    f"{owner}: a world-level resource is linked with its WIT "
                    "(provide(..., wit=..., world=...)) or a mapping of its functions' WIT names"
                )
                continue
            invokes = plan_interface("", item, provider, surface, problems)
            functions.update(
                {s.name: (s, invokes[s.name]) for s in item.functions if s.name in invokes}
            )
        root_resources = [r.name for r in shape.import_resources]
        if problems:
            raise LinkError(manifest.name, problems)
        resolved = ResolvedImports(interfaces, functions, tuple(root_resources))
        return ImportPlan(resolved, uses_wasi, needs_traps)

    def link(self, component: Component, plan: ImportPlan) -> tuple[Linker, Linked]:
        """A linker with everything ``plan`` resolved (and WASI, if it is imported).

        A plan with no host function, resource or trap to define (a plugin that
        imports nothing, or WASI alone) gets a linker shared by every such plugin of
        this host: a linker is never changed once linked, and instantiating through
        one from several threads at once is what a plugin's instance pool does anyway.
        """
        resolved = plan.resolved
        if not (
            resolved.interfaces or resolved.functions or resolved.root_resources or plan.needs_traps
        ):
            with self._lock:
                shared = self._plain_linkers.get(plan.uses_wasi)
                if shared is None:
                    linker = Linker(self._engine)
                    if plan.uses_wasi:
                        linker.add_wasip2()
                    shared = self._plain_linkers[plan.uses_wasi] = (linker, Linked())
            return shared
        linker = Linker(self._engine)
        if plan.uses_wasi:
            linker.add_wasip2()
        linked = link_resolved(linker, plan.resolved)
        if plan.needs_traps:
            # wasi:http is never linked for real (it has no host allow-list); a
            # component that imports it still instantiates, and calls trap.
            linker.define_unknown_imports_as_traps(component)
        return linker, linked

    def _check_provider(
        self, name: str, grants: Grants, problems: list[str]
    ) -> HostInterface | None:
        """The application's provider of import ``name``, if there is one and it may be
        linked under ``grants``; otherwise adds why not to ``problems``."""
        needed = [
            cap for cap in Capability.all() if cap.covers(name) and cap.is_application_defined
        ]
        missing = [cap for cap in needed if not cap.granted_in(grants)]
        for cap in missing:
            problems.append(
                f"{name}: needs capability {cap.id} ({cap.display_name}), not granted "
                f"(Grants(capabilities={{{cap.id!r}}}))"
            )
        provider = find_provider(name, self._by_name)
        if provider is None:
            problems.append(f"{name}: not provided by the application (PluginHost.provide)")
            return None
        if missing:
            return None
        if provider.sensitive and not any(
            semver_compatible(name, g) or g == provider.name for g in grants.host_interfaces
        ):
            problems.append(
                f"{name}: sensitive interface not granted (Grants(host_interfaces=...))"
            )
            return None
        return provider
