"""Building a plugin for a host: from a component it may load to a live :class:`Plugin`.

:meth:`PluginHost.load <wasmplug.PluginHost.load>` decides whether a component may
load and with what: its signature against the trust store, its grants from the
application's policy. A :class:`Loader` does the rest with the host's engine
(docs/architecture.md, "Loading a plugin"): compile the component (or take it from
the cache), read its types, bind the granted directories, cap the limits, plan the
imports, link them here or launch the process tier, and create the plugin with its
first instance. A step that fails releases what the steps before it acquired.
"""

from __future__ import annotations

import logging
from typing import Literal

from wasmplug._bridge.wit import read_shape
from wasmplug._errors import CapabilityError
from wasmplug._sandbox.capabilities import resolve
from wasmplug._sandbox.confinement import ConfinementMode
from wasmplug._sandbox.grants import Grants
from wasmplug._sandbox.limits import Limits, RestartPolicy
from wasmplug._sandbox.manifest import Manifest

from .cache import CompileCache, code_digest
from .compiler import Compiler
from .linking import Providers
from .plugin import Plugin
from .process.launch import process_tier
from .services import HostServices
from .telemetry import stage

__all__ = ["Loader"]

log = logging.getLogger("wasmplug")


class Loader:
    """Builds the plugins of one host, with its engine, compiler and host interfaces.

    Args:
        services: The host's engine, ticker and threads, shared with its plugins.
        compiler: The host's compiler (memory and disk cache).
        providers: The host's interfaces (``PluginHost.provide``), which plan and
            link each plugin's imports.
        cache: The host's compile cache, or ``None``; process workers load the
            compiled component from it.
    """

    def __init__(
        self,
        services: HostServices,
        compiler: Compiler,
        providers: Providers,
        cache: CompileCache | None,
    ) -> None:
        self._services = services
        self._compiler = compiler
        self._providers = providers
        self._cache = cache

    def build(
        self,
        data: bytes,
        manifest: Manifest,
        grants: Grants,
        *,
        sha256: str,
        publisher: str | None,
        ceiling: Limits,
        restart_policy: RestartPolicy,
        pool_size: int,
        isolation: Literal["inprocess", "process"],
        spares: int,
        confinement: ConfinementMode = "auto",
    ) -> Plugin:
        """Compile, sandbox, link and instantiate ``data``, which the host has verified.

        Args:
            data: The component's bytes.
            manifest: Its manifest.
            grants: What the application grants it.
            sha256: Hex SHA-256 of ``data``.
            publisher: Key id of the trusted key that signed it, or ``None``.
            ceiling: The application's limits; the manifest may lower them only.
            restart_policy: Its restart policy.
            pool_size: Instances (or worker processes) serving calls, at most.
            isolation: ``"inprocess"`` or ``"process"``.
            spares: With ``"process"``, ready workers to keep besides those.
            confinement: With ``"process"``, how workers are confined
                (``PluginHost(worker_confinement=...)``).

        Raises:
            See :meth:`PluginHost.load <wasmplug.PluginHost.load>`, from
            :class:`InvalidComponentError` on.
        """
        services = self._services
        component = self._compiler.compile(data, manifest.name)
        shape = read_shape(services.engine, component)
        sandbox = resolve(manifest, grants)  # opens and binds each granted directory
        try:
            limits = manifest.limits.capped_by(ceiling)
            if limits.fuel is not None and not services.consume_fuel:
                raise CapabilityError(
                    f"plugin {manifest.name!r} has a fuel limit, but the host was created "
                    "without consume_fuel=True"
                )
            plan = self._providers.plan(shape, manifest, grants)
            backend = None
            if isolation == "process":
                linker, linked, backend = process_tier(
                    services,
                    plan=plan,
                    component=component,
                    cache=self._cache,
                    cache_key=code_digest(data),
                    spares=spares,
                    confinement=confinement,
                )
            else:
                with stage("link", **{"wasmplug.plugin.name": manifest.name}):
                    linker, linked = self._providers.link(component, plan)
            plugin = Plugin(  # creates the first instance (or starts the first worker)
                services=services,
                component=component,
                shape=shape,
                manifest=manifest,
                sandbox=sandbox,
                limits=limits,
                linker=linker,
                linked=linked,
                uses_wasi=plan.uses_wasi,
                pool_size=pool_size,
                restart_policy=restart_policy,
                sha256=sha256,
                publisher=publisher,
                backend=backend,
            )
        except BaseException:
            sandbox.close()  # release the granted directories held since resolve()
            raise
        for note in sandbox.denied:
            log.info("plugin %s: %s", manifest.name, note)
        return plugin
