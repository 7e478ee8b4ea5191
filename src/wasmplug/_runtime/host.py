"""PluginHost: the engine, caches and host interfaces that plugins are loaded into."""

from __future__ import annotations

import atexit
import hashlib
import os
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, final

from wasmplug import _telemetry
from wasmplug._bridge import sigguard as _sigguard
from wasmplug._bridge.wit import read_shape
from wasmplug._distribution.operations import install_source
from wasmplug._errors import PluginClosedError, PluginNotFoundError
from wasmplug._sandbox.confinement import MODES, ConfinementMode
from wasmplug._sandbox.grants import Grants
from wasmplug._sandbox.grantstore import GrantPolicy, PermissionRequest
from wasmplug._sandbox.http import HttpCapability
from wasmplug._sandbox.limits import Limits, RestartPolicy
from wasmplug._sandbox.manifest import Manifest
from wasmplug._trust.keys import PublicKey
from wasmplug._trust.registry import PluginInfo, Registry
from wasmplug._trust.store import TrustedKey, TrustStore, as_trusted

from .cache import CompileCache, default_cache_dir
from .callthread import CLOSE_GRACE_S
from .compiler import Compiler
from .describe import ComponentDescription, describe
from .linking import Providers
from .loader import Loader
from .plugin import Plugin
from .services import EXECUTOR_PREFIX, HostServices, before_exit_joins_threads
from .sources import default_name, find_manifest, read_source
from .stats import HostStats, host_stats
from .telemetry import observe_host, plugin_attributes, stage

__all__ = ["PluginHost", "inspect"]


def _check_isolation(isolation: str) -> None:
    if isolation not in ("inprocess", "process"):
        raise ValueError(f"isolation must be 'inprocess' or 'process', got {isolation!r}")


@final
class PluginHost:
    """Owns the wasmtime Engine, the compile cache, the epoch ticker and the host
    interfaces; loads plugins into sandboxes.

    Use it as a context manager, or call :meth:`close`, which is idempotent and
    also runs at interpreter exit.

    Args:
        limits: Default limits for every plugin, and the ceiling a manifest
            cannot exceed. Defaults to ``Limits()``.
        restart_policy: Default restart policy for every plugin.
        trusted_keys: Publisher keys the application trusts in code:
            :class:`TrustedKey` (with name scopes), :class:`PublicKey`, or key-file
            bytes (wasmsign2 raw, PEM or OpenSSH; any plugin name).
        trust_store: Keys and revocations trusted on this machine; defaults to
            the user's store (``wasmplug trust ...``), read on first use.
        policy: Decides grants for plugins loaded without explicit ``grants``
            (static grants, a prompt, remembered answers). The default grants
            nothing and remembers nothing.
        cache_dir: Where compiled components are cached; defaults to
            ``platformdirs.user_cache_dir("wasmplug")/compiled``. ``False``
            disables the on-disk cache.
        consume_fuel: Enable fuel metering engine-wide (needed for
            ``Limits.fuel``; costs some speed in every plugin).
        tick_ms: Epoch tick, the resolution of ``Limits.timeout_ms``, in ms.
        max_workers: Threads for :meth:`Plugin.acall` and parallel compiles.
        isolation: Default isolation tier for :meth:`load`: ``"inprocess"``
            (instances in this process) or ``"process"`` (instances in worker
            processes, killed at a deadline or on a crash; see
            ``docs/crash-isolation.md``, "Choosing an isolation tier").
        spare_workers: With ``isolation="process"``, ready worker processes to
            keep per plugin besides those serving calls, so that a killed or
            crashed worker is replaced at once (each is one idle process).
        instance_slots: Use wasmtime's pooling allocator with this many instance
            slots, shared by every in-process plugin of the host, instead of
            allocating each instance's memories and tables when it is created.
            A fresh instance (``reset()``, the restart after a fault, a pool
            growing) then costs about half as much, but at most this many
            instances can be alive at once (one more raises
            :class:`InstantiationError`), each slot is sized by ``limits`` (see
            the host guide, "Instance slots"), and the engine reserves about 4 GiB of
            virtual address space per slot up front (none of it resident).
            ``None`` (the default): allocate on demand, no fixed capacity.
            A process-isolated plugin's worker then pools its own instances, in
            two slots of its own sized by the plugin's limits, none of them
            counted against these.
        memory_accounting: Count the linear memory of each in-process plugin, for
            :meth:`stats` (``PluginStats.linear_memory_bytes``) and the
            ``wasmplug.memory.linear`` gauge. The host then allocates every linear
            memory itself, which makes each fresh instance slower and larger:
            wasmtime's copy-on-write memory images are off, so data segments are
            copied in at instantiation, into private pages (see
            docs/observability.md, "Linear memory").
            Process-isolated plugins are always counted. Not with ``instance_slots``.
        worker_confinement: With ``isolation="process"``, how each worker process
            confines itself before the plugin's code first runs: a seccomp filter
            (no new processes or programs, no signals to or tracing of other
            processes, no sockets) and a Landlock ruleset (no files but what the
            worker needs and the plugin's granted directories). ``"auto"`` (the
            default) applies what the kernel supports and logs a warning about
            the rest; ``"require"`` refuses to start a worker
            (:class:`InstantiationError`) unless both apply; ``"off"`` applies
            neither (for debugging a worker). :attr:`Plugin.confinement` says what
            applied; see ``docs/crash-isolation.md``, "What a worker is confined to".

    Raises:
        CacheError: if ``cache_dir`` is unusable (not private or not writable).
        ValueError: ``instance_slots`` is below 1, or given with ``memory_accounting``;
            ``worker_confinement`` is not one of ``"auto"``, ``"require"``, ``"off"``.
        OSError: ``memory_accounting`` on a platform without ``mmap`` (not POSIX).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        restart_policy: RestartPolicy | None = None,
        trusted_keys: Iterable[TrustedKey | PublicKey | bytes] = (),
        trust_store: TrustStore | None = None,
        policy: GrantPolicy | None = None,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        consume_fuel: bool = False,
        tick_ms: float = 1.0,
        max_workers: int | None = None,
        isolation: Literal["inprocess", "process"] = "inprocess",
        spare_workers: int = 1,
        instance_slots: int | None = None,
        memory_accounting: bool = False,
        worker_confinement: Literal["auto", "require", "off"] = "auto",
    ) -> None:
        _check_isolation(isolation)
        if worker_confinement not in MODES:
            raise ValueError(
                f"worker_confinement must be one of {', '.join(MODES)}, got {worker_confinement!r}"
            )
        self.worker_confinement: ConfinementMode = worker_confinement
        if spare_workers < 0:
            raise ValueError(f"spare_workers must be >= 0, got {spare_workers}")
        self.isolation: Literal["inprocess", "process"] = isolation
        self.spare_workers = spare_workers
        self.limits = limits if limits is not None else Limits()
        self.restart_policy = restart_policy if restart_policy is not None else RestartPolicy()
        self.trusted_keys = tuple(as_trusted(k) for k in trusted_keys)
        self._trust_store = trust_store
        self.policy = policy if policy is not None else GrantPolicy(store=False)
        self._services = services = HostServices(
            consume_fuel=consume_fuel,
            tick_ms=tick_ms,
            max_workers=max_workers,
            instance_slots=instance_slots,
            limits=self.limits,
            memory_accounting=memory_accounting,
        )
        self.instance_slots = instance_slots
        self._engine = engine = services.engine
        if cache_dir is False:
            self._cache: CompileCache | None = None
        else:
            directory = default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)  # type: ignore[arg-type]
            self._cache = CompileCache(directory, services.engine_settings)
        self._compiler = Compiler(engine, self._cache)
        # The outbound HTTP capability is built in; each plugin's own allow-list
        # (declared ∩ granted) is checked on every request. provide() may replace it.
        self._http = HttpCapability()
        self._providers = Providers(engine, self._cache, self._http)
        self._loader = Loader(services, self._compiler, self._providers, self._cache)
        self._plugins: weakref.WeakSet[Plugin] = weakref.WeakSet()
        self._closed = False
        # Ctrl-C during a main-thread call must not be lost in a ctypes callback.
        self._sigguard = _sigguard.install()
        _telemetry.refresh()
        observe_host(self)
        atexit.register(self.close)
        before_exit_joins_threads(self, PluginHost._cancel_executor_waits)

    # -- host interfaces ------------------------------------------------------------

    def provide(
        self,
        interface: str,
        impl: Any,
        *,
        wit: str | os.PathLike[str] | None = None,
        world: str | None = None,
        sensitive: bool = False,
    ) -> None:
        """Implement a WIT interface (or a world-level function) that plugins import.

        The application owns the interface: with ``wit``, plugins can reach
        exactly the functions and resources that WIT defines, with the types it
        gives them, and nothing else ``impl`` has. A plugin that imports anything
        else from the interface, or a function with another type, is refused at
        load with a :class:`LinkError` naming it.

        Args:
            interface: The WIT interface name, ``"demo:plugin/host@0.1.0"``; or
                the name of a world-level import: a function, or a resource
                declared directly in the world.
            impl: With ``wit``: an object whose snake_case methods implement the
                interface's functions, or a mapping of WIT (kebab-case) or
                snake_case names to callables; resources are classes, attribute
                ``PascalCase`` or key ``kebab-case``, whose snake_case methods
                implement the resource's methods. Without ``wit``: a mapping, of
                which only the explicit keys are ever linked (resource functions
                by their full WIT name: ``"[constructor]blob"``,
                ``"[method]blob.read"``); or, for a world-level function, the
                callable itself. A world-level resource is its class (with
                ``wit`` and ``world``) or a mapping of its functions' WIT names.
            wit: The interface's WIT: a path (``str`` or ``os.PathLike``) to a
                ``.wit`` file or to a package directory (its ``deps/`` included),
                or WIT text (a ``str`` containing ``{`` or a newline). It is
                turned into component types by the ``wasm-tools`` binary and
                cached. ``wasmplug:host/http`` always uses its shipped WIT.
            world: With ``wit``, for a world-level import: the world that
                declares it (``"plugin"`` or ``"demo:plugin/plugin@0.1.0"``).
            sensitive: If true, a plugin gets the interface only when its
                grants name it (``Grants(host_interfaces={...})``).

        Plugins loaded later see it; a plugin importing a compatible version
        (same major, or same minor for ``0.x``) is linked to it.

        Raises:
            HostInterfaceError: the WIT does not parse or does not define
                ``interface``; ``impl`` lacks one of its functions, resource
                classes or methods, or takes the wrong number of arguments;
                or ``impl`` is neither a mapping nor, for a world-level
                function, a callable, and no ``wit`` is given.
            PluginClosedError: the host is closed.
        """
        self._check_open()
        self._providers.add(interface, impl, wit=wit, world=world, sensitive=sensitive)

    # -- loading -----------------------------------------------------------------------

    def load(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        allow_unsigned: bool = False,
        manifest: Manifest | None = None,
        grants: Grants | None = None,
        limits: Limits | None = None,
        restart_policy: RestartPolicy | None = None,
        pool_size: int = 1,
        isolation: Literal["inprocess", "process"] | None = None,
    ) -> Plugin:
        """Verify, compile (or load from cache), link and instantiate a plugin.

        Args:
            source: Path to a ``.wasm`` component, or its bytes (binary or WAT text).
            allow_unsigned: Load a component that has no trusted signature.
                Without it, only components signed (wasmsign2 format) by one of
                ``trusted_keys`` load.
            manifest: The manifest to use. Otherwise the embedded
                ``wasmplug-manifest`` section, then a sidecar ``wasmplug.toml``
                next to the file, then an empty manifest (no capabilities)
                named after the file.
            grants: What this plugin may have. Default: what the host's ``policy``
                decides (which, by default, is nothing).
            limits: This plugin's limits (default: the host's). A manifest may
                lower them, never raise them.
            restart_policy: This plugin's restart policy (default: the host's).
            pool_size: Maximum instances for concurrent calls (>= 1); with
                ``isolation="process"``, worker processes.
            isolation: ``"inprocess"`` or ``"process"``; default: the host's.
                A process-isolated plugin has the same API, and its host
                functions still run here, in the calling thread.

        Returns:
            The loaded plugin, with one instance already created.

        Raises:
            InvalidComponentError: the bytes are not a valid component.
            UnsignedPluginError: no signature, and ``allow_unsigned`` is false.
            UntrustedKeyError: signed, but not by a trusted key whose scope covers
                the plugin's name.
            SignatureInvalidError: the signature does not match the content.
            RevokedError: the component or its signer's key is revoked.
            ManifestError: the manifest is invalid.
            LinkError: imports that are not provided, not declared or not granted.
            CapabilityError: a grant cannot be honoured (missing directory, or a
                directory inside another writable grant: see docs/security.md).
            InstantiationError: the component failed to start (start code
                trapped, or a limit is below what it needs).
            PluginClosedError: the host is closed.
        """
        self._check_open()
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        isolation = self.isolation if isolation is None else isolation
        _check_isolation(isolation)
        _telemetry.refresh()  # an SDK configured since the host was created
        observe_host(self)
        with _telemetry.span("wasmplug.load", {"wasmplug.isolation": isolation}) as span:
            plugin = self._load(
                source,
                allow_unsigned=allow_unsigned,
                manifest=manifest,
                grants=grants,
                limits=limits,
                restart_policy=restart_policy,
                pool_size=pool_size,
                isolation=isolation,
            )
            if span is not None:
                span.set_attributes(plugin_attributes(plugin))
        return plugin

    def _load(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        allow_unsigned: bool,
        manifest: Manifest | None,
        grants: Grants | None,
        limits: Limits | None,
        restart_policy: RestartPolicy | None,
        pool_size: int,
        isolation: Literal["inprocess", "process"],
    ) -> Plugin:
        path, data = read_source(source)
        manifest = manifest or find_manifest(data, path)[0]
        sha = hashlib.sha256(data).hexdigest()
        with stage("verify", **{"wasmplug.plugin.name": manifest.name}) as span:
            store = self.trust_store
            store.refresh()  # keys revoked or trusted since the last load
            trusted = store.check(
                data,
                manifest.name,
                extra_keys=self.trusted_keys,
                where=str(path or "component"),
                allow_unsigned=allow_unsigned,
            )
            if span is not None:
                span.set_attribute("wasmplug.signed", trusted is not None)
        if grants is None:
            request = PermissionRequest.asking(
                manifest,
                sha256=sha,
                publisher=None if trusted is None else trusted.key_id,
                publisher_name="" if trusted is None else trusted.name,
                sensitive=self._providers.sensitive(manifest.host_interfaces),
            )
            grants = self.policy.decide(request)
        plugin = self._loader.build(
            data,
            manifest,
            grants,
            sha256=sha,
            publisher=None if trusted is None else trusted.key_id,
            ceiling=limits or self.limits,
            restart_policy=restart_policy or self.restart_policy,
            pool_size=pool_size,
            isolation=isolation,
            spares=self.spare_workers,
            confinement=self.worker_confinement,
        )
        self._plugins.add(plugin)
        return plugin

    def install(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        registry: Registry | None = None,
        allow_unsigned: bool = False,
        force: bool = False,
        insecure: bool = False,
    ) -> PluginInfo:
        """Verify, check, precompile (into this host's cache) and install a plugin.

        Uses this host's trust store and ``trusted_keys``. See :meth:`Registry.install`
        for the checks and the errors raised.

        Args:
            source: A ``.wasm`` path or its bytes (with an embedded manifest); or an
                OCI reference, ``[oci://]host[:port]/repo[:tag]`` or ``...@sha256:DIGEST``
                (no tag: the highest version tag); or a package name ``ns:name[@spec]``
                whose namespace is mapped to a registry in the user's
                ``distribution.toml``. A reference resolves to a manifest digest, the
                layer is downloaded with its digest checked (or read from the blob
                cache), and then installed exactly as a file is; the registry index
                records the reference and the manifest digest. See "Distributing plugins".
            registry: Where to install; default: the user's registry.
            allow_unsigned: Install without a trusted signature (recorded as unsigned).
            force: Override rollback, version- and name-conflict refusals.
            insecure: Allow plain HTTP to a non-loopback OCI registry.

        Raises:
            DistributionError: (OCI sources) the registry is unreachable
                (RegistryUnavailableError), refuses access (RegistryAuthError), has no
                such artifact (ArtifactNotFoundError), serves altered bytes
                (DigestMismatchError) or not a Wasm artifact (ArtifactFormatError).
            LoadError: and the other refusals of :meth:`Registry.install`, for files
                and references alike.
        """
        self._check_open()
        return install_source(
            source,
            registry=registry or Registry(),
            trust_store=self.trust_store,
            trusted_keys=self.trusted_keys,
            allow_unsigned=allow_unsigned,
            force=force,
            compile=self._precompile_one,
            insecure=insecure,
        )

    def _precompile_one(self, data: bytes) -> None:
        self.precompile([data])

    def load_installed(
        self,
        name: str,
        version: str | None = None,
        *,
        registry: Registry | None = None,
        allow_unsigned: bool = False,
        grants: Grants | None = None,
        limits: Limits | None = None,
        restart_policy: RestartPolicy | None = None,
        pool_size: int = 1,
        isolation: Literal["inprocess", "process"] | None = None,
    ) -> Plugin:
        """Load an installed plugin by name: the highest version matching ``version``
        (a Cargo-style spec such as ``"1.2"``; default: the highest installed).

        The file is verified again (keys may have been revoked since install).
        Other arguments are as for :meth:`load`.

        Raises:
            PluginNotFoundError: nothing installed matches; otherwise whatever
                :meth:`load` raises.
        """
        info = (registry or Registry()).get(name, version)
        if info.path is None:
            raise PluginNotFoundError(f"{name}: installed entry has no file")
        return self.load(
            info.path,
            allow_unsigned=allow_unsigned,
            grants=grants,
            limits=limits,
            restart_policy=restart_policy,
            pool_size=pool_size,
            isolation=isolation,
        )

    def precompile(self, sources: Iterable[str | os.PathLike[str] | bytes]) -> list[str]:
        """Compile several components in parallel threads and cache them.

        Returns:
            The SHA-256 (hex) of each component, in order.

        Raises:
            InvalidComponentError: if any source is not a valid component.
        """
        self._check_open()
        items = [read_source(s) for s in sources]
        shas = [hashlib.sha256(data).hexdigest() for _, data in items]
        futures = [
            self._services.executor.submit(self._compiler.compile, data, default_name(path))
            for path, data in items
        ]
        for fut in futures:
            fut.result()
        return shas

    def inspect(self, source: str | os.PathLike[str] | bytes) -> ComponentDescription:
        """Describe a component without loading it: what ``wasmplug inspect`` shows.

        The component is compiled (or taken from the compile cache) to read its
        types; nothing is verified, linked or instantiated, and no grant is asked for.

        Args:
            source: Path to a ``.wasm`` component, or its bytes (binary or WAT text).

        Returns:
            Its digests, manifest (embedded, else a sidecar ``wasmplug.toml``, else the
            default), signatures' key ids, and the WIT signature of every import and
            export.

        Raises:
            InvalidComponentError: the bytes are not a valid component.
            ManifestError: the embedded or sidecar manifest is invalid.
            PluginClosedError: the host is closed.
        """
        self._check_open()
        path, data = read_source(source)
        manifest, where = find_manifest(data, path)
        shape = read_shape(self._engine, self._compiler.compile(data, manifest.name))
        return describe(data, path, shape, manifest, where)

    def stats(self) -> HostStats:
        """A snapshot of every open plugin's calls, faults, restarts, quarantines and
        instances: the figures the OpenTelemetry instruments report, without
        OpenTelemetry (docs/observability.md).

        Returns:
            A frozen :class:`HostStats`; ``stats().get("name")`` is one plugin's
            :class:`PluginStats`.
        """
        return host_stats(self.plugins)

    @property
    def plugins(self) -> list[Plugin]:
        """The plugins loaded by this host that are still open."""
        return [p for p in self._plugins if not p.closed]

    @property
    def trust_store(self) -> TrustStore:
        """The machine's trust store (loaded on first use)."""
        if self._trust_store is None:
            self._trust_store = TrustStore()
        return self._trust_store

    # -- lifecycle ------------------------------------------------------------------------

    def _cancel_executor_waits(self) -> None:
        """At interpreter exit, an ``acall`` executor thread waiting on a call blocked in
        WASI would hang the exit before :meth:`close` could run: cancel those waits.
        Other threads are the application's."""
        if not self._closed:
            for plugin in list(self._plugins):
                plugin._cancel_waits(lambda t: t.name.startswith(EXECUTOR_PREFIX))

    def _check_open(self) -> None:
        if self._closed:
            raise PluginClosedError("the PluginHost is closed")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close every plugin, stop the ticker and worker threads. Idempotent.

        Returns within about half a second even when plugins are blocked in WASI
        calls: their waits are cancelled and their call threads abandoned.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        deadline = time.monotonic() + CLOSE_GRACE_S
        # First end the async host functions running on the host's loop, so that
        # no call waits for one while its plugin is being closed.
        self._services.host_loop.close()
        for plugin in list(self._plugins):
            plugin._close(deadline)
        self._services.close()
        self._http.close()
        self._compiler.clear()
        if self._sigguard:
            self._sigguard = False
            _sigguard.uninstall()

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<wasmplug.PluginHost {len(self.plugins)} plugin(s) {state}>"


def inspect(
    source: str | os.PathLike[str] | bytes, *, cache_dir: str | os.PathLike[str] | None = None
) -> ComponentDescription:
    """Describe a component without loading it, with a temporary :class:`PluginHost`.

    See :meth:`PluginHost.inspect`; use that method when you already have a host.

    Args:
        source: Path to a ``.wasm`` component, or its bytes (binary or WAT text).
        cache_dir: Compile cache directory (default: the user cache dir).

    Raises:
        InvalidComponentError: the bytes are not a valid component.
        ManifestError: the embedded or sidecar manifest is invalid.
    """
    with PluginHost(cache_dir=cache_dir) as host:
        return host.inspect(source)
